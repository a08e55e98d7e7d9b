"""Value quantizers applied to what a compressor sends: none, power-of-two rounding Q (spec
section 6, the thesis "quantisation"), natural compression (section 7), standard dithering and
QSGD (section 8), natural dithering (section 9; after TopK it is section 10), sign and scaled
sign (section 11).

A quantizer changes the values and the bits per value of a :class:`Message`, and may add side
information (a norm, 32 bits); the number of transmitted values and the indices stay the
compressor's. It acts on the transmitted coordinates only (``message.sent()``); the others stay
exactly 0. Norms are taken over the transmitted values (the others are 0, so the norm of the
whole row is the same number). The functions ``*_from_uniforms`` take the uniforms ``u``
explicitly ("round up iff u < p_up", spec 0.2) and are what the classes call; tests inject ``u``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

import torch

from compress_bench.compressors.base import FLOAT_BITS, Message, Quantizer
from compress_bench.compressors.registry import register_quantizer
from compress_bench.rng import WorkerRNG

#: Exponent range of a normal float32, the 8-bit exponent field on the wire (spec 0.6).
MIN_EXPONENT = -126
MAX_EXPONENT = 127
#: 1 sign bit + the 8-bit float32 exponent field (zero is the all-zero field).
POWER_OF_TWO_BITS = 9

ROUNDINGS = ("nearest", "log2")


def power_of_two(
    t: torch.Tensor, rounding: str = "nearest", clip_exponent_at_zero: bool = False
) -> torch.Tensor:
    """Round every entry of ``t`` to a signed power of two ``sgn(t) 2^e`` (spec 6).

    ``rounding="nearest"``: with ``|t| = m 2^E``, ``m in [0.5, 1)`` (frexp, exact),
    ``e = E`` if ``m >= 0.75`` else ``E - 1``: the nearer of the two neighbouring powers of two,
    ties (``|t| = 1.5 2^a``) up. ``rounding="log2"``: ``e = round_half_even(log2 |t|)`` computed
    in float64 (the thesis code), optionally clipped to ``e <= 0``.
    Zero maps to zero; ``e < -126`` is sent as 0 (the output is 0); ``e > 127`` saturates to
    ``+-2^127`` (spec 0.6); NaN stays NaN. Same dtype and device as ``t``.
    """
    if not t.is_floating_point():
        raise TypeError(f"power_of_two needs a floating-point tensor, got {t.dtype}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be 'nearest' or 'log2', got {rounding!r}")
    if rounding == "nearest" and not clip_exponent_at_zero and t.dtype in _FLOAT_LAYOUT:
        q = _nearest_by_bits(t)
    else:
        q = _power_of_two_by_exponent(t, rounding, clip_exponent_at_zero)
    # spec 0.6: exponents above 127 saturate (below -126 both paths already send 0)
    q = q.clamp(-(2.0**MAX_EXPONENT), 2.0**MAX_EXPONENT)
    return torch.where(torch.isnan(t), t, q)


# (integer view, mantissa bits) of the IEEE formats
_FLOAT_LAYOUT = {torch.float64: (torch.int64, 52), torch.float32: (torch.int32, 23)}


def _nearest_by_bits(t: torch.Tensor) -> torch.Tensor:
    """Nearest power of two, ties up, on the IEEE bit pattern: adding half of the mantissa
    range carries into the exponent exactly when the mantissa 1.f has f >= 1/2; clearing the
    mantissa then leaves sgn(t) 2^e. Exact, sign-preserving, 0 -> 0, and a handful of integer
    ops instead of frexp/ldexp (which cost several times more)."""
    int_dtype, mantissa_bits = _FLOAT_LAYOUT[t.dtype]
    bits = t.contiguous().view(int_dtype)
    rounded = (bits + (1 << (mantissa_bits - 1))) & -(1 << mantissa_bits)
    # Below 0.75 * 2^-126 the nearest power of two is at most 2^-127, which is sent as 0.
    # Tested on the input: float32 subnormals have no implicit leading bit, so the carry
    # trick alone would put their midpoint at 0.5 * 2^-126.
    tiny = t.abs() < 0.75 * 2.0**MIN_EXPONENT
    return torch.where(tiny, torch.zeros((), dtype=t.dtype, device=t.device), rounded.view(t.dtype))


def _power_of_two_by_exponent(
    t: torch.Tensor, rounding: str, clip_exponent_at_zero: bool
) -> torch.Tensor:
    """sgn(t) 2^e with e from frexp (nearest) or from round-half-even log2 (thesis code)."""
    mag = t.abs()
    if rounding == "nearest":
        mantissa, exponent = torch.frexp(mag)
        e = exponent - (mantissa < 0.75).to(exponent.dtype)
        e = torch.where(torch.isinf(mag), MAX_EXPONENT + 1, e)
    else:
        # log2(0) = -inf, log2(inf) = inf: clamp before the integer cast (both are masked or
        # saturated by the caller); NaN is restored by the caller.
        log = torch.log2(mag.to(torch.float64)).round()
        log = log.clamp(MIN_EXPONENT - 1, MAX_EXPONENT + 1).nan_to_num(0.0)
        e = log.to(torch.int32)
    if clip_exponent_at_zero:
        e = e.clamp(max=0)
    q = torch.ldexp(torch.sign(t), e.clamp(MIN_EXPONENT - 1, MAX_EXPONENT + 1)).to(t.dtype)
    # zero, and exponents below -126 (spec 0.6: sent, and applied, as 0)
    return torch.where(
        (mag == 0) | (q.abs() < 2.0**MIN_EXPONENT),
        torch.zeros((), dtype=t.dtype, device=t.device),
        q,
    )


@register_quantizer
class NoQuantizer(Quantizer):
    """No quantization: the message passes unchanged (values stay 32-bit floats).

    Bits: those of the compressor. Class: the identity (``B3(1)``).
    """

    name: ClassVar[str] = "none"
    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = None

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        return message

    def contraction(self, d: int) -> float:
        return 1.0

    def omega(self, d: int) -> float:
        return 0.0


@register_quantizer
class PowerOfTwo(Quantizer):
    """Power-of-two deterministic rounding Q (spec section 6), applied to the sent values.

    ``rounding="nearest"`` (default): ``Q(t) = sgn(t) 2^e``, the power of two nearest to ``|t|``
    in value, ties up; ``Q(t)/t in (2/3, 4/3]``, so ``||Q(x) - x||^2 <= ||x||^2 / 9``:
    ``B3(9/8)``, ``B2(2/3, 4/3)``, ``B1(4/9, 4/3)``.
    ``rounding="log2"`` (thesis code ``greedy_compress``): ``Q(t) = sgn(t) 2^{round(log2|t|)}``
    with round-half-even; ``Q/t in [2^-1/2, 2^1/2]``: ``B3((1 + sqrt 2)/2)``. With
    ``clip_exponent_at_zero`` (thesis code; log2 only) the exponent is clipped to ``<= 0``
    (``|Q| <= 1``) and the operator is in no class.

    Bits: 9 per transmitted value (sign + 8-bit float32 exponent field), so ``9 d`` dense and
    ``k (9 + ceil(log2 d))`` after a sparsifier. Exponents below -126 are sent (and applied)
    as 0, above 127 saturate to ``+-2^127`` (spec 0.6). Deterministic, biased.
    Reference: METHODS.md sections 6 and 21; Beznosikov et al., "On Biased Compression for
    Distributed Learning" (JMLR 2023); Khafizov, BSc thesis (MIPT 2024).
    """

    name: ClassVar[str] = "power_of_two"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = POWER_OF_TWO_BITS

    def __init__(self, *, rounding: str = "nearest", clip_exponent_at_zero: bool = False):
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be 'nearest' or 'log2', got {rounding!r}")
        if not isinstance(clip_exponent_at_zero, bool):
            raise ValueError(
                f"clip_exponent_at_zero must be true or false, got {clip_exponent_at_zero!r}"
            )
        if clip_exponent_at_zero and rounding != "log2":
            raise ValueError("clip_exponent_at_zero is only valid with rounding='log2'")
        self.rounding = rounding
        self.clip_exponent_at_zero = clip_exponent_at_zero

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        q = power_of_two(message.values, self.rounding, self.clip_exponent_at_zero)
        return message.with_values(q, value_bits=POWER_OF_TWO_BITS)

    def contraction(self, d: int) -> float | None:
        if self.rounding == "nearest":
            return 9.0 / 8.0
        return None if self.clip_exponent_at_zero else (1.0 + math.sqrt(2.0)) / 2.0

    def __repr__(self) -> str:
        return (
            f"PowerOfTwo(rounding={self.rounding!r}, "
            f"clip_exponent_at_zero={self.clip_exponent_at_zero})"
        )


# --- natural compression (spec 7) ----------------------------------------------------------


def natural_from_uniforms(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Natural compression C_nat of every entry of ``t`` with the uniforms ``u`` (spec 7).

    For ``t != 0`` with ``lo = 2^floor(log2|t|)``: ``sgn(t) 2 lo`` iff ``u < p_up = (|t| - lo)/lo``,
    else ``sgn(t) lo``; ``0 -> 0`` and powers of two are unchanged. ``u`` has the shape of ``t``,
    entries in [0, 1) (any float dtype; not modified). Same dtype and device as ``t``.

    Exponent range (spec 0.6): results above ``2^127`` saturate to ``+-2^127`` (so do
    infinities); NaN stays NaN. Below ``2^-126`` (where ``lo`` would not be encodable) the two
    encodable neighbours are 0 and ``2^-126``: ``sgn(t) 2^-126`` iff ``u < |t| 2^126``, else 0
    (unbiased; for float32 this is what the subnormal bit pattern gives).
    """
    return _natural(t, u, scratch=False)


