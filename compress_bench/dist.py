"""``backend=torch_distributed``: the run as one process per worker.

``compress-bench backend=torch_distributed n_workers=4 ...`` spawns 4 ranks on 127.0.0.1
(torch.multiprocessing, the ``spawn`` start method; gloo on the CPU) from inside the job, in
its one Hydra output folder. Rank i builds the problem (the operator, the step, L and f*
are the whole problem's), then keeps worker i's part of it alone (logistic regression: worker
i's shard, evaluated without the others'; problems/workers.py) and worker i's row of the
method, draws worker i's streams and sends its messages through
:class:`~compress_bench.comm.distributed.TorchDistributedCommunicator`; the metrics gather
every rank's evaluation, so the rows equal the simulator's with n workers (tests). Rank 0
writes metrics.csv, summary.json and loss.png; the other ranks write into a scratch folder
that is removed. Under an external ``torchrun --standalone --nproc_per_node=N`` each process
is a rank already (``RANK`` and ``WORLD_SIZE`` set): see :func:`run_as_torchrun_rank`.

A rank that fails or dies ends the job with one line naming it; the others are stopped
(torch.multiprocessing terminates them), and a rank that hangs makes the others time out
after ``dist_timeout`` seconds in their next collective.

Checkpoints: rank 0 writes ``checkpoint.pt`` with every rank's method state and streams
(gathered on the rounds that write one); ``resume=<run dir>`` is checked on rank 0, and every
rank resumes from its part (run/session.py's Checkpoints). A distributed checkpoint resumes
only with the same number of ranks (``n_workers`` is in the config's fingerprint), and one
line refuses it to the simulator and a simulator's checkpoint to the ranks. Not yet: CUDA
ranks (NCCL); reading only a rank's own shard from disk (each rank loads the whole dataset,
and builds the whole problem once at start-up, before it keeps its part).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import DictConfig, OmegaConf

from compress_bench.errors import ConfigError, Interrupted, UserError

_ERROR_FILE = ".rank{}.error"


def is_distributed(cfg: DictConfig) -> bool:
    return getattr(cfg.get("backend"), "name", cfg.get("backend")) == "torch_distributed"


def check(cfg: DictConfig, stochastic: bool = False) -> None:
    """One line for what the distributed backend cannot do yet."""
    if stochastic:
        raise ConfigError(
            "backend=torch_distributed runs the convex problems for now (mushrooms, "
            "synthetic_logreg); the neural loop has no ranks yet"
        )
    if getattr(cfg.get("device"), "name", cfg.get("device")) == "cuda":
        raise ConfigError("backend=torch_distributed runs on the CPU (gloo) for now: device=cpu")


def launch(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Spawn ``n_workers`` ranks, wait for them, return rank 0's summary."""
    check(cfg)
    n = int(cfg.n_workers)
    out_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # torch logs a warning per rank it stops after a failure: the job's one line says it
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    context = mp.start_processes(
        _rank_main, args=(n, port, cfg, str(out_dir)), nprocs=n, join=False, start_method="spawn"
    )
    failure = None
    try:
        while not context.join():
            pass
    except mp.ProcessRaisedException as err:
        failure = (err.error_index, "failed")
    except mp.ProcessExitedException as err:
        failure = (err.error_index, f"died ({err})")
    finally:  # a signal or an error here: no rank outlives the job
        for process in context.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the rank records "interrupted" and leaves
        for process in context.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        said = _errors_said(out_dir, n)  # every rank stopped: none writes one any more
    if failure is not None:
        rank, what = failure
        if said:  # rank 0's line first: a refused resume is refused by every rank alike
            rank = 0 if 0 in said else rank if rank in said else min(said)
            raise UserError(f"rank {rank}: {said[rank]}")
        raise UserError(f"rank {rank} {what}; the other ranks were stopped")
    summary = json.loads((out_dir / "summary.json").read_text())
    if cfg.get("resume"):  # this command's log and Hydra record move into the run's folder
        from compress_bench.run.session import continue_log_in

        continue_log_in(out_dir, summary.get("resumed_at_round", 0))
    return summary


def _errors_said(out_dir: Path, n: int) -> dict[int, str]:
    """The one line each failed rank wrote, by rank; the files removed (a refused resume
    leaves the run's folder as it was)."""
    said = {}
    for rank in range(n):
        written = out_dir / _ERROR_FILE.format(rank)
        if written.exists():
            said[rank] = written.read_text().strip()
            written.unlink()
    return said


def _rank_main(rank: int, world: int, port: int, cfg: DictConfig, out_dir: str) -> None:
    """One spawned rank: join the group, run worker ``rank``'s part, leave."""
    from compress_bench import signals

    signals.install()  # SIGTERM from the parent: Interrupted, the summary says so
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        _run_rank(rank, world, cfg, Path(out_dir), init_method=None)
    except Interrupted as err:  # recorded by the run; the parent says the one line
        sys.exit(128 + int(err.signal))


def run_as_torchrun_rank(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """This process is a rank of an external torchrun: run its part; rank 0 returns the
    summary, the others None (their Hydra folder is theirs to discard)."""
    check(cfg)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != int(cfg.n_workers):
        raise ConfigError(f"torchrun started {world} processes for n_workers={cfg.n_workers}")
    return _run_rank(rank, world, cfg, out_dir, init_method="env://")


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_PORT" in os.environ


def _run_rank(
    rank: int, world: int, cfg: DictConfig, out_dir: Path, init_method: str | None
) -> dict[str, Any] | None:
    from compress_bench.run.build import build_run
    from compress_bench.run.rounds import execute

    timeout = timedelta(seconds=float(cfg.get("dist_timeout") or 120))
    kwargs = {"init_method": init_method} if init_method else {}
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timeout, **kwargs)
    scratch = None
    try:
        if rank != 0:  # one writer: the others' rows are rank 0's, and go to a scratch folder
            cfg = cfg.copy()
            OmegaConf.update(cfg, "progress", False)
            # rank 0 says how the run ended; the others' lines would name their scratch folder
            logging.getLogger("compress_bench").setLevel(logging.ERROR)
            scratch = Path(tempfile.mkdtemp(prefix=f"compress-bench-rank{rank}-"))
        run = build_run(cfg, rank=rank)
        summary = execute(run, scratch or out_dir)
        return summary if rank == 0 else None
    except UserError as err:
        (out_dir / _ERROR_FILE.format(rank)).write_text(str(err))
        raise
    except Exception as err:  # a bug: the job's line names it (the rank's traceback on stderr)
        text = " ".join(str(err).split())
        (out_dir / _ERROR_FILE.format(rank)).write_text(
            f"internal error (a bug, please report it): {type(err).__name__}: {text}"
        )
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
