"""The sweep report: one table and one comparison figure for a Hydra multirun folder.

``compress-bench-report <sweep dir>`` (also run by :mod:`compress_bench.report.callback` at the
end of every multirun) reads the jobs the sweep declared in ``multirun.yaml``
(:mod:`~compress_bench.report.declared`) and the job folders it left
(:mod:`~compress_bench.report.jobs`), and writes into the sweep folder:

- ``summary.csv``: one row per job, declared or found (:mod:`~compress_bench.report.table`,
  with the final train/test loss and test accuracy of neural jobs:
  :mod:`~compress_bench.report.finals`);
- ``comparison.png``: the curves of the jobs with rows to draw, of the metrics they logged
  (:mod:`~compress_bench.report.comparison`).

Nothing is dropped silently: every problem job (failed, diverged, missing, with a corrupt
summary.json, running or killed, interrupted, without metrics or with a malformed metrics.csv,
not of this sweep: :mod:`~compress_bench.report.problems`) is
listed on the figure, in the table and in the log (logger ``compress_bench``), and the command
exits 1 for all of them but divergence (diverged jobs exit 0, as they do in the runner).

This module is the entry point; the names other code imports from it (``report``,
``exit_code``, ``main``, ``collect``, ``colour_for``, ...) stay importable from here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from compress_bench.report.comparison import (
    COMPARISON_PNG,
    PANELS,
    figure_comparison,
    plot_comparison,
    save_comparison,
)
from compress_bench.report.declared import read_declared, read_sweep
from compress_bench.report.jobs import (
    COMPLETED,
    DIVERGED,
    DRAWN,
    FAILED,
    INTERRUPTED,
    MISSING,
    RUNNING,
    Job,
    ReportError,
    job_dirs,
    read_metrics,
    read_overrides,
    scan,
)
from compress_bench.report.problems import (
    INCOMPLETE,
    KINDS,
    NOT_FINISHED,
    problems_by_kind,
)
from compress_bench.report.stats import mean_std_log10
from compress_bench.report.styling import (
    FALLBACK_PALETTE,
    KNOWN_COLOURS,
    colour_for,
    line_styles,
    operator_of,
)
from compress_bench.report.table import (
    SUMMARY_CSV,
    first_reaching,
    frame_of,
    label_of,
    problem_lines,
    status_counts,
    varying_keys,
)

__all__ = [
    "COMPARISON_PNG",
    "COMPLETED",
    "DIVERGED",
    "DRAWN",
    "FAILED",
    "FALLBACK_PALETTE",
    "INCOMPLETE",
    "INTERRUPTED",
    "KINDS",
    "KNOWN_COLOURS",
    "MISSING",
    "PANELS",
    "RUNNING",
    "SUMMARY_CSV",
    "Job",
    "ReportError",
    "choose_bits_column",
    "collect",
    "colour_for",
    "exit_code",
    "figure_comparison",
    "first_reaching",
    "frame_of",
    "job_dirs",
    "label_of",
    "line_styles",
    "main",
    "mean_std_log10",
    "operator_of",
    "plot_comparison",
    "problem_lines",
    "read_declared",
    "read_metrics",
    "read_overrides",
    "report",
    "scan",
    "summary_frame",
    "varying_keys",
]

log = logging.getLogger("compress_bench")

PROG = "compress-bench-report"
MAX_LOGGED_PER_KIND = 20  # a 1000-job sweep killed early: name 20 missing jobs, count the rest


def choose_bits_column(jobs: Sequence[Job], requested: str | None) -> str:
    """The bits axis: ``requested`` if given (it must be a column of some drawn job's metrics),
    else ``bits_thesis`` when every drawn job has that column and bits_convention: thesis,
    else ``bits``."""
    drawn = [j for j in jobs if j.status in DRAWN and j.metrics is not None]
    if requested is not None:
        have = [j for j in drawn if requested in j.metrics.columns]
        if drawn and not have:
            columns = ", ".join(drawn[0].metrics.columns)
            raise ReportError(
                f"no job's metrics.csv has a column {requested!r} (columns: {columns})"
            )
        for j in drawn:
            if requested not in j.metrics.columns:
                log.warning(
                    "sweep report: job %d has no %r column; left out of the bits panels",
                    j.num,
                    requested,
                )
        return requested
    thesis = bool(drawn) and all(
        "bits_thesis" in j.metrics.columns and j.config.get("bits_convention") == "thesis"
        for j in drawn
    )
    return "bits_thesis" if thesis else "bits"


def summary_frame(jobs: Sequence[Job], declared: int | None = None) -> pd.DataFrame:
    """The summary table of already-read jobs (:func:`~compress_bench.report.table.frame_of`,
    with the final figures of neural jobs, :mod:`~compress_bench.report.finals`)."""
    return frame_of(jobs, declared)


def collect(sweep_dir: Path | str) -> pd.DataFrame:
    """One row per job, declared or found (numerical order): summary.csv's table
    (:func:`summary_frame`)."""
    jobs, declared = read_sweep(sweep_dir)
    return summary_frame(jobs, declared.count)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Through a temporary file and a rename: a reader never sees half a table (and the file
    gets the usual permissions, which a tempfile.NamedTemporaryFile would not give it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="") as fh:
            frame.to_csv(fh, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _log_problems(problems: Sequence[tuple[int, str, str]]) -> None:
    """Each problem line at ERROR (WARNING for a divergence), at most MAX_LOGGED_PER_KIND per
    kind, then how many more."""
    logged: dict[str, int] = {}
    for _, kind, text in problems:
        logged[kind] = logged.get(kind, 0) + 1
        if logged[kind] <= MAX_LOGGED_PER_KIND:
            level = logging.WARNING if kind == DIVERGED else logging.ERROR
            log.log(level, "sweep report: %s", text)
    for kind, n in logged.items():
        if n > MAX_LOGGED_PER_KIND:
            more = n - MAX_LOGGED_PER_KIND
            log.error("sweep report: ... and %d more %s (see %s)", more, kind, SUMMARY_CSV)


def report(sweep_dir: Path | str, x_bits_column: str | None = None) -> dict[str, Any]:
    """Write summary.csv and comparison.png into a sweep folder and log every problem job.

    Returns {"jobs": rows of the table (declared or found), "declared": the number of jobs
    multirun.yaml declares (None: unknown), one list of job numbers per problem kind
    (:data:`~compress_bench.report.problems.KINDS`: "failed", "diverged", "missing", "corrupt",
    "incomplete", "interrupted", "no_metrics", "malformed", "unexpected", "unknown"),
    "bits_column": the
    bits axis used, "files": [paths written, as strings]}.
    """
    sweep_dir = Path(sweep_dir)
    jobs, declared = read_sweep(sweep_dir)
    bits_column = choose_bits_column(jobs, x_bits_column)
    frame = summary_frame(jobs, declared.count)
    csv_path = sweep_dir / SUMMARY_CSV
    _write_csv(frame, csv_path)
    problems = problem_lines(frame)
    _log_problems(problems)
    drawn = [job for job in jobs if job.status in DRAWN]
    metrics = {job.num: job.metrics for job in drawn}
    summaries = {job.num: job.summary for job in drawn}
    pngs = save_comparison(frame, metrics, sweep_dir, bits_column, summaries)
    files = [str(csv_path), *(str(p) for p in pngs)]
    log.info("sweep report: %s -> %s", status_counts(frame), ", ".join(files))
    return {
        "jobs": len(frame),
        "declared": declared.count,
        **problems_by_kind(problems),
        "bits_column": bits_column,
        "files": files,
    }


def exit_code(result: Mapping[str, Any] | None) -> int:
    """1 when a job did not finish as a completed or diverged run (a problem kind of
    :data:`~compress_bench.report.problems.NOT_FINISHED`: failed, missing, corrupt, running or
    killed, interrupted, without metrics or with a malformed metrics.csv, not of this sweep),
    or the report itself failed (a result with "error", as the callback stores it); else 0,
    also for None (no report made).
    Diverged jobs do not count: a diverging step size is a result, as in the runner."""
    if result is None:
        return 0
    if result.get("error"):
        return 1
    return 1 if any(result.get(kind) for kind in NOT_FINISHED) else 0


# --- the command ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Summarise a compress-bench sweep (a multirun folder): writes summary.csv (one row "
            "per job the sweep declared or left) and comparison.png (relative gradient norm and "
            "loss gap, or for networks train loss, test loss and test accuracy, against rounds "
            "(epochs) and bits, one line per configuration, mean +- std over seeds) into it."
        ),
        epilog="Exit status: 0 every job completed or diverged; 1 a job failed, is missing, "
        "has a corrupt summary.json, was interrupted or killed, or has no or malformed "
        "metrics; 2 bad input.",
    )
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the multirun folder")
    parser.add_argument(
        "--bits-column",
        metavar="COL",
        default=None,
        help="metrics.csv column for the bits axis (default: bits_thesis for runs with "
        "bits_convention=thesis, else bits)",
    )
    return parser


def _stderr_handler() -> logging.Handler | None:
    """The problems and the summary line on stderr when nobody configured logging (the
    command, not the callback, which logs through Hydra's handlers)."""
    if log.handlers or logging.getLogger().handlers:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """``compress-bench-report SWEEP_DIR [--bits-column COL]``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code if isinstance(stop.code, int) else 2
    handler = _stderr_handler()
    try:
        result = report(args.sweep_dir, x_bits_column=args.bits_column)
    except (ReportError, OSError) as err:
        if os.environ.get("COMPRESS_BENCH_DEBUG"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return 2
    finally:
        if handler is not None:
            log.removeHandler(handler)
    for path in result["files"]:
        print(path)
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
