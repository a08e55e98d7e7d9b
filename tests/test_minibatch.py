"""Logistic regression with per-worker minibatches (problem.batch_size): b-nice sampling, an
unbiased gradient, metrics on all the data, and the default full batch unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.runner import build_run, execute

SYNTH = ["problem=synthetic_logreg", "problem.n_samples=90", "progress=false", "n_workers=3"]


def problem_of(*overrides):
    return build_run(compose_config(*SYNTH, *overrides)).problem


def _drawn_rows(problem):
    """The rows of each worker's current minibatch, as indices into its padded shard."""
    rows = problem._batch[0]  # (n, b, d): b_j a_j of the drawn rows
    signed = problem._signed_rows
    matches = (rows.unsqueeze(2) == signed.unsqueeze(1)).all(dim=3)  # (n, b, m_max)
    return [set(m.nonzero()[:, 1].tolist()) for m in matches]


def test_each_round_draws_b_distinct_rows_of_each_shard():
    problem = problem_of("problem.batch_size=7")
    sizes = [len(s) for s in problem.shards]
    seen = []
    for _ in range(5):
        problem.next_batches()
        drawn = _drawn_rows(problem)
        for rows, size in zip(drawn, sizes, strict=True):
            assert len(rows) == 7 and max(rows) < size
        seen.append(drawn)
    assert seen[0] != seen[1]  # fresh rows every round


def test_the_draws_follow_the_seed():
    a, b, c = (problem_of("problem.batch_size=5", f"seed={s}") for s in (0, 0, 1))
    for p in (a, b, c):
        p.next_batches()
    assert torch.equal(a._batch[0], b._batch[0])
    assert not torch.equal(a._batch[0], c._batch[0])


def test_the_minibatch_gradient_is_unbiased():
    """The mean of many b-nice gradients approaches grad f_i: the deviation is within 5
    standard errors of the empirical spread."""
    problem = problem_of("problem.batch_size=4", "dtype=float64")
    x = torch.linspace(-1, 1, problem.d, dtype=torch.float64)
    X = x.expand(problem.n_workers, -1)
    full = problem.shard_loss_and_grad(X)[1]
    draws = []
    for _ in range(3000):
        problem.next_batches()
        draws.append(problem.grad(X))
    draws = torch.stack(draws)
    error = (draws.mean(0) - full).abs()
    standard_error = draws.std(0) / len(draws) ** 0.5
    assert bool((error <= 5 * standard_error + 1e-12).all())
    assert float(standard_error.max()) > 0  # the draws really vary


def test_a_batch_of_the_whole_shard_is_the_full_gradient():
    problem = problem_of("problem.batch_size=30", "dtype=float64")  # 90 rows / 3 workers
    x = torch.linspace(-1, 1, problem.d, dtype=torch.float64).expand(problem.n_workers, -1)
    problem.next_batches()
    torch.testing.assert_close(problem.grad(x), problem.shard_loss_and_grad(x)[1])


def test_a_batch_larger_than_a_shard_is_refused():
    with pytest.raises(ConfigError, match="smallest shard's 30 rows"):
        problem_of("problem.batch_size=31")


def test_metrics_are_on_all_the_data_and_grad_evals_counts_the_workers_calls(tmp_path):
    args = ("method=ef21", "compressor=top_k", "ratio=0.25", "rounds=40", "log_every=10")
    full_dir, mini_dir = tmp_path / "full", tmp_path / "mini"
    full_dir.mkdir()
    mini_dir.mkdir()
    execute(build_run(compose_config(*SYNTH, *args)), full_dir)
    run = build_run(compose_config(*SYNTH, *args, "problem.batch_size=5"))
    execute(run, mini_dir)
    full, mini = (pd.read_csv(d / "metrics.csv") for d in (full_dir, mini_dir))
    assert full.loc[0, "loss"] == mini.loc[0, "loss"]  # row 0: f(x^0) on all the data
    assert full.loc[0, "grad_norm"] == mini.loc[0, "grad_norm"]
    assert mini["grad_evals"].tolist() == full["grad_evals"].tolist()  # one call a round
    assert mini.loc[4, "loss"] != full.loc[4, "loss"]  # a different trajectory
    assert mini["bits"].tolist() == full["bits"].tolist()  # TopK: the same bits a round
    x = run.problem.initial_point()
    loss, _ = run.problem.full_loss_and_grad(x)  # f, never a minibatch
    assert float(loss) == pytest.approx(float(full.loc[0, "loss"]), rel=1e-6)
