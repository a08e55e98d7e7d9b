"""comparison.png: relative gradient norm and loss gap against rounds and bits, one line per label.

Seeds of one configuration share a line: with two or more completed seeds, the line is the mean
of log10(y) over seeds and the band +- one standard deviation (:mod:`compress_bench.report.stats`).
Each compressor keeps its colour in every figure (:mod:`compress_bench.report.styling`).
Diverged jobs are drawn dashed up to their last drawable point, which an ``x`` marks;
interrupted jobs are drawn on their own up to the round they reached, which a ``|`` marks; a
curve of one point (a one-row run) gets a marker. The y limits come from the drawable points of
every curve (:mod:`compress_bench.report.logaxes`). Every problem job is listed in a box under
the panels (:func:`compress_bench.report.table.problem_lines`).
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

from compress_bench.report.jobs import COMPLETED, DIVERGED, DRAWN, INTERRUPTED, read_metrics
from compress_bench.report.logaxes import DIVERGED_MARKER, drawable, plot_curve, set_log_ylim
from compress_bench.report.stats import mean_std_log10
from compress_bench.report.styling import DIVERGED_STYLE, line_styles
from compress_bench.report.table import (
    SUMMARY_CSV,
    label_of,
    problem_lines,
    status_counts,
    varying_keys,
)
from compress_bench.report.values import present

COMPARISON_PNG = "comparison.png"
PANELS = (  # (row, column, y column, y label, x is bits)
    (0, 0, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", False),
    (0, 1, "grad_norm_rel", r"$\|\nabla f(x^k)\| \,/\, \|\nabla f(x^0)\|$", True),
    (1, 0, "loss_gap", r"$f(x^k) - f^*$", False),
    (1, 1, "loss_gap", r"$f(x^k) - f^*$", True),
)
INTERRUPTED_MARKER = "|"
MAX_BOX_LINES = 12
FIG_WIDTH = 15.0  # inches
TOP_INCHES = 0.55  # above the panels: the title


@dataclass
class _Canvas:
    """The figure being drawn: its 2x2 axes, their grid, and what was drawn on them."""

    fig: Figure
    grid: GridSpec
    axes: list[list[Axes]]
    height: float
    handles: dict[str, Line2D] = field(default_factory=dict)  # legend entry -> line
    shown: dict[int, list[Any]] = field(default_factory=lambda: {0: [], 1: []})  # row -> ys


def _bits_label(column: str) -> str:
    if column == "bits":
        return "uplink bits per worker (bits)"
    if column == "bits_thesis":
        return "uplink bits per worker (bits_thesis: thesis convention)"
    return f"uplink bits ({column})"


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


def _layout(box_height: float) -> _Canvas:
    """A fixed layout (constrained layout doubles the drawing time): the 2x2 panels, room for
    the legend at their right (set later) and for the problem box under them."""
    height = 8.4 + box_height
    fig = Figure(figsize=(FIG_WIDTH, height))
    grid = fig.add_gridspec(
        2,
        2,
        left=0.07,
        top=1 - TOP_INCHES / height,
        bottom=(box_height + 0.6) / height,
        hspace=0.3,
        wspace=0.12,
    )
    axes = [[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)]
    axes[0][1].sharey(axes[0][0])
    axes[1][1].sharey(axes[1][0])
    return _Canvas(fig, grid, axes, height)


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


def _draw_completed(canvas, r, ax, label, curves, style) -> None:
    """The completed seeds of a label: mean +- std when two or more share a range, else each
    on its own."""
    colour, ls, marker = style
    band = mean_std_log10([(x, y) for _, x, y in curves]) if len(curves) >= 2 else None
    common = dict(color=colour, ls=ls, marker=marker, markevery=0.1)
    if band is not None:
        x, mean, std = band
        name = f"{label} (mean \u00b1 std over {len(curves)} seeds)"
        lo, hi = 10 ** (mean - std), 10 ** (mean + std)
        line = plot_curve(ax, x, 10**mean, lw=1.6, label=name, **common)
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
        _add(canvas, r, name, line, 10**mean, lo, hi)
        return
    for _, x, y in curves:  # one seed, or seeds without a common range
        x, y = drawable(x, y)
        _add(canvas, r, label, plot_curve(ax, x, y, lw=1.4, label=label, **common), y)


def _draw_unfinished(canvas, r, ax, label, curves, style, status) -> None:
    """Diverged (dashed, ending in an x) and interrupted (own style, ending in a |) jobs, each
    on its own line up to its last drawable point."""
    colour, ls, _ = style
    diverged = status == DIVERGED
    for j, x, y in curves:
        x, y = drawable(x, y)
        name = f"{label} (job {j} {status})"
        line = plot_curve(
            ax,
            x,
            y,
            end_marker=DIVERGED_MARKER if diverged else INTERRUPTED_MARKER,
            color=colour,
            ls=DIVERGED_STYLE if diverged else ls,
            lw=1.0 if diverged else 1.2,
            alpha=0.8,
            label=name,
        )
        _add(canvas, r, name, line, y)


def _draw_label(canvas, label, rows, metrics, style, x_bits_column) -> None:
    """Every drawn job of one label on the four panels."""
    by_status = {s: [int(j) for j in rows.loc[rows["status"] == s, "job"]] for s in DRAWN}
    for r, c, ycol, _, bits in PANELS:
        ax, xcol = canvas.axes[r][c], (x_bits_column if bits else "round")
        completed = _curves(by_status[COMPLETED], metrics, xcol, ycol)
        _draw_completed(canvas, r, ax, label, completed, style)
        for status in (DIVERGED, INTERRUPTED):
            curves = _curves(by_status[status], metrics, xcol, ycol)
            _draw_unfinished(canvas, r, ax, label, curves, style, status)


def _finish_axes(canvas: _Canvas, x_bits_column: str) -> None:
    """Log y with limits from what was drawn on each row (the rows share their y axis)."""
    for r, c, _, ylabel, bits in PANELS:
        ax = canvas.axes[r][c]
        ax.set_yscale("log")
        ax.set_xlabel(_bits_label(x_bits_column) if bits else "round")
        if c == 0:
            ax.set_ylabel(ylabel)
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
    canvas.grid.update(right=max(0.45, 1 - (width + 0.15) / FIG_WIDTH))
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
) -> Figure:
    """The 2x2 comparison figure (not saved). ``metrics`` maps job number -> metrics.csv."""
    frame = _with_labels(frame)
    box = box_lines(frame)
    box_height = 0.25 + 0.16 * len(box) if box else 0.0
    canvas = _layout(box_height)
    styles = line_styles(frame)
    drawn = frame[frame["status"].isin(DRAWN)]
    for label in dict.fromkeys(drawn.sort_values("job")["label"]):
        rows = drawn[drawn["label"] == label]
        _draw_label(canvas, label, rows, metrics, styles[label], x_bits_column)
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
) -> list[Path]:
    """Draw and write ``<sweep_dir>/comparison.png``; returns [its path]."""
    fig = figure_comparison(frame, metrics, x_bits_column, title=title_of(frame, sweep_dir))
    out = sweep_dir / COMPARISON_PNG
    fig.savefig(out, dpi=110)
    return [out]


def plot_comparison(
    frame: pd.DataFrame, sweep_dir: Path | str, x_bits_column: str = "bits"
) -> list[Path]:
    """Write ``<sweep_dir>/comparison.png`` from the table of :func:`collect`."""
    sweep_dir = Path(sweep_dir)
    metrics = {
        int(j): read_metrics(sweep_dir / str(int(j)))
        for j in frame.loc[frame["status"].isin(DRAWN), "job"]
    }
    return save_comparison(frame, metrics, sweep_dir, x_bits_column)
