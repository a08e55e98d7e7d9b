"""Divergence that never reaches inf: natural compression and power-of-two rounding saturate at
+-2^127, so a blown-up run keeps a finite loss. A run has diverged when its gradient norm
(convex) or training loss (networks) passes ``diverge_factor`` times its value at x^0, or is
not finite; runs that converge never come near the factor."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from compress_bench.config import compose_config
from compress_bench.runner import build_run, execute
from tests.conftest import run_cli

SATURATING = ("compressor=identity", "quantizer=natural", "lr=100")
DIVERGE_FACTOR = 1e6  # the default of diverge_factor (compress_bench.run.metrics.DIVERGE_FACTOR)


def _strict_json(path):
    """summary.json parsed as strict JSON (NaN and Infinity are not JSON)."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _run(folder, *overrides, **keys):
    folder.mkdir(exist_ok=True)
    run = build_run(compose_config("progress=false", "threads=1", *overrides))
    for key, value in keys.items():  # keys config.py does not declare yet (diverge_factor)
        run.cfg[key] = value
    summary = execute(run, folder)
    return summary, pd.read_csv(folder / "metrics.csv")


def test_saturated_natural_compression_ends_diverged_with_exit_0(tmp_path, mushrooms_dir):
    """The issue's example: with natural compression f - f* stays finite (5.4e80 at round 300,
    `completed` before); the gradient norm passes 1e6 times its start at round 6."""
    out = tmp_path / "run"
    result = run_cli(
        *SATURATING,
        "rounds=300",
        "progress=false",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        env={"COMPRESS_BENCH_DATA": str(mushrooms_dir)},
    )
    assert result.returncode == 0, result.stderr
    assert "diverged at round" in result.stderr
    summary = _strict_json(out / "summary.json")
    assert summary["status"] == "diverged" and summary["stop_reason"] == "diverged"
    assert summary["rounds_done"] == summary["divergence"]["round"] < 20
    assert "diverge_factor" in summary["divergence"]["rule"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["round"].iloc[-1] == summary["rounds_done"]
    last = metrics["grad_norm_rel"].iloc[-1]
    assert math.isfinite(last) and last > DIVERGE_FACTOR >= metrics["grad_norm_rel"].iloc[-2]


@pytest.mark.parametrize(
    "overrides",
    [
        ("experiment=thesis_logreg", "compressor=top_k"),
        ("experiment=thesis_logreg", "compressor=rand_k"),
        ("experiment=error_feedback", "operator=natural", "method=dcgd"),
        ("experiment=error_feedback", "operator=top_k_power_of_two", "method=ef"),
        ("experiment=error_feedback", "operator=scaled_sign", "method=ef21"),
    ],
    ids=lambda o: "-".join(v.split("=")[1] for v in o),
)
def test_runs_that_converge_do_not_diverge(tmp_path, mushrooms_dir, overrides):
    """A guard (it passes on the old code too): the presets' operators at their steps."""
    summary, m = _run(
        tmp_path / "r", *overrides, "rounds=200", f"data_dir={mushrooms_dir}", "log_every=1"
    )
    assert summary["status"] == "completed", summary.get("divergence")
    assert m["grad_norm_rel"].max() <= 1.0 + 1e-12 and m["grad_norm_rel"].iloc[-1] < 1.0


def test_an_oscillating_run_that_stays_bounded_is_not_diverged(tmp_path):
    """GD past 2/L on the synthetic problem oscillates, bounded: not a divergence."""
    summary, m = _run(
        tmp_path / "r", "problem=synthetic_logreg", "compressor=identity", "lr=8", "rounds=300"
    )
    assert summary["status"] == "completed"
    assert 1.0 < m["grad_norm_rel"].max() < DIVERGE_FACTOR


def test_diverge_factor_sets_the_rule(tmp_path):
    """diverge_factor from the config: a lower one stops earlier, null keeps only the
    non-finite rule (the old behaviour: the saturated run `completed`)."""
    common = ("problem=synthetic_logreg", *SATURATING, "rounds=80", "log_every=1")
    low, m_low = _run(tmp_path / "low", *common, diverge_factor=100.0)
    assert low["status"] == "diverged" and low["stop_reason"] == "diverged"
    assert m_low["grad_norm_rel"].iloc[-1] > 100 >= m_low["grad_norm_rel"].iloc[-2]
    default, _ = _run(tmp_path / "default", *common)
    assert default["status"] == "diverged" and default["rounds_done"] > low["rounds_done"]
    off, m_off = _run(tmp_path / "off", *common, diverge_factor=None)
    assert off["status"] == "completed" and off["rounds_done"] == 80
    assert math.isfinite(m_off["loss"].iloc[-1]) and m_off["grad_norm_rel"].iloc[-1] > 1e30


def test_a_non_finite_loss_is_null_in_summary_json(tmp_path):
    """lr=1e37 in float32 overflows: the final loss is inf, written as null (valid JSON)."""
    folder = tmp_path / "r"
    summary, _ = _run(
        folder,
        "problem=synthetic_logreg",
        "dtype=float32",
        "lr=1e37",
        "rounds=50",
        "compressor=identity",
    )
    assert summary["status"] == "diverged"
    assert not math.isfinite(summary["final"]["loss"])  # the returned dict keeps the float
    written = _strict_json(folder / "summary.json")
    assert written["final"]["loss"] is None
    assert written["divergence"]["rule"] == "non-finite loss or gradient"
