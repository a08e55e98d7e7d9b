"""The reference solution f*, x*: SciPy's L-BFGS, then Newton steps to ||grad f|| <= 1e-10.

L-BFGS alone stalls near 1e-8 in float64 on ill-conditioned data; a few Newton steps with the
exact Hessian (d x d, cheap for the convex problems here) take the gradient norm to the
tolerance of spec section 25. The result is cached as JSON keyed by a hash of the problem
(data, shards, lambda), so it is computed once per problem. A cached entry is trusted only
after it is checked against the problem: f(x*) is recomputed and must equal the stored f*, and
x* must still be a minimiser; otherwise it is recomputed and overwritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from compress_bench.errors import UserError
from compress_bench.problems.base import Reference

log = logging.getLogger(__name__)

GRAD_TOL = 1e-10
CACHE_VERSION = 1

# A cached f* must equal f(x*) recomputed at load to FSTAR_RTOL * max(1, |f*|). Recomputing
# with the same float64 code is bit-identical on one machine (observed: 0.0 on mushrooms, for
# 1 or 2 threads); another machine or BLAS may sum in another order. The error bound of any
# order of summing m positive terms is (m - 1) eps |f|, i.e. <= 1e-12 |f| up to m ~ 10^4
# (mushrooms: 8124), and an independent NumPy implementation differs by ~1e-16. So 1e-12 never
# rejects a good entry, while an edited or stale f* (which shifts every loss_gap) is caught
# down to 1e-12, far below the gaps the runs' tolerances resolve.
FSTAR_RTOL = 1e-12
# ||grad f(x*)|| recomputed at load must be <= GRAD_ACCEPT. The solver stops at GRAD_TOL and
# Newton's last step usually lands far below (mushrooms: 1e-16); the recomputed norm differs
# from the stored one by rounding only (~1e-16). A factor 10 tolerates an entry from another
# machine, and still bounds the sub-optimality f(x*) - f* <= ||grad||^2 / (2 lambda) by 5e-13
# for lambda >= 1e-6, below FSTAR_RTOL. Solves that end above it are not cached (see below).
GRAD_ACCEPT = 10 * GRAD_TOL


class _InvalidEntry(Exception):
    """A cache entry that must not be used; the message says why."""


def solve_reference(problem, grad_tol: float = GRAD_TOL, newton_steps: int = 30) -> Reference:
    """Minimise ``problem`` (which must offer ``float64_twin`` and ``hessian``) to grad_tol.

    Raises :class:`UserError` when the objective is not finite at the start or along the way
    (e.g. ``problem.l2=nan``), instead of letting SciPy or LAPACK fail on NaNs.
    """
    twin = problem.float64_twin()

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = twin.full_loss_and_grad(torch.from_numpy(x))
        return float(loss), grad.numpy().copy()

    start = np.zeros(twin.d)
    _require_finite(problem, *twin.full_loss_and_grad(torch.from_numpy(start)), "at x = 0")
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "gtol": 1e-13, "ftol": 0.0, "maxcor": 30},
    )
    x = torch.from_numpy(result.x.copy())
    loss, grad = twin.full_loss_and_grad(x)
    for _ in range(newton_steps):
        _require_finite(problem, loss, grad, "during the f* solve")
        if grad.norm() <= grad_tol:
            break
        step = torch.linalg.lstsq(twin.hessian(x), grad.unsqueeze(1)).solution.squeeze(1)
        x = x - step
        loss, grad = twin.full_loss_and_grad(x)
    _require_finite(problem, loss, grad, "at the f* solver's result")
    grad_norm = float(grad.norm())
    if grad_norm > grad_tol:
        log.warning(
            "reference solution reached ||grad f|| = %.3g only (target %.0e)", grad_norm, grad_tol
        )
    return Reference(fstar=float(loss), xstar=x.tolist(), grad_norm=grad_norm)


def _require_finite(problem, loss: torch.Tensor, grad: torch.Tensor, where: str) -> None:
    """UserError unless f and grad f are finite (NaNs would reach LAPACK's argument checks)."""
    if math.isfinite(float(loss)) and bool(torch.isfinite(grad).all()):
        return
    l2 = getattr(problem, "l2", None)
    setting = f"problem.l2 = {l2}; " if l2 is not None else ""
    raise UserError(
        f"the objective of {problem.name} is not finite {where} (f = {float(loss)}); "
        f"{setting}check the problem's parameters and data"
    )


def cached_reference(problem, cache_dir: Path | None) -> Reference:
    """``solve_reference`` with a JSON cache in ``cache_dir`` (None: no cache).

    An entry that cannot be read, is malformed, or does not fit the problem is reported in a
    warning, recomputed and overwritten; the cache never makes a run fail.
    """
    if cache_dir is None:
        return solve_reference(problem)
    path = Path(cache_dir) / f"reference-{problem.fingerprint()}.json"
    ref = _load(problem, path)
    if ref is None:
        ref = solve_reference(problem)
        _store(problem, path, ref)
    return ref


# --- reading the cache ---------------------------------------------------------------------


def _load(problem, path: Path) -> Reference | None:
    """The cached reference at ``path`` if it is valid for ``problem``, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as err:  # unreadable, a folder, under a file, a symlink loop
        log.warning("ignoring reference cache %s: cannot be read (%s)", path, _reason(err))
        return None
    except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, absurdly nested
        log.warning("ignoring reference cache %s: not valid JSON (%s)", path, _reason(err))
        return None
    try:
        ref = _parse_entry(data, problem.d)
        _check_against(problem, ref)
    except _InvalidEntry as err:
        log.warning("ignoring reference cache %s: %s; recomputing f*", path, err)
        return None
    return ref


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err).split("\n")[0][:120] or type(err).__name__


def _parse_entry(data: object, d: int) -> Reference:
    """The Reference held by a decoded cache entry; _InvalidEntry unless it has the schema
    ``{"version": 1, "fstar": float, "grad_norm": float >= 0, "xstar": [d floats]}``."""
    if not isinstance(data, dict):
        raise _InvalidEntry(f"a JSON {type(data).__name__}, not an object")
    version = data.get("version")
    if type(version) is not int or version != CACHE_VERSION:  # type(): True == 1 in Python
        raise _InvalidEntry(f"version {version!r}, not {CACHE_VERSION}")
    fstar = _finite(data, "fstar")
    grad_norm = _finite(data, "grad_norm")
    if grad_norm < 0:
        raise _InvalidEntry(f"grad_norm {grad_norm!r} is negative")
    xstar = data.get("xstar")
    if not isinstance(xstar, list) or len(xstar) != d:
        size = f"{len(xstar)} values" if isinstance(xstar, list) else repr(xstar)[:40]
        raise _InvalidEntry(f"xstar is {size}, not a list of d = {d} numbers")
    if not all(_is_finite_number(v) for v in xstar):
        raise _InvalidEntry("xstar holds a value that is not a finite number")
    return Reference(fstar=fstar, xstar=[float(v) for v in xstar], grad_norm=grad_norm)


def _is_finite_number(value: object) -> bool:
    # bool is an int subclass, but true/false in a cache entry is corruption, not a number
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(data: dict, key: str) -> float:
    """``data[key]`` as a float; _InvalidEntry if missing or not a finite number."""
    if key not in data:
        raise _InvalidEntry(f"no {key}")
    value = data[key]
    if not _is_finite_number(value):
        raise _InvalidEntry(f"{key} {value!r} is not a finite number"[:120])
    return float(value)


def _check_against(problem, ref: Reference) -> None:
    """_InvalidEntry unless f(x*) = f* and x* is a minimiser of ``problem`` (float64)."""
    twin = problem.float64_twin()
    loss, grad = twin.full_loss_and_grad(torch.tensor(ref.xstar, dtype=torch.float64))
    value, grad_norm = float(loss), float(grad.norm())
    # "not <=" so that a NaN recomputation (a problem with l2=nan) rejects the entry as well
    if not abs(value - ref.fstar) <= FSTAR_RTOL * max(1.0, abs(ref.fstar)):
        raise _InvalidEntry(f"fstar {ref.fstar!r} but f(xstar) = {value!r}")
    if not grad_norm <= GRAD_ACCEPT:
        raise _InvalidEntry(f"||grad f(xstar)|| = {grad_norm:.3g} > {GRAD_ACCEPT:.0e}")


# --- writing the cache ---------------------------------------------------------------------


def _store(problem, path: Path, ref: Reference) -> None:
    """Write ``ref`` to ``path`` atomically; a failure is logged, never raised."""
    if not ref.grad_norm <= GRAD_ACCEPT:
        # It would be rejected at the next load anyway; not caching it lets the next run try
        # again and repeat the solver's warning rather than hide it.
        log.info("not caching the reference solution (||grad f|| = %.3g)", ref.grad_norm)
        return
    payload = {
        "version": CACHE_VERSION,
        "problem": problem.name,
        "fstar": ref.fstar,
        "grad_norm": ref.grad_norm,
        "xstar": ref.xstar,
    }
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
            tmp = fh.name
            json.dump(payload, fh)
        os.replace(tmp, path)
    except OSError as err:  # a read-only cache folder (or one that is a file) must not stop a run
        log.info("could not cache the reference solution at %s (%s)", path, _reason(err))
        if tmp is not None:  # a full disk, or path being a folder: leave no stray .tmp
            with contextlib.suppress(OSError):
                os.unlink(tmp)
