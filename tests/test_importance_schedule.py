"""The importance solver's thesis_resnet variant, its schedule (importance.every) and the joint
solve over all tensors of a layout (importance.scope=joint)."""

from __future__ import annotations

import pytest
import torch

from compress_bench.compressors import RoundContext, build_compressor
from compress_bench.compressors.chain import chain
from compress_bench.compressors.importance import ImportanceSolver, block_softmax
from compress_bench.compressors.layerwise import layerwise
from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.layout import Layout
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.rng import Streams
from compress_bench.runner import build_run
from tests.conftest import run_cli

N, D = 3, 12
LAYOUT = Layout.blocks([6, 4, 2], D)


class Counting:
    """A problem that counts its gradient calls (one call = one forward/backward)."""

    def __init__(self, problem):
        self.problem, self.calls = problem, 0
        self.n_workers, self.d = problem.n_workers, problem.d

    def grad(self, X):
        self.calls += 1
        return self.problem.grad(X)

    def loss_and_grad(self, X):
        self.calls += 1
        return self.problem.loss_and_grad(X)


def quadratic(seed: int = 5):
    gen = torch.Generator().manual_seed(seed)
    problem = SeparableQuadratic(
        torch.rand(D, generator=gen, dtype=torch.float64) + 0.5,
        torch.randn(N, D, generator=gen, dtype=torch.float64),
    )
    x = torch.randn(D, generator=gen, dtype=torch.float64)
    return problem, x, problem.grad(x.expand(N, -1))


def test_thesis_resnet_gradient_is_autograds_including_the_max():
    """d/dw f(x - eta (w / max w) g) by the closed form equals torch.autograd's, with the
    maximum unique and with it tied (amax splits the derivative evenly)."""
    problem, x, G = quadratic()
    solver = ImportanceSolver(variant="thesis_resnet", steps=1, lr=0.7, entropy=0.0)
    gen = torch.Generator().manual_seed(2)
    for w in (
        torch.softmax(torch.randn(N, D, generator=gen, dtype=torch.float64), 1),
        torch.full((N, D), 1.0 / D, dtype=torch.float64),  # every coordinate at the max
    ):
        w = w.clone().requires_grad_(True)
        trial = x - 0.4 * (w / w.amax(dim=1, keepdim=True)) * G
        problem.loss_and_grad(trial)[0].sum().backward()
        s = G * problem.grad((x - 0.4 * (w / w.amax(1, keepdim=True)) * G).detach())
        closed = solver._exact_gradient(w.detach(), s, 0.4, None)
        torch.testing.assert_close(closed, w.grad, rtol=1e-12, atol=1e-14)


def test_thesis_resnet_step_is_the_proximal_entropic_update():
    """w <- w^{1/(1+gamma lambda)} exp(-gamma/(1+gamma lambda) grad), normalised."""
    problem, x, G = quadratic()
    solver = ImportanceSolver(variant="thesis_resnet", steps=1, lr=2.0, entropy=0.1)
    z0 = torch.log(torch.softmax(torch.randn(N, D, dtype=torch.float64), 1))
    w0 = torch.softmax(z0, 1)
    s = G * problem.grad(x - 0.3 * (w0 / w0.amax(1, keepdim=True)) * G)
    grad = solver._exact_gradient(w0, s, 0.3, None)
    expected = w0 ** (1 / 1.2) * torch.exp(-(2.0 / 1.2) * grad)
    expected = expected / expected.sum(1, keepdim=True)
    w1 = torch.softmax(solver.step(z0, x, G, 0.3, problem), 1)
    torch.testing.assert_close(w1, expected, rtol=1e-12, atol=1e-15)


def test_random_init_draws_from_the_workers_streams():
    solver = ImportanceSolver(init="random", steps=0)
    G = torch.ones(N, D, dtype=torch.float64)
    a = solver.initial_log_weights(G, Streams(3, N))
    assert torch.equal(a, solver.initial_log_weights(G, Streams(3, N)))
    assert not torch.equal(a, solver.initial_log_weights(G, Streams(4, N)))
    assert not torch.equal(a[0], a[1])  # each worker its own draw
    with pytest.raises(ValueError, match="random streams"):
        solver.initial_log_weights(G)


def _md(importance, ratio=0.5, shape=None):
    cfg = {"name": "md_weighted_greedy", "importance": importance}
    return build_compressor(cfg, ratio=ratio, shape=shape)


