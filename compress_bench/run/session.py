"""The start and the end of a run, around its rounds: the summary head, a resume checked whole
before anything is written (so a refused one writes nothing), the checkpoints written at round
starts (the torch.distributed ranks' included), the progress display, and the end of a run:
summary.json written even on a full disk or in a read-only folder where that can be done at
all, and a write error turned into one line."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from compress_bench import signals
from compress_bench.errors import ConfigError, Interrupted, UserError
from compress_bench.report import MetricsWriter, plot_run, write_json_atomic
from compress_bench.report.metrics import json_safe
from compress_bench.run.state import (
    CHECKPOINT,
    RunState,
    config_fingerprint,
    load_checkpoint,
    save_checkpoint,
    to_device,
)

log = logging.getLogger("compress_bench")

PLAIN_LOG_SECONDS = 5.0  # cadence of the progress lines when no progress bar is shown


class Progress:
    """A tqdm bar on a terminal; otherwise a plain log line every few seconds.

    The bar measures the stop the run will reach first. Without ``max_bits`` it counts rounds
    out of ``rounds``. With ``max_bits`` it shows the percentage max(k / rounds, bits per
    worker / max_bits): such a run usually ends on its bit budget long before ``rounds``
    (thesis_logreg: rounds=100000 as a cap), and a bar counting rounds alone showed an ETA of
    millions of hours."""

    def __init__(
        self, total: int, enabled: bool | None, max_bits: float | None = None, start: int = 0
    ):
        self.rounds, self.max_bits = total, max_bits
        show = sys.stderr.isatty() if enabled is None else enabled
        if not show:
            self.bar = None
        elif max_bits is None:
            self.bar = tqdm(total=total, initial=start, unit="round", leave=False)
        else:
            self.bar = tqdm(
                total=100,
                leave=False,
                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]",
            )
        self.last = time.perf_counter()

    def done(self, k: int, bits: float) -> float:
        """The share of the run done at round k with ``bits`` per worker spent, in [0, 1]."""
        by_rounds = k / self.rounds if self.rounds > 0 else 1.0
        if self.max_bits is None:
            return min(by_rounds, 1.0)
        return min(max(by_rounds, bits / self.max_bits), 1.0)

    def update(
        self, k: int, total: int, rel: float, bits: float, what: str = "grad_norm_rel"
    ) -> None:
        if self.bar is not None:
            postfix = {what: f"{rel:.2e}", "bits": f"{bits:.3g}"}
            if self.max_bits is None:
                self.bar.update(1)
            else:
                postfix = {"round": str(k), **postfix}
                self.bar.update(100 * self.done(k, bits) - self.bar.n)
            self.bar.set_postfix(postfix, refresh=False)
        elif time.perf_counter() - self.last >= PLAIN_LOG_SECONDS:
            self.last = time.perf_counter()
            budget = "" if self.max_bits is None else f" of {self.max_bits:.4g}"
            log.info("round %d/%d  %s %.3e  bits/worker %.4g%s", k, total, what, rel, bits, budget)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary_head(run) -> dict[str, Any]:
    cfg, problem, method = run.cfg, run.problem, run.method
    constants = problem.constants()
    return {
        "status": "running",
        "pid": os.getpid(),  # so a report can tell a killed run from a running one
        "host": socket.gethostname(),
        "problem": cfg.problem.name,
        "compressor": cfg.compressor.name,
        "quantizer": cfg.quantizer.name,
        "method": cfg.method.name,
        "operator": method.operator.display.display_name,
        "label": method.operator.display.label,  # the reports' names and colours come from here
        "family": method.operator.display.family,
        "colour": method.operator.display.colour,
        "compressor_label": method.operator.display.compressor_label,
        "n_workers": run.n_workers,
        "d": problem.d,
        "k": run.k,
        "ratio": cfg.ratio,
        "granularity": cfg.get("granularity", "global"),
        "seed": cfg.seed,
        "lr": run.lr,
        "L": constants.L if constants else None,
        "L_max": constants.L_max if constants else None,
        "fstar": run.fstar,
        "config": OmegaConf.to_container(cfg),
    }


class Checkpoints:
    """Writes the RunState every ``checkpoint_every`` rounds and when a signal stops the run;
    restores it for ``resume``.

    In a torch.distributed rank (``run.communicator``) every rank holds its worker's method
    state and streams: a checkpoint gathers them (``gather_objects``, on the rounds that write
    one) and rank 0 writes one file whose ``method`` and ``streams`` are ``{PER_RANK: [rank 0's,
    rank 1's, ...]}``, the rest (x, ledger, metrics position, data order) being the same on
    every rank. Ranks must stop at the same round for that gather: with checkpoints on, each
    round start takes the max over the ranks of the signal each holds (one integer
    all_reduce), so a SIGTERM that reaches the ranks a round apart still stops them together,
    after the checkpoint. On resume rank 0 loads and checks the checkpoint, then broadcasts it
    (or the one line that refuses it) and each rank takes its own part."""

    def __init__(self, run, out_dir: Path):
        self.run, self.out_dir = run, out_dir
        self.comm = getattr(run, "communicator", None)
        self.every = run.cfg.get("checkpoint_every")
        self.fingerprint = config_fingerprint(
            OmegaConf.to_container(run.cfg, resolve=True)  # type: ignore[arg-type]
        )

    @property
    def enabled(self) -> bool:
        return self.every is not None

    def due(self, k: int, start: int) -> bool:
        return self.enabled and k > start and k % self.every == 0

    def save(self, state: RunState) -> None:
        if self.comm is None:
            save_checkpoint(self.out_dir, state, self.fingerprint)
            return
        parts = self.comm.gather_objects({"method": state.method, "streams": state.streams})
        if self.comm.rank == 0:
            state = replace(
                state,
                method={PER_RANK: [part["method"] for part in parts]},
                streams={PER_RANK: [part["streams"] for part in parts]},
            )
            save_checkpoint(self.out_dir, state, self.fingerprint)

    def round_start(self, k: int, start: int, state_at: Callable[[], RunState]) -> None:
        """At the start of round k: stop for a signal held during the last round (with a
        checkpoint of this round's state first), or write the periodic checkpoint."""
        if self.comm is not None and self.enabled:
            held = self.comm.max_int(int(signals.held() or 0))  # every rank: the same answer
            if held:
                self.save(state_at())
                signals.check()  # this rank's own signal, if it came already
                raise Interrupted(signal.Signals(held))
        try:
            signals.check()
        except Interrupted:
            if self.enabled:
                self.save(state_at())
            raise
        if self.due(k, start):
            self.save(state_at())

    def load(self) -> RunState | None:
        """The checkpoint to resume from (x and the method state on the problem's device),
        or None for a fresh run."""
        if not self.run.cfg.get("resume"):
            return None
        state = load_checkpoint(self.out_dir, self.fingerprint)
        written_by = _ranks_of(state)
        if written_by != (self.comm.world if self.comm is not None else None):
            where = self.out_dir / CHECKPOINT
            raise ConfigError(
                f"resume: {where} was written by {written_by} torch.distributed ranks; resume "
                "it with backend=torch_distributed"
                if written_by is not None
                else f"resume: {where} was written by the simulator; resume it with "
                "backend=simulated"
            )
        device = torch.device(self.run.problem.device)
        return replace(state, x=state.x.to(device), method=to_device(state.method, device))

    def resume_point(
        self, columns: tuple[str, ...], needs: dict[str, tuple[str, ...]]
    ) -> tuple[RunState | None, dict[str, Any]]:
        """(the RunState to resume from or None, the last metrics row it keeps), checked
        whole (:func:`check_resume`); a rank's RunState holds its own method state and
        streams."""
        if self.comm is None:
            resumed = self.load()
            if resumed is None:
                return None, {}
            return resumed, check_resume(self.run, resumed, self.out_dir, columns, needs)
        if not self.run.cfg.get("resume"):
            return None, {}
        outcome: Any = None
        if self.comm.rank == 0:  # the others' folder is a scratch one: rank 0 reads the run's
            try:
                resumed = self.load()
                outcome = (resumed, check_resume(self.run, resumed, self.out_dir, columns, needs))
            except ConfigError as err:
                outcome = str(err)
        outcome = self.comm.broadcast_object(outcome)
        if isinstance(outcome, str):
            raise ConfigError(outcome)
        resumed, last_row = outcome
        rank = self.comm.rank
        mine = replace(
            resumed,
            method=resumed.method[PER_RANK][rank],
            streams=resumed.streams[PER_RANK][rank],
        )
        return mine, last_row


#: the key of a torch.distributed checkpoint's per-rank method states and streams
PER_RANK = "per_rank"


def _ranks_of(state: RunState) -> int | None:
    """How many ranks wrote ``state`` (None: the simulator)."""
    if isinstance(state.method, dict) and PER_RANK in state.method:
        return len(state.method[PER_RANK])
    return None


@dataclass
class Start:
    """A started run: its summary (status running, written), the checkpoints, and for a
    resumed run its RunState and the last metrics row it keeps ({} for a fresh run)."""

    summary: dict[str, Any]
    summary_path: Path
    checkpoints: Checkpoints
    resumed: RunState | None
    last_row: dict[str, Any]


def start_run(
    run, out_dir: Path, columns: tuple[str, ...], needs: dict[str, tuple[str, ...]]
) -> Start:
    """What a run does before its first round. A resume is checked whole before anything is
    written (:func:`check_resume`), its random streams and data order restored, then
    summary.json is written with status running (a folder that refuses it is one line, nothing
    written), and a resumed run's log moves to its own folder (:func:`continue_log_in`).
    ``columns`` are the run's metrics.csv columns, ``needs`` the ledger and metrics keys its
    checkpoints hold (those of its problem kind, run/metrics.py)."""
    summary = summary_head(run)
    summary_path = out_dir / "summary.json"
    checkpoints = Checkpoints(run, out_dir)
    resumed, last_row = checkpoints.resume_point(columns, needs)
    if resumed is not None:
        _restore(run, resumed, out_dir / CHECKPOINT)
        summary["resumed_at_round"] = resumed.round
    try:
        write_json_atomic(summary_path, summary)
    except OSError as err:
        raise UserError(
            f"cannot write {summary_path}: {err.strerror or err}; nothing was written"
        ) from None
    if resumed is not None and getattr(run, "rank", 0) == 0:
        continue_log_in(out_dir, resumed.round)
    return Start(summary, summary_path, checkpoints, resumed, last_row)


def check_resume(
    run,
    resumed: RunState,
    out_dir: Path,
    columns: tuple[str, ...],
    needs: dict[str, tuple[str, ...]],
) -> dict[str, Any]:
    """ConfigError, one line, for a resume that could damage the run, checked before anything
    is written so that a refused resume leaves the folder byte for byte as it was:
    ``rounds`` below the checkpoint's round (the run would end before its own checkpoint and
    its rows after ``rounds`` would be cut), an x of another shape or dtype than the problem's,
    a checkpoint without the ledger or metrics entries of this problem kind, a metrics.csv that does
    not hold the rows the checkpoint counts (fewer rows, other columns, or a last kept row of
    another round than the checkpoint recorded), a folder that cannot be written. Returns the
    last metrics row the resumed run keeps, as numbers ({} when it keeps none)."""
    where = out_dir / CHECKPOINT
    k = resumed.round
    rounds = run.cfg.rounds
    if rounds < k:
        raise ConfigError(
            f"resume: {where} is at round {k}, past rounds={rounds}; resume with rounds >= {k} "
            "(the run folder is left as it was)"
        )
    problem, x = run.problem, resumed.x
    fits = isinstance(x, torch.Tensor) and tuple(x.shape) == (problem.d,)
    if not fits or x.dtype != problem.dtype:
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(
            f"resume: {where} holds an x of shape {got}; this run's x is ({problem.d},) "
            f"{problem.dtype}"
        )
    for part, keys in needs.items():
        missing = [key for key in keys if key not in getattr(resumed, part)]
        if missing:
            raise ConfigError(f"resume: {where} is incomplete (no {part} {', '.join(missing)})")
    rows = resumed.metrics["rows"]
    if not isinstance(rows, int) or rows < 0:
        raise ConfigError(f"resume: {where} is incomplete (its metrics row count is {rows!r})")
    try:
        _, last = MetricsWriter.resume_point(out_dir / "metrics.csv", columns, rows)
    except ValueError as err:
        raise ConfigError(f"resume: {err}; it does not match {where}") from None
    last_row = dict(last)
    expected = resumed.metrics.get("last_row_round")  # checkpoints since this check
    got = last_row.get("round")
    if (expected is not None and got != expected) or (got is not None and got >= k):
        recorded = f"round {expected}" if expected is not None else f"a round below {k}"
        raise ConfigError(
            f"resume: {out_dir / 'metrics.csv'} does not match {where}: the last row it keeps "
            f"(row {rows}) is round {got}, the checkpoint recorded {recorded}"
        )
    unwritable = [
        str(path)
        for path in (out_dir, out_dir / "metrics.csv", out_dir / "summary.json")
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))
    ]
    if unwritable:
        raise ConfigError(f"resume: cannot write {', '.join(unwritable)} (permission denied)")
    return last_row


def _restore(run, resumed: RunState, where: Path) -> None:
    """The checkpoint's random streams and data order into the run (nothing written yet)."""
    try:
        run.streams.set_state(resumed.streams)
        run.problem.set_data_state(resumed.data)
    except Exception as err:
        raise ConfigError(
            f"resume: {where} does not fit this run ({type(err).__name__}: "
            f"{' '.join(str(err).split())})"
        ) from None


def continue_log_in(out_dir: Path, k: int) -> None:
    """A resumed run logs into its own folder. Hydra made a new folder for the resume command
    (its .hydra record and compress-bench.log), while the run continues in ``out_dir``; so
    the log file handler moves to ``out_dir``'s compress-bench.log (appended, with what this
    command logged so far), the command's record moves to ``out_dir/.hydra/resume-<name>/``,
    and the folder Hydra made, now empty, is removed (with parents it leaves empty, below the
    working directory). A line says where the run continues. Best effort: a step that fails
    leaves the log where it was."""
    log.info("resuming %s at round %d (checkpoint.pt); its log continues there", out_dir, k)
    hydra_dir, record = _hydra_run_dir()
    if hydra_dir is None or hydra_dir == out_dir.resolve():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not isinstance(handler, logging.FileHandler):
            continue
        old = Path(handler.baseFilename)
        if old.resolve().parent != hydra_dir:
            continue
        try:
            new = logging.FileHandler(out_dir / old.name, mode="a", encoding="utf-8")
        except OSError as err:
            log.warning("the log stays in %s (%s)", old, err.strerror or err)
            return
        new.setFormatter(handler.formatter)
        new.setLevel(handler.level)
        handler.flush()
        try:
            new.stream.write(old.read_text(encoding="utf-8", errors="replace"))
            new.flush()
        except OSError:
            pass
        root.addHandler(new)
        root.removeHandler(handler)
        handler.close()
        old.unlink(missing_ok=True)
    if record is not None and record.is_dir():
        target = out_dir / ".hydra" / f"resume-{hydra_dir.name}"
        try:
            target.mkdir(parents=True, exist_ok=False)
            for item in record.iterdir():
                shutil.move(str(item), target / item.name)
            record.rmdir()
        except OSError as err:
            log.debug("the resume command's Hydra record stays in %s: %s", record, err)
            return
        log.info("this command's Hydra record: %s", target)
    _remove_empty(hydra_dir)


def _hydra_run_dir() -> tuple[Path | None, Path | None]:
    """(the folder Hydra made for this single run, its .hydra record), or (None, None)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.RUN:
        return None, None
    folder = Path(hydra_cfg.runtime.output_dir).resolve()
    subdir = hydra_cfg.output_subdir
    return folder, (folder / subdir if subdir else None)


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` if empty, then its parents while empty and below the working
    directory (outputs/<date>/ of the default layout); never a folder with anything in it."""
    cwd = Path.cwd().resolve()
    for path in (folder, *folder.parents):
        if path != folder and (path == cwd or cwd not in path.parents):
            return
        try:
            path.rmdir()
        except OSError:
            return


def save_summary(path: Path, summary: dict[str, Any]) -> OSError | None:
    """Write the final summary.json; None when it was written, else the error of the write.

    A run must not end with summary.json at ``running`` (a report would take it for a live or
    killed run). The atomic write needs a new file in the folder, which a full disk or a
    read-only folder refuses; then the existing summary.json (the one that says running) is
    overwritten in place, compact, no longer than it was, so no new space is needed; if even
    that fails, the caller must say summary.json could not be written."""
    try:
        write_json_atomic(path, summary)
        return None
    except OSError as err:
        first = err
    try:
        _overwrite_in_place(path, summary)
    except OSError:
        return first
    return None


def _overwrite_in_place(path: Path, summary: dict[str, Any]) -> None:
    """``summary`` over the existing file's bytes (never longer: the config and then the final
    metrics are left out until it fits), the rest cut off, fsync'ed."""
    brief = {key: value for key, value in summary.items() if key != "config"}
    essential = {
        key: summary.get(key) for key in ("status", "stop_reason", "error", "signal", "rounds_done")
    }
    with path.open("r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        for candidate in (summary, brief, essential):
            text = json.dumps(json_safe(candidate), separators=(",", ":"), default=str)
            data = (text + "\n").encode("utf-8")
            if len(data) <= size:
                break
        else:
            raise OSError(errno.ENOSPC, "no room to overwrite in place", str(path))
        fh.write(data)
        fh.truncate(len(data))
        fh.flush()
        os.fsync(fh.fileno())


def finish_summary(path: Path, summary: dict[str, Any], done: str) -> None:
    """Write the summary of a run that ended by itself; UserError, one line, when summary.json
    cannot be written at all (``done`` says what the run did: its rows are complete)."""
    error = save_summary(path, summary)
    if error is not None:
        raise UserError(
            f"cannot write {path}: {error.strerror or error}; the run {done} but summary.json "
            "could not be written (it may still say running)"
        )


def failure_to_raise(
    err: BaseException, summary_path: Path, summary: dict[str, Any]
) -> BaseException:
    """After a run stopped by ``err``: write its summary (status failed or interrupted),
    draw loss.png from the rows written (unless a write failed), and return what to raise.
    A write error (an OSError: a full disk, a read-only folder, a quota) becomes a UserError,
    one line naming the file and saying what summary.json says, so that the command prints
    it instead of an internal-error report; anything else is returned as it is, with a
    logged line when summary.json could not be written."""
    summary.update(stopped(err))
    error = save_summary(summary_path, summary)
    status = (
        f"summary.json says {summary['status']}"
        if error is None
        else f"summary.json could not be written either ({error.strerror or error}): it may "
        "still say running"
    )
    if isinstance(err, OSError):
        what = err.filename or summary_path.parent
        return UserError(
            f"cannot write {what}: {err.strerror or err}; the run stopped at round "
            f"{summary.get('rounds_done', 0)}, the metrics rows written are kept, {status}"
        )
    if error is not None:
        log.error("%s: %s", summary_path, status)
    if not isinstance(err, OSError):  # after a failed write a figure would fail or fill it
        plot_quietly(summary_path.parent, summary)  # the rows written are real: draw them
    return err


def run_title(summary: dict[str, Any]) -> str:
    """The title of a run's loss.png: problem, method, operator, k/d, n and status."""
    q = "" if summary["quantizer"] == "none" else f" + {summary['quantizer']}"
    return (
        f"{summary['problem']}: {summary['method']}, {summary['compressor']}{q}, "
        f"k/d = {summary['ratio']}, n = {summary['n_workers']} ({summary['status']})"
    )


def plot_quietly(out_dir: Path, summary: dict[str, Any]) -> None:
    """loss.png (convex: f - f* and the gradient norm; networks: train/test loss and test
    accuracy, against rounds, epochs and bits) when the run did not end normally, or for a
    network at any end: a figure that cannot be drawn must not hide what stopped the run."""
    try:
        plot_run(out_dir / "metrics.csv", out_dir / "loss.png", title=run_title(summary))
    except Exception as err:
        log.warning("could not draw loss.png: %s", err)


def stopped(err: BaseException) -> dict[str, Any]:
    """The summary fields of a run that ended by an exception: interrupted by a signal, or
    failed."""
    if isinstance(err, Interrupted | KeyboardInterrupt):
        name = err.signal.name if isinstance(err, Interrupted) else "SIGINT"
        return {"status": "interrupted", "stop_reason": "signal", "signal": name}
    return {"status": "failed", "stop_reason": type(err).__name__, "error": str(err) or repr(err)}
