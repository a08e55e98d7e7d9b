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
from functools import lru_cache
from typing import ClassVar

import torch

from compress_bench.compressors.base import FLOAT_BITS, Message, Quantizer
from compress_bench.compressors.paths import cpu_fast
from compress_bench.compressors.registry import register_quantizer
from compress_bench.rng import Streams

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
        return _nearest_by_bits(t)
    q = _power_of_two_by_exponent(t, rounding, clip_exponent_at_zero)
    # spec 0.6: exponents above 127 saturate (below -126 both paths already send 0)
    q = q.clamp(-(2.0**MAX_EXPONENT), 2.0**MAX_EXPONENT)
    return torch.where(torch.isnan(t), t, q)


# (integer view, mantissa bits) of the IEEE formats
_FLOAT_LAYOUT = {torch.float64: (torch.int64, 52), torch.float32: (torch.int32, 23)}


def _natural_layout(dtype: torch.dtype) -> tuple[torch.dtype, int]:
    """The (integer view, mantissa bits) natural compression computes in for ``dtype``:
    its own for float32 and float64, float32's for half precision."""
    return _FLOAT_LAYOUT.get(dtype, _FLOAT_LAYOUT[torch.float32])


@lru_cache(maxsize=8)
def _four_thirds(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """fl(4/3) in ``dtype`` on ``device``, built once (a tensor per call costs more than the
    multiplication on small inputs)."""
    return torch.tensor(4.0 / 3.0, dtype=dtype, device=device)


def _nearest_by_bits(t: torch.Tensor) -> torch.Tensor:
    """Nearest power of two, ties up, as ``mask(fl(t * fl(4/3)))``: ``|t| >= 1.5 2^E`` iff
    ``|t| 4/3 >= 2^(E+1)``, and clearing the mantissa field of the product leaves the power of
    two below it. One multiplication and one in-place mask, then a reduction that routes the
    rare inputs (saturation, NaN) to a second pass; frexp/ldexp cost several times more.

    Exact in float32 and float64 for every input, because the rounding of the product never
    crosses a power of two the wrong way: with ``c = fl(4/3)`` (``4/3 + 2^-23/3`` in float32,
    ``4/3 - 2^-52/3`` in float64), ``fl(a c) >= 2^(E+1)`` holds for ``a = 1.5 2^E`` (float64:
    a tie, broken to the even 2^(E+1)) and fails for its predecessor. Below 2^-126 the product
    is a float32 subnormal, so the mask sends it to 0 exactly when the nearest power of two is
    2^-127 or less (spec 0.6), and to 2^-126 from ``0.75 2^-126`` up. tests/test_quantizers.py
    checks every float32 mantissa and the float64 boundaries.
    """
    int_dtype, mantissa_bits = _FLOAT_LAYOUT[t.dtype]
    q = torch.mul(t, _four_thirds(t.dtype, t.device))
    q.view(int_dtype).bitwise_and_(-(1 << mantissa_bits))
    if t.dtype == torch.float64:
        # float64 has normal numbers below 2^-126; 2^-127 and less are sent as 0 (spec 0.6)
        q = q.masked_fill_(q.abs() < 2.0**MIN_EXPONENT, 0.0)
    # inputs from 1.5 2^127 up round past 2^127
    return _to_wire_range(t, q, first_unsafe=1.5 * 2.0**MAX_EXPONENT)


def _to_wire_range(t: torch.Tensor, q: torch.Tensor, first_unsafe: float) -> torch.Tensor:
    """``q`` (a fresh power-of-two rounding of ``t``, modified in place) as the wire carries it:
    zeros are plain zeros (IEEE ``-0 + 0 = +0``; the exponent field 0 has no sign), results
    beyond ``2^127`` saturate to ``+-2^127`` (spec 0.6) and NaN inputs pass through. On the
    CPU one reduction over ``t`` skips the last two passes when no ``|t|`` reaches
    ``first_unsafe`` (the smallest input that can round past 2^127) and none is NaN; the
    portable path (:mod:`.paths`) always runs them rather than read the reduction back."""
    if t.numel() == 0:
        return q
    q = q.add_(0.0)
    if cpu_fast(t):
        lowest, highest = torch.aminmax(t)
        if bool(torch.maximum(-lowest, highest) < first_unsafe):  # False for NaN
            return q
    q = q.clamp_(-(2.0**MAX_EXPONENT), 2.0**MAX_EXPONENT)
    return torch.where(torch.isnan(t), t, q)


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
    label: ClassVar[str] = ""
    passthrough: ClassVar[bool] = True  # leaves the message as it is: dropped from chains
    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = None

    def quantize(self, message: Message, rng: Streams) -> Message:
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
    label: ClassVar[str] = "power-of-two"
    colour: ClassVar[str | None] = "#6baed6"
    wire_values: ClassVar[str] = "power_of_two"
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

    elementwise: ClassVar[bool] = True  # value by value, 0 to 0, no side bits

    def quantize(self, message: Message, rng: Streams) -> Message:
        q = self.quantize_values(message.values)
        return message.with_values(q, value_bits=POWER_OF_TWO_BITS)

    def quantize_values(self, values: torch.Tensor) -> torch.Tensor:
        return power_of_two(values, self.rounding, self.clip_exponent_at_zero)

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
    _check_natural_input(t, u)
    int_dtype, mantissa_bits = _natural_layout(t.dtype)
    # u < p_up = m 2^-M  iff  floor(u 2^M) < m  iff  r = 2^M - 1 - floor(u 2^M) carries (below)
    r = ((1 << mantissa_bits) - 1) - (u * 2.0**mantissa_bits).floor().to(int_dtype)
    return natural_from_bits(t, r)


def natural_from_bits(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """C_nat of every entry of ``t`` with random integers ``r`` uniform on ``{0, ..., 2^M - 1}``
    (``M`` = 23 mantissa bits for float32 and half precision, computed in float32; 52 for
    float64): the rounding of :func:`natural_from_uniforms` with ``u = (2^M - 1 - r)/2^M``.
    ``r`` (int32 for M = 23, int64 for M = 52, the shape of ``t``) is overwritten.

    On the IEEE bit pattern, ``|t| = 2^E (1 + m 2^-M)`` and ``p_up = m 2^-M``: adding ``r`` to
    the pattern carries into the exponent field with probability ``P(r >= 2^M - m) = p_up``, and
    clearing the mantissa field leaves ``sgn(t) lo`` or ``sgn(t) 2 lo``: two in-place integer
    passes and a reduction, no frexp/ldexp and no float uniforms. Float32 subnormals have no
    implicit leading bit, so the same carry rounds them to 0 or 2^-126 as documented above.
    """
    _check_natural_input(t, r)
    if t.dtype not in _FLOAT_LAYOUT:  # half precision: compute in float32
        return natural_from_bits(t.float(), r).to(t.dtype)
    int_dtype, mantissa_bits = _FLOAT_LAYOUT[t.dtype]
    if r.dtype != int_dtype:
        raise TypeError(f"{t.dtype} values need {int_dtype} random integers, got {r.dtype}")
    if t.numel() == 0:
        return t.clone()
    t = t.contiguous()
    below = _natural_below_normal(t, r) if t.dtype == torch.float64 else None
    mask = (1 << mantissa_bits) - 1
    q = r.add_(t.view(int_dtype)).bitwise_and_(~mask).view(t.dtype)
    q = _to_wire_range(t, q, first_unsafe=2.0**MAX_EXPONENT)  # above 2^127 can round up to 2^128
    return q if below is None else torch.where(below[0], below[1], q)


def _natural_below_normal(t: torch.Tensor, r: torch.Tensor) -> tuple | None:
    """float64 represents ``0 < |t| < 2^-126`` as normal numbers: the (mask, values) that round
    those between 0 and 2^-126 (float32 does so by itself through its subnormal patterns).
    None when there are none, which only the CPU asks (a host sync); the portable path
    always returns the pair."""
    mag = t.abs()
    tiny = (mag < 2.0**MIN_EXPONENT) & (mag > 0)
    if cpu_fast(t) and not bool(tiny.any()):
        return None
    u = (((1 << 52) - 1) - r).to(torch.float64) * 2.0**-52  # exact: r < 2^52
    up = u < mag * 2.0**-MIN_EXPONENT
    return tiny, torch.where(up, torch.sign(t) * 2.0**MIN_EXPONENT, 0.0)


def _check_natural_input(t: torch.Tensor, draws: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"natural compression needs a floating-point tensor, got {t.dtype}")
    if draws.shape != t.shape:
        shapes = f"{tuple(draws.shape)} for values of shape {tuple(t.shape)}"
        raise ValueError(f"random draws of shape {shapes}")


@register_quantizer
class Natural(Quantizer):
    """Natural compression C_nat: stochastic rounding to a power of two (spec section 7).

    Coordinate-wise on the sent values: ``lo = 2^floor(log2|t|)``, output ``sgn(t) 2 lo`` with
    probability ``p_up = (|t| - lo)/lo``, else ``sgn(t) lo``; ``0 -> 0``. Unbiased, ``U(1/8)``:
    ``E C(t)^2 = (3s - 2)/s^2 t^2`` with ``s = |t|/lo``, at most ``(9/8) t^2`` (at ``s = 4/3``);
    ``(8/9) C_nat`` is in ``B3(9/8)`` (R1). One uniform per coordinate, as ``M`` random bits (23 for
    float32) from the worker's bit stream (:meth:`Streams.random_bits`).

    Bits: 9 per transmitted value (sign + 8-bit float32 exponent field), so ``9 d`` dense and
    ``k (9 + ceil(log2 d))`` after a sparsifier. Exponents above 127 saturate to ``+-2^127``;
    below ``2^-126`` the value rounds to 0 or ``+-2^-126`` (see :func:`natural_from_uniforms`).
    Reference: METHODS.md section 7; Horvath, Ho, Horvath, Sahu, Canini, Richtarik, "Natural
    Compression for Distributed Deep Learning" (2019/2022).
    """

    name: ClassVar[str] = "natural"
    label: ClassVar[str] = "Natural"
    colour: ClassVar[str | None] = "#ff7f0e"
    wire_values: ClassVar[str] = "power_of_two"
    unbiased: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    value_bits: ClassVar[int | None] = POWER_OF_TWO_BITS

    def quantize(self, message: Message, rng: Streams) -> Message:
        v = message.values
        _, mantissa_bits = _natural_layout(v.dtype)
        r = rng.random_bits(v.shape[1], mantissa_bits)  # fresh: becomes the output
        return message.with_values(natural_from_bits(v, r), value_bits=POWER_OF_TWO_BITS)

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
    return _dither(v, u, _row_norm(v, norm), levels, grid)


def _dither(
    v: torch.Tensor, u: torch.Tensor, N: torch.Tensor, levels: int, grid: str
) -> torch.Tensor:
    """:func:`dithering_from_uniforms` given the row norms ``N`` (n, 1). Works in two fresh
    (n, d) buffers with in-place passes: the cost is memory traffic, so every pass counts."""
    safe = torch.where(N > 0, N, torch.ones((), dtype=N.dtype, device=N.device))
    if grid == "standard":
        scaled = torch.abs(v).mul_(levels).div_(safe).clamp_(max=levels)  # y s, in [0, s]
        units = torch.floor(scaled)  # the level index below
        units.add_(u < scaled.sub_(units))  # up iff u < p_up = y s - j
        return units.mul_(N / levels).copysign_(v)
    y = torch.abs(v).div_(safe).clamp_(max=1.0)
    lo = _natural_grid_floor(y, 2.0 ** (1 - levels))
    width = lo.clamp(min=2.0 ** (1 - levels))  # lo on the grid; the lowest level below it
    up = u < y.sub_(lo).div_(width)  # u < p_up = (y - lo)/width
    return lo.add_(width.mul_(up)).mul_(N).copysign_(v)


def _natural_grid_floor(y: torch.Tensor, lowest: float) -> torch.Tensor:
    """The natural grid's level at or below each ``y`` in [0, 1]: ``2^floor(log2 y)`` for
    ``y >= lowest = 2^(1-s)``, else 0. A mask of the IEEE pattern (clearing the mantissa field
    of a normal number leaves the power of two below it), or frexp when ``lowest`` is below
    the dtype's normal range (s > 126 in float32)."""
    if y.dtype in _FLOAT_LAYOUT and lowest >= torch.finfo(y.dtype).tiny:
        int_dtype, mantissa_bits = _FLOAT_LAYOUT[y.dtype]
        lo = torch.bitwise_and(y.view(int_dtype), -(1 << mantissa_bits)).view(y.dtype)
    else:
        _, exponent = torch.frexp(y)
        lo = torch.ldexp(torch.ones_like(y), exponent - 1).masked_fill_(y == 0, 0.0)
    return lo.masked_fill_(y < lowest, 0.0)


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

    def quantize(self, message: Message, rng: Streams) -> Message:
        v = message.values
        u = rng.uniform(v.shape[1], dtype=v.dtype)
        norm = _row_norm(v, self.norm)
        out = _dither(v, u, norm, self.levels, self.grid)
        quantized = message.with_values(out, self.value_bits, _norm_side_bits(message))
        # the norm travels too (a float32 on the wire)
        return replace(quantized, scalar=norm.squeeze(1))

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
    label: ClassVar[str] = "standard dithering"
    colour: ClassVar[str | None] = "#e377c2"
    wire_values: ClassVar[str] = "dithering"
    wire_scalar: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = dithering_value_bits(8)

    def omega(self, d: int) -> float:
        r, s = self._r(), self.levels
        return min(d ** (2.0 / r) / (4.0 * s * s), d ** (1.0 / r) / s)


@register_quantizer
class QSGD(_Dithering):
    """QSGD: standard dithering in the 2-norm with ``s`` levels (spec section 8, p = 2).

    ``C(v)_i = ||v|| sgn(v_i) l_i`` with ``l_i`` the random rounding of ``|v_i|/||v||`` to the
    grid ``{0, 1/s, ..., 1}``; ``v = 0 -> 0``. Unbiased, ``U(omega)`` with
    ``omega = min(d/(4 s^2), sqrt(d)/s)`` (``d`` the number of sent values): the same
    operator as ``standard_dithering`` with p = 2, so the same constant, the general bound of
    spec 8 at r = 2. It is tighter than QSGD Lemma 3.1's ``min(d/s^2, sqrt(d)/s)`` (table
    26.1), since ``q (1 - q) <= 1/4`` per coordinate; both are valid, and one operator gets one
    omega (and so one ``lr=auto``).
    Option: ``levels`` (s >= 1, default 8).

    Bits: fixed-length code, ``32 + d (1 + ceil(log2(s + 1)))`` dense and
    ``32 + k (ceil(log2 d) + 1 + ceil(log2(s + 1)))`` after a sparsifier (not QSGD's Elias code).
    Reference: METHODS.md section 8; Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD:
    Communication-Efficient SGD via Gradient Quantization and Encoding" (NeurIPS 2017).
    """

    name: ClassVar[str] = "qsgd"
    label: ClassVar[str] = "QSGD"
    colour: ClassVar[str | None] = "#bcbd22"
    wire_values: ClassVar[str] = "dithering"
    wire_scalar: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = dithering_value_bits(8)

    def __init__(self, *, levels: int = 8):
        super().__init__(levels=levels, norm=2.0)

    omega = StandardDithering.omega  # p = 2 fixed: one operator, one constant

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
    label: ClassVar[str] = "natural dithering"
    colour: ClassVar[str | None] = "#8c564b"
    wire_values: ClassVar[str] = "dithering"
    wire_scalar: ClassVar[bool] = True
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
    label: ClassVar[str] = "sign"
    colour: ClassVar[str | None] = "#7f7f7f"
    wire_values: ClassVar[str] = "sign"
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = 1
    zero_to_zero: ClassVar[bool] = False
    sign_only: ClassVar[bool] = True

    def quantize(self, message: Message, rng: Streams) -> Message:
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
    label: ClassVar[str] = "scaled sign"
    colour: ClassVar[str | None] = "#5254a3"
    wire_values: ClassVar[str] = "sign"
    wire_scalar: ClassVar[bool] = True
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    value_bits: ClassVar[int | None] = 1
    extra_side_bits: ClassVar[int] = FLOAT_BITS

    def quantize(self, message: Message, rng: Streams) -> Message:
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
