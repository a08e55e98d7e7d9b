"""Which jobs of a sweep need attention, in one line each, and what that means for the exit code.

Nothing is dropped silently: every job that is not a plain completed run with its metrics gets
a line (in the figure's box, in the log, in summary.csv's ``error`` column). The kinds:

- ``failed``: the job raised (summary.json has the error);
- ``diverged``: stopped at a non-finite value, or past the runner's ``diverge_factor`` (a
  result, as in the runner: exit 0);
- ``missing``: no summary.json, or no job folder at all for a job multirun.yaml declares;
- ``corrupt``: a summary.json that cannot be read (not JSON, not an object): named with its path;
- ``incomplete``: summary.json still says ``running``: still running, or killed (SIGKILL);
- ``interrupted``: stopped by SIGTERM/SIGINT (its rows are drawn, but it did not finish);
- ``no_metrics``: a job to draw whose metrics.csv is missing or unparsable (not drawn);
- ``malformed``: a metrics.csv with rows that are not whole (a row with the wrong number of
  fields, a last line cut short): the whole rows are drawn, the others named;
- ``unexpected``: a folder that is not a job of the declared sweep (another sweep's?);
- ``unknown``: a status this report does not know.

Every kind but ``diverged`` makes the report exit 1 (:data:`NOT_FINISHED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from compress_bench.report.jobs import (
    COMPLETED,
    CORRUPT,
    DIVERGED,
    DRAWN,
    FAILED,
    INTERRUPTED,
    MISSING,
    RUNNING,
    Job,
    process_note,
)
from compress_bench.report.values import number, present

INCOMPLETE, NO_METRICS, UNEXPECTED, UNKNOWN = "incomplete", "no_metrics", "unexpected", "unknown"
MALFORMED = "malformed"
KINDS = (
    FAILED,
    DIVERGED,
    MISSING,
    CORRUPT,
    INCOMPLETE,
    INTERRUPTED,
    NO_METRICS,
    MALFORMED,
    UNEXPECTED,
    UNKNOWN,
)
NOT_FINISHED = tuple(kind for kind in KINDS if kind != DIVERGED)  # exit 1
KIND_TEXT = {
    INCOMPLETE: "running or killed",
    NO_METRICS: "no metrics",
    CORRUPT: "corrupt summary.json",
    MALFORMED: "malformed metrics.csv",
}
_STATUS_KIND = {  # status in summary.json -> kind of problem
    FAILED: FAILED,
    DIVERGED: DIVERGED,
    MISSING: MISSING,
    CORRUPT: CORRUPT,
    RUNNING: INCOMPLETE,
    INTERRUPTED: INTERRUPTED,
}


def last_round(job: Job) -> float:
    """The job's last round: summary.json's rounds_done, else its last metrics row."""
    rounds = number((job.summary or {}).get("rounds_done"))
    if rounds != rounds and job.metrics is not None and len(job.metrics):  # NaN
        rounds = number(job.metrics["round"].iloc[-1])
    return rounds


def _at_round(job: Job) -> str:
    rounds = last_round(job)
    return "" if rounds != rounds else f" at round {rounds:g}"


def divergence_rule(job: Job) -> str:
    """Why the runner called the job diverged: the rule summary.json records (``divergence``:
    "non-finite loss or gradient", or a blow-up past ``diverge_factor``), else "non-finite"
    (runs written before they recorded it stopped at a non-finite value only)."""
    divergence = (job.summary or {}).get("divergence")
    rule = divergence.get("rule") if isinstance(divergence, Mapping) else None
    return " ".join(str(rule).split()) if rule else "non-finite"


def summary_error(job: Job) -> str | None:
    """The error summary.json records, in one line (a failed job without one: its stop
    reason)."""
    error = (job.summary or {}).get("error")
    if error is None and job.status == FAILED:
        error = (job.summary or {}).get("stop_reason") or "failed (no error recorded)"
    return None if error is None else " ".join(str(error).split())


def _status_problem(job: Job) -> tuple[str, str] | None:
    """(kind, detail) for the job's status; None for a completed job."""
    status = job.status
    if status == COMPLETED:
        return None
    kind = _STATUS_KIND.get(status, UNKNOWN)
    if kind == DIVERGED:
        return kind, f"{divergence_rule(job)}{_at_round(job)}"
    if kind == FAILED:
        return kind, summary_error(job) or "failed"
    if kind in (MISSING, CORRUPT):
        return kind, job.summary_error or "no summary.json"
    if kind == INCOMPLETE:
        note = process_note(job.summary or {})
        return kind, f"summary.json still says 'running'{_at_round(job)}: {note}"
    if kind == INTERRUPTED:
        signal = (job.summary or {}).get("signal") or "a signal"
        return kind, f"interrupted by {signal}{_at_round(job)}, before it finished"
    return kind, f"summary.json says status {status!r}, which this report does not know"


