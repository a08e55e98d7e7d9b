"""summary.csv: one row per job (declared or found), its overrides, status and final figures.

Columns: ``job``; one per override key (string values, keys without the leading ``+``/``++``);
compressor/quantizer/problem/method/seed (the override when there is one, else summary.json);
status, stop_reason, rounds_done, total_bits, the final figures; the round and bits at which
``grad_norm_rel`` first reached the job's ``tol`` (and ``<col>_to_tol`` for other bits columns,
e.g. bits_thesis); ``error`` (one line: what is wrong with the job, see
:mod:`compress_bench.report.problems`); and ``label``, the line of the figure the job belongs
to. The frame carries ``attrs``: ``override_keys``, ``label_keys``, ``problems`` (the lines of
:func:`problem_lines`) and ``declared`` (the number of jobs the sweep declared, or None).

The README's result tables are built here too, from the same sweeps, and written between their
marker comments (``<!-- table:NAME -->`` ... ``<!-- /table -->``) by
``python -m compress_bench.report.table --readme README.md NAME=SWEEP_DIR ...`` (``make
figures``): see :func:`update_readme`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compress_bench.report.declared import read_sweep
from compress_bench.report.finals import COLUMNS as NEURAL_FINAL_COLUMNS
from compress_bench.report.finals import add_neural_columns
from compress_bench.report.jobs import Job, ReportError, status_text
from compress_bench.report.problems import (
    describe,
    error_text,
    job_problems,
    lines_from_rows,
    problem_line,
)
from compress_bench.report.styling import operator_label
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
    *NEURAL_FINAL_COLUMNS,
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
    return add_neural_columns(frame, jobs)  # a convex sweep's table keeps its columns


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


# --- the README's result tables, generated from the sweeps ----------------------------------
#
# A README table lives between two marker comments, ``<!-- table:NAME -->`` and the next
# ``<!-- /table -->``; ``python -m compress_bench.report.table --readme README.md
# NAME=SWEEP_DIR ...`` (``make figures``) rewrites what is between them from the sweep, and
# nothing else. NAME picks the table's builder (:data:`README_TABLES`).

TABLE_START = "<!-- table:{name} -->"
TABLE_END = "<!-- /table -->"
# what the method columns of the error-feedback tables are called
METHOD_HEADINGS = {"ef": "ef (EF14)"}


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the lines between the marker ``<!-- table:name -->`` and the next
    ``<!-- /table -->`` replaced by ``content`` (one trailing newline); the markers and
    everything outside them are kept as they are, so a second call changes nothing.
    ReportError unless the start marker is on a line of its own exactly once and an end
    marker follows it."""
    start = TABLE_START.format(name=name)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == start]
    if len(starts) != 1:
        found = "no" if not starts else f"{len(starts)}"
        raise ReportError(f"the README has {found} '{start}' marker lines (needs exactly one)")
    (first,) = starts
    ends = [i for i in range(first + 1, len(lines)) if lines[i].strip() == TABLE_END]
    if not ends:
        raise ReportError(f"the README's '{start}' block has no '{TABLE_END}' line after it")
    body = content.strip("\n") + "\n"
    return "".join([*lines[: first + 1], body, *lines[ends[0] :]])


def _compact_exponent(text: str) -> str:
    """``2.1e-02`` -> ``2.1e-2``, ``4.43e+06`` -> ``4.43e6``."""
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def ratio_text(value: float) -> str:
    """A relative gradient norm as the README writes it: ``2.1e-2``."""
    return "n/a" if math.isnan(value) else _compact_exponent(f"{value:.1e}")


def bits_text(value: float) -> str:
    """Bits per worker as the README writes them: ``4.43e6``."""
    return "n/a" if math.isnan(value) else _compact_exponent(f"{value:.2e}")


def thesis_logreg_table(sweep_dir: Path | str) -> str:
    """The thesis table (rounds, bits in both conventions and gradient evaluations to the
    tolerance), as ``make figures`` writes it beside the thesis figure."""
    from compress_bench.report import figures  # here: figures -> sweep -> this module

    return figures._markdown(figures.thesis_table(Path(sweep_dir)))


def _cell(row: pd.Series | None, kind: str, rounds: Any) -> str:
    """One job's cell: ``"ratio"`` columns give the final relative gradient norm, ``"reach"``
    columns the rounds (and bits per worker) to the tolerance; a job that did not finish
    gives its status."""
    if row is None:
        return "missing"
    reached = not pd.isna(row["rounds_to_tol"])
    if reached:
        return f"{int(row['rounds_to_tol']):,} ({bits_text(float(row['bits_to_tol']))})"
    if row["status"] != "completed":
        return str(row["status"])
    ratio = ratio_text(number(row["final_grad_norm_rel"]))
    return ratio if kind == "ratio" else f"not within {rounds} ({ratio})"


