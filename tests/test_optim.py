"""The server optimizers (compress_bench/optim.py) against torch.optim.SGD and their schedules."""

from __future__ import annotations

import math

import pytest
import torch

from compress_bench.errors import ConfigError
from compress_bench.optim import ServerOptimizer


def _directions(steps: int, d: int = 7) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(d, generator=gen, dtype=torch.float64) for _ in range(steps)]


@pytest.mark.parametrize(
    ("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 0.0), (0.0, 5e-4), (0.9, 0.1)]
)
def test_sgd_matches_torch_optim_sgd(momentum, weight_decay):
    """x_{k+1} = x_k - lr b_{k+1}, b_{k+1} = mu b_k + g_k + lambda x_k: torch.optim.SGD with
    dampening 0, fed the same directions as gradients."""
    x0 = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    opt = ServerOptimizer(lr=0.1, momentum=momentum, weight_decay=weight_decay)
    param = torch.nn.Parameter(x0.clone())
    reference = torch.optim.SGD([param], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    x, state = x0.clone(), opt.init_state(x0)
    for k, g in enumerate(_directions(6)):
        x, state = opt.step(x, g, state, k)
        param.grad = g.clone()
        reference.step()
        torch.testing.assert_close(x, param.detach(), rtol=1e-12, atol=1e-14)


def test_step_leaves_its_inputs_unchanged():
    """The runner may refuse a round (bit budget): x, the direction and the old momentum
    buffer must survive the step."""
    opt = ServerOptimizer(lr=0.1, momentum=0.9, weight_decay=0.1)
    x, g = torch.ones(5), torch.full((5,), 2.0)
    state = {"momentum": torch.full((5,), 3.0)}
    opt.step(x, g, state, 0)
    assert torch.equal(x, torch.ones(5))
    assert torch.equal(g, torch.full((5,), 2.0))
    assert torch.equal(state["momentum"], torch.full((5,), 3.0))


def test_gd_is_the_plain_expression_bit_for_bit():
    x, g = _directions(2, d=1000)
    new, state = ServerOptimizer(lr=0.37).step(x, g, {}, 0)
    assert torch.equal(new, x - 0.37 * g)
    assert state == {}


def test_schedules():
    cosine = ServerOptimizer(lr=2.0, schedule="cosine", rounds=10)
    assert cosine.lr_at(0) == 2.0
    assert cosine.lr_at(5) == pytest.approx(1.0)
    assert cosine.lr_at(10) == pytest.approx(0.0, abs=1e-15)
    assert cosine.lr_at(3) == pytest.approx(1.0 + math.cos(math.pi * 0.3))
    step = ServerOptimizer(lr=1.0, schedule="step", step_every=3, gamma=0.5)
    assert [step.lr_at(k) for k in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert ServerOptimizer(lr=0.3).lr_at(1000) == 0.3


@pytest.mark.parametrize(
    "kwargs", [{"schedule": "linear"}, {"momentum": 1.0}, {"momentum": -0.1}, {"weight_decay": -1}]
)
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ServerOptimizer(lr=0.1, **kwargs)
