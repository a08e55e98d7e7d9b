"""The final figures of neural jobs in summary.csv: ``final_train_loss``, ``final_test_loss``,
``final_test_accuracy`` and ``final_epoch``.

A neural run's summary.json has ``final``: train_loss, test_loss, test_accuracy, epoch (see
:mod:`compress_bench.run.metrics`), which the convex columns of the table (final_loss,
final_grad_norm_rel, ...) leave out. They are added after ``final_grad_norm_rel`` when a job of
the sweep is neural (its summary.json has them, or its metrics.csv has the neural columns), so
the table of a convex sweep keeps its columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from compress_bench.report.jobs import Job
from compress_bench.report.panels import is_neural
from compress_bench.report.values import number

NEURAL_FINALS = ("train_loss", "test_loss", "test_accuracy", "epoch")  # summary.json "final"
COLUMNS = tuple(f"final_{name}" for name in NEURAL_FINALS)
AFTER = "final_grad_norm_rel"  # the new columns follow the convex final figures


def _final(job: Job) -> Mapping[str, Any]:
    final = (job.summary or {}).get("final")
    return final if isinstance(final, Mapping) else {}


def is_neural_job(job: Job) -> bool:
    """True when the job's summary.json or metrics.csv is a neural run's."""
    if any(name in _final(job) for name in NEURAL_FINALS[:3]):
        return True
    return job.metrics is not None and is_neural(job.metrics.columns)


def neural_figures(job: Job) -> dict[str, float]:
    """The final figures of a neural job: summary.json's ``final``, else (a killed job) its
    last metrics row with a value (the first row has no training loss); NaN where neither."""
    final, metrics = _final(job), job.metrics
    out = {}
    for name in NEURAL_FINALS:
        value = number(final.get(name))
        if math.isnan(value) and metrics is not None and name in metrics:
            logged = pd.to_numeric(metrics[name], errors="coerce").dropna()
            value = float(logged.iloc[-1]) if len(logged) else math.nan
        out[f"final_{name}"] = value
    return out


def add_neural_columns(frame: pd.DataFrame, jobs: Sequence[Job]) -> pd.DataFrame:
    """``frame`` (one row per job, in the order of ``jobs``) with the columns of
    :data:`COLUMNS` after :data:`AFTER` when a job is neural (NaN for the others); unchanged
    otherwise. The frame's ``attrs`` are kept."""
    if not any(is_neural_job(job) for job in jobs):
        return frame
    by_num = {job.num: job for job in jobs}
    values = [
        neural_figures(by_num[int(j)])
        if int(j) in by_num and is_neural_job(by_num[int(j)])
        else dict.fromkeys(COLUMNS, math.nan)
        for j in frame["job"]
    ]
    out = frame.copy()
    at = out.columns.get_loc(AFTER) + 1 if AFTER in out.columns else len(out.columns)
    for offset, column in enumerate(COLUMNS):
        out.insert(at + offset, column, [v[column] for v in values])
    out.attrs = dict(frame.attrs)
    return out
