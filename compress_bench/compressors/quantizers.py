"""Value quantizers applied to what a compressor sends: none, and power-of-two rounding Q
(spec section 6, the thesis "quantisation").

A quantizer changes the values and the bits per value of a :class:`Message`; the number of
transmitted values and the side information (indices) stay the compressor's.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from compress_bench.compressors.base import Message, Quantizer
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
    # spec 0.6: exponents above 127 saturate, below -126 are sent (and applied) as 0
    q = q.clamp(-(2.0**MAX_EXPONENT), 2.0**MAX_EXPONENT)
    q = torch.where(q.abs() < 2.0**MIN_EXPONENT, torch.zeros((), dtype=t.dtype, device=t.device), q)
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
    return torch.where(mag == 0, torch.zeros((), dtype=t.dtype, device=t.device), q)


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

    def contraction(self) -> float:
        return 1.0


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

    def contraction(self) -> float | None:
        if self.rounding == "nearest":
            return 9.0 / 8.0
        return None if self.clip_exponent_at_zero else (1.0 + math.sqrt(2.0)) / 2.0

    def __repr__(self) -> str:
        return (
            f"PowerOfTwo(rounding={self.rounding!r}, "
            f"clip_exponent_at_zero={self.clip_exponent_at_zero})"
        )
