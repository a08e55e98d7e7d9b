"""The per-run figure: loss gap and relative gradient norm against rounds and bits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _positive(series: pd.Series) -> pd.Series:
    # a log axis cannot show zero or negative values (f(x) - f* can round to <= 0 at the end)
    return series.where(series > 0, np.nan)


def plot_run(metrics_csv: Path, out_png: Path, title: str = "") -> Path:
    """Two panels (x: rounds, x: bits per worker), log-scale y: f - f* and ||grad|| ratio."""
    frame = pd.read_csv(metrics_csv)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, xcol, xlabel in (
        (axes[0], "round", "round"),
        (axes[1], "bits", "uplink bits per worker"),
    ):
        ax.plot(frame[xcol], _positive(frame["loss_gap"]), label=r"$f(x^k) - f^*$")
        ax.plot(
            frame[xcol],
            _positive(frame["grad_norm_rel"]),
            label=r"$\|\nabla f(x^k)\| / \|\nabla f(x^0)\|$",
        )
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
