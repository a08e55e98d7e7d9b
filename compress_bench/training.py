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
accuracy from above), or a non-finite training loss (``diverged``). The RunState (x, method and
optimizer state, streams, data order, running BatchNorm statistics, bit ledger, metrics
position) is written every ``checkpoint_every`` rounds and on SIGTERM; ``resume`` continues bit
for bit on one machine.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from compress_bench import signals
from compress_bench.loop import BitLedger, Progress, start_run, stopped, tol_reached
from compress_bench.methods.base import Evaluation
from compress_bench.report import MetricsWriter, plot_run, write_json_atomic
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


def execute_training(run, out_dir: Path) -> dict[str, Any]:
    cfg, problem, method = run.cfg, run.problem, run.method
    n = problem.n_workers
    summary, summary_path, checkpoints, resumed = start_run(run, out_dir)
    bits = BitLedger(n, thesis=False)
    eval_every = cfg.get("eval_every") or cfg.log_every
    rounds, max_bits = cfg.rounds, cfg.max_bits
    tol, tol_metric = cfg.tol, cfg.tol_metric
    losses_since: list[float] = []
    if resumed is None:
        x, start_round, kept_rows, elapsed = problem.initial_point(), 0, None, 0.0
        state = method.init_state(x)
    else:
        x, state, start_round = resumed.x, resumed.method, resumed.round
        run.streams.set_state(resumed.streams)
        problem.set_data_state(resumed.data)
        bits.total = resumed.ledger["total"]
        kept_rows, elapsed = resumed.metrics["rows"], resumed.metrics["wall_time"]
        losses_since = list(resumed.metrics["losses_since"])
    start = time.perf_counter() - elapsed
    mark = {"time": time.perf_counter(), "images": problem.images_seen}
    status, reason, row = "completed", "rounds", {}
    progress = Progress(rounds, cfg.progress)

    def run_state(k: int, writer: MetricsWriter) -> RunState:
        return RunState(
            round=k,
            x=x,
            method=state,  # the server optimizer's state included (state["optimizer"])
            streams=run.streams.get_state(),
            data=problem.get_data_state(),
            ledger={"total": bits.total},
            metrics={
                "rows": writer.rows,
                "losses_since": losses_since,
                "wall_time": time.perf_counter() - start,
            },
        )

    def metrics_row(k: int) -> dict[str, Any]:
        now, images = time.perf_counter(), problem.images_seen
        rate = (images - mark["images"]) / (now - mark["time"]) if now > mark["time"] else 0.0
        mark.update(time=now, images=images)
        train = sum(losses_since) / len(losses_since) if losses_since else math.nan
        losses_since.clear()
        return {
            "round": k,
            "epoch": problem.epoch,
            "train_loss": train,
            **problem.evaluate(x),
            **bits.row(),
            "images_per_second": rate,
            "wall_time": now - start,
        }

    try:
        with (
            signals.deferred(),
            MetricsWriter(out_dir / "metrics.csv", TRAINING_COLUMNS, kept_rows) as writer,
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
                loss = float(losses.mean())
                if not math.isfinite(loss):
                    status = reason = "diverged"
                    writer.write({**metrics_row(k), "train_loss": loss})
                    break
                losses_since.append(loss)
                proposal = method.step(x, Evaluation(losses, grads), state, run.streams, k)
                spent = bits.cost(proposal)
                if max_bits is not None and bits.per_worker_after(spent) > max_bits:
                    reason = "max_bits"
                    writer.write(metrics_row(k))
                    break
                x, state = proposal.x, proposal.state
                bits.add(spent)
                progress.update(k + 1, rounds, loss, bits.budget_total / n, "train_loss")
    except BaseException as err:
        progress.close()
        summary.update(stopped(err), **_final_training(row, start))
        write_json_atomic(summary_path, summary)
        raise
    progress.close()
    summary.update(status=status, stop_reason=reason, **_final_training(row, start))
    write_json_atomic(summary_path, summary)
    try:
        plot_run(out_dir / "metrics.csv", out_dir / "loss.png", title=summary["problem"])
    except Exception as err:  # the per-run plot knows the convex columns; never fail a run
        log.debug("no loss.png: %s", err)
    return summary


def _final_training(row: dict[str, Any], start: float) -> dict[str, Any]:
    wall = time.perf_counter() - start
    return {
        "rounds_done": int(row.get("round", 0)),
        "total_bits": row.get("bits", 0.0),
        "total_bits_all_workers": row.get("bits_total", 0),
        "final": {
            key: row.get(key) for key in ("train_loss", "test_loss", "test_accuracy", "epoch")
        },
        "wall_time": wall,
    }
