"""Identity, RandK and TopK against the worked examples and properties of spec sections 1, 2, 4."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compress_bench.compressors import RoundContext, build_compressor
from compress_bench.compressors.selection import top_k_mask, uniform_subset_mask
from compress_bench.compressors.sparsifiers import (
    LARGE_D,
    Identity,
    RandK,
    TopK,
    masked_values,
    rand_k_from_uniforms,
    rand_k_support,
    sparse_message,
    top_k,
)
from compress_bench.errors import ConfigError
from compress_bench.rng import Streams

X = [0.5, -2.0, 0.0, 3.0, -1.0, 2.0]  # the spec's example vector, d = 6
CTX = RoundContext()


def x_row(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor([X], dtype=dtype)


def compress(op, G, seed=0, round_index=0):
    message, _ = op.compress(G, None, Streams(seed, G.shape[0]), RoundContext(round_index))
    return message


def uniforms_selecting(d: int, support: list[int]) -> torch.Tensor:
    """Uniforms whose largest entries are exactly at ``support`` (to inject a RandK draw)."""
    u = torch.full((1, d), 0.1, dtype=torch.float64)
    u[0, support] = 0.9
    return u


# --- section 1: Identity ------------------------------------------------------------------


def test_identity_example():
    G = x_row()
    message = compress(Identity(ratio=0.2), G)
    assert torch.equal(message.values, G)
    assert message.values.data_ptr() != G.data_ptr()  # a copy, safe to modify
    assert message.bits.tolist() == [192]
    assert Identity().expected_bits(6) == 192


def test_identity_is_bit_identical_float32():
    G = torch.randn(4, 33, dtype=torch.float32) * 1e-30
    message = compress(Identity(ratio=0.5), G)
    assert message.values.dtype == torch.float32
    assert torch.equal(message.values.view(torch.int32), G.view(torch.int32))


# --- section 2: RandK ---------------------------------------------------------------------


@pytest.mark.parametrize(("send_indices", "bits"), [(True, 70), (False, 64)])
def test_randk_example_with_injected_support(send_indices, bits):
    message = rand_k_from_uniforms(x_row(), uniforms_selecting(6, [1, 4]), 2, "dk", send_indices)
    assert message.values.tolist() == [[0.0, -6.0, 0.0, 0.0, -3.0, 0.0]]
    assert message.bits.tolist() == [bits]


def test_randk_unscaled_example_with_injected_support():
    message = rand_k_from_uniforms(x_row(), uniforms_selecting(6, [1, 4]), 2, "none")
    assert message.values.tolist() == [[0.0, -2.0, 0.0, 0.0, -1.0, 0.0]]
    assert message.bits.tolist() == [70]


def test_sparse_message_helper_example():
    kept = torch.tensor([[False, True, False, False, True, False]])
    message = sparse_message(x_row(), kept, 3.0)
    assert message.values.tolist() == [[0.0, -6.0, 0.0, 0.0, -3.0, 0.0]]
    assert message.bits.tolist() == [70]


def test_randk_compress_uses_the_drawn_support():
    """The output is (d/k) x on the support the worker's stream draws, zero elsewhere."""
    d, k, seed = 40, 8, 11
    G = torch.randn(3, d, dtype=torch.float64) + 5.0  # no zero coordinates
    message = compress(RandK(ratio=k / d), G, seed=seed)
    drawn = top_k_mask(Streams(seed, 3).uniform(d), k)
    expected = torch.where(drawn, G * (d / k), torch.zeros(()))
    assert torch.equal(message.values, expected)
    assert message.bits.tolist() == [k * (32 + 6)] * 3


@pytest.mark.parametrize(("k", "bits"), [(0, 0), (6, 192), (9, 192)])
def test_randk_edge_k(k, bits):
    message = rand_k_from_uniforms(x_row(), torch.rand(1, 6, dtype=torch.float64), k)
    expected = [0.0] * 6 if k == 0 else X
    assert message.values.tolist() == [expected]
    assert message.bits.tolist() == [bits]


