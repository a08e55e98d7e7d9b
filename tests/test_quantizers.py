"""Power-of-two rounding Q (spec sections 6, 0.6 and 21) and the no-op quantizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compress_bench.compressors import Message, RoundContext, build_compressor, build_quantizer
from compress_bench.compressors.quantizers import NoQuantizer, PowerOfTwo, power_of_two
from compress_bench.errors import ConfigError
from compress_bench.rng import Streams

T = [0.0, 0.3, -1.45, 5.0, 0.75, -6.0, 2.9, -0.2]
EXPECTED = {
    ("nearest", False): [0.0, 0.25, -1.0, 4.0, 1.0, -8.0, 2.0, -0.25],
    ("log2", False): [0.0, 0.25, -2.0, 4.0, 1.0, -8.0, 4.0, -0.25],
    ("log2", True): [0.0, 0.25, -1.0, 1.0, 1.0, -1.0, 1.0, -0.25],
}
DTYPES = [torch.float32, torch.float64]
RNG = Streams(0, 1)


def quantizer(rounding="nearest", clip=False) -> PowerOfTwo:
    return PowerOfTwo(rounding=rounding, clip_exponent_at_zero=clip)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("rounding", "clip"), list(EXPECTED))
def test_spec_example(rounding, clip, dtype):
    message = Message.dense(torch.tensor([T], dtype=dtype))
    out = quantizer(rounding, clip).quantize(message, RNG)
    assert out.values.dtype == dtype
    assert out.values.tolist() == [EXPECTED[(rounding, clip)]]
    assert out.bits.tolist() == [72]  # dense: 9 d
    assert out.value_count.tolist() == [8] and out.value_bits == 9


def test_sparse_topk_then_q_bits():
    G = torch.randn(3, 112, dtype=torch.float64)
    message, _ = build_compressor({"name": "top_k"}, ratio=0.2).compress(
        G, None, Streams(0, 3), RoundContext()
    )
    out = build_quantizer({"name": "power_of_two"}).quantize(message, RNG)
    assert out.bits.tolist() == [22 * (9 + 7)] * 3
    assert torch.equal(out.side_bits, message.side_bits)
    assert torch.equal(out.value_count, message.value_count)
    assert torch.equal(out.values == 0, message.values == 0)  # support unchanged


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_spec_21_example_topk1_then_q(sign):
    G = sign * torch.tensor([[1.4, 0.0], [0.0, 3.0]], dtype=torch.float64)
    message, _ = build_compressor({"name": "top_k"}, ratio=0.5).compress(
        G, None, Streams(0, 2), RoundContext()
    )
    out = build_quantizer({"name": "power_of_two"}).quantize(message, RNG)
    assert out.values.tolist() == (sign * torch.tensor([[1.0, 0.0], [0.0, 4.0]])).tolist()
    assert out.bits.tolist() == [10, 10]  # 9 + ceil(log2 2)


def log_uniform(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    logs = torch.rand(n, generator=gen, dtype=torch.float64) * 40.0 - 20.0
    signs = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    return (signs * torch.exp(logs)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("rounding", "bound"), [("nearest", 1 / 3), ("log2", math.sqrt(2) - 1)])
def test_property_log_uniform(rounding, bound, dtype):
    t = log_uniform(200_000, dtype)
    q = power_of_two(t, rounding)
    assert q.dtype == dtype
    mantissa, _ = torch.frexp(q)
    assert (mantissa.abs() == 0.5).all()  # exactly +-2^e
    assert (torch.sign(q) == torch.sign(t)).all()
    ratio = (q.double() / t.double() - 1).abs()
    assert ratio.max().item() <= bound * (1 + 1e-12)
    assert torch.equal(power_of_two(q, rounding), q)  # idempotent
    assert torch.equal(power_of_two(-t, rounding), -q)  # odd


@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest_is_the_nearer_power_ties_up(dtype):
    t = log_uniform(50_000, dtype, seed=1).abs()
    # add exact ties 1.5 * 2^a
    ties = torch.tensor([1.5 * 2.0**a for a in range(-30, 30)], dtype=dtype)
    t = torch.cat([t, ties])
    _, exponent = torch.frexp(t)
    lo = torch.ldexp(torch.ones_like(t), exponent - 1)
    hi = 2 * lo
    # both differences are exact (Sterbenz), so this comparison is exact
    expected = torch.where(hi - t <= t - lo, hi, lo)
    assert torch.equal(power_of_two(t, "nearest"), expected)
    assert torch.equal(power_of_two(ties, "nearest"), 2 * ties / 1.5)


def test_log2_matches_numpy_reference():
    t = log_uniform(50_000, torch.float64, seed=2)
    a = t.numpy()
    reference = np.sign(a) * 2.0 ** np.round(np.log2(np.abs(a)))
    np.testing.assert_array_equal(power_of_two(t, "log2").numpy(), reference)
    clipped = np.sign(a) * 2.0 ** np.minimum(np.round(np.log2(np.abs(a))), 0)
    np.testing.assert_array_equal(
        power_of_two(t, "log2", clip_exponent_at_zero=True).numpy(), clipped
    )


@pytest.mark.parametrize("rounding", ["nearest", "log2"])
def test_exponent_underflow_sent_as_zero(rounding):
    t = torch.tensor([1e-45, -1e-45, 2.0**-126, -(2.0**-126), 1.4 * 2.0**-127], dtype=torch.float64)
    q = power_of_two(t, rounding)
    assert q.tolist() == [0.0, 0.0, 2.0**-126, -(2.0**-126), 0.0]
    assert not torch.signbit(q[[0, 1, 4]]).any()  # a plain zero, not -0
    # float32 subnormals
    sub = torch.tensor([1e-40, -1e-45], dtype=torch.float32)
    assert power_of_two(sub, rounding).tolist() == [0.0, 0.0]


def test_nearest_rounds_up_into_range():
    t = torch.tensor([1.6 * 2.0**-127], dtype=torch.float64)
    assert power_of_two(t).tolist() == [2.0**-126]


@pytest.mark.parametrize("rounding", ["nearest", "log2"])
def test_exponent_overflow_saturates(rounding):
    big = 2.0**127
    t64 = torch.tensor([1e300, -1e300, 2.0**127, 2.0**200, math.inf, -math.inf])
    t64 = t64.double()
    assert power_of_two(t64, rounding).tolist() == [big, -big, big, big, big, -big]
    t32 = torch.tensor([3e38, -3.4e38, 2.0**127], dtype=torch.float32)
    q32 = power_of_two(t32, rounding)
    assert q32.dtype == torch.float32
    assert q32.tolist() == [big, -big, big]


@pytest.mark.parametrize("rounding", ["nearest", "log2"])
def test_zero_and_nan(rounding):
    q = power_of_two(torch.tensor([0.0, -0.0, math.nan], dtype=torch.float64), rounding)
    assert q[:2].tolist() == [0.0, 0.0] and not torch.signbit(q[:2]).any()
    assert math.isnan(q[2].item())


def test_underflowed_values_still_counted():
    values = torch.tensor([[1e-60, 0.0, 3.0]], dtype=torch.float64)
    kept = torch.tensor([[True, False, True]])
    message = Message.sparse(values, kept)
    out = PowerOfTwo().quantize(message, RNG)
    assert out.values.tolist() == [[0.0, 0.0, 4.0]]
    assert out.bits.tolist() == [2 * (9 + 2)]


def test_no_quantizer_passes_message_through():
    message = Message.dense(torch.randn(2, 5))
    assert NoQuantizer().quantize(message, RNG) is message
    assert build_quantizer({"name": "none"}).contraction(5) == 1.0


def test_contraction_constants():
    assert quantizer("nearest").contraction(112) == 9 / 8
    assert quantizer("log2").contraction(112) == pytest.approx((1 + math.sqrt(2)) / 2)
    assert quantizer("log2", True).contraction(112) is None
    assert PowerOfTwo.value_bits == 9 and not PowerOfTwo.unbiased


@pytest.mark.parametrize(("rounding", "delta"), [("nearest", 9 / 8), ("log2", (1 + 2**0.5) / 2)])
def test_contraction_holds_on_random_vectors(rounding, delta):
    x = torch.randn(500, 40, dtype=torch.float64) * torch.exp(torch.randn(500, 1))
    err = ((power_of_two(x, rounding) - x) ** 2).sum(dim=1)
    assert (err <= (1 - 1 / delta) * (x**2).sum(dim=1) * (1 + 1e-12)).all()


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "power_of_two", "rounding": "floor"}, "rounding must be 'nearest' or 'log2'"),
        ({"name": "power_of_two", "clip_exponent_at_zero": True}, "only valid with"),
        ({"name": "power_of_two", "clip_exponent_at_zero": "no"}, "must be true or false"),
        ({"name": "none", "rounding": "log2"}, "takes no arguments|unexpected keyword"),
    ],
)
def test_invalid_options(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_quantizer(cfg)


def test_rejects_integer_tensor():
    with pytest.raises(TypeError):
        power_of_two(torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bit_trick_nearest_equals_the_frexp_definition(dtype):
    """The fast IEEE-bit path and the spec's frexp definition agree on every input class."""
    from compress_bench.compressors.quantizers import _power_of_two_by_exponent

    gen = torch.Generator().manual_seed(7)
    logs = torch.empty(50_000, dtype=torch.float64).uniform_(-140, 140, generator=gen)
    signs = torch.where(torch.rand(50_000, generator=gen) < 0.5, -1.0, 1.0).double()
    special = torch.tensor(
        [
            0.0,
            -0.0,
            1.5,
            -1.5,
            0.75,
            3 * 2.0**-128,
            1.5 * 2.0**127,
            2.0**-126,
            1.4 * 2.0**-127,
            float("inf"),
            -float("inf"),
        ],
        dtype=torch.float64,
    )
    t = torch.cat([signs * torch.exp2(logs), special]).to(dtype)
    fast = power_of_two(t)
    slow = _power_of_two_by_exponent(t, "nearest", False)
    slow = slow.clamp(-(2.0**127), 2.0**127)
    slow = torch.where(slow.abs() < 2.0**-126, torch.zeros((), dtype=dtype), slow)
    assert torch.equal(fast, slow)
    assert torch.isnan(power_of_two(torch.tensor([float("nan")], dtype=dtype))).all()


