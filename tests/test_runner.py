"""The round loop: metrics rows, stopping rules, divergence, failures, determinism."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.runner import build_run, execute

SYNTH = ["problem=synthetic_logreg", "progress=false"]


def config(*overrides):
    return compose_config(*SYNTH, *overrides)


def run(tmp_path, *overrides):
    summary = execute(build_run(config(*overrides)), tmp_path)
    return summary, pd.read_csv(tmp_path / "metrics.csv")


def test_metrics_rows_and_bits(tmp_path):
    # synthetic_logreg: d = 20, ratio 0.2 -> k = 4, index bits 5: 4 * (32 + 5) = 148 per round
    summary, m = run(tmp_path, "rounds=10", "log_every=3", "n_workers=2")
    assert list(m.columns) == [
        "round",
        "loss",
        "loss_gap",
        "grad_norm",
        "grad_norm_rel",
        "bits",
        "bits_total",
        "grad_evals",
        "compression_error",
        "bits_per_coordinate",
        "wall_time",
    ]
    assert m["round"].tolist() == [0, 3, 6, 9, 10]
    assert m["bits"].tolist() == [148.0 * r for r in (0, 3, 6, 9, 10)]
    assert m["bits_total"].tolist() == [2 * 148 * r for r in (0, 3, 6, 9, 10)]
    assert m["grad_norm_rel"].iloc[0] == 1.0
    assert m["grad_evals"].tolist() == [0, 3, 6, 9, 10]  # DCGD: one local gradient per round
    # diagnostics of the round that produced x^k (none for x^0)
    assert math.isnan(m["compression_error"].iloc[0]) and math.isnan(m["bits_per_coordinate"][0])
    assert (m["bits_per_coordinate"].iloc[1:] == 148 / 20).all()
    assert ((m["compression_error"].iloc[1:] > 0) & (m["compression_error"].iloc[1:] <= 0.8)).all()
    assert (m["loss_gap"] >= -1e-12).all() and m["loss"].is_monotonic_decreasing
    assert summary["status"] == "completed" and summary["stop_reason"] == "rounds"
    assert summary["rounds_done"] == 10 and summary["total_bits"] == 1480
    assert summary["fstar"] == pytest.approx(m["loss"].iloc[-1] - m["loss_gap"].iloc[-1])
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_tol_stops_at_the_first_round_below_it(tmp_path):
    summary, m = run(tmp_path, "rounds=5000", "tol=1e-3", "log_every=1")
    assert summary["stop_reason"] == "tol" and summary["status"] == "completed"
    assert m["grad_norm_rel"].iloc[-1] <= 1e-3 < m["grad_norm_rel"].iloc[-2]
    assert summary["rounds_done"] == m["round"].iloc[-1] < 5000


@pytest.mark.parametrize("metric", ["loss_gap", "grad_norm", "loss"])
def test_tol_can_stop_on_another_metric(tmp_path, metric):
    first = pd.read_csv(_probe(tmp_path, metric))  # the metric's trajectory without tol
    target = float(first[metric].iloc[20])  # reached at round 20 (the metrics decrease)
    (tmp_path / "tol").mkdir()
    summary, m = run(tmp_path / "tol", "rounds=200", f"tol={target!r}", f"tol_metric={metric}")
    assert summary["stop_reason"] == "tol"
    assert m[metric].iloc[-1] <= target < m[metric].iloc[-2]
    assert m["round"].iloc[-1] == int(first.index[first[metric] <= target][0])
    assert m["round"].iloc[-1] <= 20


def _probe(tmp_path, metric):
    folder = tmp_path / "probe"
    folder.mkdir()
    execute(build_run(config("rounds=60", "log_every=1")), folder)
    return folder / "metrics.csv"


def test_a_tol_metric_of_another_kind_of_problem_is_one_line():
    with pytest.raises(ConfigError, match="tol_metric=test_accuracy is a metric of the neural"):
        build_run(config("tol=0.9", "tol_metric=test_accuracy"))


def test_max_bits_stops_before_the_round_that_would_exceed_it(tmp_path):
    summary, m = run(tmp_path, "rounds=100", f"max_bits={148 * 5 + 100}", "log_every=1")
    assert summary["stop_reason"] == "max_bits"
    assert summary["rounds_done"] == 5 and m["bits"].iloc[-1] == 148 * 5


def test_divergence_keeps_metrics_and_reports_it(tmp_path):
    summary, m = run(
        tmp_path, "dtype=float32", "lr=1e37", "rounds=50", "log_every=1", "compressor=identity"
    )
    assert summary["status"] == "diverged" and summary["stop_reason"] == "diverged"
    assert summary["rounds_done"] < 50 and len(m) == summary["rounds_done"] + 1
    assert m["loss"].iloc[0] == pytest.approx(0.693147, abs=1e-5)


def test_a_failure_mid_run_keeps_every_row(tmp_path, monkeypatch):
    r = build_run(config("rounds=100", "log_every=1"))
    real_step, calls = r.method.step, []

    def failing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) > 7:
            raise RuntimeError("simulated crash")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(r.method, "step", failing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        execute(r, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "simulated crash" in summary["error"]
    assert pd.read_csv(tmp_path / "metrics.csv")["round"].tolist() == list(range(8))


@pytest.mark.parametrize("compressor", ["rand_k", "top_k"])
def test_seeded_runs_repeat_bit_for_bit(tmp_path, compressor):
    args = (
        f"compressor={compressor}",
        "n_workers=3",
        "rounds=40",
        "quantizer=power_of_two",
        "log_every=1",
    )
    _, a = run(tmp_path / "a", *args, "seed=5")
    _, b = run(tmp_path / "b", *args, "seed=5")
    _, c = run(tmp_path / "c", *args, "seed=6")
    cols = ["loss", "grad_norm", "bits"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    if compressor == "rand_k":  # the seed moves the random draws (and the iid split)
        assert not a[cols].equals(c[cols])


@pytest.fixture(autouse=True)
def _dirs(tmp_path):
    for sub in "abc":
        (tmp_path / sub).mkdir()


def test_auto_lr_follows_the_operator(tmp_path):
    top = build_run(config("compressor=top_k"))
    assert top.lr == pytest.approx(1 / top.problem.smoothness)
    scaled = build_run(config("compressor=top_k", "compressor.scale=dk"))
    assert scaled.lr == pytest.approx((4 / 20) / scaled.problem.smoothness)
    rand = build_run(config("compressor=rand_k", "n_workers=2"))
    omega, L = 20 / 4 - 1, rand.problem.smoothness
    L_max = float(rand.problem.worker_smoothness.max())
    assert rand.lr == pytest.approx(1 / (L + 2 * omega * L_max / 2))
    assert build_run(config("lr=0.25")).lr == 0.25


@pytest.mark.parametrize(
    "override, message",
    [
        ("ratio=0", "ratio must be in"),
        ("ratio=1.5", "ratio must be in"),
        ("n_workers=0", "n_workers must be an integer >= 1"),
        ("rounds=-1", "rounds must be"),
        ("lr=0", "lr must be positive"),
        ("lr=abc", "lr (a positive number"),
        ("n_workers=601", "more than the 600 samples"),
        ("log_every=0", "log_every"),
    ],
)
def test_invalid_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_run(config(override))


def test_identity_has_no_compression_error_and_32_bits_per_coordinate(tmp_path):
    _, m = run(tmp_path, "compressor=identity", "rounds=3", "log_every=1")
    assert m["compression_error"].iloc[1:].tolist() == [0.0] * 3
    assert m["bits_per_coordinate"].iloc[1:].tolist() == [32.0] * 3


def test_sign_with_majority_vote_runs_and_descends(tmp_path):
    summary, m = run(
        tmp_path,
        "compressor=identity",
        "quantizer=sign",
        "method.aggregation=majority_vote",
        "n_workers=5",
        "lr=0.01",
        "rounds=50",
        "log_every=10",
    )
    assert summary["status"] == "completed"
    assert m["loss"].iloc[-1] < m["loss"].iloc[0]
    assert (m["bits_per_coordinate"].dropna() == 1.0).all()  # d bits per worker per round


def test_majority_vote_with_another_quantizer_is_one_config_error():
    with pytest.raises(ConfigError, match="needs quantizer=sign"):
        build_run(config("method.aggregation=majority_vote"))


def test_the_progress_bar_of_a_max_bits_run_measures_the_bit_budget(capsys):
    """rounds is only a cap for a max_bits run (thesis_logreg: 100000): the bar shows the
    share of the nearer stop, here half the bits, not 10 of 1e9 rounds (an ETA of millions of
    hours before)."""
    from compress_bench.run.session import Progress

    progress = Progress(10**9, True, max_bits=1000.0)
    progress.update(10, 10**9, 0.5, 500.0)
    assert progress.bar.total == 100 and progress.bar.n == pytest.approx(50.0)
    assert " 50%" in str(progress.bar) and "round=10" in str(progress.bar)
    progress.update(11, 10**9, 0.5, 2000.0)  # past the budget: full, never more
    assert progress.bar.n == pytest.approx(100.0)
    progress.close()
    rounds = Progress(40, True)  # without max_bits: rounds out of rounds, as before
    rounds.update(10, 40, 0.5, 500.0)
    assert rounds.bar.total == 40 and rounds.bar.n == 1
    rounds.close()
