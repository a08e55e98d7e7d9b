"""Curves on log-scale y axes that survive diverged and one-row runs.

A diverged run writes ``inf``/``nan`` or values like 1e300 into its last rows. Handed to
matplotlib as they are, they make its autoscaling overflow (warnings, and axes spanning 10^0 to
10^1 that hide every other curve). So the figures draw only the *drawable* points of a curve
(x finite, y finite and within [:data:`TINY`, :data:`ABSURD`]), set the y limits themselves from
the drawable points of every curve of an axis (:func:`set_log_ylim`), end a diverged curve with
an ``x`` at its last drawable point, and give a curve of one point a marker (a line through one
point is invisible).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

ABSURD = 1e100  # larger values are a diverging run, not data to scale an axis to
TINY = 1.0 / ABSURD  # smaller positive values are as meaningless, and 10**log10 underflows
DIVERGED_MARKER = "x"
SINGLE_POINT_MARKER = "o"
MIN_PAD_DECADES = 0.1  # margin above and below the data, in decades (at least)
SINGLE_VALUE_PAD_DECADES = 0.5  # for data of one value: half a decade either side


def drawable_mask(x: Any, y: Any) -> np.ndarray:
    """True where a point can be drawn on a log y axis: x finite, TINY <= y <= ABSURD."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & np.isfinite(y) & (y >= TINY) & (y <= ABSURD)


def drawable(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The drawable points (:func:`drawable_mask`) of a curve, as float arrays."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = drawable_mask(x, y)
    return x[ok], y[ok]


def log_limits(values: Iterable[Any]) -> tuple[float, float] | None:
    """(low, high) y limits spanning every drawable value in ``values`` (arrays), with a margin
    of 5% of the decades spanned (at least :data:`MIN_PAD_DECADES`); None when there is none."""
    kept = [np.asarray(v, dtype=float).ravel() for v in values]
    kept = [v[drawable_mask(np.zeros_like(v), v)] for v in kept]
    kept = [v for v in kept if v.size]
    if not kept:
        return None
    lo = min(math.log10(float(v.min())) for v in kept)
    hi = max(math.log10(float(v.max())) for v in kept)
    span = hi - lo
    pad = SINGLE_VALUE_PAD_DECADES if span == 0 else max(0.05 * span, MIN_PAD_DECADES)
    return 10.0 ** (lo - pad), 10.0 ** (hi + pad)


def set_log_ylim(ax: Axes, values: Iterable[Any]) -> tuple[float, float] | None:
    """Log-scale ``ax`` and set its y limits from the drawable ``values`` (left to matplotlib
    when there are none: an empty log axis does not warn). Returns the limits set."""
    ax.set_yscale("log")
    limits = log_limits(values)
    if limits is not None:
        ax.set_ylim(*limits)
    return limits


def plot_curve(
    ax: Axes, x: np.ndarray, y: np.ndarray, *, end_marker: str | None = None, **style: Any
) -> Line2D | None:
    """Draw already-drawable points as one line: ``end_marker`` (an ``x`` for a diverged run)
    at its last point, else a marker on a single point. None (nothing drawn) without points."""
    if len(x) == 0:
        return None
    if end_marker is not None:
        style.update(marker=end_marker, markevery=[len(x) - 1], ms=9, mew=1.5)
    elif len(x) == 1:
        style.update(marker=SINGLE_POINT_MARKER, markevery=None)
    (line,) = ax.plot(x, y, **style)
    return line
