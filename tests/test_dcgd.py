"""DCGD (spec sections 20 and 21): worked examples and the identity-equals-GD property."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.chain import chain
from compress_bench.methods import DCGD, evaluate
from compress_bench.problems.base import Problem, Reference
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.splits import split_indices
from compress_bench.rng import Streams


class CentersProblem(Problem):
    """f_i(x) = 1/2 ||x - c_i||^2, the toy problem of the spec's method examples."""

    def __init__(self, centers):
        self.centers = torch.tensor(centers, dtype=torch.float64)
        self.n_workers, self.d = self.centers.shape
        self.name, self.device, self.dtype = "centers", torch.device("cpu"), torch.float64

    def loss_and_grad(self, X):
        diff = X - self.centers
        return 0.5 * (diff * diff).sum(1), diff

    def initial_point(self):
        return torch.zeros(self.d, dtype=torch.float64)

    smoothness = 1.0
    worker_smoothness = torch.ones(1)

    def reference(self):
        c = self.centers.mean(0)
        return Reference(
            float(self.loss_and_grad(c.expand_as(self.centers))[0].mean()), c.tolist(), 0.0
        )


def one_round(problem, compressor, quantizer="none", lr=0.5, **q):
    method = DCGD(
        chain(build_compressor(compressor, ratio=0.5), build_quantizer({"name": quantizer, **q})),
        lr,
        n_workers=problem.n_workers,
        d=problem.d,
    )
    x = problem.initial_point()
    streams = Streams(0, problem.n_workers)
    proposal = method.step(x, evaluate(problem, x), method.init_state(x), streams, 0)
    return proposal.x, proposal.bits


def test_spec_20_example_top1():
    x1, bits = one_round(CentersProblem([[1.0, 0.0], [0.0, 2.0]]), {"name": "top_k"})
    np.testing.assert_allclose(x1.numpy(), [0.25, 0.5], atol=1e-12)
    assert bits.tolist() == [33, 33] and int(bits.sum()) == 66


def test_spec_21_example_top1_then_power_of_two():
    x1, bits = one_round(
        CentersProblem([[1.4, 0.0], [0.0, 3.0]]), {"name": "top_k"}, "power_of_two"
    )
    np.testing.assert_allclose(x1.numpy(), [0.25, 1.0], atol=1e-12)
    assert int(bits.sum()) == 20


def _logreg(n):
    features, labels = synthetic_logreg_data(90, 6, seed=2, label_noise=0.5)
    shards = split_indices(labels, n, "iid", 0)
    return LogisticRegression(features, labels, shards, 0.1, np.zeros(6), "t")


@pytest.mark.parametrize("n", [1, 4])
def test_identity_dcgd_is_gradient_descent_bit_for_bit(n):
    problem = _logreg(n)
    method = DCGD(
        chain(build_compressor({"name": "identity"}, ratio=1.0), build_quantizer({"name": "none"})),
        lr=0.7,
        n_workers=n,
        d=problem.d,
    )
    x = y = problem.initial_point()
    state, streams = method.init_state(x), Streams(0, n)
    for k in range(25):
        proposal = method.step(x, evaluate(problem, x), state, streams, k)
        x, state = proposal.x, proposal.state
        y = y - 0.7 * problem.loss_and_grad(y.expand(n, -1))[1].mean(0)  # plain distributed GD
        assert torch.equal(x, y)
        assert proposal.bits.tolist() == [32 * 6] * n


def test_rand_k_dcgd_step_is_unbiased():
    """The average of x^1 over many seeds is the GD step (spec 20 property)."""
    problem = _logreg(2)
    x0 = torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    gd = x0 - 0.5 * problem.loss_and_grad(x0.expand(2, -1))[1].mean(0)
    steps = []
    for seed in range(3000):
        method = DCGD(
            chain(
                build_compressor({"name": "rand_k"}, ratio=0.34), build_quantizer({"name": "none"})
            ),
            lr=0.5,
            n_workers=2,
            d=problem.d,
        )
        streams = Streams(seed, 2)
        steps.append(method.step(x0, evaluate(problem, x0), method.init_state(x0), streams, 0).x)
    steps = torch.stack(steps)
    sd = steps.std(0) / np.sqrt(len(steps))
    assert torch.all((steps.mean(0) - gd).abs() <= 4 * sd + 1e-12)


def test_spec_11_majority_vote_example():
    """n = 2: sign messages [1, -1] and [-1, -1] sum to [0, -2]; the vote is [0, -1]."""
    problem = CentersProblem([[-1.0, 1.0], [1.0, 1.0]])  # gradients at 0 are -c_i
    method = DCGD(
        chain(build_compressor({"name": "identity"}, ratio=1.0), build_quantizer({"name": "sign"})),
        0.5,
        n_workers=2,
        d=2,
        aggregation="majority_vote",
    )
    x = problem.initial_point()
    proposal = method.step(x, evaluate(problem, x), method.init_state(x), Streams(0, 2), 0)
    assert proposal.message.values.tolist() == [[1.0, -1.0], [-1.0, -1.0]]
    assert proposal.x.tolist() == [0.0, 0.5]  # x - 0.5 * [0, -1]
    assert proposal.bits.tolist() == [2, 2]  # d bits each


def test_majority_vote_needs_the_sign_quantizer():
    from compress_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="needs quantizer=sign"):
        DCGD(
            chain(
                build_compressor({"name": "identity"}, ratio=1.0),
                build_quantizer({"name": "scaled_sign"}),
            ),
            0.5,
            n_workers=1,
            d=2,
            aggregation="majority_vote",
        )
