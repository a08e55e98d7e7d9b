"""Checks every registered compressor and quantizer must pass (driven by the registries).

Registering an operator is enough to put it through this suite with its default options; the
variants listed in ``COMPRESSOR_VARIANTS`` / ``QUANTIZER_VARIANTS`` are run too when their
operator is registered. Monte-Carlo checks use ``N_DRAWS`` independent draws (one worker
stream per draw) and a tolerance of ``Z`` estimated standard errors, so a correct operator
fails with probability below about 1e-5 per check, and the seeds are fixed anyway.

Compressor x quantizer pairs: every compressor meets every quantizer in ``BASE_QUANTIZERS``,
and every quantizer meets every compressor in ``MESSAGE_KINDS`` (one per kind of message a
quantizer can receive: dense, sparse with indices, shared-seed, random size, a single value),
so the suite grows linearly, not quadratically, with the registries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from compress_bench.compressors import (
    COMPRESSORS,
    QUANTIZERS,
    Compressor,
    Message,
    Quantizer,
    RoundContext,
    build_compressor,
    build_quantizer,
)
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.rng import Streams

RATIO = 0.3
SHAPES = [(1, 1), (3, 7), (4, 112)]
DTYPES = [torch.float32, torch.float64]
N_DRAWS = 2000
Z = 5.0  # standard errors allowed in Monte-Carlo comparisons
EXACT = 1e-10  # relative slack for float rounding in deterministic comparisons
# An outcome of probability below about RARE / N_DRAWS may well not show up in N_DRAWS draws
# (the sample standard deviation then misses it, e.g. a dithering rounding up with probability
# 0.99998, or 0.001); its share of the mean is at most about RARE / N_DRAWS times the distance
# of that outcome from x_i, taken as max_j |C(x)_j| (over all coordinates and draws) + max |x|.
RARE = 12.0

COMPRESSOR_VARIANTS: list[dict[str, Any]] = [
    {"name": "biased_rand_k", "sampling": "bernoulli"},
    {"name": "biased_rand_k", "shared_seed": True},
    {"name": "md_greedy", "scale": "dk"},
    {"name": "md_stochastic", "scale": "dk"},
    {"name": "md_weighted_greedy", "weights": "slides"},
    {"name": "md_greedy_weighted", "importance": {"variant": "thesis_code", "entropy": 0.1}},
    {"name": "rand_k", "shared_seed": True},
    {"name": "rand_k", "scale": "none"},
    {"name": "top_k", "scale": "dk"},
]
QUANTIZER_VARIANTS: list[dict[str, Any]] = [
    {"name": "power_of_two", "rounding": "log2"},
    {"name": "power_of_two", "rounding": "log2", "clip_exponent_at_zero": True},
    {"name": "standard_dithering", "levels": 1, "norm": "inf"},
    {"name": "standard_dithering", "levels": 3, "norm": 1.0},
    {"name": "qsgd", "levels": 2},
    {"name": "natural_dithering", "levels": 2, "norm": math.inf},
    {"name": "natural_dithering", "levels": 1},
]
#: the quantizers every compressor is paired with
BASE_QUANTIZERS = {"none", "power_of_two"}
#: the compressors every quantizer is paired with (one per kind of message)
MESSAGE_KINDS: list[dict[str, Any]] = [
    {"name": "identity"},
    {"name": "top_k"},
    {"name": "rand_k", "shared_seed": True},
    {"name": "biased_rand_k", "sampling": "bernoulli"},
    {"name": "adaptive_rand_k"},
]


def _cfg_id(cfg: dict[str, Any]) -> str:
    extra = ",".join(f"{k}={v}" for k, v in cfg.items() if k != "name")
    return f"{cfg['name']}[{extra}]" if extra else cfg["name"]


def _configs(registry: dict[str, Any], variants: list[dict[str, Any]]) -> list[Any]:
    cfgs = [{"name": name} for name in sorted(registry)]
    cfgs += [v for v in variants if v["name"] in registry]
    return [pytest.param(cfg, id=_cfg_id(cfg)) for cfg in cfgs]


COMPRESSOR_CFGS = _configs(COMPRESSORS, COMPRESSOR_VARIANTS)
QUANTIZER_CFGS = _configs(QUANTIZERS, QUANTIZER_VARIANTS)


def _pairs() -> list[Any]:
    compressors = [p.values[0] for p in COMPRESSOR_CFGS]
    quantizers = [p.values[0] for p in QUANTIZER_CFGS]
    pairs = [(c, q) for c in compressors for q in quantizers if q["name"] in BASE_QUANTIZERS]
    kinds = [c for c in MESSAGE_KINDS if c["name"] in COMPRESSORS]
    pairs += [(c, q) for q in quantizers if q["name"] not in BASE_QUANTIZERS for c in kinds]
    return [pytest.param(c, q, id=f"{_cfg_id(c)}-{_cfg_id(q)}") for c, q in pairs]


PAIRS = _pairs()


def test_registries_are_populated():
    assert {"identity", "rand_k", "top_k"} <= set(COMPRESSORS)
    assert {"none", "power_of_two"} <= set(QUANTIZERS)
    assert set(QUANTIZERS) >= BASE_QUANTIZERS
    for name, cls in {**COMPRESSORS, **QUANTIZERS}.items():
        assert cls.name == name
        assert cls.__doc__ and len(cls.__doc__.strip()) > 40, f"{name} needs a docstring"


def run(
    comp: Compressor,
    G: torch.Tensor,
    seed: int = 0,
    quant: Quantizer | None = None,
    rounds: int = 1,
) -> tuple[Message, Message]:
    """Compress G for ``rounds`` rounds from a fresh RNG; the last (raw, quantized) messages."""
    n, d = G.shape
    rng = Streams(seed, n, device=G.device)
    state = comp.init_state(n, d, G.device, G.dtype)
    # an objective for the operators that query one (the importance-based family)
    curvature = torch.linspace(0.5, 2.0, d, dtype=G.dtype, device=G.device)
    problem = SeparableQuadratic(curvature, torch.ones_like(G))
    for t in range(rounds):
        ctx = RoundContext(
            round_index=t, x=torch.zeros(d, dtype=G.dtype), lr=0.3, objective=problem
        )
        raw, state = comp.compress(G, state, rng, ctx)
        out = quant.quantize(raw, rng) if quant is not None else raw
    return raw, out


def sample(shape: tuple[int, int], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


# --- structural checks, every compressor x every quantizer ----------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(("cfg", "qcfg"), PAIRS)
def test_output_shape_dtype_device(cfg, qcfg, shape, dtype):
    comp, quant = build_compressor(cfg, ratio=RATIO), build_quantizer(qcfg)
    G = sample(shape, dtype)
    G_before = G.clone()
    global_state = torch.get_rng_state()
    raw, out = run(comp, G, quant=quant, rounds=2)
    for message in (raw, out):
        assert message.values.shape == G.shape
        assert message.values.dtype == G.dtype
        assert message.values.device == G.device
        for field in (message.value_count, message.side_bits, message.bits):
            assert field.shape == (shape[0],) and field.dtype == torch.int64
        assert (message.value_count >= 0).all() and (message.side_bits >= 0).all()
        assert torch.isfinite(message.values).all()
    assert torch.equal(G, G_before), "the input must not be modified in place"
    assert torch.equal(torch.get_rng_state(), global_state), "the global RNG must not be used"


@pytest.mark.parametrize(("cfg", "qcfg"), PAIRS)
def test_zero_input_gives_zero(cfg, qcfg):
    comp, quant = build_compressor(cfg, ratio=RATIO), build_quantizer(qcfg)
    for shape in SHAPES:
        raw, out = run(comp, torch.zeros(shape, dtype=torch.float64), quant=quant)
        if quant.zero_to_zero:
            assert (out.values == 0).all()
        expected = comp.expected_bits(shape[1])
        if expected is not None:  # spec 0.5: the message keeps its format
            assert raw.bits.tolist() == [expected] * shape[0]


@pytest.mark.parametrize(("cfg", "qcfg"), PAIRS)
def test_bits_match_expected(cfg, qcfg):
    comp, quant = build_compressor(cfg, ratio=RATIO), build_quantizer(qcfg)
    for shape in SHAPES:
        raw, out = run(comp, sample(shape, torch.float64), quant=quant)
        expected = comp.expected_bits(shape[1])
        if expected is not None:
            assert raw.bits.tolist() == [expected] * shape[0]
        # a quantizer changes the bits per value and may add side information (a norm) to a
        # non-empty message, never what is sent
        value_bits = quant.value_bits if quant.value_bits is not None else raw.value_bits
        assert out.value_bits == value_bits
        assert torch.equal(out.value_count, raw.value_count)
        side = raw.side_bits + quant.extra_side_bits * (raw.value_count > 0)
        assert torch.equal(out.bits, raw.value_count * value_bits + side)
        assert out.kept is raw.kept


@pytest.mark.parametrize(("cfg", "qcfg"), PAIRS)
def test_quantizer_keeps_the_support(cfg, qcfg):
    """Coordinates a compressor does not send stay exactly 0 after the quantizer."""
    comp, quant = build_compressor(cfg, ratio=RATIO), build_quantizer(qcfg)
    for dtype in DTYPES:
        raw, out = run(comp, sample((4, 112), dtype), quant=quant)
        assert (out.values[~raw.sent()] == 0).all()
        assert (raw.values[~raw.sent()] == 0).all()


@pytest.mark.parametrize(("cfg", "qcfg"), PAIRS)
def test_seeded_determinism(cfg, qcfg):
    G = sample((4, 112), torch.float64)
    a, b = (
        run(build_compressor(cfg, ratio=RATIO), G, seed=42, quant=build_quantizer(qcfg), rounds=3)
        for _ in range(2)
    )
    a, b = a[1], b[1]
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.bits, b.bits)


@pytest.mark.parametrize("cfg", COMPRESSOR_CFGS)
def test_deterministic_flag(cfg):
    """Operators declared deterministic give the same output whatever the seed."""
    comp = build_compressor(cfg, ratio=RATIO)
    if not comp.deterministic:
        pytest.skip("random operator")
    G = sample((3, 112), torch.float64)
    assert torch.equal(run(comp, G, seed=1)[0].values, run(comp, G, seed=2)[0].values)


# --- class properties (spec 0.7), Monte-Carlo for random operators -------------------------


def _mean_and_slack(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean over dim 0 and Z standard errors of it."""
    n = samples.shape[0]
    sd = samples.std(dim=0) if n > 1 else torch.zeros_like(samples[0])
    return samples.mean(dim=0), Z * sd / math.sqrt(n)


