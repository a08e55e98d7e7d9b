"""Pure math of the low-rank compressors: randomized SVD (spec 17) and PowerSGD (spec 18).

Every function works on a batch of equal-shape matrices ``M`` of shape ``(..., m, c)`` (e.g.
``(n_workers, g_tensors, m, c)``): one ``matmul`` / ``linalg.qr`` / ``linalg.svd`` call serves
the whole batch, never a loop over matrices, so the number of torch operations does not depend
on the batch size. Shapes, ranks and iteration counts are Python ints known before the call;
nothing reads a tensor value back to the host (no ``.item()``, ``bool(tensor)``,
``nonzero()``), so the functions queue on an accelerator without synchronising. Randomness is
passed in (a ``torch.Generator``, one per worker, or the test matrix itself); the global RNG is
never used. Everything is computed in the input's dtype. One exception outside this module's
code: on CUDA, torch's ``linalg.svd`` reads its solver's ``info`` back to the host to check
convergence (``_linalg_check_errors``), so :func:`randomized_svd` synchronises once per call
(whatever the batch size); ``linalg.qr`` and the PowerSGD functions do not.

Bit costs (spec 0.6, 17, 18): a matrix sent as rank-``r`` factors costs ``32 r (m + c)`` bits,
a matrix or vector sent dense ``32`` bits per entry.

References: N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
SIAM Review 53(2), 2011 (Algorithms 4.3/4.4 and 5.1); T. Vogels, S. P. Karimireddy, M. Jaggi,
"PowerSGD: Practical low-rank gradient compression for distributed optimization", NeurIPS 2019.
METHODS.md sections 17 and 18.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch

from compress_bench.compressors.base import FLOAT_BITS

ORTHOGONALIZATIONS = ("gram_schmidt", "qr")


# --------------------------------------------------------------------------------------------
# Randomized SVD (spec 17)
# --------------------------------------------------------------------------------------------


class LowRankApprox(NamedTuple):
    """Result of :func:`randomized_svd` for a batch of ``(..., m, c)`` matrices.

    ``approx``: the reconstruction the receiver builds, ``(..., m, c)``;
    ``left``: ``U_r diag(Sigma_r)``, ``(..., m, rank)``, and ``right``: ``V_r``, ``(..., c, rank)``,
    with ``approx = left @ right.mT`` (both ``None`` when the matrix is sent dense);
    ``rank``: ``r_eff`` (``min(m, c)`` when dense); ``dense``: whether the matrix is sent as is;
    ``bits``: uplink bits of ONE matrix of the batch (:func:`rsvd_bits`).
    """

    approx: torch.Tensor
    left: torch.Tensor | None
    right: torch.Tensor | None
    rank: int
    dense: bool
    bits: int


def _check_rank(rank: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
    return rank


def sketch_width(m: int, c: int, rank: int, oversampling: int = 5) -> int:
    """Columns of the Gaussian test matrix: ``l = min(rank + oversampling, m, c)`` (spec 17)."""
    _check_rank(rank)
    if oversampling < 0:
        raise ValueError(f"oversampling must be >= 0, got {oversampling}")
    return min(rank + oversampling, m, c)


def rsvd_bits(m: int, c: int, rank: int) -> int:
    """Uplink bits of one ``m x c`` matrix under the rank-``rank`` randomized SVD:
    ``32 r (m + c)`` (``U_r Sigma_r`` and ``V_r``; ``r_eff = rank`` whenever the matrix is not
    sent dense), and ``32 m c`` when ``rank >= min(m, c)`` (dense send, spec 17)."""
    _check_rank(rank)
    if rank >= min(m, c):
        return FLOAT_BITS * m * c
    return FLOAT_BITS * rank * (m + c)


def gaussian_test_matrix(
    batch_shape: Sequence[int],
    rows: int,
    cols: int,
    generator: torch.Generator | Sequence[torch.Generator],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """I.i.d. N(0, 1) tensor of shape ``(*batch_shape, rows, cols)`` drawn from ``generator``.

    Draw order (CHOICE): a single generator fills the whole tensor in ONE ``torch.randn`` call
    (row-major); a sequence of generators (one per worker) must have ``batch_shape[0]`` entries
    and ``generators[i]`` fills block ``i``, shape ``(*batch_shape[1:], rows, cols)``, in one
    call. torch's samplers fill in chunks, so one draw of shape ``(g, rows, cols)`` is NOT the
    concatenation of ``g`` draws of ``(rows, cols)``: a batched call equals per-matrix calls
    only when the same test matrix is passed (``omega=`` of :func:`randomized_svd`).
    ``device`` defaults to the generator's.
    """
    batch_shape = tuple(int(s) for s in batch_shape)
    if isinstance(generator, torch.Generator):
        dev = generator.device if device is None else device
        return torch.randn((*batch_shape, rows, cols), generator=generator, dtype=dtype, device=dev)
    generators = list(generator)
    if not batch_shape or batch_shape[0] != len(generators):
        raise ValueError(
            f"{len(generators)} generators for a batch of shape {batch_shape}: need one per "
            "entry of the first batch dimension"
        )
    return torch.stack(
        [
            gaussian_test_matrix(batch_shape[1:], rows, cols, g, dtype=dtype, device=device)
            for g in generators
        ]
    )


def _orthonormal_basis(Y: torch.Tensor) -> torch.Tensor:
    """Reduced QR's Q (Householder; a zero or rank-deficient Y still gives orthonormal,
    finite columns)."""
    return torch.linalg.qr(Y, mode="reduced").Q


def randomized_svd(
    M: torch.Tensor,
    rank: int,
    *,
    oversampling: int = 5,
    power_iterations: int = 1,
    omega: torch.Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> LowRankApprox:
    """Rank-``rank`` randomized SVD of every matrix of ``M`` (``(..., m, c)``), spec 17.

    HMT range finder with subspace iteration, then the SVD of the small matrix:

    1. ``Omega`` (``(..., c, l)``, ``l = min(r + p, m, c)``) i.i.d. N(0, 1): the passed ``omega``
       (broadcast against the batch), else drawn by :func:`gaussian_test_matrix` from
       ``generator`` (one generator, or one per entry of ``M``'s first dimension);
    2. ``Q = qr(M Omega).Q`` (reduced QR);
    3. ``power_iterations`` (q) times: ``Z = qr(M^T Q).Q``, ``Q = qr(M Z).Q`` (re-orthonormalised
       after every product: HMT Algorithm 4.4, stable where plain ``(M M^T)^q M Omega`` loses
       the small directions);
    4. ``B = Q^T M`` (``l x c``), thin SVD ``B = U~ Sigma V^T``, ``U = Q U~``;
    5. ``C(M) = U_r diag(Sigma_r) V_r^T`` with ``r_eff = min(r, l)``.

    ``M = 0`` gives ``C(M) = 0`` (QR and SVD of zero matrices are finite). When
    ``rank >= min(m, c)`` the matrix is sent dense: ``approx`` is a copy of ``M``, nothing is
    drawn from ``generator`` (the decision depends on shapes only) and ``bits = 32 m c``;
    otherwise ``bits = 32 r_eff (m + c)`` per matrix. Eckart-Young: ``||M - C(M)||_F >=
    ||M - SVD_r(M)||_F`` always; with ``q >= 1`` the gap is small (spec 17 measured <= 1.02x;
    ``q = 0`` is allowed but coarser: up to 1.58x).

    CHOICEs (spec 17/27.6): defaults ``p = 5``, ``q = 1``; the Gaussian draw order above.
    """
    _check_rank(rank)
    if power_iterations < 0:
        raise ValueError(f"power_iterations must be >= 0, got {power_iterations}")
    if M.ndim < 2:
        raise ValueError(f"M must have shape (..., m, c), got {tuple(M.shape)}")
    m, c = M.shape[-2], M.shape[-1]
    ell = sketch_width(m, c, rank, oversampling)
    if rank >= min(m, c):
        return LowRankApprox(M.clone(), None, None, min(m, c), True, rsvd_bits(m, c, rank))
    r_eff = min(rank, ell)
    if omega is None:
        if generator is None:
            raise ValueError("randomized_svd needs a generator or the test matrix omega")
        omega = gaussian_test_matrix(
            M.shape[:-2], c, ell, generator, dtype=M.dtype, device=M.device
        )
    elif tuple(omega.shape[-2:]) != (c, ell):
        raise ValueError(f"omega must have shape (..., {c}, {ell}), got {tuple(omega.shape)}")
    Q = _orthonormal_basis(M @ omega)
    Mt = M.mT
    for _ in range(power_iterations):
        Z = _orthonormal_basis(Mt @ Q)
        Q = _orthonormal_basis(M @ Z)
    B = Q.mT @ M
    U_small, S, Vh = torch.linalg.svd(B, full_matrices=False)
    left = (Q @ U_small[..., :r_eff]) * S[..., None, :r_eff]
    right = Vh[..., :r_eff, :].mT
    return LowRankApprox(left @ right.mT, left, right, r_eff, False, rsvd_bits(m, c, r_eff))


# --------------------------------------------------------------------------------------------
# PowerSGD (spec 18)
# --------------------------------------------------------------------------------------------


def matrix_view_shape(shape: Sequence[int]) -> tuple[int, int] | None:
    """The matrix view of a tensor shape (spec 18): ``(s0, prod(rest))`` for ``ndim >= 2``
    (row-major: conv ``(out, in, kh, kw)`` -> ``(out, in kh kw)``), ``None`` for ``ndim <= 1``
    (biases, norm layers: averaged exactly, sent dense, no error feedback)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        return None
    return shape[0], math.prod(shape[1:])


def power_sgd_plan(
    shape: Sequence[int], rank: int, min_compression_rate: float = 0
) -> tuple[int, int, int] | None:
    """``(m, c, r_eff)`` if a tensor of this shape is compressed by PowerSGD, else ``None``
    (sent dense).

    ``r_eff = min(rank, m, c)``. Compressed iff ``ndim >= 2`` and
    ``(m + c) r_eff rate < m c`` (CHOICE ``min_compression_rate``: default 0 compresses every
    matrix, as the paper's code; PyTorch's hook and the epfml package use 2)."""
    _check_rank(rank)
    if min_compression_rate < 0:
        raise ValueError(f"min_compression_rate must be >= 0, got {min_compression_rate}")
    view = matrix_view_shape(shape)
    if view is None:
        return None
    m, c = view
    r_eff = min(rank, m, c)
    if (m + c) * r_eff * min_compression_rate >= m * c:
        return None
    return m, c, r_eff


def power_sgd_bits(
    shapes: Iterable[Sequence[int]], rank: int, min_compression_rate: float = 0
) -> int:
    """Uplink bits per worker per round of PowerSGD on tensors of these shapes (spec 18):
    ``32 sum_compressed r_eff (m + c) + 32 (number of entries sent dense)``.

    (Both forms send the same: the collective form all-reduces ``P`` (``m x r``) and ``Q``
    (``c x r``); the per-worker form sends ``P^`` and ``M^T P^``.)"""
    floats = 0
    for shape in shapes:
        plan = power_sgd_plan(shape, rank, min_compression_rate)
        if plan is None:
            floats += math.prod(int(s) for s in shape)
        else:
            m, c, r_eff = plan
            floats += r_eff * (m + c)
    return FLOAT_BITS * floats


def gram_schmidt(P: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Orthonormalise the columns of every matrix of ``P`` (``(..., m, r)``) by modified
    Gram-Schmidt, as the PowerSGD reference code (spec 18).

    For ``j = 0..r-1``: ``P[:, j] /= (||P[:, j]|| + eps)``, then its projection is subtracted
    from every later column. ``eps`` keeps a zero column zero (never NaN), so ``C(0) = 0``; it
    also leaves non-zero columns with norm ``||p|| / (||p|| + eps)``, slightly below 1 (hence
    the spec's 1e-7 tolerance). A column that depends linearly on earlier non-zero ones is
    left with a residual of order ``eps`` (the earlier columns are slightly short), which is
    then normalised: finite, but not zero and not orthogonal (reference-code behaviour; only
    exactly zero columns stay zero). A new tensor; ``P`` is not modified. ``r`` steps, each
    one batched op over all matrices (bit for bit the same as one call per matrix).
    """
    P = P.clone()
    r = P.shape[-1]
    for j in range(r):
        col = P[..., j : j + 1]
        col.div_(torch.linalg.vector_norm(col, dim=-2, keepdim=True).add_(eps))
        if j + 1 < r:
            rest = P[..., j + 1 :]
            rest.sub_(col * (col * rest).sum(dim=-2, keepdim=True))
    return P


def orthogonalize(P: torch.Tensor, method: str = "gram_schmidt", eps: float = 1e-8) -> torch.Tensor:
    """Orthonormal columns spanning those of ``P`` (``(..., m, r)``), by ``method``:

    * ``"gram_schmidt"`` (default, the paper's code): :func:`gram_schmidt` with ``eps``;
    * ``"qr"`` (PyTorch's hook for r > 2): ``torch.linalg.qr(P).Q``, no eps.

    Both give the same projector ``P^ P^T`` for a full-rank ``P`` (1e-12 in float64); for a
    rank-deficient ``P`` Gram-Schmidt leaves zero columns, while QR completes the basis with
    some orthonormal columns (still a projection, so ``C(M)`` stays non-expansive).
    """
    if method == "gram_schmidt":
        return gram_schmidt(P, eps)
    if method == "qr":
        return torch.linalg.qr(P, mode="reduced").Q
    raise ValueError(f"orthogonalization must be one of {ORTHOGONALIZATIONS}, got {method!r}")


class PowerSGDLocal(NamedTuple):
    """Result of :func:`power_sgd_per_worker`: ``approx = C(M) = P^ P^T M`` ``(..., m, c)``,
    ``p_hat`` ``(..., m, r)`` and ``q_new = M^T P^`` ``(..., c, r)`` (the next warm start)."""

    approx: torch.Tensor
    p_hat: torch.Tensor
    q_new: torch.Tensor


def power_sgd_per_worker(
    M: torch.Tensor, Q: torch.Tensor, *, orthogonalization: str = "gram_schmidt", eps: float = 1e-8
) -> PowerSGDLocal:
    """One per-worker PowerSGD step (spec 18, form ``per_worker``, for EF21/DCGD) on every
    matrix of ``M`` (``(..., m, c)``) with the worker's ``Q`` (``(..., c, r)``, broadcast):

    ``P^ = orth(M Q)``, ``C(M) = P^ (M^T P^)^T = P^ P^T M``, ``Q_new = M^T P^``.

    The caller keeps ``Q_new`` as the next ``Q`` (warm start, not re-orthogonalised) or draws a
    fresh Gaussian ``Q`` (``warm_start = false``). ``r = Q.shape[-1]`` must be
    ``r_eff = min(rank, m, c)``. Bits per matrix: ``32 r (m + c)`` (``P^`` and ``Q_new``).
    Zero ``M`` (or zero column of ``M Q``) with Gram-Schmidt: zero output, never NaN.
    """
    P_hat = orthogonalize(M @ Q, orthogonalization, eps)
    Q_new = M.mT @ P_hat
    return PowerSGDLocal(P_hat @ Q_new.mT, P_hat, Q_new)


class PowerSGDCollective(NamedTuple):
    """Result of :func:`power_sgd_collective`: the aggregate ``delta = P^ Q_new^T`` (as
    returned by ``all_reduce_mean``'s broadcast shape), ``p_hat``, ``q_new`` (the next shared
    ``Q``) and every worker's local error ``error = M_w - P^ P^T M_w`` (shape of ``M``)."""

    delta: torch.Tensor
    p_hat: torch.Tensor
    q_new: torch.Tensor
    error: torch.Tensor


def mean_over_dim(dim: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ``all_reduce_mean`` for the simulator: the mean over the worker dimension ``dim``
    (kept, size 1, so that it broadcasts against every worker)."""
    return lambda t: t.mean(dim=dim, keepdim=True)


def power_sgd_collective(
    M: torch.Tensor,
    Q: torch.Tensor,
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor],
    *,
    orthogonalization: str = "gram_schmidt",
    eps: float = 1e-8,
) -> PowerSGDCollective:
    """One round of collective PowerSGD (spec 18, the paper's form) on every matrix.

    ``M`` holds this process's workers' inputs ``M_w = G_w + e_w`` with the worker dimension
    where ``all_reduce_mean`` expects it (e.g. ``(n, g, m, c)`` with :func:`mean_over_dim`,
    or ``(1, g, m, c)`` with the communicator's all-reduce divided by the world size);
    ``Q`` ``(..., c, r)`` is the shared state, broadcast against ``M``.
    ``all_reduce_mean(t)`` must return the mean of ``t`` over all workers, broadcastable
    against ``t``. Steps:

    1. ``P = mean_w(M_w Q)``;  2. ``P^ = orth(P)``;  3. ``Q_new = mean_w(M_w^T P^)``;
    4. ``delta = P^ Q_new^T`` (``= mean_w P^ P^T M_w``);
    5. local error ``e_w = M_w - P^ P^T M_w`` (CHOICE: the local form; the reference code's
       ``M_w - delta`` gives the same model trajectory, since only ``sum_w e_w`` enters later
       rounds, but not the same per-worker memories).

    The caller sets ``Q <- Q_new`` (warm start, not re-orthogonalised: paper code; PyTorch and
    epfml re-orthogonalise, equal in exact arithmetic). Two all-reduces per round; bits per
    worker and matrix ``32 r (m + c)``.
    """
    P_hat = orthogonalize(all_reduce_mean(M @ Q), orthogonalization, eps)
    local_q = M.mT @ P_hat
    Q_new = all_reduce_mean(local_q)
    return PowerSGDCollective(P_hat @ Q_new.mT, P_hat, Q_new, M - P_hat @ local_q.mT)


__all__ = [
    "ORTHOGONALIZATIONS",
    "LowRankApprox",
    "PowerSGDCollective",
    "PowerSGDLocal",
    "gaussian_test_matrix",
    "gram_schmidt",
    "matrix_view_shape",
    "mean_over_dim",
    "orthogonalize",
    "power_sgd_bits",
    "power_sgd_collective",
    "power_sgd_per_worker",
    "power_sgd_plan",
    "randomized_svd",
    "rsvd_bits",
    "sketch_width",
]