def test_randk_ratio_one_is_dense_identity():
    G = torch.randn(2, 9, dtype=torch.float64)
    op = RandK(ratio=1.0)
    message = compress(op, G)
    assert torch.equal(message.values, G)
    assert message.bits.tolist() == [32 * 9] * 2 == [op.expected_bits(9)] * 2


def test_randk_batched_rows_match_single_rows():
    d, k, seed = 30, 4, 5
    G = torch.randn(4, d, dtype=torch.float64)
    batched = compress(RandK(ratio=k / d), G, seed=seed)
    # worker 0's stream does not depend on how many workers there are
    single = compress(RandK(ratio=k / d), G[:1], seed=seed)
    assert torch.equal(batched.values[:1], single.values)
    u = Streams(seed, 4).uniform(d)
    for i in range(4):
        row = rand_k_from_uniforms(G[i : i + 1], u[i : i + 1], k)
        assert torch.equal(batched.values[i : i + 1], row.values)
        assert batched.bits[i] == row.bits[0]


N_DRAWS = 100_000


@pytest.fixture(scope="module")
def randk_draws():
    """N draws of RandK (d = 6, k = 2) on the spec's x, from one seeded generator."""
    gen = torch.Generator().manual_seed(1234)
    u = torch.rand(N_DRAWS, 6, generator=gen, dtype=torch.float64)
    G = x_row().expand(N_DRAWS, 6)
    return rand_k_from_uniforms(G, u, 2, "dk")


def test_randk_unbiased(randk_draws):
    y = randk_draws.values
    x = torch.tensor(X, dtype=torch.float64)
    sd = y.std(dim=0)
    assert (torch.abs(y.mean(dim=0) - x) <= 4 * sd / math.sqrt(N_DRAWS) + 1e-12).all()


def test_randk_second_moment(randk_draws):
    x = torch.tensor(X, dtype=torch.float64)
    mean_sq = (randk_draws.values**2).sum(dim=1).mean()
    target = (6 / 2) * (x**2).sum()
    assert abs(mean_sq / target - 1) <= 0.01


def test_randk_index_frequency():
    d, k, n = 10, 3, 50_000
    gen = torch.Generator().manual_seed(99)
    u = torch.rand(n, d, generator=gen, dtype=torch.float64)
    message = rand_k_from_uniforms(torch.ones(n, d, dtype=torch.float64), u, k)
    kept = message.values != 0
    assert (kept.sum(dim=1) == k).all()
    freq = kept.double().mean(dim=0)
    p = k / d
    assert (torch.abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / n)).all()


def test_randk_through_worker_streams_frequency():
    """The production path (one private stream per worker) also samples uniformly."""
    d, k, n = 8, 2, 2000
    message = compress(RandK(ratio=k / d), torch.ones(n, d, dtype=torch.float64), seed=3)
    freq = (message.values != 0).double().mean(dim=0)
    p = k / d
    assert (torch.abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / n)).all()
    assert torch.allclose(message.values[message.values != 0], torch.tensor(d / k).double())


def test_randk_shared_seed_bits_and_server_agreement():
    d, k, n, seed, t = 50, 5, 3, 21, 17
    op = RandK(ratio=k / d, shared_seed=True)
    G = torch.randn(n, d, dtype=torch.float64) + 10.0
    message = compress(op, G, seed=seed, round_index=t)
    assert message.bits.tolist() == [32 * k] * n == [op.expected_bits(d)] * n
    # the server rebuilds the support from (seed, worker, round) alone
    server = top_k_mask(Streams(seed, n).shared_round_uniform(t, d), k)
    assert torch.equal(message.values != 0, server)
    # the same round and worker reproduce the support, whatever the private stream did
    rng = Streams(seed, n)
    rng.uniform(d)
    again, _ = op.compress(G, None, rng, RoundContext(t))
    assert torch.equal(again.values, message.values)
    # other rounds draw other supports
    others = [compress(op, G, seed=seed, round_index=r).values != 0 for r in range(5)]
    assert any(not torch.equal(s, server) for s in others)


