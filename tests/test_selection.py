"""top_k_mask against the spec's tie rule (section 0.4), written with NumPy's lexsort."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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
