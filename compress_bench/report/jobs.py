"""Reading the job folders of a sweep: ``<sweep dir>/<job number>/`` with

- ``.hydra/overrides.yaml``, the job's command-line overrides (``compressor=top_k``, ``seed=1``);
- ``summary.json``, its status and final figures (a job without one is ``missing``, one whose
  file cannot be read is ``corrupt``);
- ``metrics.csv``, its logged rounds (any extra columns are kept and may serve as the bits axis;
  rows that are not whole are left out and named: :func:`read_metrics_file`).

Nothing here decides what is a problem (:mod:`compress_bench.report.problems` does); this module
only records what each folder holds and why a file could not be used.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

log = logging.getLogger("compress_bench")

# Statuses written by the runner into summary.json, plus MISSING, which this package infers.
COMPLETED, DIVERGED, FAILED, RUNNING = "completed", "diverged", "failed", "running"
INTERRUPTED = "interrupted"  # stopped by SIGTERM/SIGINT; summary.json names the "signal"
MISSING = "missing"  # no summary.json: the job never started or was killed first
CORRUPT = "corrupt"  # a summary.json that cannot be read (not JSON, not an object, no access)
DRAWN = (COMPLETED, DIVERGED, INTERRUPTED)  # their rows are real: the figure draws them
STATUS_TEXT = {RUNNING: "running or killed"}  # a kill -9 leaves "running": say both
NO_SUMMARY = "no summary.json (the job never started, or was killed first)"
NO_JOB_FOLDER = "no job folder: the sweep never started this job (it was stopped or killed first)"


class ReportError(ValueError):
    """Bad input to the report (not a sweep folder, unknown bits column): one line, exit 2."""


@dataclass
class Job:
    """What one job folder holds (or, for a declared job without a folder, what the sweep
    declared for it). ``metrics`` is None when metrics.csv is absent or unusable, and
    ``metrics_error`` then says why; ``declared`` is the override list multirun.yaml gives this
    job number (None when unknown), ``raw_overrides`` the one in its .hydra/overrides.yaml;
    ``unexpected`` says why a folder does not match the declared sweep (None: it does)."""

    num: int
    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    summary_error: str | None = None
    metrics: pd.DataFrame | None = None
    metrics_error: str | None = None
    found: bool = True
    raw_overrides: list[str] | None = None
    declared: list[str] | None = None
    unexpected: str | None = None  # why the folder does not belong to the declared sweep
    summary_corrupt: bool = False
    metrics_malformed: str | None = None

    @property
    def status(self) -> str:
        if self.summary is None:
            return CORRUPT if self.summary_corrupt else MISSING
        return str(self.summary.get("status") or MISSING)

    @property
    def config(self) -> Mapping[str, Any]:
        config = (self.summary or {}).get("config")
        return config if isinstance(config, Mapping) else {}


def status_text(status: str) -> str:
    """A status as the report says it (``running`` is "running or killed": see STATUS_TEXT)."""
    return STATUS_TEXT.get(status, status)


def job_dirs(sweep_dir: Path | str) -> list[tuple[int, Path]]:
    """The numbered job folders of a sweep, in numerical order (2 before 10)."""
    sweep_dir = Path(sweep_dir)
    found = [
        (int(p.name), p)
        for p in sweep_dir.iterdir()
        if p.is_dir() and re.fullmatch(r"[0-9]+", p.name)
    ]
    return sorted(found)


def overrides_dict(items: list[str]) -> dict[str, str]:
    """Override strings as {key: value string}; ``+key``/``++key``/``~key`` -> key."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().lstrip("+~")
        if key:
            overrides[key] = value.strip() if sep else ""
    return overrides


def read_override_list(job_dir: Path) -> list[str] | None:
    """``.hydra/overrides.yaml`` as the list of strings Hydra saved; None if unreadable."""
    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(item) for item in items] if isinstance(items, list) else None


def read_overrides(job_dir: Path) -> dict[str, str]:
    """``.hydra/overrides.yaml`` as {key: value string} (:func:`overrides_dict`); {} if none."""
    return overrides_dict(read_override_list(job_dir) or [])


MAX_NAMED_LINES = 3  # a malformed metrics.csv: name its first bad lines, count the rest


def _malformed(bad: list[str]) -> str | None:
    """The rows left out of a metrics.csv, in one line; None when there is none."""
    if not bad:
        return None
    named = "; ".join(bad[:MAX_NAMED_LINES])
    more = f"; and {len(bad) - MAX_NAMED_LINES} more" if len(bad) > MAX_NAMED_LINES else ""
    return f"{named}{more} (left out)"


