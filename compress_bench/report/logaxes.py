"""Curves on log-scale y axes that survive diverged and one-row runs.

A diverged run writes ``inf``/``nan`` or values like 1e300 into its last rows. Handed to
matplotlib as they are, they make its autoscaling overflow (warnings, and axes spanning 10^0 to
10^1 that hide every other curve). So the figures draw only the *drawable* points of a curve
(x finite, y finite and within [:data:`TINY`, :data:`ABSURD`]), set the y limits themselves from
the drawable points of every curve of an axis (:func:`set_log_ylim`), and give a curve of one
point a marker (a line through one point is invisible).

A run that stopped early (diverged: ``x``; interrupted: ``|``) gets a marker where it stopped
(:func:`plot_stop`): at the x of its last metrics row, which may lie beyond its last drawable
point, at the height of that row's value when it is drawable, else at the axis edge it went past
(above for ``inf`` and 1e300, below for 0 on a log axis), else (``nan``) at its last drawable
value. Axes of values that are not positive (test accuracy) are linear: there *drawable* means
finite and within +-:data:`ABSURD`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

ABSURD = 1e100  # larger values are a diverging run, not data to scale an axis to
TINY = 1.0 / ABSURD  # smaller positive values are as meaningless, and 10**log10 underflows
DIVERGED_MARKER = "x"  # a diverged run ends with it
INTERRUPTED_MARKER = "|"  # an interrupted run (SIGTERM, SIGINT) ends with it
SINGLE_POINT_MARKER = "o"
MIN_PAD_DECADES = 0.1  # margin above and below the data, in decades (at least)
SINGLE_VALUE_PAD_DECADES = 0.5  # for data of one value: half a decade either side


def drawable_mask(x: Any, y: Any, log: bool = True) -> np.ndarray:
    """True where a point can be drawn: x finite and, on a log y axis, TINY <= y <= ABSURD
    (on a linear one, -ABSURD <= y <= ABSURD)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    low = TINY if log else -ABSURD
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & np.isfinite(y) & (y >= low) & (y <= ABSURD)


def drawable(x: Any, y: Any, log: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The drawable points (:func:`drawable_mask`) of a curve, as float arrays."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = drawable_mask(x, y, log)
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


def plot_curve(ax: Axes, x: np.ndarray, y: np.ndarray, **style: Any) -> Line2D | None:
    """Draw already-drawable points as one line, a single point with a marker. None (nothing
    drawn) without points."""
    if len(x) == 0:
        return None
    if len(x) == 1:
        style.update(marker=SINGLE_POINT_MARKER, markevery=None)
    (line,) = ax.plot(x, y, **style)
    return line


@dataclass(frozen=True)
class Stop:
    """Where a stop marker goes: ``x`` in data coordinates; ``y`` in data coordinates when
    ``edge`` is None, else the marker sits on the axis edge ``edge`` ("top" or "bottom")."""

    x: float
    y: float | None = None
    edge: str | None = None


def stop_point(x: Any, y: Any, log: bool = True) -> Stop | None:
    """Where a run that stopped early is marked on a curve (x, y: its whole metrics columns,
    undrawable rows included): at the x of its last row (the last finite x, if that one is not)
    and at that row's y when it is drawable; past the axis (``inf``, beyond ABSURD, or below
    TINY on a log axis): on the edge it went past; ``nan``: at the last drawable y. None when
    there is no finite x, or a ``nan`` last value and no drawable point."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite_x = np.flatnonzero(np.isfinite(x))
    if finite_x.size == 0:
        return None
    last = finite_x[-1]
    stop_x, value = float(x[last]), float(y[last])
    if drawable_mask([stop_x], [value], log)[0]:
        return Stop(stop_x, value)
    if value > ABSURD:  # inf included
        return Stop(stop_x, edge="top")
    if value < (TINY if log else -ABSURD):  # -inf, and 0 or negative on a log axis
        return Stop(stop_x, edge="bottom")
    _, ys = drawable(x, y, log)  # nan: where the curve was last seen
    return Stop(stop_x, float(ys[-1])) if ys.size else None


def plot_stop(
    ax: Axes, x: Any, y: Any, marker: str, log: bool = True, **style: Any
) -> Line2D | None:
    """Mark where a run stopped (:func:`stop_point`) with ``marker`` (``x`` diverged, ``|``
    interrupted): one point, not clipped, without a legend entry (its label starts with
    "_stop"). A marker on an axis edge is placed in axes coordinates, so it stays on the edge
    whatever the y limits become. None when there is nowhere to put it."""
    stop = stop_point(x, y, log)
    if stop is None:
        return None
    style = {"label": "_stop", **style, "marker": marker, "ms": 9, "mew": 1.5}
    style.update(ls="none", clip_on=False, zorder=3)
    if stop.edge is None:
        (line,) = ax.plot([stop.x], [stop.y], **style)
    else:
        height = 1.0 if stop.edge == "top" else 0.0
        (line,) = ax.plot([stop.x], [height], transform=ax.get_xaxis_transform(), **style)
    return line
