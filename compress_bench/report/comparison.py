"""comparison.png: the metrics of a sweep's jobs against rounds (epochs) and bits, one line per
label.

What is drawn follows what the jobs logged (:mod:`compress_bench.report.panels`): convex jobs
give the relative gradient norm and the loss gap (rows) against rounds and bits (columns);
neural jobs give the train loss, the test loss and the test accuracy against rounds, epochs and
bits; a sweep of both kinds gets every row. Seeds of one configuration share a line: with two
or more completed seeds, the line is the mean over seeds (of log10(y) on a log axis, of y on the
linear accuracy axis) and the band +- one standard deviation
(:mod:`compress_bench.report.stats`). The colour tells the operator, the line style the method
(or other swept key), the legend uses the runs' display names
(:mod:`compress_bench.report.styling`). Diverged jobs are drawn dashed, interrupted jobs in
their own style, each on its own up to its last drawable point, and marked where they stopped
(the x of their last metrics row: an ``x`` for diverged, a ``|`` for interrupted, on the axis
edge when the value went past it: :func:`compress_bench.report.logaxes.plot_stop`); a job with
a malformed metrics.csv is drawn on its own from its whole rows; a curve of one point (a one-row
run) gets a marker. The y limits of a log axis come from the drawable points of every curve
(:mod:`compress_bench.report.logaxes`). Every problem job is listed in a box under the panels
(:func:`compress_bench.report.table.problem_lines`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.lines import Line2D

from compress_bench.report.jobs import (
    COMPLETED,
    DIVERGED,
    DRAWN,
    INTERRUPTED,
    read_metrics,
    read_summary,
)
from compress_bench.report.logaxes import (
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
    Metric,
    metrics_in,
    x_columns,
)
from compress_bench.report.problems import MALFORMED
from compress_bench.report.stats import mean_std
from compress_bench.report.styling import DIVERGED_STYLE, display_names, line_styles
from compress_bench.report.table import (
    SUMMARY_CSV,
    label_of,
    problem_lines,
    status_counts,
    varying_keys,
)
from compress_bench.report.values import present

COMPARISON_PNG = "comparison.png"
PANELS = (  # the convex figure: (row, column, y column, y label, x is bits)
    (0, 0, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", False),
    (0, 1, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", True),
    (1, 0, "loss_gap", r"$f(x^k) - f^*$", False),
    (1, 1, "loss_gap", r"$f(x^k) - f^*$", True),
)
MAX_BOX_LINES = 12
FIG_WIDTH = 15.0  # inches, with two columns of panels; a third adds COLUMN_WIDTH
COLUMN_WIDTH = 5.0
ROW_HEIGHT = 4.2  # inches per row of panels
TOP_INCHES = 0.55  # above the panels: the title
MALFORMED_NOTE = "malformed metrics.csv"


@dataclass
class _Canvas:
    """The figure being drawn: its axes (one row per metric, one column per x axis), their
    grid, and what was drawn on them."""

    fig: Figure
    grid: GridSpec
    axes: list[list[Axes]]
    height: float
    width: float
    metrics: tuple[Metric, ...]
    xcols: tuple[str, ...]
    handles: dict[str, Line2D] = field(default_factory=dict)  # legend entry -> line
    shown: dict[int, list[Any]] = field(default_factory=dict)  # row -> ys


def _bits_label(column: str) -> str:
    if column == "bits":
        return "uplink bits per worker (bits)"
    if column == "bits_thesis":
        return "uplink bits per worker (bits_thesis: thesis convention)"
    return f"uplink bits ({column})"


def _x_label(column: str, bits_column: str) -> str:
    if column == bits_column:
        return _bits_label(column)
    if column == SIM_TIME:
        return SIM_TIME_LABEL
    return "epoch" if column == EPOCH else column


def _plain(text: str) -> str:
    """Text shown as typed (a '$' would start mathtext and could break the drawing)."""
    return str(text).replace("$", r"\$")


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def box_lines(frame: pd.DataFrame) -> list[str]:
    """The problem list under the panels: at most MAX_BOX_LINES lines, then a count."""
    problems = problem_lines(frame)
    box = [_clip(text) for _, _, text in problems[:MAX_BOX_LINES]]
    if len(problems) > MAX_BOX_LINES:
        box.append(f"... and {len(problems) - MAX_BOX_LINES} more (see {SUMMARY_CSV})")
    return box


def _layout(metrics: Sequence[Metric], xcols: Sequence[str], box_height: float) -> _Canvas:
    """A fixed layout (constrained layout doubles the drawing time): a row of panels per
    metric (sharing its y axis), a column per x axis, room for the legend at their right (set
    later) and for the problem box under them."""
    rows, cols = len(metrics), len(xcols)
    height = ROW_HEIGHT * rows + box_height
    width = FIG_WIDTH + COLUMN_WIDTH * max(0, cols - 2)
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        rows,
        cols,
        left=0.07 * FIG_WIDTH / width,
        top=1 - TOP_INCHES / height,
        bottom=(box_height + 0.6) / height,
        hspace=0.3,
        wspace=0.12,
    )
    axes = [[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(rows)]
    for row in axes:
        for ax in row[1:]:
            ax.sharey(row[0])
    shown: dict[int, list[Any]] = {r: [] for r in range(rows)}
    return _Canvas(fig, grid, axes, height, width, tuple(metrics), tuple(xcols), shown=shown)


def _curves(
    jobs: Sequence[int], metrics: Mapping[int, pd.DataFrame | None], xcol: str, ycol: str
) -> list[tuple[int, Any, Any]]:
    """(job, x, y) of the jobs whose metrics have both columns."""
    out = []
    for j in jobs:
        m = metrics.get(j)
        if m is not None and xcol in m and ycol in m:
            out.append((j, m[xcol], m[ycol]))
    return out


def _add(canvas: _Canvas, r: int, name: str, line: Line2D | None, *ys: Any) -> None:
    """Record a drawn line: its legend entry and the y values the limits must include."""
    if line is None:
        return
    canvas.handles.setdefault(name, line)
    canvas.shown[r].extend(ys)


def _draw_completed(canvas, r, ax, name, curves, style, log) -> None:
    """The completed seeds of a label: mean +- std when two or more share a range, else each
    on its own."""
    colour, ls, marker = style
    band = mean_std([(x, y) for _, x, y in curves], log=log) if len(curves) >= 2 else None
    common = dict(color=colour, ls=ls, marker=marker, markevery=0.1)
    if band is not None:
        x, mean, std = band
        entry = f"{name} (mean \u00b1 std over {len(curves)} seeds)"
        centre, lo, hi = mean, mean - std, mean + std
        if log:  # the statistics are of log10(y)
            centre, lo, hi = 10**centre, 10**lo, 10**hi
        line = plot_curve(ax, x, centre, lw=1.6, label=entry, **common)
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
        _add(canvas, r, entry, line, centre, lo, hi)
        return
    for _, x, y in curves:  # one seed, or seeds without a common range
        x, y = drawable(x, y, log)
        _add(canvas, r, name, plot_curve(ax, x, y, lw=1.4, label=name, **common), y)


def _draw_alone(canvas, r, ax, name, curves, style, note, log) -> None:
    """Jobs drawn each on its own line up to its last drawable point, named by ``note``:
    diverged (dashed, an x where it stopped), interrupted (its label's style, a | where it
    stopped), or with a malformed metrics.csv (its label's style, no stop marker: its last
    rows may be the ones lost)."""
    colour, ls, _ = style
    diverged, interrupted = note == DIVERGED, note == INTERRUPTED
    marker = DIVERGED_MARKER if diverged else INTERRUPTED_MARKER if interrupted else None
    for j, x_all, y_all in curves:
        x, y = drawable(x_all, y_all, log)
        entry = (
            f"{name} (job {j} {note})" if diverged or interrupted else f"{name} (job {j}: {note})"
        )
        style_of = dict(color=colour, ls=DIVERGED_STYLE if diverged else ls, alpha=0.8)
        line = plot_curve(ax, x, y, lw=1.0 if diverged else 1.2, label=entry, **style_of)
        _add(canvas, r, entry, line, y)
        if marker is not None and line is not None:
            plot_stop(ax, x_all, y_all, marker, log, color=colour, label=f"_stop: {entry}")


def _draw_label(canvas, name, rows, metrics, style, malformed) -> None:
    """Every drawn job of one label on every panel."""
    by_status = {s: [int(j) for j in rows.loc[rows["status"] == s, "job"]] for s in DRAWN}
    odd = [j for j in by_status[COMPLETED] if j in malformed]
    completed = [j for j in by_status[COMPLETED] if j not in malformed]
    for r, metric in enumerate(canvas.metrics):
        for c, xcol in enumerate(canvas.xcols):
            ax, ycol, log = canvas.axes[r][c], metric.column, metric.log
            curves = _curves(completed, metrics, xcol, ycol)
            _draw_completed(canvas, r, ax, name, curves, style, log)
            for status in (DIVERGED, INTERRUPTED):
                curves = _curves(by_status[status], metrics, xcol, ycol)
                _draw_alone(canvas, r, ax, name, curves, style, status, log)
            curves = _curves(odd, metrics, xcol, ycol)
            _draw_alone(canvas, r, ax, name, curves, style, MALFORMED_NOTE, log)


def _finish_axes(canvas: _Canvas, x_bits_column: str) -> None:
    """Log y (linear for the accuracy) with limits from what was drawn on each row (a row
    shares its y axis)."""
    for r, metric in enumerate(canvas.metrics):
        for c, xcol in enumerate(canvas.xcols):
            ax = canvas.axes[r][c]
            if metric.log:
                ax.set_yscale("log")
            ax.set_xlabel(_x_label(xcol, x_bits_column))
            if c == 0:
                ax.set_ylabel(metric.label)
                if metric.log:
                    set_log_ylim(ax, canvas.shown[r])
            ax.grid(True, which="major", alpha=0.35)
            ax.grid(True, which="minor", alpha=0.1)


def _legend(canvas: _Canvas) -> None:
    """The legend at the right of the panels, which shrink to its measured width."""
    fig, height = canvas.fig, canvas.height
    if not canvas.handles:
        ax = canvas.axes[0][0]
        ax.text(0.5, 0.5, "no completed job to draw", transform=ax.transAxes, ha="center")
        return
    legend = fig.legend(
        list(canvas.handles.values()),
        [_clip(_plain(name), 80) for name in canvas.handles],
        loc="upper right",
        bbox_to_anchor=(0.995, 1 - TOP_INCHES / height),
        fontsize=8,
        frameon=False,
    )
    renderer = FigureCanvasAgg(fig).get_renderer()
    width = legend.get_window_extent(renderer).width / fig.dpi  # inches
    canvas.grid.update(right=max(0.45, 1 - (width + 0.15) / canvas.width))
    for ax in (a for row in canvas.axes for a in row):  # update() moves pyplot figures only
        ax.set_position(ax.get_subplotspec().get_position(fig))


def _with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    if "label" in frame.columns:
        return frame
    frame = frame.copy()
    keys = varying_keys(frame)
    frame["label"] = [label_of(row, keys) for _, row in frame.iterrows()]
    return frame


def figure_comparison(
    frame: pd.DataFrame,
    metrics: Mapping[int, pd.DataFrame | None],
    x_bits_column: str = "bits",
    title: str = "",
    summaries: Mapping[int, Mapping[str, Any] | None] | None = None,
) -> Figure:
    """The comparison figure (not saved). ``metrics`` maps job number -> metrics.csv,
    ``summaries`` job number -> summary.json (for the legend's display names; without them,
    the labels)."""
    frame = _with_labels(frame)
    box = box_lines(frame)
    box_height = 0.25 + 0.16 * len(box) if box else 0.0
    drawn = frame[frame["status"].isin(DRAWN)]
    tables = [metrics[int(j)].columns for j in drawn["job"] if metrics.get(int(j)) is not None]
    canvas = _layout(metrics_in(tables), x_columns(tables, x_bits_column), box_height)
    styles, names = line_styles(frame), display_names(frame, summaries)
    malformed = {j for j, kind, _ in problem_lines(frame) if kind == MALFORMED}
    for label in dict.fromkeys(drawn.sort_values("job")["label"]):
        rows = drawn[drawn["label"] == label]
        _draw_label(canvas, names[label], rows, metrics, styles[label], malformed)
    _finish_axes(canvas, x_bits_column)
    _legend(canvas)
    if box:
        canvas.fig.text(
            0.01,
            (box_height + 0.05) / canvas.height,
            "\n".join(box),
            ha="left",
            va="top",
            family="monospace",
            fontsize=8,
            color="#8b0000",
            parse_math=False,
        )
    if title:
        canvas.fig.suptitle(_plain(title))
    return canvas.fig


def title_of(frame: pd.DataFrame, sweep_dir: Path) -> str:
    """ "<problem>: 4 jobs (2 completed, 2 missing) - <last two parts of the sweep folder>"."""
    problems = [
        str(p) for p in dict.fromkeys(frame.get("problem", pd.Series(dtype=object))) if present(p)
    ]
    head = f"{' / '.join(problems)}: " if problems else ""
    where = "/".join(sweep_dir.resolve().parts[-2:])
    return f"{head}{status_counts(frame)} - {where}"


def save_comparison(
    frame: pd.DataFrame,
    metrics: Mapping[int, pd.DataFrame | None],
    sweep_dir: Path,
    x_bits_column: str,
    summaries: Mapping[int, Mapping[str, Any] | None] | None = None,
) -> list[Path]:
    """Draw and write ``<sweep_dir>/comparison.png``; returns [its path]."""
    title = title_of(frame, sweep_dir)
    fig = figure_comparison(frame, metrics, x_bits_column, title=title, summaries=summaries)
    out = sweep_dir / COMPARISON_PNG
    fig.savefig(out, dpi=110)
    return [out]


def plot_comparison(
    frame: pd.DataFrame, sweep_dir: Path | str, x_bits_column: str = "bits"
) -> list[Path]:
    """Write ``<sweep_dir>/comparison.png`` from the table of :func:`collect`."""
    sweep_dir = Path(sweep_dir)
    drawn = [int(j) for j in frame.loc[frame["status"].isin(DRAWN), "job"]]
    metrics = {j: read_metrics(sweep_dir / str(j)) for j in drawn}
    summaries = {j: read_summary(sweep_dir / str(j))[0] for j in drawn}
    return save_comparison(frame, metrics, sweep_dir, x_bits_column, summaries)
