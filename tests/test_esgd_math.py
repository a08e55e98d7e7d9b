"""eSGD (spec 19) and its sync-free selection helpers: the pure batched math of esgd_math."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compress_bench.compressors.esgd_math import (
    esgd_bits,
    esgd_init,
    esgd_step,
    ordered_top_k,
    successive_sampler,
    successive_sampling,
    top_k_mask_sync_free,
)
from compress_bench.compressors.md import successive_sampling_mask
from compress_bench.compressors.selection import top_k_mask
from compress_bench.rng import Streams
from compress_bench.testing import OpCounter

F64 = torch.float64


def fixed_sampler(*rows):
    """A sampler that returns the given sets (one per worker) and checks the requested k."""

    def sample(weights, k):
        n, d = weights.shape
        mask = torch.zeros(n, d, dtype=torch.bool)
        for i, row in enumerate(rows):
            mask[i, list(row)] = True
        assert (mask.sum(1) == k).all()
        return mask

    return sample


# ---------------------------------------------------------------------------- selection helpers


def lexsort_order(scores: np.ndarray, largest: bool) -> np.ndarray:
    """Spec 0.4 literally, per row: by score (descending or ascending), smaller index first."""
    d = scores.shape[1]
    sign = -1.0 if largest else 1.0
    return np.stack([np.lexsort((np.arange(d), sign * row)) for row in scores])


@st.composite
def scores_and_k(draw):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 10))
    elements = draw(
        st.sampled_from(
            [st.integers(-2, 2).map(float), st.floats(-1e6, 1e6, allow_nan=False, width=32)]
        )
    )
    scores = draw(arrays(np.float64, (n, d), elements=elements))
    return scores, draw(st.integers(0, d + 2))


@settings(max_examples=200, deadline=None)
@given(scores_and_k())
def test_sync_free_top_k_and_ordered_top_k_match_lexsort(case):
    scores, k = case
    t = torch.from_numpy(scores)
    k_eff = min(k, scores.shape[1])
    for largest in (True, False):
        reference = lexsort_order(scores, largest)[:, :k_eff]
        np.testing.assert_array_equal(ordered_top_k(t, k, largest=largest).numpy(), reference)
    mask = top_k_mask_sync_free(t, k)
    assert torch.equal(mask, top_k_mask(t, k))  # the existing (host-syncing) implementation
    expected = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(expected, lexsort_order(scores, True)[:, :k_eff], True, axis=1)
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_ordered_top_k_with_infinities_and_leading_dims():
    s = torch.tensor([[[1.0, float("inf"), 1.0, -float("inf"), 2.0]]])
    assert ordered_top_k(s, 3).tolist() == [[[1, 4, 0]]]
    assert ordered_top_k(s, 3, largest=False).tolist() == [[[3, 0, 2]]]
    assert ordered_top_k(s, 0).shape == (1, 1, 0)


def test_successive_sampling_equals_md_sampler_for_the_same_uniforms():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, F64):
        w = torch.rand(5, 40, generator=g, dtype=dtype)
        w[0, :35] = 0  # fewer positive weights than k: fill-up rule
        w[1] = 0
        u = torch.rand(5, 40, generator=g, dtype=dtype)
        for k in (0, 1, 7, 40, 50):
            assert torch.equal(successive_sampling(w, k, u), successive_sampling_mask(w, k, u))


def test_successive_sampling_inclusion_frequencies_spec13():
    """Spec 13's small closed form: w = (0.5, 0.3, 0.2), k = 2 -> pi = (0.839, 0.675, 0.486)."""
    N = 40_000
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=F64).expand(N, 3)
    freq = successive_sampling(w, 2, torch.rand(N, 3, generator=g, dtype=F64)).double().mean(0)
    pi = torch.tensor([0.8392857143, 0.675, 0.4857142857], dtype=F64)
    assert ((freq - pi).abs() <= 4 * (pi * (1 - pi) / N).sqrt()).all()


def test_successive_sampler_draws_row_i_from_worker_i():
    w = torch.rand(3, 30, generator=torch.Generator().manual_seed(2), dtype=F64) + 0.1
    together = successive_sampler(Streams(7, 3))(w, 5)
    for i in range(3):
        alone = successive_sampler(Streams(7, workers=[i]))(w[i : i + 1], 5)
        assert torch.equal(together[i], alone[0])
    gens = [torch.Generator().manual_seed(s) for s in (4, 5, 6)]
    together = successive_sampler(gens)(w, 5)
    for i, s in enumerate((4, 5, 6)):
        alone = successive_sampler([torch.Generator().manual_seed(s)])(w[i : i + 1], 5)
        assert torch.equal(together[i], alone[0])
        assert together[i].sum() == 5
    with pytest.raises(ValueError, match="generators"):
        successive_sampler(gens[:2])(w, 5)


