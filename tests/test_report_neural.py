"""The sweep report and the figures command on neural sweeps: comparison.png draws train loss,
test loss and test accuracy against rounds, epochs and bits (not four empty convex panels),
summary.csv has their final values, and ``python -m compress_bench.report.figures`` draws any
experiment."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compress_bench.report import callback
from compress_bench.report.figures import main as figures_main
from compress_bench.report.sweep import collect, figure_comparison, read_metrics, report
from tests.test_plots import position
from tests.test_sweep_report import fake_metrics, fake_summary, write_job

ROUNDS = np.arange(0, 41, 10)
SHARD = 15000  # images per worker: epoch = rounds * 64 / SHARD
FINALS = ["final_train_loss", "final_test_loss", "final_test_accuracy", "final_epoch"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)


def neural_metrics(method: str, seed: int, rows: int = len(ROUNDS)) -> pd.DataFrame:
    """metrics.csv of the neural loop (TRAINING_COLUMNS): ef learns faster than dcgd."""
    rounds = ROUNDS[:rows]
    rate = (0.02 if method == "ef" else 0.01) + 0.001 * seed
    train = 2.3 * np.exp(-rate * rounds)
    train[0] = math.nan  # no minibatch before round 0
    return pd.DataFrame(
        {
            "round": rounds,
            "epoch": rounds * 64 / SHARD,
            "train_loss": train,
            "test_loss": 2.3 * np.exp(-0.9 * rate * rounds),
            "test_accuracy": 0.1 + 0.8 * (1 - np.exp(-rate * rounds)),
            "bits": rounds * 1e5,
            "bits_total": rounds * 4e5,
            "images_per_second": 800.0,
            "wall_time": rounds * 0.01,
        }
    )


def neural_summary(method: str, seed: int, metrics: pd.DataFrame, **extra) -> dict:
    """summary.json of a neural run, with the display names runs declare."""
    last = metrics.iloc[-1]
    summary = {
        "status": "completed",
        "stop_reason": "rounds",
        "problem": "mnist",
        "compressor": "top_k",
        "quantizer": "none",
        "method": method,
        "operator": "layerwise(top_k)",
        "label": "EF(TopK per tensor)" if method == "ef" else "TopK per tensor",
        "family": "top_k",
        "colour": "#d62728",
        "compressor_label": "TopK",
        "seed": seed,
        "rounds_done": int(last["round"]),
        "total_bits": float(last["bits"]),
        "final": {k: float(last[k]) for k in ("train_loss", "test_loss", "test_accuracy", "epoch")},
        "config": {"tol": None, "seed": seed, "bits_convention": "spec"},
    }
    summary.update(extra)
    return summary


def neural_sweep(root: Path) -> Path:
    """mnist_ef-like: dcgd and ef x seeds 0, 1 (jobs 0-3), and ef seed 2 interrupted at 20."""
    num = 0
    for method in ("dcgd", "ef"):
        for seed in (0, 1):
            m = neural_metrics(method, seed)
            overrides = [f"method={method}", "experiment=mnist_ef_smoke", f"seed={seed}"]
            write_job(root, num, overrides, neural_summary(method, seed, m), m)
            num += 1
    m = neural_metrics("ef", 2, rows=3)
    s = neural_summary("ef", 2, m, status="interrupted", stop_reason="signal", signal="SIGTERM")
    write_job(root, num, ["method=ef", "experiment=mnist_ef_smoke", "seed=2"], s, m)
    return root


def curves(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if len(line.get_xdata())}


def test_a_neural_sweep_draws_its_losses_and_accuracy(tmp_path):
    """Before: four empty convex panels (relative gradient norm, loss gap) for a neural sweep."""
    sweep = neural_sweep(tmp_path / "sweep")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = collect(sweep)
        metrics = {j: read_metrics(sweep / str(j)) for j in frame["job"]}
        fig = figure_comparison(frame, metrics)
        fig.savefig(io.BytesIO(), format="png", dpi=30)
    axes = fig.axes[:9]  # rows: train loss, test loss, test accuracy; columns: round, epoch, bits
    assert [axes[3 * r].get_ylabel() for r in range(3)] == [
        "train loss",
        "test loss",
        "test accuracy",
    ]
    assert [ax.get_xlabel() for ax in axes[:3]] == [
        "round",
        "epoch",
        "uplink bits per worker (bits)",
    ]
    assert [axes[3 * r].get_yscale() for r in range(3)] == ["log", "log", "linear"]
    for r, column in enumerate(("train_loss", "test_loss", "test_accuracy")):
        for c, xcol in enumerate(("round", "epoch", "bits")):
            lines = curves(axes[3 * r + c])
            band = lines["top_k, method=ef (mean \u00b1 std over 2 seeds)"]
            assert "top_k, method=dcgd (mean \u00b1 std over 2 seeds)" in lines
            seeds = [neural_metrics("ef", s) for s in (0, 1)]
            x = seeds[0][xcol].to_numpy()[1:] if column == "train_loss" else seeds[0][xcol]
            np.testing.assert_allclose(band.get_xdata(), x)
            if column == "test_accuracy":  # the mean of the values: a linear axis
                mean = (seeds[0][column] + seeds[1][column]) / 2
            else:  # the geometric mean: the mean of log10 on a log axis
                mean = np.sqrt(seeds[0][column] * seeds[1][column]).dropna()
            np.testing.assert_allclose(band.get_ydata(), mean, rtol=1e-9)
            stop = lines["_stop: top_k, method=ef (job 4 interrupted)"]  # at round 20
            last = neural_metrics("ef", 2, rows=3).iloc[-1]
            np.testing.assert_allclose(position(stop), (last[xcol], last[column]), rtol=1e-9)


def test_the_legend_names_lines_by_display_names(tmp_path):
    """The operator's display name (not summary.json's ``label``, "EF(TopK per tensor)" under
    ef), then the method's. Before: the labels ("top_k, method=ef")."""
    sweep = neural_sweep(tmp_path / "sweep")
    frame = collect(sweep)
    jobs = [int(j) for j in frame["job"]]
    summaries = {j: json.loads((sweep / str(j) / "summary.json").read_text()) for j in jobs}
    metrics = {j: read_metrics(sweep / str(j)) for j in jobs}
    fig = figure_comparison(frame, metrics, summaries=summaries)
    names = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert names == [
        "TopK, DCGD (mean \u00b1 std over 2 seeds)",
        "TopK, EF (mean \u00b1 std over 2 seeds)",
        "TopK, EF (job 4 interrupted)",
    ]


