"""loss.png (report/plots.py): a diverged run's inf / 1e300 rows do not reach the log axes, a
one-row run shows its point, and matplotlib never warns."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from compress_bench.report.logaxes import ABSURD, log_limits
from compress_bench.report.plots import CURVES, divergence, figure_run, plot_run


def run_frame(rel: list[float], gap: list[float] | None = None) -> pd.DataFrame:
    """metrics.csv rows, logged every 10 rounds, with the given relative gradient norms."""
    rel = np.asarray(rel, dtype=float)
    gap = rel * 0.5 if gap is None else np.asarray(gap, dtype=float)
    rounds = np.arange(len(rel)) * 10
    return pd.DataFrame(
        {
            "round": rounds,
            "loss": 0.3 + gap,
            "loss_gap": gap,
            "grad_norm": 2.0 * rel,
            "grad_norm_rel": rel,
            "bits": rounds * 148.0,
        }
    )


def drawn(fig, panel: int = 0) -> list:
    """The curves of a panel that hold data (not the stop markers)."""
    return [
        line
        for line in fig.axes[panel].get_lines()
        if len(line.get_xdata()) and not line.get_label().startswith("_stop")
    ]


def stops(ax) -> list:
    """The stop markers of a panel (plot_stop labels them "_stop...")."""
    return [line for line in ax.get_lines() if line.get_label().startswith("_stop")]


def position(line) -> tuple[float, float]:
    """Where a one-point line is drawn, in the data coordinates of its axes (a marker placed
    on the axis edge, in axes coordinates, comes out at the y limit)."""
    ax = line.axes
    point = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
    x, y = ax.transData.inverted().transform(line.get_transform().transform(point))[0]
    return float(x), float(y)


def render(fig) -> None:
    """Draw the figure into a PNG in memory: the warnings come at drawing time."""
    fig.savefig(io.BytesIO(), format="png", dpi=50)


DIVERGED = [1.0, 0.5, 3.0, 1e5, 1e50, 1e300, math.inf]  # lr=1e6: x^k explodes, then inf


def test_a_diverged_run_is_scaled_to_its_finite_part_without_warnings(tmp_path):
    frame = run_frame(DIVERGED)
    frame.loc[6, "loss"] = math.inf  # the runner's divergence: a non-finite loss
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matplotlib or numpy warning fails the test
        fig = figure_run(pd.read_csv(tmp_path / "metrics.csv"), title="lr=1e6 (diverged)")
        render(fig)
        plot_run(tmp_path / "metrics.csv", tmp_path / "loss.png")  # the runner's call
    lo, hi = fig.axes[0].get_ylim()
    # the limits hold the drawable values, 0.25 (f - f* at round 10) to 1e50, with 5% of the
    # decades as margin: not 1e300, not inf (and not 10^0..10^1, as before)
    pad = 0.05 * (50 - math.log10(0.25))
    np.testing.assert_allclose([lo, hi], [0.25 / 10**pad, 1e50 * 10**pad], rtol=1e-9)
    assert fig.axes[1].get_ylim() == (lo, hi)  # the bits panel shares the y axis
    for line in drawn(fig, 0) + drawn(fig, 1):
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all(np.isfinite(y)) and y.max() <= ABSURD
        assert "diverged at round 60" in line.get_label()
    for panel, stop_x in ((0, 60.0), (1, 60 * 148.0)):  # where it stopped: its last row
        marks = stops(fig.axes[panel])
        assert len(marks) == 2 and all(m.get_marker() == "x" for m in marks)
        for mark in marks:  # inf there: on the top edge, not at 1e50 (round 40)
            np.testing.assert_allclose(position(mark), (stop_x, hi), rtol=1e-9)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 2 and all("diverged at round 60" in t for t in legend)
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_a_run_of_one_row_shows_its_point():
    frame = run_frame([1.0], gap=[0.2])  # rounds=0, tol met at x^0, or max_bits=1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(frame)
        render(fig)
    for panel in (0, 1):
        lines = drawn(fig, panel)
        assert len(lines) == 2
        for line in lines:
            assert len(line.get_xdata()) == 1 and line.get_marker() == "o"
    lo, hi = fig.axes[0].get_ylim()
    assert lo < 0.2 < 1.0 < hi and hi / lo < 1e3  # both points, and not 10^-300..10^300


def test_a_converging_run_keeps_its_curves_and_limits():
    rel = [10.0**-k for k in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(run_frame(rel, gap=[0.5 * r for r in rel[:-1]] + [0.0]))
        render(fig)
    lines = drawn(fig, 0)
    assert [len(line.get_xdata()) for line in lines] == [7, 8]  # f - f* = 0 is not drawable
    assert all(line.get_marker() in ("None", None, "") for line in lines)
    lo, hi = fig.axes[0].get_ylim()
    assert 1e-8 < lo <= 5e-7 and 1.0 <= hi < 10.0
    assert divergence(run_frame(rel)) is None


def test_divergence_names_the_runners_round_or_the_absurd_one():
    assert divergence(run_frame(DIVERGED)) == "diverged at round 60"
    assert divergence(run_frame([1.0, 1e120, 1e200])) == "beyond 1e+100 from round 10"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[1.0, 1e-4]], (10**-4.2, 10**0.2)),  # 5% of 4 decades each side
        ([[3.0]], (3.0 / 10**0.5, 3.0 * 10**0.5)),  # one value: half a decade
        ([[np.inf, np.nan, 0.0, -1.0, 1e300, 1e-300]], None),  # nothing drawable
        ([[1.0, np.inf], [1e300, 0.1]], (0.1 / 10**0.1, 10**0.1)),
    ],
)
def test_log_limits(values, expected):
    limits = log_limits(np.asarray(v) for v in values)
    if expected is None:
        assert limits is None
    else:
        np.testing.assert_allclose(limits, expected, rtol=1e-12)


# --- where a run that stopped early is marked -----------------------------------------------


@pytest.mark.parametrize(
    ("last", "status", "where", "note"),
    [
        (0.05, "interrupted", "value", "interrupted at round 30"),  # drawable: at its value
        (math.nan, "diverged", "before", "diverged at round 30"),  # nan: the last drawable
        (math.inf, "diverged", "top", "diverged at round 30"),  # past the axis: on its edge
        (1e300, "diverged", "top", "beyond 1e+100 from round 30"),
        (0.0, "interrupted", "bottom", "interrupted at round 30"),  # below a log axis
    ],
)
def test_the_stop_marker_sits_at_the_last_row(last, status, where, note):
    """The marker is at the round (and bits) of the last metrics row, where the run stopped,
    not at the last drawable point. Before, it sat on the last drawable point (round 20 for
    nan, inf, 1e300, 0), and an interrupted run (its status unknown to the figure) had none."""
    frame = run_frame([1.0, 0.5, 0.1, last], gap=[0.5, 0.25, 0.05, last])
    marker = "x" if status == "diverged" else "|"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(frame, status=status)
        render(fig)
    for panel, stop_x in ((0, 30.0), (1, 30 * 148.0)):
        ax = fig.axes[panel]
        lo, hi = ax.get_ylim()
        marks = {m.get_label(): m for m in stops(ax)}
        assert len(marks) == 2 and {m.get_marker() for m in marks.values()} == {marker}
        for column, label in CURVES:
            y = {"value": last, "before": frame[column].iloc[2], "top": hi, "bottom": lo}[where]
            mark = marks[f"_stop: {label} ({note})"]
            np.testing.assert_allclose(position(mark), (stop_x, y), rtol=1e-9)


def test_plot_run_takes_the_status_from_summary_json(tmp_path, monkeypatch):
    """The runners draw an interrupted run's rows (SIGTERM): loss.png marks it with a | at
    its last row, from the summary.json written beside metrics.csv (before: no marker)."""
    run_frame([1.0, 0.5, 0.2]).to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "summary.json").write_text('{"status": "interrupted", "signal": "SIGTERM"}')
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    plot_run(tmp_path / "metrics.csv", tmp_path / "loss.png")
    marks = stops(figures[0].axes[0])
    assert len(marks) == 2 and all(m.get_marker() == "|" for m in marks)
    assert [position(m)[0] for m in marks] == pytest.approx([20.0, 20.0])


# --- neural runs ------------------------------------------------------------------------------


def neural_frame(rows: int = 5) -> pd.DataFrame:
    """A neural run's metrics.csv (TRAINING_COLUMNS): no train loss at round 0."""
    rounds = np.arange(rows) * 10
    return pd.DataFrame(
        {
            "round": rounds,
            "epoch": rounds * 64 / 15000,
            "train_loss": [math.nan, *np.linspace(2.0, 0.5, rows - 1)],
            "test_loss": np.linspace(2.3, 0.6, rows),
            "test_accuracy": np.linspace(0.1, 0.8, rows),
            "bits": rounds * 1000.0,
            "bits_total": rounds * 4000,
            "images_per_second": 500.0,
            "wall_time": rounds * 0.01,
        }
    )