def _natural(t: torch.Tensor, u: torch.Tensor, scratch: bool) -> torch.Tensor:
    """C_nat on the IEEE bit pattern. With ``|t| = 2^E (1 + m 2^-M)`` (M mantissa bits),
    ``p_up = m 2^-M``, and ``u < p_up`` iff ``r = floor(u 2^M) < m``; adding ``2^M - 1 - r`` to
    the bit pattern carries into the exponent exactly then, and clearing the mantissa leaves
    ``sgn(t) lo`` or ``sgn(t) 2 lo``. Five elementwise integer passes, no frexp/ldexp.
    ``scratch=True`` lets the computation overwrite ``u`` (a fresh draw nobody else holds)."""
    if not t.is_floating_point():
        raise TypeError(f"natural compression needs a floating-point tensor, got {t.dtype}")
    if u.shape != t.shape:
        raise ValueError(f"uniforms of shape {tuple(u.shape)} for values of shape {tuple(t.shape)}")
    if t.dtype not in _FLOAT_LAYOUT:  # half precision: compute in float32
        return _natural(t.float(), u, scratch=False).to(t.dtype)
    if t.numel() == 0:
        return t.clone()
    int_dtype, mantissa_bits = _FLOAT_LAYOUT[t.dtype]
    mask = (1 << mantissa_bits) - 1
    t = t.contiguous()
    below = None
    if t.dtype == torch.float64:
        # float64 represents |t| < 2^-126 as normal numbers: round those between 0 and 2^-126
        # (float32 does the same by itself through its subnormal bit patterns)
        mag = t.abs()
        tiny = (mag < 2.0**MIN_EXPONENT) & (mag > 0)
        if bool(tiny.any()):
            up = u.to(t.dtype) < mag * 2.0**-MIN_EXPONENT
            below = (tiny, torch.where(up, torch.sign(t) * 2.0**MIN_EXPONENT, 0.0))
    if scratch and u.dtype == t.dtype and u.is_contiguous():
        x = u.mul_(2.0**mantissa_bits)
        r = x.view(int_dtype)
        r.copy_(x)  # in-place cast (same size, same positions): r = floor(u 2^M), u >= 0
    else:
        r = (u * 2.0**mantissa_bits).to(int_dtype)  # exact scaling, then floor
    bits = t.view(int_dtype)
    q = torch.sub(bits, r, out=r).add_(mask).bitwise_and_(~mask).view(t.dtype)
    lowest, highest = torch.aminmax(t)
    if not bool(torch.maximum(-lowest, highest) < 2.0**MAX_EXPONENT):  # also NaN
        q = q.clamp_(-(2.0**MAX_EXPONENT), 2.0**MAX_EXPONENT)
        q = torch.where(torch.isnan(t), t, q)
    if below is not None:
        q = torch.where(below[0], below[1], q)
    return q


