"""Pure math of eSGD (spec 19): importance selection with momentum residuals, batched over
workers, plus the sync-free selection helpers it needs.

**A reconstruction.** No public implementation and no algorithm text of eSGD exists (spec 19:
code, issues and pages were searched; the paper is only linked from reading lists). Every step
below follows spec 19, which reconstructs the method from the seed description; each decision
the sources do not fix is a CHOICE switch whose default is spec 19's.

Everything is batched over workers (row ``i`` of every ``(n, d)`` tensor is worker ``i``) and
branch-free across them: workers whose loss decreased and those whose loss did not are
computed together and combined with ``torch.where``. Shapes and ``k`` are Python ints;
nothing reads a tensor value back to the host (no ``.item()``, ``bool(tensor)``,
``nonzero()``), so a step queues on an accelerator without synchronising.

Bits per worker per round (spec 0.6, 19): ``k_eff (32 + ceil(log2 d))`` (values and indices);
``32 d`` when ``k >= d`` (dense send, spec 0.3); 0 when ``k = 0``.

Reference: METHODS.md section 19 (and 13 for the successive sampling, 0.4 for ties).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import torch

from compress_bench.compressors.base import FLOAT_BITS, index_bits

THRESHOLDS = ("mean_abs_grad", "mean_abs_residual")
CREDITS = ("additive", "multiplicative")

#: Keys of zero-weight coordinates in successive sampling (as md.py): below every
#: ``log w + Gumbel`` of a positive weight, random among themselves.
_FILL_KEY = -1.0e4

#: ``sampler(weights, k) -> mask``: ``weights`` ``(n, d)`` non-negative, returns a bool
#: ``(n, d)`` mask with exactly ``min(k, d)`` entries per row, row ``i`` drawn from worker
#: ``i``'s stream.
Sampler = Callable[[torch.Tensor, int], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Sync-free selection (tie rule of spec 0.4)
# --------------------------------------------------------------------------------------------


def top_k_mask_sync_free(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask ``(..., d)`` of the ``k`` largest scores of every row, ties to the smaller
    index (spec 0.4); the same mask as ``selection.top_k_mask`` but without its host-side
    "any tie?" shortcut, so it never synchronises (the tie pass always runs).

    ``v`` = the k-th largest value of the row (``torch.topk``); every score ``> v`` is kept and
    the scores ``== v`` are taken in index order until the row holds ``k``. ``k <= 0``: nothing;
    ``k >= d``: everything. NaN scores are not supported.
    """
    d = scores.shape[-1]
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= d:
        return torch.ones_like(scores, dtype=torch.bool)
    kth = torch.topk(scores, k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(dim=-1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=-1) <= room))


def ordered_top_k(scores: torch.Tensor, k: int, *, largest: bool = True) -> torch.Tensor:
    """Indices ``(..., min(k, d))`` (int64) of the ``k`` best entries of every row in order:
    by score descending (``largest=True``) or ascending, ties by smaller index first, i.e. the
    first ``k`` of ``np.lexsort((arange(d), -score))`` (or ``+score``).

    O(d log k): the exact top-k set (:func:`top_k_mask_sync_free`), its indices in ascending
    order (a top-k of the positions), then a stable sort of those k scores.
    """
    d = scores.shape[-1]
    k = max(0, min(k, d))
    mask = top_k_mask_sync_free(scores if largest else -scores, k)
    positions = torch.arange(d, device=scores.device).expand(mask.shape)
    positions = torch.where(mask, positions, d)
    idx = torch.topk(positions, k, dim=-1, largest=False, sorted=True).values
    order = torch.sort(scores.gather(-1, idx), dim=-1, descending=largest, stable=True).indices
    return idx.gather(-1, order)


# --------------------------------------------------------------------------------------------
# Successive sampling (spec 13)
# --------------------------------------------------------------------------------------------


def successive_sampling(weights: torch.Tensor, k: int, u: torch.Tensor) -> torch.Tensor:
    """``min(k, d)`` indices per row drawn one after another without replacement, each with
    probability proportional to ``weights`` among those left (``rng.choice(d, k,
    replace=False, p=w/sum(w))``), from the uniforms ``u`` (same shape, in [0, 1)).

    Gumbel-top-k: the k largest ``log w_i + G_i``, ``G_i = -log(-log u_i)``, are distributed as
    successive sampling. Rows with fewer than k positive weights take them all and fill up with
    a uniform random subset of the rest (spec 13 CHOICE). The same keys as
    ``md.successive_sampling_mask``, hence the same mask for the same ``u``, without a host
    sync. Weights need not be normalised.
    """
    tiny = torch.finfo(u.dtype).tiny
    gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
    keys = torch.where(weights > 0, torch.log(weights) + gumbel, _FILL_KEY + u)
    return top_k_mask_sync_free(keys, k)


