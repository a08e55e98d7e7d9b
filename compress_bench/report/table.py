"""summary.csv: one row per job (declared or found), its overrides, status and final figures.

Columns: ``job``; one per override key (string values, keys without the leading ``+``/``++``);
compressor/quantizer/problem/method/seed (the override when there is one, else summary.json);
status, stop_reason, rounds_done, total_bits, the final figures; the round and bits at which
``grad_norm_rel`` first reached the job's ``tol`` (and ``<col>_to_tol`` for other bits columns,
e.g. bits_thesis); ``error`` (one line: what is wrong with the job, see
:mod:`compress_bench.report.problems`); and ``label``, the line of the figure the job belongs
to. The frame carries ``attrs``: ``override_keys``, ``label_keys``, ``problems`` (the lines of
:func:`problem_lines`) and ``declared`` (the number of jobs the sweep declared, or None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compress_bench.report.declared import read_sweep
from compress_bench.report.jobs import Job, status_text
from compress_bench.report.problems import (
    describe,
    error_text,
    job_problems,
    lines_from_rows,
    problem_line,
)
from compress_bench.report.values import number, present

SUMMARY_CSV = "summary.csv"
# Columns taken from summary.json when the job has no override of that name. An override wins
# (it is the option the user chose, and it is what tells two configurations apart).
MERGED_KEYS = ("problem", "method", "compressor", "quantizer", "seed")
NOT_BITS_CONVENTIONS = ("bits_total", "bits_per_coordinate")  # "bits_*" that are no bits axis
LABEL_EXCLUDED = ("seed", "compressor")  # seeds share a line; the compressor leads the label
FIXED_COLUMNS = {
    "job",
    *MERGED_KEYS,
    "status",
    "stop_reason",
    "family",
    "colour",
    "rounds_done",
    "total_bits",
    "final_loss",
    "final_loss_gap",
    "final_grad_norm",
    "final_grad_norm_rel",
    "rounds_to_tol",
    "bits_to_tol",
    "error",
    "label",
}


def first_reaching(metrics: pd.DataFrame | None, tol: Any, column: str) -> float:
    """``column`` at the first logged row with grad_norm_rel <= tol (NaN: never, or no tol)."""
    tol = number(tol)
    if (
        metrics is None
        or math.isnan(tol)
        or column not in metrics
        or "grad_norm_rel" not in metrics
    ):
        return math.nan
    hit = metrics.loc[metrics["grad_norm_rel"] <= tol, column]
    return float(hit.iloc[0]) if len(hit) else math.nan


def _figures(job: Job) -> dict[str, float]:
    """The final figures: summary.json's, else the last metrics row's (a killed job's)."""
    summary = job.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else {}
    last = (
        job.metrics.iloc[-1]
        if job.metrics is not None and len(job.metrics)
        else pd.Series(dtype=float)
    )

    def figure(name: str, summary_value: Any) -> float:
        value = number(summary_value)
        return float(last.get(name, math.nan)) if math.isnan(value) else value

    return {
        "rounds_done": figure("round", summary.get("rounds_done")),
        "total_bits": figure("bits", summary.get("total_bits")),
        "final_loss": figure("loss", final.get("loss")),
        "final_loss_gap": figure("loss_gap", final.get("loss_gap")),
        "final_grad_norm": figure("grad_norm", final.get("grad_norm")),
        "final_grad_norm_rel": figure("grad_norm_rel", final.get("grad_norm_rel")),
    }


def _row(job: Job, override_keys: Sequence[str], extra_to_tol: Sequence[str]) -> dict[str, Any]:
    summary = job.summary or {}
    row: dict[str, Any] = {"job": job.num}
    for key in override_keys:
        row[key] = job.overrides.get(key)
    for key in MERGED_KEYS:  # the override if the job has one, else summary.json
        if row.get(key) is None:
            row[key] = summary.get(key)
    tol = job.config.get("tol")
    row.update(status=job.status, stop_reason=summary.get("stop_reason"), **_figures(job))
    # what the run declared about its operator: the reports' colours follow it
    row.update(family=summary.get("family"), colour=summary.get("colour"))
    row["rounds_to_tol"] = first_reaching(job.metrics, tol, "round")
    row["bits_to_tol"] = first_reaching(job.metrics, tol, "bits")
    for column in extra_to_tol:
        row[f"{column}_to_tol"] = first_reaching(job.metrics, tol, column)
    row["error"] = error_text(job, job_problems(job))
    return row


def _as_int_if_whole(series: pd.Series) -> pd.Series:
    """Integer-valued columns (rounds, seeds) as nullable integers, so the CSV says 120, not
    120.0; anything else unchanged."""
    numeric = pd.to_numeric(series, errors="coerce")
    known = series.notna()
    if not known.any() or numeric[known].isna().any():
        return series
    values = numeric[known].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        return series
    return numeric.round().astype("Int64")


def _override_keys(jobs: Sequence[Job]) -> list[str]:
    keys: list[str] = []
    for job in jobs:
        keys += [key for key in job.overrides if key not in keys]
    return keys


def _extra_bits_columns(jobs: Sequence[Job]) -> list[str]:
    """Other cumulative bits conventions in the metrics (e.g. bits_thesis): each gets a
    "_to_tol" column (not bits_total, the sum over workers, nor bits_per_coordinate, a
    per-round figure)."""
    extra: list[str] = []
    for job in jobs:
        if job.metrics is not None:
            extra += [
                c
                for c in job.metrics.columns
                if c.startswith("bits_") and c not in NOT_BITS_CONVENTIONS and c not in extra
            ]
    return extra


def frame_of(jobs: Sequence[Job], declared: int | None = None) -> pd.DataFrame:
    """The summary table of already-read jobs (``declared``: how many the sweep declared)."""
    override_keys = _override_keys(jobs)
    frame = pd.DataFrame([_row(job, override_keys, _extra_bits_columns(jobs)) for job in jobs])
    for key in override_keys:  # override values are strings, as typed on the command line
        frame[key] = frame[key].astype(object)
    for column in ("job", "seed", "rounds_done", "rounds_to_tol"):
        frame[column] = _as_int_if_whole(frame[column])
    frame.attrs["override_keys"] = list(override_keys)
    keys = varying_keys(frame, override_keys)
    frame.attrs["label_keys"] = keys
    frame["label"] = [label_of(row, keys) for _, row in frame.iterrows()]
    frame.attrs["problems"] = _problems(jobs, frame, override_keys)
    frame.attrs["declared"] = declared
    return frame


def _problems(
    jobs: Sequence[Job], frame: pd.DataFrame, override_keys: Sequence[str]
) -> list[tuple[int, str, str]]:
    lines = []
    for job, (_, row) in zip(jobs, frame.iterrows(), strict=True):
        what = describe(row, override_keys)
        lines += [problem_line(job.num, kind, what, text) for kind, text in job_problems(job)]
    return lines


def collect(sweep_dir: Path | str) -> pd.DataFrame:
    """One row per job, declared or found (numerical order): see the module docstring."""
    jobs, declared = read_sweep(sweep_dir)
    return frame_of(jobs, declared.count)


def problem_lines(frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(job, kind, one-line description) for each problem of each job in ``frame`` (kinds:
    :mod:`compress_bench.report.problems`), in job order."""
    jobs = {int(j) for j in frame["job"]}
    if "problems" in frame.attrs:
        return [line for line in frame.attrs["problems"] if line[0] in jobs]
    override_keys = frame.attrs.get("override_keys") or [
        c for c in frame.columns if c not in FIXED_COLUMNS and not c.endswith("_to_tol")
    ]
    return lines_from_rows(frame, override_keys)


def status_counts(frame: pd.DataFrame) -> str:
    """``"4 jobs (1 completed, 1 running or killed, 2 missing)"``; with the number the sweep
    declared when it differs from the folders found."""
    counts = frame["status"].value_counts()
    status = ", ".join(f"{n} {status_text(s)}" for s, n in counts.items())
    declared = frame.attrs.get("declared")
    text = f"{len(frame)} jobs ({status})"
    if declared is not None and declared != len(frame):
        text += f", {declared} declared"
    return text


def varying_keys(frame: pd.DataFrame, override_keys: Sequence[str] | None = None) -> list[str]:
    """The override keys, other than seed and compressor, whose value differs between jobs
    (among the jobs whose overrides could be read)."""
    if override_keys is None:
        override_keys = frame.attrs.get("override_keys", [])
    keys = [k for k in override_keys if k in frame.columns]
    if not keys:
        return []
    known = frame[keys].notna().any(axis=1)
    rows = frame.loc[known, keys]
    return [
        k for k in keys if k not in LABEL_EXCLUDED and rows[k].astype(str).nunique(dropna=False) > 1
    ]


def label_of(row: Mapping[str, Any] | pd.Series, keys: Sequence[str] = ()) -> str:
    """A job's line label: its compressor, then ``key=value`` for each key in ``keys`` (the
    varying override keys, :func:`varying_keys`; ``collect`` stores them in
    ``frame.attrs["label_keys"]`` and the labels in the ``label`` column)."""
    compressor = row.get("compressor")
    parts = [str(compressor) if present(compressor) else "unknown"]
    for key in keys:
        value = row.get(key)
        if present(value):
            parts.append(f"{key}={value}")
    return ", ".join(parts)