# ---------------------------------------------------------------------------- eSGD


def unused_sample(weights, k):
    """For rounds where every worker's loss decreased: the branch-free step still calls the
    sampler, but must not use its set; this one (the last k indices) would change the outcome."""
    mask = torch.zeros_like(weights, dtype=torch.bool)
    mask[:, weights.shape[1] - k :] = True
    return mask


def test_esgd_spec_worked_example():
    state = esgd_init(1, 4)
    g0 = torch.tensor([[0.1, -0.5, 0.05, 0.2]], dtype=F64)
    out = esgd_step(state, g0, torch.tensor([1.0], dtype=F64), 2, fixed_sampler({0, 2}))
    assert out.base.tolist() == [[True, False, True, False]]
    assert out.mask.tolist() == [[False, True, True, False]]
    assert torch.equal(out.message, torch.tensor([[0.0, -0.5, 0.05, 0.0]], dtype=F64))
    assert torch.equal(out.state.residual, torch.tensor([[0.1, 0.0, 0.0, 0.2]], dtype=F64))
    assert torch.equal(out.state.importance, torch.ones(1, 4, dtype=F64))
    assert out.state.round == 1 and out.state.prev_loss.tolist() == [1.0]

    g1 = torch.tensor([[0.3, -0.1, 0.0, 0.1]], dtype=F64)
    out = esgd_step(out.state, g1, torch.tensor([0.8], dtype=F64), 2, unused_sample)
    tol = dict(rtol=0, atol=1e-12)
    torch.testing.assert_close(
        out.state.importance, torch.tensor([[1.0, 1.2, 1.2, 1.0]], dtype=F64), **tol
    )
    assert out.base.tolist() == [[False, True, True, False]]
    assert out.mask.tolist() == [[True, False, False, True]]
    torch.testing.assert_close(out.message, torch.tensor([[0.39, 0, 0, 0.28]], dtype=F64), **tol)
    torch.testing.assert_close(
        out.state.residual, torch.tensor([[0.0, -0.1, 0.0, 0.0]], dtype=F64), **tol
    )
    assert esgd_bits(4, 2) == 68


def test_esgd_threshold_credit_and_damping_switches():
    state = esgd_init(1, 4)
    g0 = torch.tensor([[0.1, -0.5, 0.05, 0.2]], dtype=F64)
    out = esgd_step(state, g0, torch.tensor([1.0], dtype=F64), 2, fixed_sampler({0, 2}))
    g1 = torch.tensor([[0.3, -0.1, 0.0, 0.1]], dtype=F64)
    loss1 = torch.tensor([0.8], dtype=F64)
    tol = dict(rtol=0, atol=1e-12)
    # multiplicative credit: H_j * (1 + 0.2) on S_prev = {1, 2}
    mult = esgd_step(out.state, g1, loss1, 2, unused_sample, credit="multiplicative")
    torch.testing.assert_close(
        mult.state.importance, torch.tensor([[1.0, 1.2, 1.2, 1.0]], dtype=F64), **tol
    )
    # threshold mean|v| = (0.39 + 0.1 + 0 + 0.28) / 4 = 0.1925: U = [0, 3] still
    res = esgd_step(out.state, g1, loss1, 2, unused_sample, threshold="mean_abs_residual")
    assert res.mask.tolist() == [[True, False, False, True]]
    # damping: v = 0.9 r + 0.1 g = [0.12, -0.01, 0, 0.19]; tau = 0.125 -> U = [3]; S_0 = {1, 2}
    # loses its smallest (H, j) = index 1 -> S = {2, 3}
    damp = esgd_step(out.state, g1, loss1, 2, unused_sample, momentum_damping=True)
    assert damp.mask.tolist() == [[False, False, True, True]]
    torch.testing.assert_close(damp.message, torch.tensor([[0, 0, 0, 0.19]], dtype=F64), **tol)
    torch.testing.assert_close(
        damp.state.residual, torch.tensor([[0.12, -0.01, 0, 0]], dtype=F64), **tol
    )
    with pytest.raises(ValueError, match="threshold"):
        esgd_step(out.state, g1, loss1, 2, unused_sample, threshold="median")
    with pytest.raises(ValueError, match="credit"):
        esgd_step(out.state, g1, loss1, 2, unused_sample, credit="none")
    with pytest.raises(ValueError, match="k must"):
        esgd_step(out.state, g1, loss1, -1, unused_sample)


