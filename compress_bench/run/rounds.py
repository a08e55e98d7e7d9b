"""The one round loop, for every problem and every process: the simulator's, and each
torch.distributed rank's.

``state = run_round(session, state)`` takes the :class:`~compress_bench.run.state.RunState` at
the start of round k (k, x^k, the method's state) to the RunState at the start of round k + 1,
or returns it unchanged once the run stops (``session.stopped``). The round is written once:

1. evaluate the workers at x^k, and write row k of metrics.csv when it is due (the problem
   kind's strategy, run/metrics.py: the convex row, or the neural one; a stop rule met at
   x^k ends the run here: divergence, ``tol``, ``rounds``);
2. ``method.step`` (the workers' messages, the communicator's aggregate, the server's step);
3. the round's result checked (a network's training loss may diverge);
4. the bit budget: a round that would pass ``max_bits`` is not applied;
5. ``bits.add``, and x^{k+1} with the method's new state.

What advances in place rather than in the returned value (the random streams, the data order,
the bit ledger, the metrics writer and the strategy's counters) is gathered into the RunState
by :func:`snapshot` when a checkpoint is written at a round start (``checkpoint_every`` rounds,
or a signal held during the last round: signals.py); ``resume`` continues bit for bit on one
machine. :func:`execute` starts the run (run/session.py: resume checks, summary.json with
status running), runs the rounds and ends it: summary.json, loss.png. A write that fails (a
full disk, a read-only folder) stops the run with one line (a UserError): the rows written are
kept, summary.json says failed (or the line says it could not be written), no temporary file
is left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from compress_bench import signals
from compress_bench.report import MetricsWriter
from compress_bench.run.ledger import BitLedger
from compress_bench.run.metrics import ConvexMetrics, NeuralMetrics, metrics_for
from compress_bench.run.session import (
    Checkpoints,
    Progress,
    failure_to_raise,
    finish_summary,
    start_run,
)
from compress_bench.run.state import RunState

log = logging.getLogger("compress_bench")


@dataclass
class Session:
    """A run being executed: the :class:`~compress_bench.run.build.Run`, its problem kind's
    metrics strategy, what advances in place (the bit ledger, the metrics writer) and how the
    run stopped (status, reason, the divergence rule)."""

    run: Any
    kind: ConvexMetrics | NeuralMetrics
    bits: BitLedger
    checkpoints: Checkpoints
    progress: Progress
    start: float  # perf_counter of the first round, less a resumed run's elapsed time
    writer: Any = None  # the MetricsWriter, open while the rounds run
    status: str = "completed"
    reason: str = "rounds"
    why: str = ""  # the divergence rule that fired
    stopped: bool = False

    def stop(self, reason: str) -> None:
        self.reason, self.stopped = reason, True

    def diverged(self, why: str) -> None:
        self.status, self.why = "diverged", why


def run_round(session: Session, state: RunState) -> RunState:
    """Round ``state.round``: the RunState of the next round, or ``state`` when the run stops
    (``session.stopped``; module docstring)."""
    run, kind, bits = session.run, session.kind, session.bits
    k = state.round
    ev = kind.evaluate(session, state)
    if ev is None:
        return state
    proposal = run.method.step(state.x, ev, state.method, run.streams, k, objective=run.workers)
    if kind.stepped(session, state, ev):
        return state
    spent = bits.cost(proposal)
    comm = run.communicator
    if comm is not None:  # every rank counts the round's bits of all workers
        spent = comm.sum_ints(spent)
    max_bits = kind.max_bits
    if max_bits is not None and bits.per_worker_after(spent) > max_bits:
        kind.refused(session, state)
        session.stop("max_bits")
        return state
    bits.add(spent)
    value = kind.applied(proposal, spent)
    session.progress.update(
        k + 1, kind.rounds, value, bits.budget_total / kind.n, kind.progress_name
    )
    return RunState(k + 1, proposal.x, proposal.state)


def snapshot(session: Session, state: RunState) -> RunState:
    """The whole RunState at a round start, for a checkpoint: ``state`` with the random
    streams, the data order, and the strategy's ledger and metrics entries."""
    run = session.run
    streams = run.streams.get_state()
    data = run.problem.get_data_state()
    ledger, metrics = session.kind.checkpoint(session)
    return replace(state, streams=streams, data=data, ledger=ledger, metrics=metrics)


def execute(run, out_dir: Path) -> dict[str, Any]:
    """Run the rounds, writing metrics.csv, summary.json and loss.png into out_dir (module
    docstring)."""
    kind = metrics_for(run)
    bits = kind.bits
    started = start_run(run, out_dir, kind.columns, kind.needs)
    summary, summary_path, resumed = started.summary, started.summary_path, started.resumed
    kept_rows = kind.restore(resumed)
    if resumed is None:
        x = run.problem.initial_point()
        state, elapsed = RunState(0, x, run.method.init_state(x)), 0.0
    else:
        state = RunState(resumed.round, resumed.x, resumed.method)
        elapsed = resumed.metrics["wall_time"]
    kind.row = started.last_row
    cfg, start_round = run.cfg, state.round
    start = time.perf_counter() - elapsed
    progress = Progress(cfg.rounds, cfg.progress, cfg.max_bits, start_round)
    session = Session(run, kind, bits, started.checkpoints, progress, start)
    kind.started(session)
    try:
        with (
            signals.deferred(),
            MetricsWriter(out_dir / "metrics.csv", kind.columns, keep_rows=kept_rows) as writer,
        ):
            session.writer = writer
            while not session.stopped:
                # a SIGTERM/SIGINT held during the last round stops here
                session.checkpoints.round_start(
                    state.round, start_round, partial(snapshot, session, state)
                )
                state = run_round(session, state)
    except BaseException as err:  # record the failure, keep every row written, re-raise
        progress.close()
        summary.update(**kind.final(start))
        raised = failure_to_raise(err, summary_path, summary)
        if raised is err:
            raise
        raise raised from err
    progress.close()

    status, reason = session.status, session.reason
    summary.update(status=status, stop_reason=reason, **kind.final(start))
    if status == "diverged":
        summary["divergence"] = {"round": kind.row["round"], "rule": session.why}
    finish_summary(summary_path, summary, f"ended ({status}, {reason})")
    if status == "diverged":
        log.warning(
            "diverged at round %d (%s); metrics kept in %s", kind.row["round"], session.why, out_dir
        )
    kind.plot(out_dir, summary)
    return summary
