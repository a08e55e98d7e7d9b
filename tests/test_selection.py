"""top_k_mask against the spec's tie rule (section 0.4), written with NumPy's lexsort."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compress_bench.compressors import selection as S
from compress_bench.compressors.selection import top_k_mask


def reference_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Spec 0.4 literally: sort by descending score, smaller index first, keep min(k, d)."""
    n, d = scores.shape
    mask = np.zeros((n, d), dtype=bool)
    for i in range(n):
        order = np.lexsort((np.arange(d), -scores[i]))
        mask[i, order[: max(0, min(k, d))]] = True
    return mask


@st.composite
def scores_and_k(draw, elements):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 12))
    scores = draw(arrays(np.float64, (n, d), elements=elements))
    k = draw(st.integers(0, d + 2))
    return scores, k


@settings(max_examples=300, deadline=None)
@given(scores_and_k(st.integers(-2, 2).map(float)))
def test_tie_rule_matches_lexsort_on_heavy_ties(case):
    scores, k = case
    got = top_k_mask(torch.from_numpy(scores), k).numpy()
    np.testing.assert_array_equal(got, reference_mask(scores, k))


@settings(max_examples=200, deadline=None)
@given(scores_and_k(st.floats(-1e6, 1e6, allow_nan=False, width=32)))
def test_matches_lexsort_on_general_floats(case):
    scores, k = case
    got = top_k_mask(torch.from_numpy(scores), k).numpy()
    np.testing.assert_array_equal(got, reference_mask(scores, k))


def test_ties_go_to_smaller_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = top_k_mask(scores, 2)
    assert mask.tolist() == [
        [False, True, True, False, False],
        [True, True, False, False, False],
    ]


def test_all_equal_row_takes_first_k():
    mask = top_k_mask(torch.full((3, 10), 7.0), 4)
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_k_zero_selects_nothing():
    assert not top_k_mask(torch.randn(2, 5), 0).any()


@pytest.mark.parametrize("k", [5, 6, 100])
def test_k_at_least_d_selects_everything(k):
    assert top_k_mask(torch.randn(2, 5), k).all()


def test_exactly_k_per_row_and_shape():
    scores = torch.randint(0, 3, (50, 20)).double()
    mask = top_k_mask(scores, 7)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == 7).all()


# --- the large-row algorithm (sample, bracket, candidates) --------------------------------

LARGE = S.LARGE_D + 68_879  # 200_951: above the threshold, not a multiple of 8


def reference_row(row: np.ndarray, k: int) -> np.ndarray:
    return reference_mask(row[None, :], k)[0]