def job_problems(job: Job) -> list[tuple[str, str]]:
    """Every (kind, one-line detail) that applies to a job; [] for a completed job with
    metrics that belongs to the sweep."""
    problems = [p for p in (_status_problem(job),) if p is not None]
    if job.status in DRAWN and job.metrics is None:
        problems.append((NO_METRICS, f"{job.metrics_error} ({job.status}, not drawn)"))
    elif job.status in DRAWN and len(job.metrics) == 0:
        problems.append((NO_METRICS, f"metrics.csv has no rows ({job.status}, not drawn)"))
    if job.metrics is not None and job.metrics_malformed:
        problems.append((MALFORMED, f"{job.path / 'metrics.csv'}: {job.metrics_malformed}"))
    if job.unexpected:
        problems.append((UNEXPECTED, job.unexpected))
    return problems


def error_text(job: Job, problems: Sequence[tuple[str, str]]) -> str | None:
    """The table's ``error`` cell: summary.json's error for a failed job, else every problem
    detail but divergence (which is a result), joined; None when there is nothing to say."""
    parts = [
        summary_error(job) if kind == FAILED else detail
        for kind, detail in problems
        if kind != DIVERGED
    ]
    if not parts and summary_error(job):
        parts = [summary_error(job)]
    return "; ".join(parts) or None


def describe(row: Mapping[str, Any], override_keys: Sequence[str]) -> str:
    """The job's overrides as ``key=value, ...`` (its compressor when it has none)."""
    parts = [f"{k}={row.get(k)}" for k in override_keys if present(row.get(k))]
    if not parts and present(row.get("compressor")):
        parts = [f"compressor={row.get('compressor')}"]
    return ", ".join(parts) or "no overrides recorded"


def problem_line(num: int, kind: str, what: str, detail: str) -> tuple[int, str, str]:
    """(job, kind, "kind: job n (overrides): detail") with the detail on one line."""
    detail = " ".join(detail.split())
    return num, kind, f"{KIND_TEXT.get(kind, kind)}: job {num} ({what}): {detail}"


def lines_from_rows(
    frame: pd.DataFrame, override_keys: Sequence[str]
) -> list[tuple[int, str, str]]:
    """The problem lines of a table that carries no job details (one read back from
    summary.csv): from its status and error columns."""
    lines = []
    for _, row in frame.iterrows():
        status = row["status"]
        if status == COMPLETED:
            continue
        kind = _STATUS_KIND.get(status, UNKNOWN)
        if kind == DIVERGED:
            rounds = row.get("rounds_done")
            detail = f"non-finite at round {rounds}" if present(rounds) else "non-finite"
        else:
            detail = str(row.get("error")) if present(row.get("error")) else "no error recorded"
        lines.append(problem_line(int(row["job"]), kind, describe(row, override_keys), detail))
    return lines


def problems_by_kind(lines: Sequence[tuple[int, str, str]]) -> dict[str, list[int]]:
    """{kind: [job numbers]} for every kind of :data:`KINDS` (empty lists included)."""
    return {kind: sorted({j for j, k, _ in lines if k == kind}) for kind in KINDS}
