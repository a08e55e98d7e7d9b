"""The per-run figure (loss.png), of whichever metrics the run logged (decided from the columns:
:func:`compress_bench.report.panels.is_neural`):

- a convex run: loss gap and relative gradient norm (one log y axis) against rounds and bits;
- a neural run: train and test loss (log y) and test accuracy (linear y) against rounds, epochs
  and bits;
- either, with a simulated network (spec 28): also against the simulated time ``sim_time``.

Only the drawable points are drawn and the y limits come from them
(:mod:`compress_bench.report.logaxes`), so a diverged run's last rows (``inf``, 1e300) neither
hide its finite part nor make matplotlib warn. A run that stopped early gets a marker where it
stopped, at the x of its last metrics row (:func:`compress_bench.report.logaxes.plot_stop`): an
``x`` when it diverged, a ``|`` when it was interrupted; the legend says at which round. A run
of one row (``rounds=0``, ``tol`` met at x^0) shows its point. The status comes from the
summary.json beside metrics.csv when there is one (the runners write it before drawing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from compress_bench.report.jobs import DIVERGED, INTERRUPTED, read_metrics_file
from compress_bench.report.logaxes import (
    ABSURD,
    DIVERGED_MARKER,
    INTERRUPTED_MARKER,
    drawable,
    plot_curve,
    plot_stop,
    set_log_ylim,
)
from compress_bench.report.panels import (
    EPOCH,
    SIM_TIME,
    SIM_TIME_LABEL,
    TEST_ACCURACY,
    TEST_LOSS,
    TRAIN_LOSS,
    Metric,
    is_neural,
)

CURVES = (  # (metrics column, legend label)
    ("loss_gap", r"$f(x^k) - f^*$"),
    ("grad_norm_rel", r"$\|\nabla f(x^k)\| / \|\nabla f(x^0)\|$"),
)
PANELS = (("round", "round"), ("bits", "uplink bits per worker"))  # (x column, x label)
NEURAL_PANELS = (("round", "round"), (EPOCH, "epoch"), ("bits", "uplink bits per worker"))
TIME_PANEL = (SIM_TIME, SIM_TIME_LABEL)  # drawn last when the run logs it (spec 28)
# the rows of a neural run's figure: the two losses share a log axis, the accuracy is linear
NEURAL_ROWS = (((TRAIN_LOSS, TEST_LOSS), "loss"), ((TEST_ACCURACY,), "test accuracy"))
# the runner stops when one of these is not finite (loss, grad_norm: convex; train_loss: neural)
DIVERGENCE_COLUMNS = ("loss", "grad_norm")
NEURAL_DIVERGENCE_COLUMNS = ("train_loss", "test_loss")


def divergence(frame: pd.DataFrame) -> str | None:
    """How the run diverged, for the legend: ``"diverged at round 31"`` (the first logged round
    whose loss or gradient norm is not finite, as the runner decides), else ``"beyond 1e+100
    from round 20"`` (a run still finite but past any meaningful value); None if neither.
    A neural run's losses count only when infinite: its first row has no training loss yet
    (``nan``), and a loss that became ``nan`` is told by the status in summary.json."""
    if "round" not in frame:
        return None
    neural = is_neural(frame.columns)
    rounds = frame["round"].to_numpy(dtype=float)
    columns = NEURAL_DIVERGENCE_COLUMNS if neural else DIVERGENCE_COLUMNS
    values = [
        pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
        for c in columns
        if c in frame
    ]
    if not values:
        return None
    with np.errstate(invalid="ignore"):
        bad = np.isinf if neural else (lambda v: ~np.isfinite(v))
        nonfinite = np.any([bad(v) for v in values], axis=0)
        absurd = np.any([np.abs(v) > ABSURD for v in values], axis=0)
    if nonfinite.any():
        return f"diverged at round {rounds[np.argmax(nonfinite)]:g}"
    if absurd.any():
        return f"beyond {ABSURD:g} from round {rounds[np.argmax(absurd)]:g}"
    return None


def _last_round(frame: pd.DataFrame) -> str:
    rounds = pd.to_numeric(frame.get("round", pd.Series(dtype=float)), errors="coerce").dropna()
    return f" at round {rounds.iloc[-1]:g}" if len(rounds) else ""


def stop_of(frame: pd.DataFrame, status: str | None) -> tuple[str | None, str]:
    """(the stop marker, the legend's note) of a run: an ``x`` and "diverged at round n" for a
    run that diverged (its status, or its values: :func:`divergence`), a ``|`` and
    "interrupted at round n" for an interrupted one, else (None, "")."""
    diverged = divergence(frame)
    if diverged is None and status == DIVERGED:
        diverged = f"diverged{_last_round(frame)}"
    if diverged is not None:
        return DIVERGED_MARKER, diverged
    if status == INTERRUPTED:
        return INTERRUPTED_MARKER, f"interrupted{_last_round(frame)}"
    return None, ""


def _draw(ax: Axes, frame, xcol: str, metric: Metric, marker, colour: str, label: str):
    """One curve of a panel (its drawable points) and its stop marker; the y values drawn."""
    if xcol not in frame or metric.column not in frame:
        return None
    x, y = drawable(frame[xcol], frame[metric.column], metric.log)
    plot_curve(ax, x, y, color=colour, label=label)
    if marker is not None and len(x):
        stop = f"_stop: {label}"
        plot_stop(
            ax, frame[xcol], frame[metric.column], marker, metric.log, color=colour, label=stop
        )
    return y


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no finite value to draw", transform=ax.transAxes, ha="center")


def figure_convex(frame: pd.DataFrame, title: str = "", status: str | None = None) -> Figure:
    """The two panels (x: rounds, x: bits per worker; a third, x: simulated time, when the run
    logs ``sim_time``) of a convex run's metrics (not saved)."""
    panels = PANELS + ((TIME_PANEL,) if SIM_TIME in frame else ())
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    marker, note = stop_of(frame, status)
    suffix = f" ({note})" if note else ""
    shown = []
    for ax, (xcol, xlabel) in zip(axes, panels, strict=True):
        for i, (ycol, label) in enumerate(CURVES):
            y = _draw(ax, frame, xcol, Metric(ycol, label), marker, f"C{i}", label + suffix)
            if y is not None:
                shown.append(y)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    set_log_ylim(axes[0], shown)  # the y axis is shared: one call sets both panels
    if any(line.get_label()[:1] != "_" for line in axes[0].get_lines()):
        axes[0].legend()
    else:
        _no_data(axes[0])
    if title:
        fig.suptitle(title)
    return fig


def figure_neural(frame: pd.DataFrame, title: str = "", status: str | None = None) -> Figure:
    """The six panels of a neural run's metrics (not saved): train and test loss (log y), then
    test accuracy (linear y), each against rounds, epochs and bits per worker."""
    panels = [(x, label) for x, label in (*NEURAL_PANELS, TIME_PANEL) if x in frame]
    panels = panels or list(NEURAL_PANELS[:1])
    fig = Figure(figsize=(4.4 * len(panels) + 1.5, 7.5), layout="constrained")
    axes = fig.subplots(len(NEURAL_ROWS), len(panels), sharey="row", squeeze=False)
    marker, note = stop_of(frame, status)
    suffix = f" ({note})" if note else ""
    colours = {TRAIN_LOSS: "C0", TEST_LOSS: "C1", TEST_ACCURACY: "C2"}
    for r, (metrics, ylabel) in enumerate(NEURAL_ROWS):
        shown = []
        for ax, (xcol, xlabel) in zip(axes[r], panels, strict=True):
            for metric in metrics:
                label = metric.label + suffix
                y = _draw(ax, frame, xcol, metric, marker, colours[metric], label)
                if y is not None:
                    shown.append(y)
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
        first = axes[r][0]
        first.set_ylabel(ylabel)
        if metrics[0].log:
            set_log_ylim(first, shown)  # the row shares its y axis: one call sets it
        if any(line.get_label()[:1] != "_" for line in first.get_lines()):
            first.legend()
        else:
            _no_data(first)
    if title:
        fig.suptitle(title)
    return fig


def figure_run(frame: pd.DataFrame, title: str = "", status: str | None = None) -> Figure:
    """loss.png of one run's metrics (not saved): :func:`figure_neural` for the metrics of a
    neural run, else :func:`figure_convex`. ``status``: the run's, from summary.json (None:
    unknown; a divergence is then told by the values)."""
    if is_neural(frame.columns):
        return figure_neural(frame, title, status)
    return figure_convex(frame, title, status)


def _status_beside(metrics_csv: Path) -> str | None:
    """The status in the summary.json beside metrics.csv; None without a readable one."""
    try:
        summary = json.loads((Path(metrics_csv).parent / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return str(summary.get("status")) if isinstance(summary, dict) else None


def plot_run(metrics_csv: Path, out_png: Path, title: str = "", status: str | None = None) -> Path:
    """Draw ``metrics_csv`` (:func:`figure_run`) into ``out_png``; returns its path. ``status``
    defaults to the one in the summary.json beside metrics.csv. Rows that are not whole (a
    truncated last line) are left out (:func:`compress_bench.report.jobs.read_metrics_file`)."""
    frame, error, _ = read_metrics_file(Path(metrics_csv))
    if frame is None:
        raise ValueError(f"{metrics_csv}: {error}")
    if status is None:
        status = _status_beside(Path(metrics_csv))
    figure_run(frame, title, status).savefig(out_png, dpi=120)
    return Path(out_png)
