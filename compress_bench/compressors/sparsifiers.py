"""Sparsifiers: Identity (spec section 1), RandK (section 2, with the unscaled form of section 3
as an option) and TopK (section 4).

Every operator acts on the (n, d) batch of worker inputs at once. ``k`` comes from the ratio at
compress time (``k = max(1, floor(ratio * d))``, spec 0.3); ``k >= d`` sends the input dense and
unchanged (32 d bits). The functions :func:`top_k` and :func:`rand_k_from_uniforms` take ``k``
directly (also 0, which sends nothing) and are what the classes call; tests use them to inject
``k`` and the random draw.

Large vectors (``d >= LARGE_D``, e.g. a network's gradient) take faster paths with the same
semantics: TopK's selection is exact either way (see :mod:`.selection`), its values and bits
are bit-identical; RandK on the CPU draws its support with :func:`uniform_subset_mask` (O(d/8)
random draws instead of d uniforms; it reads counts back to the host, free on the CPU),
still a uniformly random k-subset but a different draw from the same seed than the small-d
method. Which method runs depends only on ``(d, k)`` and the device (other devices draw the
d uniforms, with no host sync, as they always drew them from their own generators), so runs
stay reproducible.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import torch

from compress_bench.compressors.base import (
    FLOAT_BITS,
    Compressor,
    Message,
    RoundContext,
    check_batch,
    check_ratio,
    check_scale,
    index_bits,
    k_of,
)
from compress_bench.compressors.paths import cpu_fast
from compress_bench.compressors.registry import register_compressor
from compress_bench.compressors.selection import top_k_mask, uniform_subset_mask
from compress_bench.rng import Streams

#: From this dimension on, RandK draws its support with :func:`uniform_subset_mask` and the
#: sparse messages are built with the vectorised helpers below.
LARGE_D = 1 << 16

# Integer types of the same width as the float types, to mask values through their bits.
_BITS_VIEW = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def sparse_message(
    G: torch.Tensor, kept: torch.Tensor, factor: float = 1.0, send_indices: bool = True
) -> Message:
    """The message sending ``factor * G`` on the boolean mask ``kept`` (n, d), zero elsewhere.

    Bits per row: ``|kept_i| * (32 + ceil(log2 d))``, or ``32 |kept_i|`` without indices.
    """
    kept = kept.to(device=G.device)
    return Message.sparse(masked_values(G, kept, factor), kept, send_indices=send_indices)


def masked_values(G: torch.Tensor, kept: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """``factor * G`` on the mask ``kept``, +0 elsewhere: ``torch.where(kept, G * factor, 0)``
    bit for bit (an unkept inf or NaN also gives 0).

    For large inputs on the CPU the mask is applied to the bits of G (an integer multiply by 0
    or 1, one vectorised pass), then the scale to the result: several times faster than
    ``torch.where`` there. The portable path (:mod:`.paths`) is the ``torch.where``, whatever
    the size: two ops, and a count that does not depend on the number of workers.
    """
    bits_dtype = _BITS_VIEW.get(G.dtype)
    if bits_dtype is None or G.numel() < LARGE_D or not cpu_fast(G):
        values = G * factor if factor != 1.0 else G
        return torch.where(kept, values, _zero(G.dtype, G.device))
    out = torch.empty(G.shape, dtype=G.dtype, device=G.device)
    bits = out.view(bits_dtype)
    bits.copy_(kept)  # 1 where kept, 0 elsewhere
    bits.mul_(G.view(bits_dtype))  # the bit pattern of G where kept, +0 elsewhere
    if factor != 1.0:
        out.mul_(factor)  # the same rounding as G * factor
    return out


@lru_cache(maxsize=16)
def _zero(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-d zero, built once: a Python 0.0 in ``torch.where`` becomes a new tensor per call
    (an op, a launch on an accelerator)."""
    return torch.zeros((), dtype=dtype, device=device)


def _k_per_row_message(
    G: torch.Tensor, kept: torch.Tensor, k: int, factor: float, send_indices: bool = True
) -> Message:
    """:func:`sparse_message` for a mask known to hold exactly k entries per row (no count)."""
    d = G.shape[1]
    kept = kept.to(device=G.device)
    side = k * index_bits(d) if send_indices else 0
    return Message.of_fixed_size(masked_values(G, kept, factor), k, side, kept=kept)