def test_esgd_loss_not_decreased_uses_the_sample():
    state = esgd_init(2, 5)._replace(
        importance=torch.tensor([[5.0, 4, 3, 2, 1], [5.0, 4, 3, 2, 1]], dtype=F64), round=3
    )
    state = state._replace(prev_loss=torch.tensor([1.0, 1.0], dtype=F64))
    g = torch.zeros(2, 5, dtype=F64)  # no swaps: S = S_0
    loss = torch.tensor([1.0, 0.5], dtype=F64)  # worker 0 equal (not decreased), 1 decreased
    out = esgd_step(state, g, loss, 2, fixed_sampler({3, 4}, {3, 4}))
    assert out.base.tolist() == [
        [False, False, False, True, True],
        [True, True, False, False, False],
    ]
    assert torch.equal(out.mask, out.base) and torch.equal(out.message, g)


def _reference_step(state, g, loss, k, sampled, beta, threshold, credit, damping):
    """Spec 19 literally for one worker with Python sets (state: dict of numpy / floats)."""
    d = len(g)
    H = state["H"].copy()
    k_eff = min(k, d)
    dec = state["t"] > 0 and loss < state["loss"]
    if dec:
        for j in state["S"]:
            H[j] = (
                H[j] + (state["loss"] - loss)
                if credit == "additive"
                else H[j] * (1 + (state["loss"] - loss))
            )
        base = set(np.lexsort((np.arange(d), -H))[:k_eff].tolist())
    else:
        base = set(sampled)
    v = beta * state["r"] + ((1 - beta) * g if damping else g)
    tau = np.mean(np.abs(g if threshold == "mean_abs_grad" else v))
    U = [j for j in np.lexsort((np.arange(d), -np.abs(v))) if j not in base and abs(v[j]) > tau]
    m = min(len(U), k_eff)
    leaving = sorted(base, key=lambda j: (H[j], j))[:m]
    S = (base - set(leaving)) | set(U[:m])
    message = np.where([j in S for j in range(d)], v, 0.0)
    r = np.where([j in S for j in range(d)], 0.0, v)
    return message, {"H": H, "r": r, "S": S, "loss": loss, "t": state["t"] + 1}


@pytest.mark.parametrize(
    "threshold,credit,damping",
    [
        ("mean_abs_grad", "additive", False),
        ("mean_abs_residual", "multiplicative", True),
        ("mean_abs_grad", "multiplicative", False),
    ],
)
def test_esgd_matches_literal_reference_and_per_worker_calls(threshold, credit, damping):
    """30 rounds, 3 workers, d = 7, k = 3, values on a coarse grid (many ties): the batched
    step equals the literal per-worker reference (sets, sorted) and one call per worker."""
    n, d, k, beta = 3, 7, 3, 0.5
    rng = np.random.default_rng(0)
    state = esgd_init(n, d)
    singles = [esgd_init(1, d) for _ in range(n)]
    refs = [
        {"H": np.ones(d), "r": np.zeros(d), "S": set(), "loss": np.inf, "t": 0} for _ in range(n)
    ]
    for _ in range(30):
        g = torch.from_numpy(rng.integers(-3, 4, size=(n, d)) / 4.0)
        loss = torch.from_numpy(rng.integers(0, 4, size=n) / 2.0)
        sampled = [rng.choice(d, size=k, replace=False).tolist() for _ in range(n)]
        kw = dict(beta=beta, threshold=threshold, credit=credit, momentum_damping=damping)
        out = esgd_step(state, g, loss, k, fixed_sampler(*sampled), **kw)
        for i in range(n):
            one = esgd_step(
                singles[i], g[i : i + 1], loss[i : i + 1], k, fixed_sampler(sampled[i]), **kw
            )
            assert torch.equal(one.message[0], out.message[i])
            assert torch.equal(one.state.importance[0], out.state.importance[i])
            singles[i] = one.state
            message, refs[i] = _reference_step(
                refs[i],
                g[i].numpy(),
                float(loss[i]),
                k,
                sampled[i],
                beta,
                threshold,
                credit,
                damping,
            )
            np.testing.assert_allclose(out.message[i].numpy(), message, rtol=0, atol=1e-12)
            np.testing.assert_allclose(out.state.residual[i].numpy(), refs[i]["r"], atol=1e-12)
            np.testing.assert_allclose(out.state.importance[i].numpy(), refs[i]["H"], atol=1e-12)
            assert set(out.mask[i].nonzero().view(-1).tolist()) == refs[i]["S"]
        assert (out.mask.sum(1) == k).all()
        state = out.state


