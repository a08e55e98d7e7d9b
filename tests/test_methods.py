"""EF14, EF21 and DIANA (spec 22-24) over any operator chain: worked examples, invariants,
the identity-is-GD property, theory steps and their errors, for every registered method."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.base import Compressor, Message
from compress_bench.compressors.chain import chain, error_feedback
from compress_bench.errors import ConfigError
from compress_bench.methods import DIANA, EF14, EF21, METHODS, evaluate
from compress_bench.rng import Streams
from tests.test_dcgd import CentersProblem, _logreg

SPEC_CENTERS = [[1.0, 0.0], [0.0, 2.0]]  # spec 20's setup: f_i = 1/2 ||x - c_i||^2, x^0 = 0


def operator(compressor="top_k", quantizer="none", ratio=0.5, **c):
    return chain(
        build_compressor({"name": compressor, **c}, ratio=ratio),
        build_quantizer({"name": quantizer}),
    )


def on(problem):
    """The shape a method runs on: ``problem``'s workers and dimension."""
    return {"n_workers": problem.n_workers, "d": problem.d}


def run(method, problem, rounds, seed=0):
    """(x^k for k = 0..rounds, the proposals) of ``rounds`` rounds on ``problem``."""
    x = problem.initial_point()
    streams = Streams(seed, problem.n_workers)
    state, xs, proposals = method.init_state(x), [x], []
    for k in range(rounds):
        proposal = method.step(x, evaluate(problem, x), state, streams, k)
        x, state = proposal.x, proposal.state
        xs.append(x)
        proposals.append(proposal)
    return xs, proposals


class FixedSupportRandK(Compressor):
    """RandK with k = 1, scaled by d, on the support the spec's DIANA example draws:
    coordinate ``supports[round]`` for every worker."""

    name: ClassVar[str] = "fixed_rand_k"
    unbiased: ClassVar[bool] = True

    def __init__(self, supports):
        self.supports = supports

    def compress(self, G, state, rng, ctx):
        n, d = G.shape
        kept = torch.zeros_like(G, dtype=torch.bool)
        kept[:, self.supports[ctx.round_index]] = True
        return Message.sparse(torch.where(kept, d * G, 0.0), kept), state

    def omega(self, d):
        return d - 1.0


def test_spec_22_ef14_example():
    problem = CentersProblem(SPEC_CENTERS)
    method = EF14(operator(), 0.5, **on(problem))
    xs, proposals = run(method, problem, 2)
    np.testing.assert_allclose(xs[1].numpy(), [0.25, 0.5], atol=1e-12)
    assert proposals[1].message.values.tolist() == [[-0.75, 0.0], [0.0, -1.5]]
    np.testing.assert_allclose(proposals[1].state["operator"][0].numpy(), [[0, 0.5], [0.25, 0]])
    np.testing.assert_allclose(xs[2].numpy(), [0.4375, 0.875], atol=1e-12)
    assert [p.bits.tolist() for p in proposals] == [[33, 33], [33, 33]]


def test_spec_23_ef21_example():
    problem = CentersProblem(SPEC_CENTERS)
    method = EF21(operator(), 0.5, **on(problem))
    xs, proposals = run(method, problem, 3)
    assert proposals[0].bits.tolist() == [64, 64]  # round 0: the dense gradient, 32 d bits
    np.testing.assert_allclose(xs[1].numpy(), [0.25, 0.5], atol=1e-12)
    assert proposals[1].message.values.tolist() == [[0.0, 0.5], [0.0, 0.5]]
    np.testing.assert_allclose(proposals[1].state["g_workers"].numpy(), [[-1, 0.5], [0, -1.5]])
    np.testing.assert_allclose(proposals[1].state["g"].numpy(), [-0.5, -0.5], atol=1e-12)
    np.testing.assert_allclose(xs[2].numpy(), [0.5, 0.75], atol=1e-12)
    assert proposals[2].message.values.tolist() == [[0.5, 0.0], [0.5, 0.0]]
    np.testing.assert_allclose(proposals[2].state["g"].numpy(), [0.0, -0.5], atol=1e-12)