def test_randk_shared_seed_does_not_consume_private_stream():
    d = 20
    rng = Streams(4, 2)
    RandK(ratio=0.25, shared_seed=True).compress(torch.ones(2, d), None, rng, RoundContext(3))
    assert torch.equal(rng.uniform(d), Streams(4, 2).uniform(d))


def test_randk_seeded_determinism():
    d = 112
    G = torch.randn(3, d, dtype=torch.float64)
    op = RandK(ratio=0.2)
    a, b, c = (compress(op, G, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.values, b.values) and torch.equal(a.bits, b.bits)
    assert not torch.equal(a.values != 0, c.values != 0)


def test_randk_consecutive_rounds_differ():
    G = torch.ones(1, 112, dtype=torch.float64)
    rng = Streams(0, 1)
    op = RandK(ratio=0.2)
    first, _ = op.compress(G, None, rng, RoundContext(0))
    second, _ = op.compress(G, None, rng, RoundContext(1))
    assert not torch.equal(first.values, second.values)


def test_randk_class_constants():
    op = RandK(ratio=0.2)
    assert op.unbiased and not op.deterministic
    assert op.omega(112) == pytest.approx(112 / 22 - 1)
    assert op.contraction(112) is None
    assert op.expected_bits(112) == 22 * (32 + 7)
    assert op.lr_factor(112) == 1.0
    unscaled = RandK(ratio=0.2, scale="none")
    assert not unscaled.unbiased
    assert unscaled.contraction(112) == pytest.approx(112 / 22)
    assert unscaled.omega(112) is None


def test_randk_unscaled_contraction_is_tight():
    """Spec 3: E||C(x) - x||^2 = (1 - k/d)||x||^2 for the unscaled form (within 1%)."""
    gen = torch.Generator().manual_seed(5)
    u = torch.rand(N_DRAWS, 6, generator=gen, dtype=torch.float64)
    G = x_row().expand(N_DRAWS, 6)
    y = rand_k_from_uniforms(G, u, 2, "none").values
    err = ((y - G) ** 2).sum(dim=1).mean()
    target = (1 - 2 / 6) * sum(v * v for v in X)
    assert abs(err / target - 1) <= 0.01


# --- section 4: TopK ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "plain", "scaled", "bits"),
    [
        (2, [0, -2, 0, 3, 0, 0], [0, -6, 0, 9, 0, 0], 70),
        (3, [0, -2, 0, 3, 0, 2], [0, -4, 0, 6, 0, 4], 105),
        (0, [0] * 6, [0] * 6, 0),
        (6, X, X, 192),
        (9, X, X, 192),
    ],
)
def test_topk_examples(k, plain, scaled, bits):
    for scale, expected in (("none", plain), ("dk", scaled)):
        message = top_k(x_row(), k, scale)
        assert message.values.tolist() == [[float(v) for v in expected]], scale
        assert message.bits.tolist() == [bits]


@pytest.mark.parametrize(("ratio", "k"), [(2 / 6, 2), (0.5, 3), (1.0, 6)])
def test_topk_class_matches_function(ratio, k):
    for scale in ("none", "dk"):
        op = TopK(ratio=ratio, scale=scale)
        message = compress(op, x_row())
        assert torch.equal(message.values, top_k(x_row(), k, scale).values)
        assert message.bits.tolist() == [op.expected_bits(6)]


def test_topk_negative_k_rejected():
    with pytest.raises(ValueError, match="k must be"):
        top_k(x_row(), -1)


