"""Biased sparsifiers: unscaled random sparsification (spec section 3, uniform-k and Bernoulli
sampling) and adaptive random sparsification (spec section 5).

Every operator acts on the (n, d) batch of worker inputs at once. The functions
:func:`bernoulli_rand_k_from_uniforms` and :func:`adaptive_rand_k_from_uniforms` take the
uniforms explicitly (as :func:`~compress_bench.compressors.sparsifiers.rand_k_from_uniforms`
does) and are what the classes call; tests inject the draw there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from compress_bench.compressors.base import (
    FLOAT_BITS,
    Compressor,
    Message,
    RoundContext,
    check_batch,
    check_ratio,
    index_bits,
    k_of,
)
from compress_bench.compressors.registry import register_compressor
from compress_bench.compressors.sparsifiers import RandK, sparse_message
from compress_bench.rng import Streams

SAMPLINGS = ("uniform", "bernoulli")


def bernoulli_rand_k_from_uniforms(
    G: torch.Tensor, u: torch.Tensor, p: float, send_indices: bool = True
) -> Message:
    """Unscaled Bernoulli sparsification of every row of G: coordinate j of row i is kept iff
    ``u[i, j] < p`` (spec 3, variant), with ``p in [0, 1]``.

    Bits per row: ``|S_i| (32 + ceil(log2 d))``, or ``32 |S_i|`` without indices (shared seed);
    ``p >= 1`` sends G dense and unchanged (``32 d``).
    """
    n, d = check_batch(G)
    if tuple(u.shape) != (n, d):
        raise ValueError(f"uniforms of shape {tuple(u.shape)} for an input of shape {(n, d)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    if p >= 1.0:
        return Message.dense(G.clone())
    return sparse_message(G, u < p, send_indices=send_indices)


def adaptive_rand_k_from_uniforms(G: torch.Tensor, u: torch.Tensor) -> Message:
    """Adaptive random sparsification of every row of G with one uniform ``u[i]`` per row (spec 5).

    Row i keeps the single index ``j = min{j : cdf_j > u_i}``, ``cdf_j = sum_{l <= j} |G_il| /
    ||G_i||_1`` (so j has probability ``|G_ij|/||G_i||_1`` and is never a zero coordinate),
    unscaled. ``u`` has shape (n,) or (n, 1), entries in [0, 1). A zero row sends a zero value
    at index 0. Bits per row: ``32 + ceil(log2 d)``.
    """
    n, d = check_batch(G)
    u = u.reshape(-1, 1)
    if u.shape[0] != n:
        raise ValueError(f"{u.shape[0]} uniforms for {n} rows")
    cumulative = G.abs().cumsum(dim=1)  # unnormalised cdf: cdf_j > u iff C_j > u C_{d-1}
    total = cumulative[:, -1:]
    threshold = u.to(G.dtype) * total
    # u < 1, but u * total may round up to total; then take the last index that reaches it
    below_total = torch.nextafter(total, torch.zeros_like(total))
    threshold = torch.minimum(threshold, below_total)
    index = torch.searchsorted(cumulative, threshold, right=True).clamp_(max=d - 1)
    index = torch.where(total > 0, index, torch.zeros_like(index))
    kept = torch.zeros((n, d), dtype=torch.bool, device=G.device)
    kept.scatter_(1, index, True)
    return sparse_message(G, kept)


@register_compressor
class BiasedRandK(Compressor):
    """Biased (unscaled) RandK: ``C(x) = sum_{i in S} x_i e_i`` for a random support S, without
    RandK's ``d/k`` factor (spec section 3).

    ``sampling="uniform"`` (default): S is a uniformly random k-subset, ``k = max(1, floor(ratio
    d))`` (the same draw as ``rand_k`` with ``scale=none``). ``E C(x) = (k/d) x`` and
    ``E||C(x) - x||^2 = (1 - k/d)||x||^2`` exactly: ``B1(k/d, 1)``, ``B2(k/d, 1)``, ``B3(d/k)``.
    ``sampling="bernoulli"``: each coordinate is kept independently iff ``u_i < k/d`` (so |S| is
    random with mean k); the same class constants (``q = k/d``).
    ``shared_seed=True``: S comes from the stream worker i shares with the server for the round
    (``rng.shared_round_uniform``), so no indices travel.

    Bits per worker per round: ``k (32 + ceil(log2 d))`` (uniform) or ``|S| (32 + ceil(log2 d))``
    (Bernoulli); ``32 k`` / ``32 |S|`` with a shared seed; ``32 d`` (dense, identity output) if
    ``k >= d``.
    Reference: METHODS.md section 3; Beznosikov, Horvath, Richtarik, Safaryan, "On Biased
    Compression for Distributed Learning" (JMLR 2023).
    """

    name: ClassVar[str] = "biased_rand_k"
    label: ClassVar[str] = "Biased RandK"
    colour: ClassVar[str | None] = "#17becf"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False

    def wire_support(self) -> str:
        return "shared" if self.shared_seed else "indices"

    def __init__(self, *, ratio: float, sampling: str = "uniform", shared_seed: bool = False):
        self.ratio = check_ratio(ratio)
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be 'uniform' or 'bernoulli', got {sampling!r}")
        if not isinstance(shared_seed, bool):
            raise ValueError(f"shared_seed must be true or false, got {shared_seed!r}")
        self.sampling = sampling
        self.shared_seed = shared_seed
        self._uniform = RandK(ratio=ratio, shared_seed=shared_seed, scale="none")

    def _k(self, d: int) -> int:
        return k_of(self, d)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        if self.sampling == "uniform":  # RandK's support and sampler, without its d/k factor
            return self._uniform.compress(G, state, rng, ctx)
        _, d = check_batch(G)
        k = self._k(d)
        if k == d:  # nothing random left: skip the draw
            return Message.dense(G.clone()), state
        u = (
            rng.shared_round_uniform(ctx.round_index, d, tensor=ctx.tensor)
            if self.shared_seed
            else rng.uniform(d)
        )
        message = bernoulli_rand_k_from_uniforms(G, u, k / d, send_indices=not self.shared_seed)
        return message, state

    def sent_count(self, d: int) -> int | None:
        return self._k(d) if self.sampling == "uniform" else None

    def expected_bits(self, d: int) -> int | None:
        k = self._k(d)
        if k == d:
            return FLOAT_BITS * d
        if self.sampling == "bernoulli":
            return None  # |S| is random
        return k * FLOAT_BITS if self.shared_seed else k * (FLOAT_BITS + index_bits(d))

    def contraction(self, d: int) -> float:
        return d / self._k(d)

    def __repr__(self) -> str:
        return (
            f"BiasedRandK(ratio={self.ratio}, sampling={self.sampling!r}, "
            f"shared_seed={self.shared_seed})"
        )


@register_compressor
class AdaptiveRandK(Compressor):
    """Adaptive random sparsification: send one coordinate, chosen with probability
    ``p_i = |x_i|/||x||_1``, unscaled: ``C(x) = x_i e_i`` (spec section 5).

    The index is ``min{j : cdf_j > u}`` for one uniform u per worker and round, so a zero
    coordinate is never chosen; ``x = 0`` gives 0 (a zero value is still sent).
    ``E C(x) = sum_i (|x_i|/||x||_1) x_i e_i``, ``E||C(x)||^2 = <E C(x), x> >= ||x||^2/d``:
    ``B1(1/d, 1)``, ``B2(1/d, 1)``, ``B3(d)`` (attained at ``x = (1, ..., 1)``).
    Accepts ``ratio`` (ignored: one coordinate whatever the ratio).

    Bits per worker per round: ``32 + ceil(log2 d)``.
    Reference: METHODS.md section 5; Beznosikov, Horvath, Richtarik, Safaryan, "On Biased
    Compression for Distributed Learning" (JMLR 2023).
    """

    name: ClassVar[str] = "adaptive_rand_k"
    label: ClassVar[str] = "Adaptive RandK"
    colour: ClassVar[str | None] = "#393b79"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False

    def __init__(self, *, ratio: float | None = None):
        self.ratio = ratio

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        check_batch(G)
        u = rng.uniform(1)  # (n, 1): one uniform per worker
        return adaptive_rand_k_from_uniforms(G, u), state

    def sent_count(self, d: int) -> int:
        return 1

    def expected_bits(self, d: int) -> int:
        return FLOAT_BITS + index_bits(d)

    def contraction(self, d: int) -> float:
        return float(d)

    def __repr__(self) -> str:
        return "AdaptiveRandK()"
