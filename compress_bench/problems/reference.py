"""The reference solution f*, x*: SciPy's L-BFGS, then Newton steps to ||grad f|| <= 1e-10.

L-BFGS alone stalls near 1e-8 in float64 on ill-conditioned data; a few Newton steps with the
exact Hessian (d x d, cheap for the convex problems here) take the gradient norm to the
tolerance of spec section 25. The result is cached as JSON keyed by a hash of the problem
(data, shards, lambda), so it is computed once per problem.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from compress_bench.problems.base import Reference

log = logging.getLogger(__name__)

GRAD_TOL = 1e-10
CACHE_VERSION = 1


def solve_reference(problem, grad_tol: float = GRAD_TOL, newton_steps: int = 30) -> Reference:
    """Minimise ``problem`` (which must offer ``float64_twin`` and ``hessian``) to grad_tol."""
    twin = problem.float64_twin()

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = twin.full_loss_and_grad(torch.from_numpy(x))
        return float(loss), grad.numpy().copy()

    start = np.zeros(twin.d)
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
        if grad.norm() <= grad_tol:
            break
        step = torch.linalg.lstsq(twin.hessian(x), grad.unsqueeze(1)).solution.squeeze(1)
        x = x - step
        loss, grad = twin.full_loss_and_grad(x)
    grad_norm = float(grad.norm())
    if grad_norm > grad_tol:
        log.warning(
            "reference solution reached ||grad f|| = %.3g only (target %.0e)", grad_norm, grad_tol
        )
    return Reference(fstar=float(loss), xstar=x.tolist(), grad_norm=grad_norm)


def cached_reference(problem, cache_dir: Path | None) -> Reference:
    """``solve_reference`` with a JSON cache in ``cache_dir`` (None: no cache)."""
    if cache_dir is None:
        return solve_reference(problem)
    path = Path(cache_dir) / f"reference-{problem.fingerprint()}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == CACHE_VERSION:
                return Reference(data["fstar"], data["xstar"], data["grad_norm"])
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable reference cache %s", path)
    ref = solve_reference(problem)
    payload = {
        "version": CACHE_VERSION,
        "problem": problem.name,
        "fstar": ref.fstar,
        "grad_norm": ref.grad_norm,
        "xstar": ref.xstar,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
            json.dump(payload, fh)
        os.replace(fh.name, path)
    except OSError as err:  # a read-only data folder must not stop a run
        log.info("could not cache the reference solution at %s (%s)", path, err)
    return ref
