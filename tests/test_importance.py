"""The importance solver and the MD family (spec sections 12-16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compress_bench.compressors import RoundContext, build_compressor
from compress_bench.compressors.importance import ImportanceSolver
from compress_bench.compressors.md import successive_sampling_mask, weighted_values
from compress_bench.compressors.selection import top_k_mask
from compress_bench.errors import ConfigError
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.rng import Streams

X6 = torch.tensor([[0.5, -2.0, 0.0, 3.0, -1.0, 2.0]], dtype=torch.float64)
W6 = torch.tensor([[0.1, 0.3, 0.05, 0.2, 0.25, 0.1]], dtype=torch.float64)

# --- section 12: the solver on the separable quadratic --------------------------------------


def spec12():
    problem = SeparableQuadratic(
        torch.tensor([1.0, 2.0], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    )
    x = torch.tensor([1.0, 1.0], dtype=torch.float64)
    G = problem.grad(x.unsqueeze(0))
    return problem, x, G


def phi(problem, x, G, w, eta=0.5):
    return float(problem.loss_and_grad(x - eta * w * G)[0][0])


def test_spec_12_one_step():
    problem, x, G = spec12()
    np.testing.assert_allclose(G.numpy(), [[1.0, 2.0]])
    solver = ImportanceSolver(steps=1)
    z = solver.solve(None, x, G, 0.5, problem)
    np.testing.assert_allclose(
        torch.softmax(z, 1).numpy(), [[0.3486451353, 0.6513548647]], atol=1e-9
    )
    assert phi(problem, x, G, torch.full((1, 2), 0.5, dtype=torch.float64)) == pytest.approx(
        0.53125, abs=1e-12
    )


def test_spec_12_reaches_the_exact_minimiser():
    problem, x, G = spec12()
    z = ImportanceSolver(steps=1000).solve(None, x, G, 0.5, problem)
    w = torch.softmax(z, 1)
    np.testing.assert_allclose(w.numpy(), [[2 / 9, 7 / 9]], atol=1e-9)
    assert phi(problem, x, G, w) == pytest.approx(4 / 9, abs=1e-12)


def test_spec_12_mirror_descent_bound_and_simplex():
    """min_t phi(w_t) - phi* <= log(d)/(gamma K) + gamma G_inf^2 / 2 (spec 12 property)."""
    gen = torch.Generator().manual_seed(3)
    d = 8
    problem = SeparableQuadratic(
        torch.rand(d, generator=gen, dtype=torch.float64) + 0.5,
        torch.randn(1, d, generator=gen, dtype=torch.float64),
    )
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    G = problem.grad(x.unsqueeze(0))
    solver = ImportanceSolver(steps=1, lr=0.3)
    z = solver.initial_log_weights(G)
    values, g_inf = [], 0.0
    for _ in range(200):
        w = torch.softmax(z, 1)
        trial = x - 0.4 * w * G
        g_inf = max(g_inf, float((0.4 * G * problem.grad(trial)).abs().max()))
        values.append(phi(problem, x, G, w, eta=0.4))
        z = solver.step(z, x, G, 0.4, problem)
        w = torch.softmax(z, 1)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12) and bool((w > 0).all())
    best = ImportanceSolver(steps=20000, lr=0.3).solve(None, x, G, 0.4, problem)
    phi_star = phi(problem, x, G, torch.softmax(best, 1), eta=0.4)
    assert min(values) - phi_star <= math.log(d) / (0.3 * 200) + 0.3 * g_inf**2 / 2


def test_batched_solver_equals_per_worker_solves():
    gen = torch.Generator().manual_seed(5)
    centers = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    curvature = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    x = torch.randn(6, generator=gen, dtype=torch.float64)
    problem = SeparableQuadratic(curvature, centers)
    G = problem.grad(x.expand(4, -1))
    for variant in ("spec", "thesis_code"):
        solver = ImportanceSolver(steps=30, entropy=0.1, variant=variant)
        batched = solver.solve(None, x, G, 0.3, problem)
        for i in range(4):
            single = SeparableQuadratic(curvature, centers[i : i + 1])
            alone = solver.solve(None, x, G[i : i + 1], 0.3, single)
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=0, atol=1e-14)


def test_thesis_code_variant_uses_w_over_max_w_and_log_entropy():
    """One step by hand: trial x - eta (w / max w) g; z -= gamma(-eta g grad f + alpha(log w+1))."""
    problem, x, G = spec12()
    w0 = torch.tensor([[0.2, 0.8]], dtype=torch.float64)
    z0 = torch.log(w0)
    solver = ImportanceSolver(steps=1, entropy=0.1, variant="thesis_code")
    z1 = solver.step(z0, x, G, 0.5, problem)
    trial = x - 0.5 * (w0 / 0.8) * G
    grad_phi = -0.5 * G * problem.grad(trial) + 0.1 * torch.log(w0)
    expected = torch.softmax(z0 - grad_phi, 1)
    torch.testing.assert_close(torch.softmax(z1, 1), expected, rtol=0, atol=1e-14)


def test_warm_start_keeps_state_and_cold_start_does_not():
    problem, x, G = spec12()
    warm = ImportanceSolver(steps=5)
    cold = ImportanceSolver(steps=5, warm_start=False)
    z = warm.solve(None, x, G, 0.5, problem)
    assert not torch.equal(warm.solve(z, x, G, 0.5, problem), z)
    torch.testing.assert_close(
        cold.solve(z, x, G, 0.5, problem), cold.solve(None, x, G, 0.5, problem)
    )
    abs_init = ImportanceSolver(steps=0, init="abs_grad").solve(None, x, G, 0.5, problem)
    np.testing.assert_allclose(torch.softmax(abs_init, 1).numpy(), [[1 / 3, 2 / 3]])


@pytest.mark.parametrize(
    "bad", [{"steps": -1}, {"lr": 0}, {"variant": "x"}, {"init": "x"}, {"entropy": -1.0}]
)
def test_solver_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        ImportanceSolver(**bad)


# --- sections 13-16: the operators for a given w -------------------------------------------


def test_spec_13_successive_sampling_frequencies():
    n = 200_000
    w = W6.expand(n, -1)
    u = torch.rand(n, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    freq = successive_sampling_mask(w, 2, u).double().mean(0)
    pi = torch.tensor(
        [0.2175647452, 0.5574561404, 0.1117063492, 0.4073517126, 0.4883563074, 0.2175647452],
        dtype=torch.float64,
    )
    assert torch.all((freq - pi).abs() <= 4 * torch.sqrt(pi * (1 - pi) / n))
    w3 = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64).expand(n, -1)
    u3 = torch.rand(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    freq3 = successive_sampling_mask(w3, 2, u3).double().mean(0)
    pi3 = torch.tensor([0.8392857143, 0.675, 0.4857142857], dtype=torch.float64)
    assert torch.all((freq3 - pi3).abs() <= 4 * torch.sqrt(pi3 * (1 - pi3) / n))


def test_spec_13_zero_weights_are_taken_last_and_uniformly():
    n = 20_000
    w = torch.tensor([[0.7, 0.3, 0.0, 0.0, 0.0]], dtype=torch.float64).expand(n, -1)
    u = torch.rand(n, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kept = successive_sampling_mask(w, 3, u)
    assert kept[:, :2].all()  # both positive weights always
    fill = kept[:, 2:].double().mean(0)  # the third pick uniform over the zero-weight ones
    assert torch.all((fill - 1 / 3).abs() < 4 * math.sqrt(2 / 9 / n))


def test_spec_13_example_given_the_draw():
    # S = {3, 1} drawn: unscaled output and the dk variant
    kept = torch.zeros(1, 6, dtype=torch.bool)
    kept[0, [1, 3]] = True
    out = torch.where(kept, X6, 0.0)
    np.testing.assert_allclose(out.numpy(), [[0, -2, 0, 3, 0, 0]])
    np.testing.assert_allclose((3 * out).numpy(), [[0, -6, 0, 9, 0, 0]])


def test_spec_14_16_examples():
    kept = top_k_mask(W6, 2)
    assert kept.nonzero()[:, 1].tolist() == [1, 4]  # MD Greedy: S = {1, 4}
    np.testing.assert_allclose(torch.where(kept, X6, 0.0).numpy(), [[0, -2, 0, 0, -1, 0]])
    # MD Greedy Weighted, ratio * d = 2 (ratio 1/3, d = 6, k = 2)
    code = weighted_values(X6, W6, kept, 2, 1 / 3, "code")
    np.testing.assert_allclose(
        torch.where(kept, code, 0.0).numpy(),
        [[0, -2.1818181818, 0, 0, -0.9090909091, 0]],
        atol=1e-9,
    )
    slides = weighted_values(X6, W6, kept, 2, 1 / 3, "slides")
    np.testing.assert_allclose(
        torch.where(kept, slides, 0.0).numpy(), [[0, -1.8, 0, 0, -0.75, 0]], atol=1e-12
    )
    # MD Weighted Greedy: |w x| = [0.05, 0.6, 0, 0.6, 0.25, 0.2] -> S = {1, 3}
    kept = top_k_mask((W6 * X6).abs(), 2)
    assert kept.nonzero()[:, 1].tolist() == [1, 3]
    np.testing.assert_allclose(
        torch.where(kept, weighted_values(X6, W6, kept, 2, 1 / 3, "code"), 0.0).numpy(),
        [[0, -2.4, 0, 2.4, 0, 0]],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        torch.where(kept, weighted_values(X6, W6, kept, 2, 1 / 3, "slides"), 0.0).numpy(),
        [[0, -1.8, 0, 1.8, 0, 0]],
        atol=1e-12,
    )


def test_integer_k_weighting_sums_the_kept_weights_to_k_not_ratio_d():
    """weights=integer_k (spec 12 thesis_resnet): where ratio d is an integer it is the code's
    weighting; at ratio 0.4, d = 6 (ratio d = 2.4, k = 2) the factors sum to 2
    (the code's to 2.4)."""
    kept = top_k_mask(W6, 2)
    np.testing.assert_array_equal(
        weighted_values(X6, W6, kept, 2, 1 / 3, "integer_k").numpy(),
        weighted_values(X6, W6, kept, 2, 1 / 3, "code").numpy(),
    )
    ones = torch.ones_like(X6)
    code = torch.where(kept, weighted_values(ones, W6, kept, 2, 0.4, "code"), 0.0)
    integer = torch.where(kept, weighted_values(ones, W6, kept, 2, 0.4, "integer_k"), 0.0)
    assert code.sum().item() == pytest.approx(2.4, rel=1e-12)
    assert integer.sum().item() == pytest.approx(2.0, rel=1e-12)
    np.testing.assert_allclose(integer.numpy(), code.numpy() * (2 / 2.4), rtol=1e-12)


def test_an_unknown_weighting_is_refused():
    with pytest.raises(ConfigError, match="'code', 'integer_k' or 'slides', got 'k'"):
        build_compressor({"name": "md_weighted_greedy", "weights": "k"}, ratio=0.2)


def md_message(name, G, problem, x, ratio=0.2, **options):
    comp = build_compressor({"name": name, **options}, ratio=ratio)
    state = comp.init_state(*G.shape, G.device, G.dtype)
    ctx = RoundContext(0, x, 0.3, problem)
    message, state = comp.compress(G, state, Streams(0, G.shape[0]), ctx)
    return comp, message, torch.softmax(state["log_weights"], 1)


@pytest.fixture
def quad():
    gen = torch.Generator().manual_seed(11)
    d = 40
    problem = SeparableQuadratic(
        torch.rand(d, generator=gen, dtype=torch.float64) + 0.5,
        torch.randn(3, d, generator=gen, dtype=torch.float64),
    )
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    return problem, x, problem.grad(x.expand(3, -1))


def test_operators_follow_their_definitions_given_the_solved_w(quad):
    problem, x, G = quad
    k, d = 8, 40
    _, m, w = md_message("md_greedy", G, problem, x)
    kept = m.values != 0
    assert (kept.sum(1) == k).all()
    for i in range(3):  # min over S of w >= max outside S (spec 14 property)
        assert w[i][kept[i]].min() >= w[i][~kept[i]].max()
    torch.testing.assert_close(m.values, torch.where(kept, G, 0.0))
    _, m, w = md_message("md_weighted_greedy", G, problem, x)
    kept = m.values != 0
    score = (w * G).abs()
    for i in range(3):
        assert score[i][kept[i]].min() >= score[i][~kept[i]].max()
    ratio_on_s = (m.values / G)[kept].view(3, k)
    torch.testing.assert_close(ratio_on_s.sum(1), torch.full((3,), 0.2 * d, dtype=torch.float64))
    _, m, w = md_message("md_greedy_weighted", G, problem, x, weights="slides")
    kept = m.values != 0
    torch.testing.assert_close(m.values[kept], ((d / k) * w * G)[kept])
    assert m.bits.tolist() == [k * (32 + 6)] * 3


def test_uniform_w_weighted_greedy_is_scaled_top_k():
    """Spec 16 property: with w = 1/d the default equals (ratio d / k) T(x)."""
    d, k = 6, 2
    uniform = torch.full((1, d), 1 / d, dtype=torch.float64)
    kept = top_k_mask((uniform * X6).abs(), k)
    assert torch.equal(kept, top_k_mask(X6.abs(), k))
    out = torch.where(kept, weighted_values(X6, uniform, kept, k, 1 / 3, "code"), 0.0)
    np.testing.assert_allclose(out.numpy(), [[0, -2, 0, 3, 0, 0]])
    slides = torch.where(kept, weighted_values(X6, uniform, kept, k, 1 / 3, "slides"), 0.0)
    np.testing.assert_allclose(slides.numpy(), [[0, -1, 0, 1.5, 0, 0]])  # (1/k) T(x)


def test_md_stochastic_is_seeded_and_uses_its_rng(quad):
    problem, x, G = quad
    flat = {"steps": 0}  # uniform w: the draw alone decides the support
    a = md_message("md_stochastic", G, problem, x, importance=flat)[1].values
    b = md_message("md_stochastic", G, problem, x, importance=flat)[1].values
    assert torch.equal(a, b)
    comp = build_compressor({"name": "md_stochastic", "importance": flat}, ratio=0.2)
    state = comp.init_state(3, 40, G.device, G.dtype)
    other = comp.compress(G, state, Streams(1, 3), RoundContext(0, x, 0.3, problem))[0]
    assert not torch.equal(a, other.values)


def test_md_operators_need_the_objective():
    comp = build_compressor({"name": "md_greedy"}, ratio=0.5)
    with pytest.raises(ValueError, match="needs the round's objective"):
        comp.compress(
            X6, comp.init_state(1, 6, "cpu", torch.float64), Streams(0, 1), RoundContext()
        )