def test_esgd_conservation_with_beta_one():
    n, d, k = 4, 50, 5
    gen = torch.Generator().manual_seed(3)
    state = esgd_init(n, d)
    sampler = successive_sampler(Streams(11, n))
    sent = torch.zeros(n, d, dtype=F64)
    total = torch.zeros(n, d, dtype=F64)
    for _ in range(100):
        g = torch.randn(n, d, generator=gen, dtype=F64)
        loss = torch.rand(n, generator=gen, dtype=F64)
        out = esgd_step(state, g, loss, k, sampler, beta=1.0)
        assert (out.mask.sum(1) == k).all()
        assert torch.equal(out.message != 0, out.mask)
        sent += out.message
        total += g
        state = out.state
    torch.testing.assert_close(sent + state.residual, total, rtol=0, atol=1e-12)


def test_esgd_k_zero_and_k_at_least_d():
    g = torch.randn(2, 6, generator=torch.Generator().manual_seed(4), dtype=F64)
    loss = torch.ones(2, dtype=F64)
    sampler = successive_sampler(Streams(1, 2))
    out = esgd_step(esgd_init(2, 6), g, loss, 0, sampler)
    assert not out.mask.any() and torch.equal(out.message, torch.zeros_like(g))
    assert torch.equal(out.state.residual, g)
    for k in (6, 9):
        out = esgd_step(esgd_init(2, 6), g, loss, k, sampler)
        assert out.mask.all() and torch.equal(out.message, g)
        assert torch.equal(out.state.residual, torch.zeros_like(g))


def test_esgd_bits():
    assert esgd_bits(4, 2) == 2 * (32 + 2)
    assert esgd_bits(1000, 10) == 10 * (32 + 10)
    assert esgd_bits(1024, 10) == 10 * (32 + 10)
    assert esgd_bits(1025, 10) == 10 * (32 + 11)
    assert esgd_bits(6, 6) == esgd_bits(6, 9) == 32 * 6  # dense
    assert esgd_bits(6, 0) == 0
    with pytest.raises(ValueError):
        esgd_bits(6, -1)


# ---------------------------------------------------------------------------- no host syncs


def test_op_counter_sees_a_host_sync():
    """Positive control: the counter does see a value read back to the host."""
    with OpCounter() as counter:
        torch.ones(3).sum().item()
        bool(torch.ones(1) > 0)
    assert counter.ops["_local_scalar_dense"] == 2


def test_no_host_sync():
    n, d, k = 3, 20, 4
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(n, d, generator=gen, dtype=F64)
    state = esgd_init(n, d)
    state = esgd_step(
        state, g, torch.ones(n, dtype=F64), k, successive_sampler(Streams(0, n))
    ).state
    loss = torch.tensor([0.5, 1.0, 2.0], dtype=F64)  # mixed: decreased, equal, increased
    gens = [torch.Generator().manual_seed(s) for s in range(n)]
    scores = torch.randint(0, 3, (n, d), generator=gen).to(F64)
    calls = {
        "top_k_mask_sync_free": lambda: top_k_mask_sync_free(scores, k),
        "ordered_top_k": lambda: ordered_top_k(scores, k, largest=False),
        "successive_sampling": lambda: successive_sampling(scores + 1, k, torch.rand(n, d)),
        "sampler_streams": lambda: successive_sampler(Streams(0, n))(scores + 1, k),
        "sampler_generators": lambda: successive_sampler(gens)(scores + 1, k),
        "esgd_step": lambda: esgd_step(state, g, loss, k, successive_sampler(gens)),
        "esgd_step_switches": lambda: esgd_step(
            state,
            g,
            loss,
            k,
            successive_sampler(gens),
            threshold="mean_abs_residual",
            credit="multiplicative",
            momentum_damping=True,
        ),
    }
    for name, fn in calls.items():
        with OpCounter() as counter:
            fn()
        assert counter.ops["_local_scalar_dense"] == 0, name
        assert sum(counter.ops.values()) > 0, name