def read_metrics_file(path: Path) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """(frame, error, malformed) of a metrics.csv file.

    ``frame`` holds its whole rows with every column numeric (``inf``/``nan`` kept); it is None
    when the file cannot be used at all, and ``error`` then says why (absent, unreadable,
    empty). ``malformed`` (None: the file is sound) names the rows left out: a row whose number
    of fields is not the header's (a partial write, a corrupted line), and a last line without
    its line end, which a run killed while writing it leaves (its last value may be cut short
    even when the count of fields is right). pandas reads a short row padded with NaN, a long
    first row shifted into the index (a long later one makes it refuse the whole file) and a
    cut last line as a whole row: a damaged run would pass for a sound one.
    """
    path = Path(path)
    if not path.is_file():
        return None, "metrics.csv is missing", None
    try:
        with path.open(newline="") as fh:
            text = fh.read()
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return None, f"metrics.csv cannot be read: {' '.join(str(err).split())}", None
    if not rows or not rows[0]:
        return None, "metrics.csv cannot be read: it is empty (no header)", None
    header, width = rows[0], len(rows[0])
    truncated = len(rows) > 1 and not text.endswith(("\n", "\r"))
    kept, bad = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line, as pandas skips it
            continue
        if len(row) != width:
            bad.append(f"line {number} has {len(row)} fields, the header {width}")
        elif truncated and number == len(rows):
            bad.append(f"line {number}, the last, is cut short (no line end)")
        else:
            kept.append(row)
    if not kept:  # float columns, as pandas reads numbers
        return pd.DataFrame(np.empty((0, width)), columns=header), None, _malformed(bad)
    frame = pd.DataFrame(kept, columns=header).apply(pd.to_numeric, errors="coerce")
    return frame, None, _malformed(bad)


def load_metrics(job_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """(metrics.csv with every column numeric, ``inf``/``nan`` kept, None) or (None, why it
    cannot be used: absent, unparsable, no ``round`` column). Rows that are not whole are left
    out: :func:`load_metrics_checked` says which."""
    frame, error, _ = load_metrics_checked(job_dir)
    return frame, error


def load_metrics_checked(job_dir: Path) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """:func:`load_metrics`, and what is malformed in the file (:func:`read_metrics_file`)."""
    frame, error, malformed = read_metrics_file(Path(job_dir) / "metrics.csv")
    if frame is not None and "round" not in frame.columns:
        return None, "metrics.csv has no 'round' column", malformed
    return frame, error, malformed


def read_metrics(job_dir: Path) -> pd.DataFrame | None:
    """metrics.csv as :func:`load_metrics` reads it, or None (logged) if unusable; rows left
    out as malformed are logged too."""
    frame, error, malformed = load_metrics_checked(job_dir)
    if error is not None and (Path(job_dir) / "metrics.csv").exists():
        log.warning("sweep report: %s: %s", Path(job_dir), error)
    if malformed is not None:
        log.warning("sweep report: %s: metrics.csv is malformed: %s", Path(job_dir), malformed)
    return frame


def read_summary(job_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(summary.json, None), or (None, why there is none: no file, or one that is corrupt or
    unreadable, named with its path; the reason is :data:`NO_SUMMARY` for the first)."""
    path = Path(job_dir) / "summary.json"
    if not path.is_file():
        return None, NO_SUMMARY
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError included
        return None, f"{path} is corrupt or unreadable: {' '.join(str(err).split())}"
    if not isinstance(summary, dict):
        return None, f"{path} is corrupt: not a JSON object"
    return summary, None


def read_job(num: int, path: Path) -> Job:
    """Everything one job folder holds."""
    summary, summary_error = read_summary(path)
    metrics, metrics_error, malformed = load_metrics_checked(path)
    raw = read_override_list(path)
    return Job(
        num=num,
        path=path,
        overrides=overrides_dict(raw or []),
        summary=summary,
        summary_error=summary_error,
        summary_corrupt=summary is None and summary_error != NO_SUMMARY,
        metrics=metrics,
        metrics_error=metrics_error,
        metrics_malformed=malformed,
        raw_overrides=raw,
    )


def check_sweep_dir(sweep_dir: Path) -> None:
    """ReportError unless ``sweep_dir`` is an existing folder."""
    if not sweep_dir.exists():
        raise ReportError(f"{sweep_dir} does not exist")
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a directory")


def scan_found(sweep_dir: Path | str) -> list[Job]:
    """Read every job folder of a sweep (possibly none); ReportError if it is not a folder."""
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    return [read_job(num, path) for num, path in job_dirs(sweep_dir)]


def no_job_folders(sweep_dir: Path) -> ReportError:
    """The error for a folder that is not a sweep: no job folder and no declared job."""
    return ReportError(
        f"{sweep_dir} has no job folders (0/, 1/, ...); pass the folder of a multirun "
        "(outputs/multirun/<date>/<time>-...)"
    )


def scan(sweep_dir: Path | str) -> list[Job]:
    """Read every job folder of a sweep; ReportError if it is not a sweep folder (the jobs
    found only: :func:`compress_bench.report.declared.read_sweep` adds the declared ones)."""
    jobs = scan_found(sweep_dir)
    if not jobs:
        raise no_job_folders(Path(sweep_dir))
    return jobs


def process_note(summary: Mapping[str, Any]) -> str:
    """What can be said about the process of a job whose summary.json still says running:
    from its ``pid`` (and ``host``) when summary.json records them, else that it cannot tell."""
    pid = summary.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "still running, or killed (a SIGKILL leaves 'running'; no pid recorded to check)"
    host = summary.get("host")
    if host and host != socket.gethostname():
        return f"still running, or killed (it ran as pid {pid} on {host}, not this machine)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"killed: its process (pid {pid}) is gone"
    except PermissionError:
        pass  # the process exists, owned by someone else
    return f"probably still running: its process (pid {pid}) exists"
