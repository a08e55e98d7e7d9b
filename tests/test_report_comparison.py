"""comparison.png on hand-made sweeps: diverged jobs do not hide the completed ones, one-row jobs
show their point, interrupted jobs are drawn and marked, and matplotlib never warns."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compress_bench.report import callback
from compress_bench.report.sweep import collect, figure_comparison, read_metrics, report
from compress_bench.report.table import status_counts
from tests.test_plots import position
from tests.test_sweep_report import fake_metrics, fake_summary, write_job


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)


def figure_of(sweep: Path):
    """The comparison figure of a sweep folder, drawn (warnings come at drawing time)."""
    frame = collect(sweep)
    fig = figure_comparison(frame, {j: read_metrics(sweep / str(j)) for j in frame["job"]})
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    return fig


def lines_by_label(ax) -> dict:
    """The lines of a panel that hold data, by label (stop markers: "_stop: <line's label>")."""
    return {line.get_label(): line for line in ax.get_lines() if len(line.get_xdata())}


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def diverging(seed: int) -> pd.DataFrame:
    """rand_k at lr=1e6: grows to 1e50, then 1e300, then inf at round 60 (7 rows)."""
    m = fake_metrics("rand_k", seed).iloc[:7].copy()
    blow_up = [1.0, 3.0, 1e5, 1e20, 1e50, 1e300, math.inf]
    for column in ("loss", "loss_gap", "grad_norm", "grad_norm_rel"):
        m[column] = blow_up
    return m


def test_diverged_jobs_do_not_hide_the_completed_ones(tmp_path):
    for seed in (0, 1):
        m = fake_metrics("top_k", seed)
        write_job(
            tmp_path, seed, ["compressor=top_k", f"seed={seed}"], fake_summary("top_k", seed, m), m
        )
    m = diverging(0)
    s = fake_summary("rand_k", 0, m, status="diverged", stop_reason="diverged", rounds_done=60)
    write_job(tmp_path, 2, ["compressor=rand_k", "seed=0"], s, m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib overflow or log-scale warning
        result = report(tmp_path)
        fig = figure_of(tmp_path)
    assert result["diverged"] == [2]
    for ax in fig.axes[:4]:
        lo, hi = ax.get_ylim()
        assert 1e50 <= hi < 1e60  # the drawable part ends at 1e50: not 1e300, not inf
        lines = lines_by_label(ax)
        band = lines["top_k (mean \u00b1 std over 2 seeds)"]
        y = np.asarray(band.get_ydata(), dtype=float)
        assert lo <= y.min() and y.max() <= hi  # the completed line is inside the axes
        assert y.min() < 1e-3  # ... and spans its decades, not 10^0..10^1
        diverged = lines["rand_k (job 2 diverged)"]
        dy = np.asarray(diverged.get_ydata(), dtype=float)
        assert dy.tolist() == [1.0, 3.0, 1e5, 1e20, 1e50]  # up to its last drawable point
        assert diverged.get_linestyle() == "--"
        stop = lines["_stop: rand_k (job 2 diverged)"]  # where it stopped: round 60, inf
        assert stop.get_marker() == "x" and stop.get_color() == diverged.get_color()
        bits = ax in fig.axes[1:4:2]
        np.testing.assert_allclose(position(stop), (60 * (200 if bits else 1), hi), rtol=1e-9)
    assert "rand_k (job 2 diverged)" in legend_texts(fig)
    assert "diverged: job 2 (compressor=rand_k, seed=0): non-finite at round 60" in texts(fig)


def test_jobs_of_one_row_show_their_point(tmp_path):
    """rounds=0 (or tol met at x^0, or max_bits=1): metrics.csv has only row 0."""
    for num, (compressor, seed) in enumerate([("top_k", 0), ("top_k", 1), ("rand_k", 0)]):
        m = fake_metrics(compressor, seed).iloc[:1]
        s = fake_summary(compressor, seed, m, stop_reason="tol")
        write_job(tmp_path, num, [f"compressor={compressor}", f"seed={seed}"], s, m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_of(tmp_path)
    for ax in fig.axes[:4]:
        lines = lines_by_label(ax)
        assert set(lines) == {"top_k (mean \u00b1 std over 2 seeds)", "rand_k"}
        for line in lines.values():
            assert len(line.get_xdata()) == 1 and line.get_marker() == "o"
            lo, hi = ax.get_ylim()
            assert lo < line.get_ydata()[0] < hi and hi / lo < 1e3


def test_an_interrupted_job_is_drawn_marked_and_listed(tmp_path):
    m = fake_metrics("top_k", 0)
    write_job(tmp_path, 0, ["compressor=top_k", "seed=0"], fake_summary("top_k", 0, m), m)
    m = fake_metrics("top_k", 1).iloc[:5]  # SIGTERM after round 40
    s = fake_summary("top_k", 1, m, status="interrupted", stop_reason="signal", signal="SIGTERM")
    write_job(tmp_path, 1, ["compressor=top_k", "seed=1"], s, m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = report(tmp_path)
        fig = figure_of(tmp_path)
    assert result["interrupted"] == [1] and result["incomplete"] == []
    line = lines_by_label(fig.axes[0])["top_k (job 1 interrupted)"]
    assert len(line.get_xdata()) == 5 and line.get_xdata()[-1] == 40
    stop = lines_by_label(fig.axes[0])["_stop: top_k (job 1 interrupted)"]
    assert stop.get_marker() == "|"  # at its last row, whose value is drawable
    np.testing.assert_allclose(position(stop), (40, m["grad_norm_rel"].iloc[-1]), rtol=1e-9)
    assert "top_k" in lines_by_label(fig.axes[0])  # the completed seed on its own
    box = texts(fig)
    assert (
        "interrupted: job 1 (compressor=top_k, seed=1): interrupted by SIGTERM at round 40" in box
    )
    assert status_counts(collect(tmp_path)) == "2 jobs (1 completed, 1 interrupted)"
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table["status"].tolist() == ["completed", "interrupted"]
    assert table.loc[1, "error"] == "interrupted by SIGTERM at round 40, before it finished"
