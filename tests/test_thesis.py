"""The thesis reproduction: its bit accounting, its start, its experiment preset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from compress_bench.compressors import Message
from compress_bench.compressors.bits import thesis_bits
from compress_bench.compressors.quantizers import power_of_two
from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.problems import _initial_point
from compress_bench.runner import build_run, execute

OPERATORS = [
    "rand_k",
    "top_k",
    "md_greedy",
    "md_greedy_weighted",
    "md_weighted_greedy",
    "md_stochastic",
]


def thesis_code_bits(kept_values: np.ndarray) -> float:
    """The thesis code's count (greedy_compress), written out independently in NumPy."""
    nonzero = kept_values[kept_values != 0]
    power = np.maximum(-np.round(np.log2(np.abs(nonzero))), 0)
    return len(kept_values) + np.sum(np.ceil(np.log2(power + 1)) - 1)


def test_thesis_bits_worked_example():
    # kept: 0 (1 bit), 2^-2 (2 bits), -1 (0 bits), 1 (0 bits), 2^-1 (1 bit); one unsent zero
    values = torch.tensor([[0.0, 0.25, -1.0, 1.0, 0.5, 0.0]], dtype=torch.float64)
    message = Message(values, torch.tensor([5]), 9, torch.tensor([5 * 3]))
    assert thesis_bits(message).tolist() == [4]


def test_thesis_bits_match_the_thesis_formula_on_random_messages():
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(50, 30, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 1, (50, 30), generator=gen
    )
    G[G.abs() < 1e-5] = 0.0  # some kept zeros
    q = power_of_two(G, "log2", clip_exponent_at_zero=True)
    message = Message(q, torch.full((50,), 30), 9, torch.zeros(50, dtype=torch.int64))
    expected = [thesis_code_bits(row) for row in q.numpy()]
    assert thesis_bits(message).tolist() == expected


def test_thesis_initial_point():
    x0 = _initial_point("thesis", 112, seed=123)  # the run's seed plays no part
    u = np.random.RandomState(18).random_sample(112)
    np.testing.assert_allclose(x0, 0.5 * u / np.linalg.norm(u), rtol=0, atol=0)
    assert np.linalg.norm(x0) == pytest.approx(0.5, abs=1e-15)


def compose_thesis(*overrides):
    return compose_config("experiment=thesis_logreg", *overrides, hydra_node=True)


@pytest.mark.parametrize("operator", OPERATORS)
def test_experiment_preset_settings(operator):
    cfg = compose_thesis(f"compressor={operator}")
    assert cfg.hydra.sweeper.params.compressor.split(",") == OPERATORS
    assert (cfg.n_workers, cfg.ratio, cfg.lr, cfg.tol, cfg.max_bits) == (1, 0.2, 0.4, 1e-6, 3e5)
    assert cfg.bits_convention.name == "thesis" and cfg.problem.init.name == "thesis"
    assert cfg.problem.l2 == 0.1 and cfg.problem.name == "mushrooms"
    assert cfg.quantizer.rounding.name == "log2" and cfg.quantizer.clip_exponent_at_zero
    assert cfg.importance.variant.name == "thesis_code" and cfg.importance.entropy == 0.1
    assert (cfg.importance.steps, cfg.importance.lr, cfg.importance.warm_start) == (100, 1.0, True)
    if "scale" in cfg.compressor:  # no d/k factor anywhere, RandK included
        assert cfg.compressor.scale.name == "none"
    if "weights" in cfg.compressor:
        assert cfg.compressor.weights.name == "code"
    if "importance" in cfg.compressor:
        assert cfg.compressor.importance.variant.name == "thesis_code"


def test_rand_k_keeps_its_unbiased_default_outside_the_experiment():
    cfg = compose_config("compressor=rand_k")
    assert cfg.compressor.scale.name == "dk"


def test_thesis_run_reports_both_bit_counts(tmp_path, mushrooms_dir):
    cfg = compose_thesis(
        "compressor=md_weighted_greedy",
        "rounds=3",
        f"data_dir={mushrooms_dir}",
        "importance.steps=5",
        "progress=false",
    )
    summary = execute(build_run(cfg), tmp_path)
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert m["bits"].tolist() == [22 * (9 + 7) * r for r in range(4)]  # the exact encoding
    steps = m["bits_thesis"].diff().dropna()
    assert ((steps > 0) & (steps < 22 * 9)).all()  # a few bits per value, indices free
    assert m["grad_evals"].tolist() == [0, 6, 12, 18]  # 5 solver steps + the gradient
    assert summary["total_bits_thesis"] == m["bits_thesis"].iloc[-1]


def test_thesis_convention_needs_powers_of_two():
    cfg = compose_config("bits_convention=thesis", "problem=synthetic_logreg")
    with pytest.raises(ConfigError, match="needs a quantizer whose values"):
        build_run(cfg)