def _float32_from_bits(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(bits.astype(np.uint32).view(np.float32).copy())


def test_nearest_float32_every_mantissa_and_every_subnormal():
    """Exhaustive over one binade (all 2^23 mantissas, both signs) and all 2^23 subnormals:
    the multiply-and-mask path equals the integer definition (up iff the mantissa field is
    >= 2^22, i.e. |t| >= 1.5 2^E; a subnormal m 2^-149 goes to 2^-126 iff m >= 0.75 2^23)."""
    m = np.arange(2**23, dtype=np.uint64)
    for exponent_field in (1, 127, 200, 253):
        t = _float32_from_bits((exponent_field << 23) | m)
        e = exponent_field + (m >= 2**22)
        expected = _float32_from_bits(e << 23)
        assert torch.equal(power_of_two(t), expected)
        assert torch.equal(power_of_two(-t), -expected)
    sub = _float32_from_bits(m)
    expected = torch.where(torch.from_numpy(m >= 3 * 2**21), 2.0**-126, 0.0).float()
    got = power_of_two(sub)
    assert torch.equal(got, expected) and not torch.signbit(got).any()
    got_negative = power_of_two(-sub)
    assert torch.equal(got_negative, -expected)
    assert not torch.signbit(got_negative[expected == 0]).any()  # plain zeros


def test_nearest_float64_boundaries():
    """Around every tie 1.5 2^E (E from -127 to 126) and 0.75 2^-126: the tie and its successor
    go up, its predecessor goes down (float64 has no subnormals there, so this is the part
    of the range where the product's rounding matters)."""
    ties = torch.tensor([1.5 * 2.0**e for e in range(-127, 127)], dtype=torch.float64)
    below = torch.nextafter(ties, torch.zeros_like(ties))
    above = torch.nextafter(ties, torch.full_like(ties, math.inf))
    up = 2 * ties / 1.5
    down = torch.where(ties / 1.5 < 2.0**-126, 0.0, ties / 1.5)
    assert torch.equal(power_of_two(ties), up)
    assert torch.equal(power_of_two(above), up)
    assert torch.equal(power_of_two(below), down)
    assert torch.equal(power_of_two(-below), -down + 0.0)
