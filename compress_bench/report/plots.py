"""The per-run figure (loss.png): loss gap and relative gradient norm against rounds and bits.

Only the drawable points are drawn and the y limits come from them
(:mod:`compress_bench.report.logaxes`), so a diverged run's last rows (``inf``, 1e300) neither
hide its finite part nor make matplotlib warn; its curves end with an ``x`` and the legend says
at which round it diverged. A run of one row (``rounds=0``, ``tol`` met at x^0) shows its point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from compress_bench.report.logaxes import (
    ABSURD,
    DIVERGED_MARKER,
    drawable,
    plot_curve,
    set_log_ylim,
)

CURVES = (  # (metrics column, legend label)
    ("loss_gap", r"$f(x^k) - f^*$"),
    ("grad_norm_rel", r"$\|\nabla f(x^k)\| / \|\nabla f(x^0)\|$"),
)
PANELS = (("round", "round"), ("bits", "uplink bits per worker"))  # (x column, x label)
DIVERGENCE_COLUMNS = ("loss", "grad_norm")  # the runner stops when one is not finite


def divergence(frame: pd.DataFrame) -> str | None:
    """How the run diverged, for the legend: ``"diverged at round 31"`` (the first logged round
    whose loss or gradient norm is not finite, as the runner decides), else ``"beyond 1e+100
    from round 20"`` (a run still finite but past any meaningful value); None if neither."""
    if "round" not in frame:
        return None
    rounds = frame["round"].to_numpy(dtype=float)
    values = [
        pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
        for c in DIVERGENCE_COLUMNS
        if c in frame
    ]
    if not values:
        return None
    with np.errstate(invalid="ignore"):
        nonfinite = np.any([~np.isfinite(v) for v in values], axis=0)
        absurd = np.any([np.abs(v) > ABSURD for v in values], axis=0)
    if nonfinite.any():
        return f"diverged at round {rounds[np.argmax(nonfinite)]:g}"
    if absurd.any():
        return f"beyond {ABSURD:g} from round {rounds[np.argmax(absurd)]:g}"
    return None


def figure_run(frame: pd.DataFrame, title: str = "") -> Figure:
    """The two panels (x: rounds, x: bits per worker) of one run's metrics (not saved)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    diverged = divergence(frame)
    suffix = "" if diverged is None else f" ({diverged})"
    shown = []
    for ax, (xcol, xlabel) in zip(axes, PANELS, strict=True):
        for i, (ycol, label) in enumerate(CURVES):
            if xcol not in frame or ycol not in frame:
                continue
            x, y = drawable(frame[xcol], frame[ycol])
            end = None if diverged is None else DIVERGED_MARKER
            plot_curve(ax, x, y, end_marker=end, color=f"C{i}", label=label + suffix)
            shown.append(y)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    set_log_ylim(axes[0], shown)  # the y axis is shared: one call sets both panels
    if axes[0].get_lines():
        axes[0].legend()
    else:
        axes[0].text(0.5, 0.5, "no finite value to draw", transform=axes[0].transAxes, ha="center")
    if title:
        fig.suptitle(title)
    return fig


def plot_run(metrics_csv: Path, out_png: Path, title: str = "") -> Path:
    """Draw ``metrics_csv`` (:func:`figure_run`) into ``out_png``; returns its path."""
    frame = pd.read_csv(metrics_csv).apply(pd.to_numeric, errors="coerce")
    figure_run(frame, title).savefig(out_png, dpi=120)
    return Path(out_png)
