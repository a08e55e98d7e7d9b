"""Reading the job folders of a sweep: ``<sweep dir>/<job number>/`` with

- ``.hydra/overrides.yaml``, the job's command-line overrides (``compressor=top_k``, ``seed=1``);
- ``summary.json``, its status and final figures (a job without one is ``missing``);
- ``metrics.csv``, its logged rounds (any extra columns are kept and may serve as the bits axis).

Nothing here decides what is a problem (:mod:`compress_bench.report.problems` does); this module
only records what each folder holds and why a file could not be used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

log = logging.getLogger("compress_bench")

# Statuses written by the runner into summary.json, plus MISSING, which this package infers.
COMPLETED, DIVERGED, FAILED, RUNNING = "completed", "diverged", "failed", "running"
INTERRUPTED = "interrupted"  # stopped by SIGTERM/SIGINT; summary.json names the "signal"
MISSING = "missing"  # no (readable) summary.json: the job never started or was killed first
DRAWN = (COMPLETED, DIVERGED, INTERRUPTED)  # their rows are real: the figure draws them
STATUS_TEXT = {RUNNING: "running or killed"}  # a kill -9 leaves "running": say both
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

    @property
    def status(self) -> str:
        if self.summary is None:
            return MISSING
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


def load_metrics(job_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """(metrics.csv with every column numeric, ``inf``/``nan`` kept, None) or (None, why it
    cannot be used: absent, unparsable, no ``round`` column)."""
    path = Path(job_dir) / "metrics.csv"
    if not path.is_file():
        return None, "metrics.csv is missing"
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        return None, f"metrics.csv cannot be read: {' '.join(str(err).split())}"
    if "round" not in frame.columns:
        return None, "metrics.csv has no 'round' column"
    return frame.apply(pd.to_numeric, errors="coerce"), None


def read_metrics(job_dir: Path) -> pd.DataFrame | None:
    """metrics.csv as :func:`load_metrics` reads it, or None (logged) if unusable."""
    frame, error = load_metrics(job_dir)
    if error is not None and (Path(job_dir) / "metrics.csv").exists():
        log.warning("sweep report: %s: %s", Path(job_dir), error)
    return frame


def read_summary(job_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(summary.json, None), or (None, why there is none)."""
    path = Path(job_dir) / "summary.json"
    if not path.is_file():
        return None, "no summary.json (the job never started, or was killed first)"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"summary.json unreadable: {err}"
    if not isinstance(summary, dict):
        return None, "summary.json is not a JSON object"
    return summary, None


def read_job(num: int, path: Path) -> Job:
    """Everything one job folder holds."""
    summary, summary_error = read_summary(path)
    metrics, metrics_error = load_metrics(path)
    raw = read_override_list(path)
    return Job(
        num=num,
        path=path,
        overrides=overrides_dict(raw or []),
        summary=summary,
        summary_error=summary_error,
        metrics=metrics,
        metrics_error=metrics_error,
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