def check_class(
    apply: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    draws: int,
    unbiased: bool,
    delta: float | None,
    omega: float | None,
) -> None:
    """``apply`` maps (draws, d) copies of x to (draws, d) independent outputs."""
    X = x.expand(draws, -1).contiguous()
    Y = apply(X)
    sq = (x**2).sum()
    tol = EXACT * (1 + sq)
    if unbiased:
        mean, slack = _mean_and_slack(Y)
        if draws > 1:
            slack = slack + (RARE / draws) * (Y.abs().max() + x.abs().max())
        slack = slack + EXACT * (1 + x.abs().max())
        assert (torch.abs(mean - x) <= slack).all(), "E C(x) != x"
    if delta is not None:
        assert delta >= 1
        mean, slack = _mean_and_slack(((Y - X) ** 2).sum(dim=1))
        assert mean <= (1 - 1 / delta) * sq + slack + tol, "B3 contraction violated"
    if omega is not None:
        assert omega >= 0
        mean, slack = _mean_and_slack((Y**2).sum(dim=1))
        assert mean <= (omega + 1) * sq + slack + tol, "U(omega) variance bound violated"


def property_vectors(d: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(d)
    gaussian = torch.randn(d, generator=gen, dtype=torch.float64)
    ties = torch.randint(-2, 3, (d,), generator=gen).double()  # many equal magnitudes
    spike = torch.full((d,), 0.01, dtype=torch.float64)
    spike[d // 2] = 10.0
    return [gaussian, ties, spike]


@pytest.mark.parametrize("ratio", [0.2, 0.5])
@pytest.mark.parametrize("d", [7, 112])
@pytest.mark.parametrize("cfg", COMPRESSOR_CFGS)
def test_compressor_class_properties(cfg, d, ratio):
    comp = build_compressor(cfg, ratio=ratio)
    draws = 1 if comp.deterministic else N_DRAWS
    for seed, x in enumerate(property_vectors(d)):
        check_class(
            lambda X, seed=seed: run(comp, X, seed=seed)[0].values,
            x,
            draws,
            comp.unbiased,
            comp.contraction(d),
            comp.omega(d),
        )


@pytest.mark.parametrize("d", [7, 112])
@pytest.mark.parametrize("qcfg", QUANTIZER_CFGS)
def test_quantizer_class_properties(qcfg, d):
    quant = build_quantizer(qcfg)
    draws = 1 if quant.deterministic else N_DRAWS
    for seed, x in enumerate(property_vectors(d)):

        def apply(X, seed=seed):
            return quant.quantize(Message.dense(X), Streams(seed, X.shape[0])).values

        check_class(apply, x, draws, quant.unbiased, quant.contraction(d), quant.omega(d))


@pytest.mark.parametrize("qcfg", QUANTIZER_CFGS)
def test_quantizer_deterministic_flag(qcfg):
    """Quantizers declared deterministic ignore the seed; the others use it."""
    quant = build_quantizer(qcfg)
    message = Message.dense(sample((3, 112), torch.float64))
    a, b = (quant.quantize(message, Streams(seed, 3)).values for seed in (1, 2))
    assert torch.equal(a, b) == quant.deterministic