def _k_eff(k: int, d: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return min(k, d)


def top_k(G: torch.Tensor, k: int, scale: str = "none") -> Message:
    """TopK of every row of G with ``k`` given directly (spec 4 and 0.3).

    Keeps the ``min(k, d)`` largest ``|G_ij|`` of each row (ties to the smaller index, spec 0.4),
    multiplied by ``d / k`` when ``scale == "dk"``. ``k = 0``: zeros, 0 bits; ``k >= d``: dense.
    """
    check_scale(scale)
    _, d = check_batch(G)
    k = _k_eff(k, d)
    if k == d:
        return Message.dense(G.clone())
    if k == 0:
        return sparse_message(G, torch.zeros_like(G, dtype=torch.bool))
    factor = d / k if scale == "dk" else 1.0
    # every row holds exactly k entries: the count is static, never summed from the mask
    return _k_per_row_message(G, top_k_mask(G.abs(), k), k, factor)


def rand_k_from_uniforms(
    G: torch.Tensor, u: torch.Tensor, k: int, scale: str = "dk", send_indices: bool = True
) -> Message:
    """RandK of every row of G, the support of row i being the k largest of the uniforms u[i].

    The k largest of d i.i.d. uniforms form a uniformly random k-subset (without replacement).
    ``scale == "dk"`` multiplies the kept values by ``d / k`` (unbiased, spec 2); ``"none"``
    sends them as they are (spec 3). ``k = 0``: zeros, 0 bits; ``k >= d``: dense, G unchanged.
    """
    check_scale(scale)
    n, d = check_batch(G)
    if tuple(u.shape) != (n, d):
        raise ValueError(f"uniforms of shape {tuple(u.shape)} for an input of shape {(n, d)}")
    k = _k_eff(k, d)
    if k == d:
        return Message.dense(G.clone())
    if k == 0:
        return sparse_message(G, torch.zeros_like(G, dtype=torch.bool))
    factor = d / k if scale == "dk" else 1.0
    return _k_per_row_message(G, top_k_mask(u, k), k, factor, send_indices=send_indices)


def rand_k_support(generators: list[torch.Generator], d: int, k: int) -> torch.Tensor:
    """(n, d) mask whose row i is a uniformly random k-subset drawn from ``generators[i]``
    (:func:`uniform_subset_mask`): RandK's support for ``d >= LARGE_D``. The server of the
    shared-seed variant calls it with the round's shared generators to rebuild the supports."""
    rows = [uniform_subset_mask(d, k, g) for g in generators]
    return rows[0].view(1, d) if len(rows) == 1 else torch.stack(rows)


@register_compressor
class Identity(Compressor):
    """Identity, ``C(x) = x`` (spec section 1): the uncompressed baseline.

    Bits per worker per round: ``32 d``. Class: unbiased, ``U(0)``, ``B3(1)``,
    ``B1(1, 1)``, ``B2(1, 1)``. Accepts ``ratio`` (ignored) so that every compressor is built
    the same way. Output values equal the input bit for bit (a copy, never the same tensor).
    Reference: METHODS.md section 1.
    """

    name: ClassVar[str] = "identity"
    label: ClassVar[str] = "Identity"
    colour: ClassVar[str | None] = "#000000"
    passthrough: ClassVar[bool] = True  # every value sent as is: colours follow the quantizer
    stackable: ClassVar[bool] = True  # row-wise and deterministic
    support: ClassVar[str] = "dense"
    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True

    def __init__(self, *, ratio: float | None = None):
        self.ratio = ratio

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        check_batch(G)
        return Message.dense(G.clone()), state

    def sent_count(self, d: int) -> int:
        return d

    def expected_bits(self, d: int) -> int:
        return FLOAT_BITS * d

    def contraction(self, d: int) -> float:
        return 1.0

    def omega(self, d: int) -> float:
        return 0.0


@register_compressor
class RandK(Compressor):
    """RandK: keep a uniformly random k-subset S of the coordinates (spec sections 2 and 3).

    ``scale="dk"`` (default, spec 2): ``C(x) = (d/k) sum_{i in S} x_i e_i``, unbiased,
    ``U(omega)`` with ``omega = d/k - 1`` (``E||C(x)||^2 = (d/k)||x||^2``), not in B3.
    ``scale="none"`` (spec 3; the thesis code's RandK, which also draws with replacement, which
    this does not): ``C(x) = sum_{i in S} x_i e_i``, biased, ``B3(d/k)`` with
    ``E||C(x) - x||^2 = (1 - k/d)||x||^2``.

    S for worker i is the k largest of d uniforms from worker i's private stream; with
    ``shared_seed=True`` from the stream worker i shares with the server for the round
    (``rng.shared_round_uniform(ctx.round_index, d)``), so no indices travel. For
    ``d >= LARGE_D`` S is drawn from the same stream by :func:`rand_k_support` instead
    (uniform too, O(d/8) random draws; ``rng.shared_round_generators`` for the shared seed).

    Bits per worker per round: ``k (32 + ceil(log2 d))``; shared seed ``32 k``; ``32 d`` (dense,
    identity output) if ``k >= d``. ``k = max(1, floor(ratio d))``.
    Reference: METHODS.md sections 2-3; Beznosikov, Horvath, Richtarik, Safaryan, "On Biased
    Compression for Distributed Learning" (JMLR 2023).
    """

    name: ClassVar[str] = "rand_k"
    label: ClassVar[str] = "RandK"
    colour: ClassVar[str | None] = "#1f77b4"
    unbiased: ClassVar[bool] = True  # the default scale="dk"; set per instance in __init__
    deterministic: ClassVar[bool] = False

    def wire_support(self) -> str:
        return "shared" if self.shared_seed else "indices"

    def __init__(self, *, ratio: float, shared_seed: bool = False, scale: str = "dk"):
        self.ratio = check_ratio(ratio)
        if not isinstance(shared_seed, bool):
            raise ValueError(f"shared_seed must be true or false, got {shared_seed!r}")
        self.shared_seed = shared_seed
        self.scale = check_scale(scale)
        self.unbiased = scale == "dk"  # type: ignore[misc]  # depends on the option

    def _k(self, d: int) -> int:
        return k_of(self, d)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        _, d = check_batch(G)
        k = self._k(d)
        if k == d:  # nothing random left: skip the draw
            return Message.dense(G.clone()), state
        if d >= LARGE_D and G.device.type == "cpu":  # a CPU fast path: it syncs, by design
            generators = (
                rng.shared_round_generators(ctx.round_index, ctx.tensor)
                if self.shared_seed
                else rng.generators
            )
            kept = rand_k_support(generators, d, k)
            factor = d / k if self.scale == "dk" else 1.0
            message = _k_per_row_message(G, kept, k, factor, send_indices=not self.shared_seed)
            return message, state
        u = (
            rng.shared_round_uniform(ctx.round_index, d, tensor=ctx.tensor)
            if self.shared_seed
            else rng.uniform(d)
        )
        message = rand_k_from_uniforms(G, u, k, self.scale, send_indices=not self.shared_seed)
        return message, state

    def sent_count(self, d: int) -> int:
        return self._k(d)

    def expected_bits(self, d: int) -> int:
        k = self._k(d)
        if k == d:
            return FLOAT_BITS * d
        return k * FLOAT_BITS if self.shared_seed else k * (FLOAT_BITS + index_bits(d))

    def contraction(self, d: int) -> float | None:
        k = self._k(d)
        if k == d:
            return 1.0
        return d / k if self.scale == "none" else None

    def omega(self, d: int) -> float | None:
        return d / self._k(d) - 1.0 if self.scale == "dk" else None


@register_compressor
class TopK(Compressor):
    """TopK: keep the k coordinates of largest magnitude (spec section 4).

    S = indices of the k largest ``|x_i|``, ties to the smaller index (spec 0.4).
    ``scale="none"`` (default; the literature and the thesis code): ``T(x) = sum_{i in S} x_i
    e_i``, deterministic, ``||T(x) - x||^2 <= (1 - k/d)||x||^2``: ``B3(d/k)``, ``B1(k/d, 1)``,
    ``B2(k/d, 1)``. ``scale="dk"`` (thesis slides): ``T_s(x) = (d/k) T(x)``, in
    ``B1(d/k, d/k)`` and ``B2(1, d/k)``, in no B3 when ``d/k >= 2``; its default step size is
    ``(k/d)/L`` (``lr_factor``).

    Bits per worker per round: ``k (32 + ceil(log2 d))``; ``32 d`` (dense, identity output) if
    ``k >= d``. ``k = max(1, floor(ratio d))``.
    Reference: METHODS.md section 4; Beznosikov et al., "On Biased Compression for Distributed
    Learning" (JMLR 2023); Khafizov, BSc thesis (MIPT 2024) for the scaled form.
    """

    name: ClassVar[str] = "top_k"
    stackable: ClassVar[bool] = True  # row-wise and deterministic
    label: ClassVar[str] = "TopK"
    colour: ClassVar[str | None] = "#d62728"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True

    def __init__(self, *, ratio: float, scale: str = "none"):
        self.ratio = check_ratio(ratio)
        self.scale = check_scale(scale)

    def _k(self, d: int) -> int:
        return k_of(self, d)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        _, d = check_batch(G)
        return top_k(G, self._k(d), self.scale), state

    def sent_count(self, d: int) -> int:
        return self._k(d)

    def expected_bits(self, d: int) -> int:
        k = self._k(d)
        return FLOAT_BITS * d if k == d else k * (FLOAT_BITS + index_bits(d))

    def contraction(self, d: int) -> float | None:
        k = self._k(d)
        if k == d:
            return 1.0
        return d / k if self.scale == "none" else None

    def lr_factor(self, d: int) -> float:
        return self._k(d) / d if self.scale == "dk" else 1.0