def test_topk_batched_rows_match_single_rows():
    G = torch.randint(-3, 4, (6, 15)).double()  # many ties
    op = TopK(ratio=0.3)
    batched = compress(op, G)
    for i in range(G.shape[0]):
        single = compress(op, G[i : i + 1])
        assert torch.equal(batched.values[i : i + 1], single.values)
        assert batched.bits[i] == single.bits[0]


def test_topk_gaussian_property_batch():
    """Spec 4 property: 1000 Gaussian x, d = 50, k = 5, checked as one batch."""
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(1000, 50, generator=gen, dtype=torch.float64)
    y = top_k(G, 5).values
    kept = y != 0
    assert (kept.sum(dim=1) <= 5).all()
    err = ((y - G) ** 2).sum(dim=1)
    assert (err <= (1 - 5 / 50) * (G**2).sum(dim=1)).all()
    mag = G.abs()
    min_kept = torch.where(kept, mag, torch.inf).min(dim=1).values
    max_dropped = torch.where(kept, -torch.inf, mag).max(dim=1).values
    assert (min_kept >= max_dropped).all()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda d: st.tuples(
            arrays(np.float64, (2, d), elements=st.floats(-1e3, 1e3, allow_nan=False)),
            st.integers(1, d),
        )
    )
)
def test_topk_property(case):
    G_np, k = case
    G = torch.from_numpy(G_np)
    d = G.shape[1]
    message = top_k(G, k)
    y = message.values
    kept = y != 0
    assert (kept.sum(dim=1) <= k).all()
    err = ((y - G) ** 2).sum(dim=1)
    bound = (1 - k / d) * (G**2).sum(dim=1)
    assert (err <= bound * (1 + 1e-12) + 1e-300).all()
    selected = message.value_count  # k per row (all of them if k == d)
    assert selected.tolist() == [k, k]
    mask = top_k_mask(G.abs(), k)
    for i in range(2):
        sel, uns = G[i].abs()[mask[i]], G[i].abs()[~mask[i]]
        if len(uns):
            assert sel.min() >= uns.max()
        assert torch.equal(y[i][mask[i]], G[i][mask[i]])


def test_topk_class_constants():
    op = TopK(ratio=0.2)
    assert not op.unbiased and op.deterministic
    assert op.contraction(112) == pytest.approx(112 / 22)
    assert op.omega(112) is None and op.lr_factor(112) == 1.0
    scaled = TopK(ratio=0.2, scale="dk")
    assert scaled.contraction(112) is None
    assert scaled.lr_factor(112) == pytest.approx(22 / 112)
    assert TopK(ratio=1.0, scale="dk").lr_factor(112) == 1.0


def test_topk_scaled_is_not_contractive_on_unit_vector():
    """Spec 4: ||T_s(e_0) - e_0||^2 = (d/k - 1)^2 >= 1 when d/k >= 2."""
    e0 = torch.zeros(1, 10, dtype=torch.float64)
    e0[0, 0] = 1.0
    y = top_k(e0, 2, "dk").values
    assert ((y - e0) ** 2).sum().item() == pytest.approx((10 / 2 - 1) ** 2)


# --- shared behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["identity", "rand_k", "top_k"])
def test_dtype_preserved(name, dtype):
    G = torch.randn(3, 20, dtype=dtype)
    message = compress(build_compressor({"name": name}, ratio=0.25), G)
    assert message.values.dtype == dtype and message.values.shape == G.shape
    assert message.bits.dtype == torch.int64


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "top_k", "scale": "x"}, "scale must be 'none' or 'dk', got 'x'"),
        ({"name": "rand_k", "scale": "unbiased"}, "scale must be 'none' or 'dk'"),
        ({"name": "rand_k", "shared_seed": "yes"}, "shared_seed must be"),
        ({"name": "top_k", "k": 3}, "unexpected keyword"),
    ],
)
def test_invalid_options_rejected(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_compressor(cfg, ratio=0.2)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, "0.2"])
@pytest.mark.parametrize("cls", [RandK, TopK])
def test_invalid_ratio_rejected(cls, ratio):
    with pytest.raises(ValueError, match="ratio"):
        cls(ratio=ratio)