def method_table(sweep_dir: Path | str, columns: Sequence[tuple[str, str]]) -> str:
    """One row per operator of the sweep (in job order), one column per ``(method, kind)``:
    kind ``"ratio"`` (the relative gradient norm after the run's rounds) or ``"reach"``
    (rounds to the run's tol, with the bits per worker)."""
    jobs, declared = read_sweep(sweep_dir)
    frame = frame_of(jobs, declared.count)
    config = next((job.config for job in jobs if job.config), {})
    rounds, tol = config.get("rounds"), number(config.get("tol"))
    by_key = "operator" if "operator" in frame else None
    cells: dict[Any, dict[str, pd.Series]] = {}
    labels: dict[Any, str] = {}
    for _, row in frame.iterrows():
        key = row[by_key] if by_key else (row["compressor"], row["quantizer"])
        cells.setdefault(key, {})[str(row["method"])] = row
        label = operator_label(row, {})
        if label is not None:
            labels.setdefault(key, label)
    headings = []
    for method, kind in columns:
        name = METHOD_HEADINGS.get(method, method)
        if kind == "ratio":
            headings.append(f"{name}: ‖∇f‖ ratio after {rounds} rounds")
        else:
            headings.append(f"{name}: rounds to {_compact_exponent(f'{tol:g}')} (bits per worker)")
    lines = [
        "| operator | " + " | ".join(headings) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, row_cells in cells.items():
        values = [_cell(row_cells.get(method), kind, rounds) for method, kind in columns]
        lines.append(f"| {labels.get(key, key)} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def error_feedback_table(sweep_dir: Path | str) -> str:
    """``experiment=error_feedback``: dcgd's and EF14's final ratio, EF21's rounds to tol."""
    return method_table(sweep_dir, [("dcgd", "ratio"), ("ef", "ratio"), ("ef21", "reach")])


def error_feedback_unbiased_table(sweep_dir: Path | str) -> str:
    """The unbiased operators: dcgd's final ratio, DIANA's rounds to tol."""
    return method_table(sweep_dir, [("dcgd", "ratio"), ("diana", "reach")])


README_TABLES = {
    "thesis_logreg": thesis_logreg_table,
    "error_feedback": error_feedback_table,
    "error_feedback_unbiased": error_feedback_unbiased_table,
}


def update_readme(readme: Path | str, sweeps: Mapping[str, Path | str]) -> bool:
    """Rewrite the README's blocks named in ``sweeps`` (name -> sweep folder) from those
    sweeps; every table is built before the file is touched. Returns whether the file
    changed (an unchanged file is not rewritten)."""
    readme = Path(readme)
    unknown = sorted(set(sweeps) - set(README_TABLES))
    if unknown:
        known = ", ".join(sorted(README_TABLES))
        raise ReportError(f"unknown README table {unknown[0]!r} (known: {known})")
    text = readme.read_text(encoding="utf-8")
    new = text
    for name, sweep_dir in sweeps.items():
        new = replace_block(new, name, README_TABLES[name](sweep_dir))
    if new == text:
        return False
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(readme)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compress_bench.report.table --readme README.md NAME=SWEEP_DIR ...``."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m compress_bench.report.table",
        description="Rewrite the README's result tables (between '<!-- table:NAME -->' and "
        "'<!-- /table -->') from finished sweeps. Tables: " + ", ".join(sorted(README_TABLES)),
    )
    parser.add_argument("--readme", type=Path, required=True, help="the README to update")
    parser.add_argument("tables", nargs="+", metavar="NAME=SWEEP_DIR")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    try:
        sweeps = {}
        for item in args.tables:
            name, sep, sweep_dir = item.partition("=")
            if not sep or not name or not sweep_dir:
                raise ReportError(f"expected NAME=SWEEP_DIR, got {item!r}")
            sweeps[name] = Path(sweep_dir)
        changed = update_readme(args.readme, sweeps)
    except (ReportError, OSError) as err:
        if os.environ.get("COMPRESS_BENCH_DEBUG"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{parser.prog}: error: {text}", file=sys.stderr)
        return 2
    what = "updated" if changed else "already up to date:"
    print(f"{args.readme} {what} {', '.join(sweeps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
