"""What the convex round loop (runner.py) and the neural one (training.py) share: the summary
head and the start of a run (resume first, so a refused one writes nothing), checkpoints at
round starts, the bit ledger, the progress display, and the summary fields of a run stopped
by an exception."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from compress_bench import signals
from compress_bench.compressors.bits import thesis_bits
from compress_bench.errors import Interrupted
from compress_bench.report import THESIS_BITS_COLUMN, write_json_atomic
from compress_bench.state import (
    RunState,
    config_fingerprint,
    load_checkpoint,
    save_checkpoint,
    to_device,
)

log = logging.getLogger("compress_bench")

PLAIN_LOG_SECONDS = 5.0  # cadence of the progress lines when no progress bar is shown

#: what ``tol`` can stop on: the convex loop's metrics, and the neural loop's (on the rows it
#: logs, every ``eval_every`` rounds); a metric stops when it is <= tol, or >= tol for those
#: where higher is better
CONVEX_TOL_METRICS = ("grad_norm_rel", "grad_norm", "loss_gap", "loss")
TRAINING_TOL_METRICS = ("train_loss", "test_loss", "test_accuracy")
HIGHER_IS_BETTER = frozenset({"test_accuracy"})


def tol_reached(row: dict[str, Any], metric: str, tol: float | None) -> bool:
    """Whether the row's ``metric`` has reached ``tol`` (never for a missing or NaN value)."""
    if tol is None:
        return False
    value = row.get(metric)
    if value is None or not math.isfinite(value):
        return False
    return value >= tol if metric in HIGHER_IS_BETTER else value <= tol


class Progress:
    """A tqdm bar on a terminal; otherwise a plain log line every few seconds."""

    def __init__(self, total: int, enabled: bool | None):
        self.bar = (
            tqdm(total=total, unit="round", leave=False)
            if (sys.stderr.isatty() if enabled is None else enabled)
            else None
        )
        self.last = time.perf_counter()

    def update(
        self, k: int, total: int, rel: float, bits: float, what: str = "grad_norm_rel"
    ) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({what: f"{rel:.2e}", "bits": f"{bits:.3g}"}, refresh=False)
        elif time.perf_counter() - self.last >= PLAIN_LOG_SECONDS:
            self.last = time.perf_counter()
            log.info("round %d/%d  %s %.3e  bits/worker %.4g", k, total, what, rel, bits)

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
        "n_workers": problem.n_workers,
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
    restores it for ``resume``."""

    def __init__(self, run, out_dir: Path):
        self.run, self.out_dir = run, out_dir
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
        save_checkpoint(self.out_dir, state, self.fingerprint)

    def round_start(self, k: int, start: int, state_at: Callable[[], RunState]) -> None:
        """At the start of round k: stop for a signal held during the last round (with a
        checkpoint of this round's state first), or write the periodic checkpoint."""
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
        device = torch.device(self.run.problem.device)
        return replace(state, x=state.x.to(device), method=to_device(state.method, device))


def start_run(run, out_dir: Path) -> tuple[dict[str, Any], Path, Checkpoints, Any]:
    """What both round loops do first: the summary head, the checkpoint to resume from (read
    before anything is written, so a refused resume leaves the folder as it was), and
    summary.json with status running. Returns (summary, its path, checkpoints, resumed)."""
    summary = summary_head(run)
    summary_path = out_dir / "summary.json"
    checkpoints = Checkpoints(run, out_dir)
    resumed = checkpoints.load()
    write_json_atomic(summary_path, summary)
    return summary, summary_path, checkpoints, resumed


class BitLedger:
    """Cumulative uplink bits: the exact encoding (spec 0.6) and, with bits_convention=thesis,
    the thesis code's accounting in its own column; ``max_bits`` counts in the chosen one."""

    def __init__(self, n_workers: int, thesis: bool):
        self.n, self.thesis = n_workers, thesis
        self.total, self.thesis_total = 0, 0  # all workers, exact integers

    def cost(self, proposal) -> tuple[int, int]:
        spec = int(proposal.bits.sum())
        return spec, int(thesis_bits(proposal.message).sum()) if self.thesis else 0

    @property
    def budget_total(self) -> int:
        return self.thesis_total if self.thesis else self.total

    def per_worker_after(self, spent: tuple[int, int]) -> float:
        return (self.budget_total + spent[1 if self.thesis else 0]) / self.n

    def add(self, spent: tuple[int, int]) -> None:
        self.total += spent[0]
        self.thesis_total += spent[1]

    def row(self) -> dict[str, Any]:
        row = {"bits": self.total / self.n, "bits_total": self.total}
        if self.thesis:
            row[THESIS_BITS_COLUMN] = self.thesis_total / self.n
        return row


def stopped(err: BaseException) -> dict[str, Any]:
    """The summary fields of a run that ended by an exception: interrupted by a signal, or
    failed."""
    if isinstance(err, Interrupted | KeyboardInterrupt):
        name = err.signal.name if isinstance(err, Interrupted) else "SIGINT"
        return {"status": "interrupted", "stop_reason": "signal", "signal": name}
    return {"status": "failed", "stop_reason": type(err).__name__, "error": str(err) or repr(err)}