def test_summary_csv_has_the_final_losses_and_accuracy_of_neural_jobs(tmp_path):
    """Before: no train loss, test loss or test accuracy in summary.csv (only the convex
    final_loss, final_grad_norm_rel, ..., all empty for a neural job)."""
    sweep = neural_sweep(tmp_path / "sweep")
    report(sweep)
    table = pd.read_csv(sweep / "summary.csv")
    columns = table.columns.tolist()
    at = columns.index("final_grad_norm_rel")
    assert columns[at + 1 : at + 5] == FINALS
    for job in range(4):
        method, seed = ("dcgd", "ef")[job // 2], job % 2
        last = neural_metrics(method, seed).iloc[-1]
        expected = [last["train_loss"], last["test_loss"], last["test_accuracy"], last["epoch"]]
        np.testing.assert_allclose(table.loc[job, FINALS].to_numpy(float), expected, rtol=1e-12)
    # the interrupted job: summary.json's final, which is its last row (round 20)
    last = neural_metrics("ef", 2, rows=3).iloc[-1]
    assert table.loc[4, "final_test_accuracy"] == pytest.approx(last["test_accuracy"])


def test_a_convex_sweep_keeps_its_columns(tmp_path):
    for seed in (0, 1):
        m = fake_metrics("top_k", seed)
        write_job(
            tmp_path, seed, ["compressor=top_k", f"seed={seed}"], fake_summary("top_k", 0, m), m
        )
    report(tmp_path)
    assert not set(FINALS) & set(pd.read_csv(tmp_path / "summary.csv").columns)


def test_the_figures_command_draws_any_experiment(tmp_path, capsys):
    """Before: only thesis_logreg and thesis_cifar were accepted (argparse choices: exit 2)."""
    sweep = neural_sweep(tmp_path / "sweep")
    out = tmp_path / "figures" / "mnist_ef.png"
    assert figures_main(["mnist_ef_smoke", str(sweep), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 30_000
    table = pd.read_csv(out.with_suffix(".csv"))
    assert table["job"].tolist() == [0, 1, 2, 3, 4] and "final_test_accuracy" in table.columns
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0].startswith("| job | label | seed | status | rounds_done | total_bits |")
    assert "final_test_accuracy" in md[0] and "final_loss_gap" not in md[0]  # empty: left out
    assert len(md) == 2 + 5
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and captured.err == ""
    # another experiment's name: drawn, with a warning that the jobs ran another one
    assert figures_main(["mnist_ef", str(sweep), str(tmp_path / "other.png")]) == 0
    assert "ran experiment=mnist_ef_smoke, not mnist_ef" in capsys.readouterr().err
    # not a sweep: one line, exit 2
    (tmp_path / "empty").mkdir()
    assert figures_main(["mnist_ef", str(tmp_path / "empty"), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("figures: error: ") and "no job folders" in err[0]


def test_the_figures_command_keeps_the_thesis_figures(tmp_path, capsys):
    m = fake_metrics("top_k", 0, extra={"bits_thesis": np.arange(0, 101, 10) * 300.0})
    write_job(tmp_path / "sweep", 0, ["compressor=top_k"], fake_summary("top_k", 0, m), m)
    out = tmp_path / "thesis.png"
    assert figures_main(["thesis_logreg", str(tmp_path / "sweep"), str(out)]) == 0
    assert pd.read_csv(out.with_suffix(".csv")).columns.tolist()[:2] == ["operator", "compressor"]
    assert "thesis bits" in out.with_suffix(".md").read_text()