def test_spec_24_diana_example():
    op = chain(FixedSupportRandK([0, 1]), build_quantizer({"name": "none"}))
    problem = CentersProblem(SPEC_CENTERS)
    method = DIANA(op, 0.5, **on(problem))
    assert method.alpha == 0.5  # 1/(omega + 1), omega = d/k - 1 = 1
    xs, proposals = run(method, problem, 2)
    assert proposals[0].message.values.tolist() == [[-2.0, 0.0], [0.0, 0.0]]
    np.testing.assert_allclose(xs[1].numpy(), [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(proposals[0].state["h_workers"].numpy(), [[-1, 0], [0, 0]])
    np.testing.assert_allclose(proposals[0].state["h"].numpy(), [-0.5, 0.0])
    assert proposals[1].message.values.tolist() == [[0.0, 0.0], [0.0, -4.0]]
    np.testing.assert_allclose(xs[2].numpy(), [0.75, 1.0], atol=1e-12)
    np.testing.assert_allclose(proposals[1].state["h_workers"][1].numpy(), [0.0, -2.0])
    np.testing.assert_allclose(proposals[1].state["h"].numpy(), [-0.5, -1.0])


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("n", [1, 4])
def test_identity_operator_is_gradient_descent(name, n):
    """Every method with the identity operator steps as plain distributed GD: exactly for
    dcgd and ef (the error stays 0), to rounding for ef21 and diana, whose server adds the
    mean of the differences to its running average (g + mean(grad_i - g_i) rounds
    differently from mean(grad_i))."""
    problem = _logreg(n)
    method = METHODS[name](operator("identity", ratio=1.0), 0.7, **on(problem))
    xs, proposals = run(method, problem, 25)
    y = problem.initial_point()
    for k in range(25):
        y = y - 0.7 * problem.loss_and_grad(y.expand(n, -1))[1].mean(0)
        if name in ("dcgd", "ef"):
            assert torch.equal(xs[k + 1], y)
        else:
            torch.testing.assert_close(xs[k + 1], y, rtol=1e-13, atol=1e-14)
        assert proposals[k].bits.tolist() == [32 * 6] * n


def test_ef14_virtual_iterate_with_a_quantizer():
    """x~^k = x^k - (eta/n) sum_i e_i^k follows GD on the true gradients at x^k, with the
    error of Q(C(.)), quantizer included (spec 22 property)."""
    problem, lr = _logreg(3), 0.4
    method = EF14(operator("top_k", "natural", ratio=0.34), lr, **on(problem))
    streams = Streams(1, 3)
    x = problem.initial_point()
    state = method.init_state(x)
    virtual = x.clone()
    for k in range(30):
        ev = evaluate(problem, x)
        proposal = method.step(x, ev, state, streams, k)
        virtual = virtual - lr * ev.grads.mean(0)
        x, state = proposal.x, proposal.state
        torch.testing.assert_close(
            x - lr * state["operator"][0].mean(0), virtual, atol=1e-12, rtol=0
        )


@pytest.mark.parametrize(
    ("method_cls", "op", "mean_key", "worker_key"),
    [
        (EF21, ("top_k", "power_of_two"), "g", "g_workers"),
        (DIANA, ("rand_k", "natural"), "h", "h_workers"),
    ],
)
def test_server_average_equals_the_workers_mean(method_cls, op, mean_key, worker_key):
    problem = _logreg(4)
    method = method_cls(operator(*op, ratio=0.34), 0.3, **on(problem))
    _, proposals = run(method, problem, 40, seed=2)
    for proposal in proposals:
        state = proposal.state
        torch.testing.assert_close(state[mean_key], state[worker_key].mean(0), atol=1e-12, rtol=0)


def test_error_feedback_wrapper_state_and_tags():
    op = error_feedback(operator("top_k", "sign"))
    state = op.init_state(3, 5, torch.device("cpu"), torch.float64)
    assert state[0].shape == (3, 5) and state[0].dtype == torch.float64
    G = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    message, new_state = op.compress(G, state, Streams(0, 3), None)
    torch.testing.assert_close(new_state[0], G - message.values)
    assert new_state[0].shape == state[0].shape and new_state[0].dtype == state[0].dtype
    assert op.tags.sign_only and not op.tags.unbiased and not op.tags.zero_to_zero


def test_chain_constants():
    d, k = 112, 22
    topk_q = operator("top_k", "power_of_two", ratio=0.2)
    assert topk_q.contraction(d) == pytest.approx(9 / 8 * d / k)  # alpha = 8k/(9d), spec 23
    assert topk_q.omega(d) is None and not topk_q.unbiased
    randk_nat = operator("rand_k", "natural", ratio=0.2)
    assert randk_nat.omega(d) == pytest.approx((d / k) * (9 / 8) - 1)
    assert randk_nat.unbiased and randk_nat.contraction(d) is None
    assert operator("top_k", "natural_dithering", ratio=0.2).contraction(d) is None
    assert operator("top_k", "natural_dithering", ratio=0.2).has_class_constant(d)
    assert not operator("top_k", "sign", ratio=0.2).has_class_constant(d)
    assert operator("identity", ratio=1.0).name == "identity"
    assert operator("top_k", "natural", ratio=0.2).name == "top_k + natural"


def test_theory_steps(mushrooms_problem_20):
    problem = mushrooms_problem_20
    L = problem.smoothness
    topk = operator("top_k", ratio=0.2)
    assert EF14.theory_lr(problem, topk) == pytest.approx(22 / 112 / L)
    gamma = EF21.theory_lr(problem, topk)
    alpha = 22 / 112
    theta = 1 - np.sqrt(1 - alpha)
    beta = (1 - alpha) / theta
    L_tilde = float(np.sqrt((problem.worker_smoothness.numpy() ** 2).mean()))
    expected = min(
        1 / (L + L_tilde * np.sqrt(2 * beta / theta)), theta / (2 * problem.strong_convexity)
    )
    assert gamma == pytest.approx(expected)
    randk = operator("rand_k", ratio=0.2)
    omega = 112 / 22 - 1
    L_max = float(problem.worker_smoothness.max())
    assert DIANA.theory_lr(problem, randk) == pytest.approx(1 / ((1 + 6 * omega / 20) * L_max))
    assert EF21.theory_lr(problem, operator("identity", ratio=1.0)) == pytest.approx(1 / L)
    assert DIANA.theory_lr(problem, topk) is None
    assert EF21.theory_lr(problem, operator("rand_k", "natural", ratio=0.2)) is None


@pytest.fixture(scope="module")
def mushrooms_problem_20(mushrooms_dir):
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run

    cfg = compose_config(f"data_dir={mushrooms_dir}", "n_workers=20", "rounds=1")
    return build_run(cfg).problem


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_is_built_without_a_problem_and_asks_for_the_objective(name):
    """A method holds its operator, step, optimizer and communicator, and the shape it runs
    on, no problem; an operator that queries the objective (md_*) gets it through the step,
    and a step without it is one clear error."""
    problem = _logreg(3)
    op = operator("md_greedy", ratio=0.34)
    options = {"alpha": 0.5} if name == "diana" else {}
    method = METHODS[name](op, 0.1, **on(problem), **options)
    assert not hasattr(method, "problem")
    x = problem.initial_point()
    state, ev = method.init_state(x), evaluate(problem, x)
    with pytest.raises(ValueError, match="queries the objective.*objective=problem"):
        for k in range(2):  # ef21 sends its round 0 uncompressed: the operator runs in round 1
            state = method.step(x, ev, state, Streams(0, 3), k).state
    for k in range(2):
        state = method.step(x, ev, state, Streams(0, 3), k, objective=problem).state


def test_diana_without_omega_is_one_clear_error():
    with pytest.raises(ConfigError, match="method=diana needs an unbiased operator"):
        DIANA(operator("top_k"), 0.1, **on(_logreg(2)))
    DIANA(operator("top_k"), 0.1, **on(_logreg(2)), alpha=0.5)  # explicit alpha


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["method=diana"], "or set both lr and method.alpha"),
        (["method=ef21", "quantizer=sign"], "method=ef21 with lr=auto needs an operator with"),
        (["method=ef", "quantizer=sign"], "method=ef with lr=auto needs an operator with"),
        (["method=diana", "method.alpha=2"], "method.alpha must be in (0, 1]"),
    ],
)
def test_auto_lr_without_a_constant_is_one_line(args, message, tmp_path, monkeypatch, capfd):
    from tests.conftest import run_main

    code, _, err = run_main(
        ["problem=synthetic_logreg", "progress=false", *args], tmp_path, monkeypatch, capfd
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_lr_mult_scales_the_theory_step(tmp_path, mushrooms_dir):
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run

    base = [f"data_dir={mushrooms_dir}", "n_workers=20", "method=ef21", "rounds=1"]
    one = build_run(compose_config(*base)).lr
    four = build_run(compose_config(*base, "lr_mult=4")).lr
    assert four == pytest.approx(4 * one)


def test_contractive_scaling_of_top_k_with_dithering():
    """(1/(1 + omega)) Q(C(.)) with C = TopK, Q = natural dithering is in B3(delta_C (1 + omega)):
    the empirical E||op(x) - x||^2 / ||x||^2 stays below 1 - 1/delta (spec 10, 23)."""
    d = 40
    raw = operator("top_k", "natural_dithering", ratio=0.25)
    scaled = raw.contractive(d)
    omega = raw.quantizers[0].omega(d)
    assert scaled.scale == pytest.approx(1 / (1 + omega))
    assert scaled.contraction(d) == pytest.approx(4 * (1 + omega))
    assert raw.contraction(d) is None and operator("top_k").contractive(d).scale == 1.0
    X = torch.randn(2000, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    message, _ = scaled.compress(
        X, scaled.init_state(2000, d, X.device, X.dtype), Streams(0, 2000), None
    )
    ratio = ((message.values - X) ** 2).sum(1).mean() / (X**2).sum(1).mean()
    assert float(ratio) <= 1 - 1 / scaled.contraction(d)
    assert (
        message.bits.tolist()
        == raw.compress(X, raw.init_state(2000, d, X.device, X.dtype), Streams(0, 2000), None)[
            0
        ].bits.tolist()
    )