def test_k_from_ratio_at_compress_time():
    op = TopK(ratio=0.2)
    assert compress(op, torch.randn(1, 112)).value_count.tolist() == [22]  # mushrooms
    assert compress(op, torch.randn(1, 3)).value_count.tolist() == [1]  # floor 0 -> 1


def test_rejects_non_matrix_input():
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        compress(TopK(ratio=0.5), torch.randn(5))


# --- large d: the uniform k-subset sampler, RandK and TopK fast paths ----------------------

BIG_D = LARGE_D + 4_465  # 70_001: the large-d paths, not a multiple of 8


def subsets(d: int, k: int, draws: int, seed: int) -> torch.Tensor:
    """``draws`` masks (draws, d) from one generator."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([uniform_subset_mask(d, k, gen) for _ in range(draws)])


@pytest.mark.parametrize(
    ("d", "k"),
    [(1, 1), (2, 1), (6, 2), (7, 4), (10, 3), (10, 9), (300, 1), (1000, 500), (1000, 999)]
    + [(BIG_D, k) for k in (1, 100, 272, 273, BIG_D // 5, BIG_D // 2, BIG_D - 1)],
)
def test_uniform_subset_has_exactly_k_entries(d, k):
    masks = subsets(d, k, 5, seed=d + k)
    assert masks.dtype == torch.bool and masks.shape == (5, d)
    assert (masks.sum(dim=1) == k).all()


def test_uniform_subset_edge_k_draws_nothing():
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert not uniform_subset_mask(9, 0, gen).any()
    assert uniform_subset_mask(9, 9, gen).all() and uniform_subset_mask(9, 12, gen).all()
    assert torch.equal(gen.get_state(), state)


# chi-square critical values at p = 1e-5 for the degrees of freedom used below
CHI2_CRIT = {14: 48.0, 34: 79.0, 119: 194.0, 299: 428.0}


@pytest.mark.parametrize(("d", "k"), [(6, 2), (7, 4), (10, 3), (300, 1)])
def test_uniform_subset_every_subset_equally_likely(d, k):
    """Chi-square of the counts of every k-subset (pairwise inclusion and more), covering
    the removal (6, 2), complement (7, 4), addition and empty-start (300, 1) corrections."""
    n_subsets = math.comb(d, k)
    draws = 40 * n_subsets
    masks = subsets(d, k, draws, seed=17)
    observed = torch.unique(masks, dim=0, return_counts=True)[1].double()
    assert observed.numel() == n_subsets  # every subset occurs
    expected = draws / n_subsets
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRIT[n_subsets - 1], chi2


def test_uniform_subset_inclusion_frequency_large_d():
    """Every index of d = 70_001 is kept in about k/d of the draws (chi-square over all d)."""
    d, k, draws = BIG_D, BIG_D // 4, 120
    counts = subsets(d, k, draws, seed=23).sum(dim=0).double()
    p = k / d
    chi2 = float(((counts - draws * p) ** 2 / (draws * p * (1 - p))).sum())
    assert abs(chi2 - d) < 6 * math.sqrt(2 * d), chi2  # chi2(d) has mean d, sd sqrt(2 d)
    # the pairs of neighbouring indices are kept together k(k-1)/(d(d-1)) of the time
    masks = subsets(d, k, 40, seed=29)
    together = (masks[:, 1:] & masks[:, :-1]).double().mean()
    q = k * (k - 1) / (d * (d - 1))
    assert abs(float(together) - q) < 6 * math.sqrt(q * (1 - q) / (40 * (d - 1)))


def test_uniform_subset_is_deterministic():
    a, b, c = (subsets(BIG_D, 999, 3, seed=s) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # consecutive draws differ


def test_randk_large_d_compress():
    d, n, seed, ratio = BIG_D, 3, 12, 0.2
    k = math.floor(ratio * d)
    G = torch.randn(n, d, dtype=torch.float64) + 10.0  # no zero coordinates
    op = RandK(ratio=ratio)
    message = compress(op, G, seed=seed)
    kept = message.values != 0
    assert (kept.sum(dim=1) == k).all() and torch.equal(message.kept, kept)
    assert torch.equal(message.values[kept], (G * (d / k))[kept])
    assert message.bits.tolist() == [op.expected_bits(d)] * n == [k * (32 + 17)] * n
    # the support is the sampler's draw from each worker's private stream
    assert torch.equal(kept, rand_k_support(Streams(seed, n).generators, d, k))
    # worker 0's draw does not depend on how many workers there are
    assert torch.equal(compress(op, G[:1], seed=seed).values, message.values[:1])
    assert torch.equal(compress(op, G, seed=seed).values, message.values)  # deterministic
    unscaled = compress(RandK(ratio=ratio, scale="none"), G, seed=seed)
    assert torch.equal(unscaled.values, torch.where(kept, G, 0.0))


def test_randk_large_d_shared_seed_server_agreement():
    d, n, seed, t, ratio = BIG_D, 2, 21, 9, 0.1
    k = math.floor(ratio * d)
    op = RandK(ratio=ratio, shared_seed=True)
    G = torch.randn(n, d) + 10.0
    message = compress(op, G, seed=seed, round_index=t)
    assert message.bits.tolist() == [32 * k] * n == [op.expected_bits(d)] * n
    server = rand_k_support(Streams(seed, n).shared_round_generators(t), d, k)
    assert torch.equal(message.values != 0, server)
    rng = Streams(seed, n)
    op.compress(G, None, rng, RoundContext(t))  # the private streams are not consumed
    assert torch.equal(rng.uniform(5), Streams(seed, n).uniform(5))
    other = compress(op, G, seed=seed, round_index=t + 1)
    assert not torch.equal(other.values != 0, server)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("factor", [1.0, 70_001 / 14_000])
def test_masked_values_is_bitwise_where(dtype, factor):
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(2, BIG_D, generator=gen).to(dtype)
    G[0, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    G[1, :4] = torch.tensor([float("inf"), float("nan"), -0.0, 0.0])
    kept = torch.rand(2, BIG_D, generator=gen) < 0.3
    kept[0, :4] = False
    kept[1, :4] = True
    expected = torch.where(kept, G * factor if factor != 1.0 else G, torch.zeros((), dtype=dtype))
    got = masked_values(G, kept, factor)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[G.element_size()]
    assert got.dtype == dtype
    assert torch.equal(got.view(bits), expected.view(bits))  # NaN and -0.0 included


@pytest.mark.parametrize("scale", ["none", "dk"])
def test_topk_large_d_is_bitwise_the_reference(scale):
    gen = torch.Generator().manual_seed(8)
    G = torch.randint(-40, 41, (2, BIG_D), generator=gen).float() / 3  # many ties
    k = BIG_D // 5
    message = top_k(G, k, scale)
    kept = top_k_mask_reference(G.abs(), k)
    factor = BIG_D / k if scale == "dk" else 1.0
    expected = torch.where(kept, G * factor if factor != 1.0 else G, torch.zeros(()))
    assert torch.equal(message.kept, kept)
    assert torch.equal(message.values.view(torch.int32), expected.view(torch.int32))
    assert message.value_count.tolist() == [k, k]
    assert message.bits.tolist() == [k * (32 + 17)] * 2


def top_k_mask_reference(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Spec 0.4 with NumPy's lexsort, row by row."""
    rows = []
    for row in scores.numpy():
        mask = np.zeros(row.shape, dtype=bool)
        mask[np.lexsort((np.arange(row.size), -row))[:k]] = True
        rows.append(mask)
    return torch.from_numpy(np.stack(rows))