@register_quantizer
class Natural(Quantizer):
    """Natural compression C_nat: stochastic rounding to a power of two (spec section 7).

    Coordinate-wise on the sent values: ``lo = 2^floor(log2|t|)``, output ``sgn(t) 2 lo`` with
    probability ``p_up = (|t| - lo)/lo``, else ``sgn(t) lo``; ``0 -> 0``. Unbiased, ``U(1/8)``:
    ``E C(t)^2 = (3s - 2)/s^2 t^2`` with ``s = |t|/lo``, at most ``(9/8) t^2`` (at ``s = 4/3``);
    ``(8/9) C_nat`` is in ``B3(9/8)`` (R1). One uniform per coordinate from the worker's stream,
    drawn in the values' dtype.

    Bits: 9 per transmitted value (sign + 8-bit float32 exponent field), so ``9 d`` dense and
    ``k (9 + ceil(log2 d))`` after a sparsifier. Exponents above 127 saturate to ``+-2^127``;
    below ``2^-126`` the value rounds to 0 or ``+-2^-126`` (see :func:`natural_from_uniforms`).
    Reference: METHODS.md section 7; Horvath, Ho, Horvath, Sahu, Canini, Richtarik, "Natural
    Compression for Distributed Deep Learning" (2019/2022).
    """

    name: ClassVar[str] = "natural"
    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    value_bits: ClassVar[int | None] = POWER_OF_TWO_BITS

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        v = message.values
        dtype = v.dtype if v.dtype in _FLOAT_LAYOUT else torch.float32
        u = rng.uniform(v.shape[1], dtype=dtype)  # fresh: the computation reuses its memory
        return message.with_values(_natural(v, u, scratch=True), value_bits=POWER_OF_TWO_BITS)

    def omega(self, d: int) -> float:
        return 1.0 / 8.0

    def __repr__(self) -> str:
        return "Natural()"