class _UniformSource(Protocol):
    def uniform(self, d: int, dtype: torch.dtype = ...) -> torch.Tensor: ...


def successive_sampler(source: _UniformSource | Sequence[torch.Generator]) -> Sampler:
    """The default eSGD sampler: :func:`successive_sampling` with uniforms drawn from the
    workers' streams, row ``i`` from worker ``i``'s.

    ``source`` is a :class:`compress_bench.rng.Streams` (``source.uniform(d, dtype)``, the
    same draws as MD Stochastic makes) or a sequence of ``torch.Generator``s, one per row
    (row ``i``: ``torch.rand(d, generator=generators[i])``). Every call draws ``d`` uniforms
    per worker, whatever ``k`` is.
    """
    if hasattr(source, "uniform"):

        def draw(n: int, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            u = source.uniform(d, dtype=dtype)
            if u.shape != (n, d):
                raise ValueError(f"the streams drew {tuple(u.shape)} uniforms for {(n, d)}")
            return u.to(device)

    else:
        generators = list(source)

        def draw(n: int, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            if len(generators) != n:
                raise ValueError(f"{len(generators)} generators for {n} workers")
            rows = [torch.rand(d, generator=g, dtype=dtype, device=g.device) for g in generators]
            return torch.stack(rows).to(device)

    def sample(weights: torch.Tensor, k: int) -> torch.Tensor:
        n, d = weights.shape
        return successive_sampling(weights, k, draw(n, d, weights.dtype, weights.device))

    return sample


# --------------------------------------------------------------------------------------------
# eSGD
# --------------------------------------------------------------------------------------------


class ESGDState(NamedTuple):
    """Per-worker eSGD state, row ``i`` = worker ``i``.

    ``importance`` H ``(n, d)`` (init 1, CHOICE), ``residual`` r ``(n, d)`` (init 0),
    ``prev_mask`` S_prev ``(n, d)`` bool (init empty), ``prev_loss`` ``(n,)`` (init +inf),
    ``round`` t (a Python int: rounds done).
    """

    importance: torch.Tensor
    residual: torch.Tensor
    prev_mask: torch.Tensor
    prev_loss: torch.Tensor
    round: int


def esgd_init(
    n: int, d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> ESGDState:
    """The initial state of ``n`` workers in dimension ``d``: ``H = 1``, ``r = 0``,
    ``S_prev = {}``, ``l_prev = +inf``, ``t = 0``."""
    return ESGDState(
        importance=torch.ones(n, d, dtype=dtype, device=device),
        residual=torch.zeros(n, d, dtype=dtype, device=device),
        prev_mask=torch.zeros(n, d, dtype=torch.bool, device=device),
        prev_loss=torch.full((n,), float("inf"), dtype=dtype, device=device),
        round=0,
    )


class ESGDStep(NamedTuple):
    """Result of :func:`esgd_step`: ``message`` ``(n, d)`` (``v`` on the sent set, 0 elsewhere:
    what the receiver reconstructs), ``mask`` the sent set S ``(n, d)`` bool, ``base`` the base
    set S_0 before the swap (diagnostics), ``state`` the new state."""

    message: torch.Tensor
    mask: torch.Tensor
    base: torch.Tensor
    state: ESGDState


def _k_eff(k: int, d: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    return min(k, d)


def esgd_bits(d: int, k: int) -> int:
    """Uplink bits of one worker's eSGD message: ``k_eff (32 + ceil(log2 d))``, ``32 d`` when
    ``k >= d`` (dense), 0 when ``k = 0`` (spec 0.3, 0.6, 19)."""
    k_eff = _k_eff(k, d)
    if k_eff == 0:
        return 0
    if k_eff == d:
        return FLOAT_BITS * d
    return k_eff * (FLOAT_BITS + index_bits(d))


def esgd_step(
    state: ESGDState,
    g: torch.Tensor,
    loss: torch.Tensor,
    k: int,
    sampler: Sampler,
    *,
    beta: float = 0.9,
    threshold: str = "mean_abs_grad",
    credit: str = "additive",
    momentum_damping: bool = False,
) -> ESGDStep:
    """One eSGD round for all workers (spec 19): gradients ``g`` ``(n, d)``, local losses
    ``loss`` ``(n,)`` (``f_i(x^t)``), ``k`` kept coordinates (``k_eff = min(k, d)``).

    Per worker, with ``dec = (t > 0 and l < l_prev)`` (a NaN loss counts as not decreased):

    1. credit, if ``dec``: ``H_j <- H_j + (l_prev - l)`` for ``j in S_prev`` (``credit=
       "additive"``, default) or ``H_j <- H_j (1 + (l_prev - l))`` (``"multiplicative"``);
    2. base set S_0, ``|S_0| = k_eff``: if ``dec`` the ``k_eff`` largest ``H_j`` (ties to the
       smaller index), else ``sampler(H, k_eff)`` (successive sampling without replacement
       prop. to H, :func:`successive_sampler`; the first round is always sampled). CHOICE of
       this implementation: both are computed for every worker and one is selected per row,
       so the sampler draws from every worker's stream every round (the streams' positions
       depend on the round count only, not on the losses);
    3. momentum residual ``v = beta r + g`` (``momentum_damping=True``: ``beta r + (1 - beta) g``);
    4. threshold ``tau = mean_j |g_j|`` (``threshold="mean_abs_grad"``, default) or
       ``mean_j |v_j|`` (``"mean_abs_residual"``);
    5. swap: U = the ``j not in S_0`` with ``|v_j| > tau`` ordered by ``|v_j|`` descending (ties
       to the smaller index), ``m = min(|U|, k_eff)``; the ``m`` elements of S_0 with the smallest
       ``(H_j, j)`` leave and the first ``m`` of U enter: S, ``|S| = k_eff``;
    6. message ``sum_{j in S} v_j e_j`` (every sent coordinate carries its accumulated value);
       ``r_j <- 0`` on S, ``r_j <- v_j`` elsewhere;
    7. ``S_prev <- S``, ``l_prev <- l``, ``t <- t + 1``.

    With ``beta = 1`` and no damping, ``message + r_new = r + g``: over rounds
    ``sum_t message_t + r_T = sum_t g_t`` (conservation). Bits: :func:`esgd_bits`.
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    if credit not in CREDITS:
        raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
    H, r = state.importance, state.residual
    if g.ndim != 2 or g.shape != H.shape:
        raise ValueError(f"g must have the state's shape {tuple(H.shape)}, got {tuple(g.shape)}")
    n, d = g.shape
    if loss.shape != (n,):
        raise ValueError(f"loss must have shape ({n},), got {tuple(loss.shape)}")
    k_eff = _k_eff(k, d)
    loss = loss.to(state.prev_loss.dtype, copy=True)  # kept as l_prev: not the caller's

    # 1. importance credit for the previous set of the workers whose loss decreased
    if state.round > 0:
        decreased = loss < state.prev_loss
    else:
        decreased = torch.zeros(n, dtype=torch.bool, device=g.device)
    gain = (state.prev_loss - loss).to(H.dtype)[:, None]  # inf / nan where not decreased
    credited = state.prev_mask & decreased[:, None]
    grown = H + gain if credit == "additive" else H * (1 + gain)
    H = torch.where(credited, grown, H)

    # 2. base set: top-k of H where the loss decreased, a successive sample elsewhere
    sampled = sampler(H, k_eff)
    base = torch.where(decreased[:, None], top_k_mask_sync_free(H, k_eff), sampled)

    # 3.-4. momentum residual and threshold
    v = beta * r + ((1 - beta) * g if momentum_damping else g)
    tau = (g if threshold == "mean_abs_grad" else v).abs().mean(dim=1, keepdim=True)

    # 5. swap the m least important base entries for the m largest outside candidates
    magnitude = v.abs()
    candidates = ~base & (magnitude > tau)
    m = candidates.sum(dim=1, keepdim=True).clamp_(max=k_eff)
    take = torch.arange(k_eff, device=g.device) < m  # (n, k_eff): the first m of each order
    entering = ordered_top_k(torch.where(candidates, magnitude, -1.0), k_eff, largest=True)
    leaving = ordered_top_k(torch.where(base, H, float("inf")), k_eff, largest=False)
    none = torch.zeros_like(base)
    sent = (base & ~none.scatter(1, leaving, take)) | none.scatter(1, entering, take)

    # 6.-7. message, residual, state
    zero = torch.zeros((), dtype=v.dtype, device=v.device)
    message = torch.where(sent, v, zero)
    residual = torch.where(sent, zero, v)
    new_state = ESGDState(H, residual, sent, loss, state.round + 1)
    return ESGDStep(message, sent, base, new_state)


__all__ = [
    "CREDITS",
    "THRESHOLDS",
    "ESGDState",
    "ESGDStep",
    "Sampler",
    "esgd_bits",
    "esgd_init",
    "esgd_step",
    "ordered_top_k",
    "successive_sampler",
    "successive_sampling",
    "top_k_mask_sync_free",
]