def test_a_neural_run_draws_its_losses_and_accuracy_against_rounds_epochs_and_bits(tmp_path):
    """Before, loss.png of a neural run was empty: the figure knew the convex columns only."""
    frame = neural_frame()
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = figure_run(pd.read_csv(tmp_path / "metrics.csv"), title="mnist")
        render(fig)
        plot_run(tmp_path / "metrics.csv", tmp_path / "loss.png", title="mnist")
    axes = fig.axes
    assert len(axes) == 6  # (losses, accuracy) x (round, epoch, bits)
    assert [ax.get_xlabel() for ax in axes[:3]] == ["round", "epoch", "uplink bits per worker"]
    assert [axes[0].get_ylabel(), axes[3].get_ylabel()] == ["loss", "test accuracy"]
    assert axes[0].get_yscale() == "log" and axes[3].get_yscale() == "linear"
    for col, xcol in enumerate(("round", "epoch", "bits")):
        losses = {line.get_label(): line for line in drawn(fig, col)}
        assert set(losses) == {"train loss", "test loss"}
        np.testing.assert_allclose(losses["train loss"].get_xdata(), frame[xcol][1:])
        np.testing.assert_allclose(losses["test loss"].get_ydata(), frame["test_loss"])
        (accuracy,) = drawn(fig, 3 + col)
        np.testing.assert_allclose(accuracy.get_xdata(), frame[xcol])
        np.testing.assert_allclose(accuracy.get_ydata(), frame["test_accuracy"])
    assert not any(stops(ax) for ax in axes)  # completed: no stop marker
    assert (tmp_path / "loss.png").stat().st_size > 10_000


def test_a_diverged_neural_run_is_marked_where_it_stopped():
    frame = neural_frame()
    frame.loc[4, "train_loss"] = math.inf  # the loop's divergence: a non-finite train loss
    fig = figure_run(frame)
    lo, hi = fig.axes[0].get_ylim()
    marks = {m.get_label(): m for m in stops(fig.axes[0])}
    assert {m.get_marker() for m in marks.values()} == {"x"}
    train = marks["_stop: train loss (diverged at round 40)"]
    test = marks["_stop: test loss (diverged at round 40)"]
    np.testing.assert_allclose(position(train), (40.0, hi), rtol=1e-9)  # inf: the top edge
    np.testing.assert_allclose(position(test), (40.0, 0.6), rtol=1e-9)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["train loss (diverged at round 40)", "test loss (diverged at round 40)"]