# --- standard dithering, QSGD, natural dithering (spec 8-10) -------------------------------

GRIDS = ("standard", "natural")


def dithering_value_bits(levels: int) -> int:
    """Bits per transmitted value of a dithering with ``s`` levels: a sign bit and the level
    index in ``{0..s}``, ``1 + ceil(log2(s + 1))`` (fixed-length code, spec 8)."""
    return 1 + int(levels).bit_length()  # ceil(log2(s + 1)) = bit_length(s) for s >= 1


def _row_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    if math.isinf(p):
        return v.abs().amax(dim=1, keepdim=True)
    return torch.linalg.vector_norm(v, ord=p, dim=1, keepdim=True)


def dithering_from_uniforms(
    v: torch.Tensor, u: torch.Tensor, levels: int, norm: float = 2.0, grid: str = "standard"
) -> torch.Tensor:
    """Random dithering of every row of ``v`` (n, d) with the uniforms ``u`` (n, d) (spec 8, 9).

    ``N = ||v_i||_p`` per row, ``y = |v|/N``; ``y`` is rounded to one of its two neighbours
    ``L_j <= y < L_{j+1}`` in the level grid, up iff ``u < (y - L_j)/(L_{j+1} - L_j)``, and the
    output is ``N sgn(v) level``. ``grid="standard"``: ``{0, 1/s, ..., 1}``; ``"natural"``:
    ``{0, 2^(1-s), ..., 1/2, 1}``. A zero row gives zeros; zeros stay zeros.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be 'standard' or 'natural', got {grid!r}")
    if v.dim() != 2 or u.shape != v.shape:
        shapes = f"{tuple(v.shape)} and {tuple(u.shape)}"
        raise ValueError(f"expected (n, d) values and uniforms of one shape, got {shapes}")
    N = _row_norm(v, norm)
    safe = torch.where(N > 0, N, torch.ones((), dtype=N.dtype, device=N.device))
    if grid == "standard":
        scaled = (v.abs() * levels).div_(safe).clamp_(max=levels)  # y s, in [0, s]
        j = scaled.floor()
        units = j + (u < scaled - j)  # level index of the output
        return torch.sign(v) * units * (N / levels)
    y = (v.abs() / safe).clamp_(max=1.0)
    lowest = 2.0 ** (1 - levels)
    on_grid = (y >= lowest) & (y > 0)  # then L_j = 2^floor(log2 y)
    _, exponent = torch.frexp(y)
    lo = torch.where(on_grid, torch.ldexp(torch.ones_like(y), exponent - 1), 0.0)
    width = torch.where(on_grid, lo, lowest)
    level = lo + width * (u < (y - lo) / width)
    return torch.sign(v) * level * N


def _check_levels(levels: object) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    return levels


def _check_norm(norm: object) -> float:
    if isinstance(norm, str) and norm.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    if isinstance(norm, bool) or not isinstance(norm, int | float) or not norm >= 1:
        raise ValueError(f"norm must be a number in [1, inf] (or 'inf'), got {norm!r}")
    return float(norm)


def _norm_side_bits(message: Message) -> torch.Tensor:
    """32 bits for the norm on every non-empty message (an empty one sends nothing)."""
    return (message.value_count > 0).to(torch.int64) * FLOAT_BITS


class _Dithering(Quantizer):
    """Shared code of the ditherings: the grid, the bits, the draw."""

    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    extra_side_bits: ClassVar[int] = FLOAT_BITS
    grid: ClassVar[str] = "standard"

    def __init__(self, *, levels: int = 8, norm: float | str = 2.0):
        self.levels = _check_levels(levels)
        self.norm = _check_norm(norm)
        self.value_bits = dithering_value_bits(self.levels)  # type: ignore[misc]  # depends on s

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        v = message.values
        u = rng.uniform(v.shape[1], dtype=v.dtype)
        out = dithering_from_uniforms(v, u, self.levels, self.norm, self.grid)
        norm = _row_norm(v, self.norm).squeeze(1)  # for the wire encoder (a float32 there)
        quantized = message.with_values(out, self.value_bits, _norm_side_bits(message))
        return replace(quantized, scalar=norm)

    def _r(self) -> float:
        return min(self.norm, 2.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(levels={self.levels}, norm={self.norm})"


@register_quantizer
class StandardDithering(_Dithering):
    """Standard random dithering with ``s`` uniform levels in the p-norm (spec section 8).

    ``N = ||v||_p`` over the sent values, level grid ``{0, 1/s, ..., 1}``; each ``|v_i|/N`` is
    rounded at random to a neighbouring level (up with probability its distance to the lower
    level times s), output ``N sgn(v_i) level_i``; ``v = 0 -> 0``. Unbiased; exact variance
    ``N^2 sum_i q_i (1 - q_i)/s^2``; ``U(omega)`` with ``omega = min(d^(2/r)/(4 s^2), d^(1/r)/s)``,
    ``r = min(p, 2)``, ``d`` the number of sent values.
    Options: ``levels`` (s >= 1, default 8), ``norm`` (p in [1, inf], default 2; ``inf`` allowed).

    Bits: ``1 + ceil(log2(s + 1))`` per sent value (sign, level index) plus 32 for the norm:
    ``32 + d (1 + ceil(log2(s + 1)))`` dense, ``32 + k (ceil(log2 d) + 1 + ceil(log2(s + 1)))``
    after a sparsifier. The norm is charged even for a zero input (spec 0.5).
    Reference: METHODS.md section 8; Alistarh et al., "QSGD" (NeurIPS 2017); Horvath et al.,
    "Natural Compression for Distributed Deep Learning".
    """

    name: ClassVar[str] = "standard_dithering"
    value_bits: ClassVar[int | None] = dithering_value_bits(8)

    def omega(self, d: int) -> float:
        r, s = self._r(), self.levels
        return min(d ** (2.0 / r) / (4.0 * s * s), d ** (1.0 / r) / s)


@register_quantizer
class QSGD(_Dithering):
    """QSGD: standard dithering in the 2-norm with ``s`` levels (spec section 8, p = 2).

    ``C(v)_i = ||v|| sgn(v_i) l_i`` with ``l_i`` the random rounding of ``|v_i|/||v||`` to the
    grid ``{0, 1/s, ..., 1}``; ``v = 0 -> 0``. Unbiased, ``U(omega)`` with
    ``omega = min(d/s^2, sqrt(d)/s)`` (QSGD Lemma 3.1; ``d`` the number of sent values).
    Option: ``levels`` (s >= 1, default 8).

    Bits: fixed-length code, ``32 + d (1 + ceil(log2(s + 1)))`` dense and
    ``32 + k (ceil(log2 d) + 1 + ceil(log2(s + 1)))`` after a sparsifier (not QSGD's Elias code).
    Reference: METHODS.md section 8; Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD:
    Communication-Efficient SGD via Gradient Quantization and Encoding" (NeurIPS 2017).
    """

    name: ClassVar[str] = "qsgd"
    value_bits: ClassVar[int | None] = dithering_value_bits(8)

    def __init__(self, *, levels: int = 8):
        super().__init__(levels=levels, norm=2.0)

    def omega(self, d: int) -> float:
        s = self.levels
        return min(d / (s * s), math.sqrt(d) / s)

    def __repr__(self) -> str:
        return f"QSGD(levels={self.levels})"


@register_quantizer
class NaturalDithering(_Dithering):
    """Natural dithering: random dithering on the geometric grid ``{0, 2^(1-s), ..., 1/2, 1}``
    (spec section 9); after TopK it is the composition of spec section 10.

    As standard dithering with ``N = ||v||_p`` over the sent values, but the levels are powers of
    two: ``y = |v_i|/N >= 2^(1-s)`` is rounded to ``2^floor(log2 y)`` or twice that (natural
    compression of y), smaller y to 0 or ``2^(1-s)``. Unbiased, ``U(omega)`` with
    ``omega = 1/8 + d^(1/r) 2^(1-s) min(1, d^(1/r) 2^(1-s))``, ``r = min(p, 2)``, d the number of
    sent values (so ``k`` after TopK: ``zeta_k = 1 + omega(k)``, TopK + ND in ``B2(k/d, zeta_k)``).
    Options: ``levels`` (s >= 1, default 8), ``norm`` (p in [1, inf], default 2).

    Bits: ``32 + d (1 + ceil(log2(s + 1)))`` dense; after TopK
    ``32 + k (ceil(log2 d) + 1 + ceil(log2(s + 1)))``.
    Reference: METHODS.md sections 9-10; Horvath et al., "Natural Compression for Distributed
    Deep Learning"; Beznosikov et al., "On Biased Compression for Distributed Learning".
    """

    name: ClassVar[str] = "natural_dithering"
    value_bits: ClassVar[int | None] = dithering_value_bits(8)
    grid: ClassVar[str] = "natural"

    def omega(self, d: int) -> float:
        a = d ** (1.0 / self._r()) * 2.0 ** (1 - self.levels)
        return 1.0 / 8.0 + a * min(1.0, a)


# --- sign and scaled sign (spec 11) --------------------------------------------------------


def sign1(v: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``v >= 0`` (zero included), ``-1`` where ``v < 0``; v's dtype (spec 0.1)."""
    return (v < 0).to(v.dtype).mul_(-2.0).add_(1.0)


def _on_sent(message: Message, values: torch.Tensor) -> torch.Tensor:
    """``values`` on the transmitted coordinates, 0 elsewhere."""
    if message.kept is None:
        return values
    return values.mul_(message.kept)


@register_quantizer
class Sign(Quantizer):
    """One-bit sign (signSGD): every sent value becomes ``sign1(v_i)`` = +1 if ``v_i >= 0``,
    else -1 (spec section 11); coordinates not sent stay 0.

    Not positively homogeneous, so in no class (use it with error feedback or majority vote);
    a zero input gives +1 on every sent coordinate. Deterministic.
    Bits: 1 per sent value, no side information: ``d`` dense, ``k (1 + ceil(log2 d))`` after
    a sparsifier.
    Reference: METHODS.md section 11; Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD:
    Compressed Optimisation for Non-Convex Problems" (ICML 2018).
    """

    name: ClassVar[str] = "sign"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = 1
    zero_to_zero: ClassVar[bool] = False

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        return message.with_values(_on_sent(message, sign1(message.values)), value_bits=1)

    def __repr__(self) -> str:
        return "Sign()"


@register_quantizer
class ScaledSign(Quantizer):
    """Scaled sign (EF-signSGD): ``C(v) = (||v||_1 / m) sign1(v)`` over the m sent values
    (spec section 11); ``C(0) = 0``; coordinates not sent stay 0.

    Deterministic; ``||C(v) - v||^2 = ||v||^2 - ||v||_1^2/m`` exactly, so ``B3(m)`` (per vector
    ``delta = m ||v||^2/||v||_1^2``). Meant for error feedback.
    Bits: 1 per sent value plus 32 for the scale: ``32 + d`` dense,
    ``32 + k (1 + ceil(log2 d))`` after a sparsifier.
    Reference: METHODS.md section 11; Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes
    SignSGD and other Gradient Compression Schemes" (ICML 2019).
    """

    name: ClassVar[str] = "scaled_sign"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = 1
    extra_side_bits: ClassVar[int] = FLOAT_BITS

    def quantize(self, message: Message, rng: WorkerRNG) -> Message:
        v = message.values
        m = message.value_count.clamp(min=1).to(v.dtype)
        scale = v.abs().sum(dim=1) / m  # 0 for a zero row (and for an empty message)
        out = _on_sent(message, sign1(v).mul_(scale[:, None]))
        quantized = message.with_values(out, value_bits=1, extra_side_bits=_norm_side_bits(message))
        return replace(quantized, scalar=scale)

    def contraction(self, d: int) -> float:
        return float(max(d, 1))

    def __repr__(self) -> str:
        return "ScaledSign()"
