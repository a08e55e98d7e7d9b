"""A Hydra callback that writes the sweep report (:mod:`compress_bench.report.sweep`) at the end
of every multirun.

Enable it in ``conf/config.yaml``::

    hydra:
      callbacks:
        sweep_report:
          _target_: compress_bench.report.callback.SweepReportCallback

A failing report never fails the sweep: the error is logged and kept in :data:`LAST_REPORT`.
What the report logs (the problem jobs, the files written) goes to stderr, never to the stdout
of Hydra's own logging (:func:`report_to_stderr`).
:data:`LAST_REPORT` holds the result of the last report made in this process (None before any),
so the command can choose its exit status with :func:`compress_bench.report.sweep.exit_code`.

``on_multirun_start`` refuses a sweep folder that already holds a sweep
(:mod:`compress_bench.report.reuse`): it runs before Hydra's basic sweeper creates the folder,
writes multirun.yaml and launches the first job, so the old sweep is left untouched.

Hydra calls ``on_multirun_end`` only when no job raised: its basic sweeper re-raises the first
job exception after the whole batch has run. A command that lets job exceptions escape can call
:func:`finish_pending_report` in its error path to report the sweep anyway.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from compress_bench.errors import PassThrough, UserError
from compress_bench.report.reuse import refuse_used_sweep_folder

log = logging.getLogger("compress_bench")

CONSOLE_FORMAT = "[compress-bench] %(message)s"  # as the jobs' console lines (conf/hydra)
LAST_REPORT: dict[str, Any] | None = None
# (sweep dir, bits column) of a multirun that started and has not been reported yet
_pending: tuple[Path, str | None] | None = None


class SweepReportCallback(Callback):
    """Writes summary.csv and comparison.png into the sweep folder when a multirun ends."""

    def __init__(self, bits_column: str | None = None) -> None:
        self.bits_column = bits_column

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a used sweep folder (before anything is written), then note the sweep as
        pending a report."""
        global LAST_REPORT, _pending
        LAST_REPORT, _pending = None, None
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
        except Exception:  # the report is optional, the sweep is not
            return
        try:
            refuse_used_sweep_folder(sweep_dir)
        except UserError as err:
            _stop_the_sweep(err)
        _pending = (sweep_dir, self.bits_column)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
        except Exception as err:
            _failed(None, err)
            return
        run_report(sweep_dir, self.bits_column)


def _stop_the_sweep(err: UserError) -> NoReturn:
    """Hydra turns an Exception raised by a callback into a warning and runs the sweep anyway
    (hydra/_internal/callbacks.py), so the error travels in the command's BaseException
    carrier (PassThrough), which ``compress_bench.cli.main`` unwraps and prints as one line
    (exit 2)."""
    raise PassThrough(err) from None


def run_report(sweep_dir: Path | str, bits_column: str | None = None) -> dict[str, Any]:
    """Report a sweep, logging (never raising) any error; the result is also LAST_REPORT."""
    global LAST_REPORT, _pending
    _pending = None
    with report_to_stderr():
        try:
            from compress_bench.report.sweep import report  # pandas/matplotlib when needed

            LAST_REPORT = report(sweep_dir, x_bits_column=bits_column)
        except Exception as err:  # a report failure must not crash the sweep
            _failed(sweep_dir, err)
    return LAST_REPORT


def _writes_to_stdout(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return stream is not None and stream in (sys.stdout, sys.__stdout__)


class _NotOurs(logging.Filter):
    """Lets through every record but those of the ``compress_bench`` logger and its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == log.name or record.name.startswith(log.name + "."))


@contextlib.contextmanager
def report_to_stderr() -> Iterator[None]:
    """Send what the report logs to stderr, not stdout, for the time of the report.

    At the end of a multirun Hydra has configured logging with its ``hydra_logging`` config,
    whose console handler writes to stdout, so the lines naming failed and missing jobs would
    land on stdout with Hydra's job listing: a script that captures stdout would take them for
    output, one that shows stderr would miss them. So every handler on the way to the root that
    writes to stdout skips the ``compress_bench`` records meanwhile, and one handler on stderr
    writes them (at the level of the quietest handler skipped, in the format of the jobs'
    console lines). Handlers on other streams and files (a job's log) are left as they are;
    with no handler on stdout nothing changes."""
    muted: list[logging.Handler] = []
    logger: logging.Logger | None = log
    while logger is not None:
        muted += [h for h in logger.handlers if _writes_to_stdout(h) and h not in muted]
        logger = logger.parent if logger.propagate else None
    if not muted:
        yield
        return
    quiet, handler = _NotOurs(), logging.StreamHandler(sys.stderr)
    handler.setLevel(min(h.level for h in muted))
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    for muted_handler in muted:
        muted_handler.addFilter(quiet)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        for muted_handler in muted:
            muted_handler.removeFilter(quiet)


def finish_pending_report() -> dict[str, Any] | None:
    """Report the multirun that started but never reached ``on_multirun_end`` (a job raised);
    None when there is none."""
    if _pending is None:
        return None
    return run_report(*_pending)


def _failed(sweep_dir: Path | str | None, err: BaseException) -> None:
    global LAST_REPORT
    text = " ".join(str(err).split()) or type(err).__name__
    log.error("sweep report for %s failed: %s", sweep_dir or "the sweep", text)
    LAST_REPORT = {
        "jobs": None,
        "failed": [],
        "diverged": [],
        "missing": [],
        "corrupt": [],
        "incomplete": [],
        "interrupted": [],
        "no_metrics": [],
        "malformed": [],
        "unexpected": [],
        "unknown": [],
        "files": [],
        "error": text,
    }
