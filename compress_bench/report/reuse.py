"""Is a sweep folder free for a new sweep? One that already holds a sweep is refused: the new
jobs would overwrite or mix with the old ones (job 3 of which sweep?) and its report would
compare both. Used by :class:`compress_bench.report.callback.SweepReportCallback` before the
first job starts (and before Hydra writes the new multirun.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from compress_bench.errors import UserError
from compress_bench.report.jobs import job_dirs

JOB_MARKS = (".hydra", "summary.json", "metrics.csv")  # what a job folder that ran holds
SWEEP_FILES = ("multirun.yaml", "summary.csv")  # what a sweep leaves at its root


def ranges(numbers: Sequence[int]) -> str:
    """Sorted job numbers as ``0-5, 8, 10-11``."""
    parts: list[str] = []
    numbers = sorted(numbers)
    start = prev = None
    for n in [*numbers, None]:
        if start is not None and (n is None or n != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(parts)


def used_jobs(sweep_dir: Path) -> list[int]:
    """The numbered subfolders that hold a job (.hydra/, summary.json or metrics.csv)."""
    return [num for num, path in job_dirs(sweep_dir) if any((path / m).exists() for m in JOB_MARKS)]


def refuse_used_sweep_folder(sweep_dir: Path | str) -> None:
    """UserError (one line) when ``sweep_dir`` already holds job folders or a sweep's
    multirun.yaml or summary.csv; nothing (a new, empty or unrelated folder) otherwise."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return
    jobs = used_jobs(sweep_dir)
    files = [name for name in SWEEP_FILES if (sweep_dir / name).exists()]
    if not jobs and not files:
        return
    what = f"jobs {ranges(jobs)}" if jobs else ", ".join(files)
    raise UserError(
        f"sweep folder {sweep_dir} already holds a sweep ({what}); choose another "
        "hydra.sweep.dir or delete it"
    )