def test_every_runs_the_solver_on_its_rounds_and_keeps_w_between():
    problem, x, G = quadratic()
    counting = Counting(problem)
    op = _md({"steps": 2, "every": 3})
    state = op.init_state(N, D, G.device, G.dtype)
    calls, zs = [], []
    for k in range(7):
        _, state = op.compress(G, state, Streams(0, N), RoundContext(k, x, 0.3, counting))
        calls.append(counting.calls)
        zs.append(state["log_weights"])
    assert calls == [2, 2, 2, 4, 4, 4, 6]  # rounds 0, 3, 6: two steps each
    assert zs[1] is zs[0] and zs[2] is zs[0] and not torch.equal(zs[3], zs[0])


def test_every_is_kept_from_the_first_round_on_resume():
    """A resumed run at a round between solves keeps the checkpointed w (no solve)."""
    problem, x, G = quadratic()
    counting = Counting(problem)
    op = _md({"steps": 2, "every": 4})
    state = {"log_weights": torch.zeros(N, D, dtype=torch.float64)}
    op.compress(G, state, Streams(0, N), RoundContext(5, x, 0.3, counting))
    assert counting.calls == 0


def _layerwise(scope, steps=3, variant="spec"):
    importance = {"steps": steps, "scope": scope, "variant": variant, "entropy": 0.05}
    return layerwise(lambda _, s: chain(_md(importance, 0.5, s)), LAYOUT)


@pytest.mark.parametrize("variant", ["spec", "thesis_code", "thesis_resnet"])
def test_joint_equals_per_tensor_on_a_separable_objective_at_one_pass_per_step(variant):
    """On a separable f the tensors do not interact, so one joint solve (each tensor on its
    own simplex) finds every tensor's per-tensor w; it costs one gradient call per step, the
    per-tensor solve one per tensor and step."""
    problem, x, G = quadratic()
    results = {}
    for scope in ("tensor", "joint"):
        counting = Counting(problem)
        op = _layerwise(scope, variant=variant)
        state = op.init_state(N, D, G.device, G.dtype)
        message, state = op.compress(G, state, Streams(0, N), RoundContext(0, x, 0.3, counting))
        zs = [op.parts[0].compressor_state(s)["log_weights"] for s in state]
        results[scope] = (message.values, torch.cat(zs, 1), counting.calls)
    (v_t, z_t, calls_t), (v_j, z_j, calls_j) = results["tensor"], results["joint"]
    assert (calls_t, calls_j) == (3 * len(LAYOUT), 3)
    torch.testing.assert_close(z_j, z_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v_j, v_t, rtol=1e-12, atol=1e-12)
    w = block_softmax(z_j, tuple(LAYOUT.slices()))
    for block in LAYOUT.slices():  # each tensor's w on its own simplex
        torch.testing.assert_close(w[:, block].sum(1), torch.ones(N, dtype=torch.float64))


def test_joint_warm_starts_from_the_tensors_states_and_follows_every():
    problem, x, G = quadratic()
    counting = Counting(problem)
    importance = {"steps": 2, "scope": "joint", "every": 2}
    op = layerwise(lambda _, s: chain(_md(importance, 0.5, s)), LAYOUT)
    state = op.init_state(N, D, G.device, G.dtype)
    calls = []
    for k in range(4):
        _, state = op.compress(G, state, Streams(0, N), RoundContext(k, x, 0.3, counting))
        calls.append(counting.calls)
    assert calls == [2, 2, 4, 4]
    cold = ImportanceSolver(steps=4, scope="joint").solve(
        None, x, G, 0.3, problem, blocks=tuple(LAYOUT.slices())
    )
    z = torch.cat([op.parts[0].compressor_state(s)["log_weights"] for s in state], 1)
    torch.testing.assert_close(z, cold, rtol=1e-12, atol=1e-12)  # 2 + 2 warm = 4 cold steps


def test_a_zero_every_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="every"):
        build_run(
            compose_config("problem=synthetic_logreg", "compressor=md_greedy", "importance.every=0")
        )


def test_an_unknown_scope_is_one_line_at_the_cli(tmp_path):
    result = run_cli(
        "problem=synthetic_logreg", "compressor=md_greedy", "importance.scope=both", cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "scope" in lines[0] and "joint" in lines[0], lines


def test_the_thesis_resnet_preset_composes():
    cfg = compose_config(
        "problem=synthetic_logreg", "compressor=md_greedy", "importance=thesis_resnet"
    )
    imp = cfg.importance
    assert (imp.variant.value, imp.steps, imp.lr, imp.entropy, imp.init.value) == (
        "thesis_resnet",
        200,
        2.0,
        0.1,
        "random",
    )
    cifar = compose_config("experiment=thesis_cifar").importance
    assert (cifar.variant.value, cifar.every, cifar.scope.value) == ("thesis_resnet", 390, "tensor")