def tied_scores(d: int, dtype: torch.dtype, levels: int = 300, seed: int = 0) -> torch.Tensor:
    """Scores with about d / levels copies of every value: heavy ties at any threshold."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (1, d), generator=gen).to(dtype) / 7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 1000, LARGE // 5, LARGE // 2, LARGE - 2, LARGE - 1])
def test_large_rows_match_lexsort_with_ties(dtype, k):
    scores = tied_scores(LARGE, dtype)
    got = top_k_mask(scores, k)
    np.testing.assert_array_equal(got.numpy(), reference_mask(scores.numpy(), k))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_rows_match_small_path_on_gaussian(dtype):
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(3, LARGE, generator=gen, dtype=dtype).abs()
    scores[1] = scores[1].round(decimals=3)  # ties near every threshold
    for k in (3, LARGE // 5, LARGE - 3):
        assert torch.equal(top_k_mask(scores, k), S._top_k_mask_small(scores, k))


@pytest.mark.parametrize(
    "make",
    [
        lambda d: torch.full((1, d), 2.5),  # all equal: the first k
        lambda d: torch.zeros(1, d).index_fill_(1, torch.tensor([d // 3]), 9.0),  # a spike
        lambda d: -torch.arange(d, dtype=torch.float32).view(1, d) % 3,  # three values
        lambda d: torch.arange(d, 0, -1, dtype=torch.float32).view(1, d),  # sorted, distinct
    ],
    ids=["all_equal", "spike", "three_values", "descending"],
)
@pytest.mark.parametrize("k", [1, 777, LARGE // 3, LARGE - 1])
def test_large_rows_adversarial(make, k):
    scores = make(LARGE)
    np.testing.assert_array_equal(top_k_mask(scores, k).numpy(), reference_mask(scores.numpy(), k))


def test_large_row_negative_scores_and_float16():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(1, LARGE, generator=gen).to(torch.float16)  # negative too, many ties
    for k in (5, LARGE // 4):
        expected = reference_mask(scores.float().numpy(), k)
        np.testing.assert_array_equal(top_k_mask(scores, k).numpy(), expected)


@pytest.mark.parametrize("where", ["below_lo", "above_hi"])
def test_bracket_miss_falls_back_to_the_exact_path(where, monkeypatch):
    """Scores planted at the sampled positions push the bracket away from the k-th value."""
    d, k, m = 50_000, 10_000, 256
    positions = S._sample_positions(d, m, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    row = torch.rand(d, generator=gen, dtype=torch.float64) + 1.0  # in [1, 2)
    # below_lo: the sample sees only huge values, so the bracket sits above the k-th value;
    # above_hi: the sample sees only zeros, so the bracket sits below it.
    row[positions] = 100.0 if where == "below_lo" else 0.0
    calls = []
    small = S._top_k_mask_small
    monkeypatch.setattr(S, "_top_k_mask_small", lambda s, kk: calls.append(1) or small(s, kk))
    got = S._top_k_row_large(row, k, sample_size=m)
    assert calls == [1]
    np.testing.assert_array_equal(got.numpy(), reference_row(row.numpy(), k))


@pytest.mark.parametrize("sample_size", [1, 7, 64, 5000])
def test_any_sample_size_gives_the_exact_mask(sample_size):
    scores = tied_scores(20_011, torch.float64, levels=50, seed=4)[0]
    for k in (1, 3_000, 10_005, 20_010):
        got = S._top_k_row_large(scores, k, sample_size=sample_size)
        np.testing.assert_array_equal(got.numpy(), reference_row(scores.numpy(), k))


def test_large_batched_rows_are_independent():
    scores = torch.cat([tied_scores(LARGE, torch.float32, seed=s) for s in range(3)])
    scores[2] = 1.0
    batched = top_k_mask(scores, 12_345)
    for i in range(3):
        assert torch.equal(batched[i : i + 1], top_k_mask(scores[i : i + 1], 12_345))
    assert (batched.sum(dim=1) == 12_345).all()


def test_large_k_edges_and_determinism():
    scores = tied_scores(LARGE, torch.float32)
    assert not top_k_mask(scores, 0).any()
    assert top_k_mask(scores, LARGE).all() and top_k_mask(scores, LARGE + 5).all()
    assert torch.equal(top_k_mask(scores, 4321), top_k_mask(scores.clone(), 4321))


def test_large_row_with_nan_does_not_raise():
    """NaN is unsupported (the mask is unspecified) but must not crash a run."""
    scores = tied_scores(LARGE, torch.float32)
    scores[0, ::1000] = float("nan")
    assert top_k_mask(scores, 100).shape == scores.shape


@pytest.mark.parametrize("offset", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("n", [0, 9, 40_000, 100_003])
def test_count_true_and_nonzero_1d_on_unaligned_slices(offset, n):
    gen = torch.Generator().manual_seed(n + offset)
    base = torch.rand(offset + n, generator=gen) < 0.03
    mask = base[offset:]
    assert S.count_true(mask) == int(mask.sum())
    assert torch.equal(S.nonzero_1d(mask), mask.nonzero().view(-1))
    full = torch.ones(offset + n, dtype=torch.bool)[offset:]
    assert S.count_true(full) == n
    assert torch.equal(S.nonzero_1d(full), torch.arange(n))


def test_typical_large_rows_do_not_need_the_fallback(monkeypatch):
    calls = []
    small = S._top_k_mask_small
    monkeypatch.setattr(S, "_top_k_mask_small", lambda s, kk: calls.append(1) or small(s, kk))
    gen = torch.Generator().manual_seed(5)
    for scores in (tied_scores(LARGE, torch.float32), torch.randn(1, LARGE, generator=gen).abs()):
        for k in (1, 50, LARGE // 5, LARGE // 2, LARGE - 1):
            top_k_mask(scores, k)
    assert calls == []
