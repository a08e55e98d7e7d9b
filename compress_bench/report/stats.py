"""The statistics of a line drawn for several seeds: mean and std over seeds on one x grid, of
log10(y) for a log axis (losses, gradient norms) or of y for a linear one (test accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from compress_bench.report.logaxes import drawable


def _clean(x: Any, y: Any, log: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """A curve's drawable points as (increasing x, log10 y, or y when not ``log``); None when
    it has none. A repeated x keeps its last value (np.interp wants increasing x)."""
    x, y = drawable(x, y, log)
    if x.size == 0:
        return None
    order = np.argsort(x, kind="stable")
    x, value = x[order], (np.log10(y[order]) if log else y[order])
    keep = np.append(x[1:] != x[:-1], True)
    return x[keep], value[keep]


def mean_std(
    curves: Sequence[tuple[Any, Any]], ddof: int = 0, log: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over curves of log10(y) (``log``) or of y, on one x grid.

    Each curve (x, y) keeps its drawable points only (finite; on a log axis also positive and
    not absurd: :func:`compress_bench.report.logaxes.drawable`); its values are interpolated
    linearly in x onto the union of the curves' x values inside the range every curve covers
    (max of the first x .. min of the last x). Returns (x, mean, std), std with ``ddof``
    (default 0: the spread of the seeds that ran), or None when fewer than two curves have data
    or their ranges do not overlap.
    """
    cleaned = [c for c in (_clean(x, y, log) for x, y in curves) if c is not None]
    if len(cleaned) < 2:
        return None
    lo = max(x[0] for x, _ in cleaned)
    hi = min(x[-1] for x, _ in cleaned)
    if lo > hi:
        return None
    grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in cleaned]))
    values = np.vstack([np.interp(grid, x, v) for x, v in cleaned])
    return grid, values.mean(axis=0), values.std(axis=0, ddof=ddof)


def mean_std_log10(
    curves: Sequence[tuple[Any, Any]], ddof: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`mean_std` of log10(y): the band of a log axis."""
    return mean_std(curves, ddof, log=True)
