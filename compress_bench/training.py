"""The round loop of the stochastic (neural) problems: minibatch gradients, test metrics on
logged rounds, checkpoints.

Round k: every worker draws its minibatch and computes its stochastic gradient at x^k
(``problem.stochastic_grads``), the method turns them into messages, aggregates them and
returns the direction, the server optimizer moves x. Row k of metrics.csv (written every
``eval_every`` rounds and at the end) describes x^k: the mean training loss of the minibatches
since the previous row, the test loss and accuracy at x^k, the bits spent to reach x^k, the
epoch (images each worker has seen / shard size) and the training throughput since the
previous row. Stops: ``rounds``, ``max_bits`` (before the round that would exceed it), ``tol``
(a logged row whose ``tol_metric``, train_loss, test_loss or test_accuracy, reached ``tol``;
accuracy from above), or divergence: the round's training loss (the workers' mean minibatch
loss) is not finite, or is more than ``diverge_factor`` (default 1e6, loop.DIVERGE_FACTOR;
null: the non-finite rule only) times the training loss at x^0 (round 0's minibatches).
Status ``diverged``, exit code 0, the round and the rule in summary.json. The training loss,
not a test metric, because it is computed every round anyway; a factor, because natural
compression and power-of-two rounding saturate at +-2^127 and a blown-up network can keep a
finite loss (MNIST, natural compression, lr=100: 3e14 at round 2, then 1e24, then back to 85,
accuracy 2%: "completed" without the factor); a factor of x^0's loss so large because the
minibatch loss fluctuates above its first value early on (the MNIST smoke runs: up to 2.1x).
A write that fails (a full disk, a read-only folder) stops the run with one line, as in the
convex loop. The RunState (x, method and optimizer state, streams, data order, running
BatchNorm statistics, bit ledger, metrics position, the training loss at x^0) is written every
``checkpoint_every`` rounds and on SIGTERM; ``resume`` continues bit for bit on one machine.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from compress_bench import signals
from compress_bench.loop import (
    Progress,
    diverge_factor,
    failure_to_raise,
    finish_summary,
    ledger_for,
    ledger_needs,
    plot_quietly,
    start_run,
    time_totals,
    tol_reached,
)
from compress_bench.methods.base import Evaluation
from compress_bench.report import MetricsWriter
from compress_bench.state import RunState

log = logging.getLogger("compress_bench")

TRAINING_COLUMNS = (
    "round",
    "epoch",
    "train_loss",  # mean minibatch loss of the workers over the rounds since the last row
    "test_loss",
    "test_accuracy",
    "bits",
    "bits_total",
    "images_per_second",  # training images (all workers) per second since the last row
    "wall_time",
)


#: what a neural checkpoint holds besides x, the method state, streams and data order
TRAINING_NEEDS = {"ledger": ("total",), "metrics": ("rows", "losses_since", "wall_time")}


def execute_training(run, out_dir: Path) -> dict[str, Any]:
    cfg, problem, method = run.cfg, run.problem, run.method
    n = problem.n_workers
    bits = ledger_for(cfg, n, thesis=False)
    columns = TRAINING_COLUMNS + bits.columns
    started = start_run(run, out_dir, columns, ledger_needs(TRAINING_NEEDS, bits))
    summary, summary_path, checkpoints = started.summary, started.summary_path, started.checkpoints
    resumed = started.resumed
    eval_every = cfg.get("eval_every") or cfg.log_every
    rounds, max_bits = cfg.rounds, cfg.max_bits
    tol, tol_metric = cfg.tol, cfg.tol_metric
    factor = diverge_factor(cfg)
    has_factor = factor is not None
    losses_since: list[float] = []
    # the training loss at x^0 (round 0's minibatches), the divergence rule's reference; NaN
    # (the factor rule off) for a checkpoint written before it was recorded
    loss0: float | None = None
    if resumed is None:
        x, start_round, kept_rows, elapsed = problem.initial_point(), 0, None, 0.0
        state = method.init_state(x)
    else:
        x, state, start_round = resumed.x, resumed.method, resumed.round
        bits.total = resumed.ledger["total"]
        bits.restore_time(resumed.ledger)
        kept_rows, elapsed = resumed.metrics["rows"], resumed.metrics["wall_time"]
        losses_since = list(resumed.metrics["losses_since"])
        loss0 = resumed.metrics.get("loss0", math.nan)
    start = time.perf_counter() - elapsed
    mark = {"time": time.perf_counter(), "images": problem.images_seen}
    status, reason, row = "completed", "rounds", started.last_row
    why = ""
    progress = Progress(rounds, cfg.progress, max_bits, start_round)

    def run_state(k: int, writer: MetricsWriter) -> RunState:
        return RunState(
            round=k,
            x=x,
            method=state,  # the server optimizer's state included (state["optimizer"])
            streams=run.streams.get_state(),
            data=problem.get_data_state(),
            ledger={"total": bits.total, **bits.time_state()},
            metrics={
                "rows": writer.rows,
                "last_row_round": writer.last_round,
                "losses_since": losses_since,
                "loss0": loss0,
                "wall_time": time.perf_counter() - start,
            },
        )

    def metrics_row(k: int) -> dict[str, Any]:
        now, images = time.perf_counter(), problem.images_seen
        rate = (images - mark["images"]) / (now - mark["time"]) if now > mark["time"] else 0.0
        mark.update(time=now, images=images)
        train = sum(losses_since) / len(losses_since) if losses_since else math.nan
        losses_since.clear()
        row = {
            "round": k,
            "epoch": problem.epoch,
            "train_loss": train,
            **problem.evaluate(x),
            **bits.row(),
            "images_per_second": rate,
            "wall_time": now - start,
        }
        bits.stamp(row)
        return row

    try:
        with (
            signals.deferred(),
            MetricsWriter(out_dir / "metrics.csv", columns, kept_rows) as writer,
        ):
            for k in range(start_round, rounds + 1):
                checkpoints.round_start(k, start_round, lambda k=k: run_state(k, writer))
                if k % eval_every == 0 or k == rounds:
                    row = metrics_row(k)
                    writer.write(row)
                    if tol_reached(row, tol_metric, tol):
                        reason = "tol"
                        break
                if k == rounds:
                    break
                losses, grads = problem.stochastic_grads(x)
                ev = Evaluation(losses, grads)
                proposal = method.step(x, ev, state, run.streams, k, objective=run.workers)
                # the loss is read (the round's one read-back) once the round's step is
                # queued: on an accelerator the compression runs while the host waits; a
                # refused round's proposal is dropped, as a step over the bit budget is
                loss = float(losses.mean())
                if loss0 is None:
                    loss0 = loss
                if not math.isfinite(loss) or (has_factor and loss > factor * loss0 > 0):
                    status = reason = "diverged"
                    why = _divergence(loss, loss0, factor)
                    row = {**metrics_row(k), "train_loss": loss}
                    writer.write(row)
                    break
                losses_since.append(loss)
                spent = bits.cost(proposal)
                if max_bits is not None and bits.per_worker_after(spent) > max_bits:
                    reason = "max_bits"
                    row = metrics_row(k)
                    writer.write(row)
                    break
                x, state = proposal.x, proposal.state
                bits.add(spent)
                progress.update(k + 1, rounds, loss, bits.budget_total / n, "train_loss")
    except BaseException as err:
        progress.close()
        summary.update(**_final_training(row, start))
        raised = failure_to_raise(err, summary_path, summary)
        if raised is err:
            raise
        raise raised from err
    progress.close()
    summary.update(status=status, stop_reason=reason, **_final_training(row, start))
    if status == "diverged":
        summary["divergence"] = {"round": row["round"], "rule": why}
        log.warning("diverged at round %d (%s); metrics kept in %s", row["round"], why, out_dir)
    finish_summary(summary_path, summary, f"ended ({status}, {reason})")
    plot_quietly(out_dir, summary)  # rows and summary written: a figure never fails a run
    return summary


def _divergence(loss: float, loss0: float, factor: float | None) -> str:
    """Which divergence rule fired (module docstring), for summary.json and the log."""
    if not math.isfinite(loss):
        return "non-finite training loss"
    return f"training loss {loss:.3g} > diverge_factor {factor:g} x its value at x^0 {loss0:.3g}"


def _final_training(row: dict[str, Any], start: float) -> dict[str, Any]:
    wall = time.perf_counter() - start
    rounds_done = int(row.get("round", 0))
    return {
        "rounds_done": rounds_done,
        "total_bits": row.get("bits", 0.0),
        "total_bits_all_workers": row.get("bits_total", 0),
        "final": {
            key: row.get(key) for key in ("train_loss", "test_loss", "test_accuracy", "epoch")
        },
        **time_totals(row),
        "wall_time": wall,
        "rounds_per_second": rounds_done / wall if wall > 0 else None,
    }
