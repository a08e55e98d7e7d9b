"""What a round reports, and when it stops, for each kind of problem: the one difference
between a convex run and a neural one, as two strategies of one interface
(:class:`ConvexMetrics`, :class:`NeuralMetrics`; :func:`metrics_for` picks one) around the one
round of run/rounds.py.

A strategy says how the workers are evaluated at x^k, what row k of metrics.csv holds and when
it is written, the divergence rule, what ``tol`` stops on, what a checkpoint holds besides x,
the method state, streams and data order (and restores it on resume), and what summary.json
reports at the end. Its hooks, in the order of a round: :meth:`evaluate` (the workers'
evaluation at x^k, or None when the run stops before the step: row k written, a stop rule
met), :meth:`stepped` (after ``method.step``: True when the round's result stops the run),
:meth:`refused` (the round would pass ``max_bits``), :meth:`applied` (the round's x^{k+1} is
taken: the progress display's value).

Convex problems (full gradients). Row k of metrics.csv describes x^k and the bits spent to
reach it; row 0 is x^0 with 0 bits; a row is written every ``log_every`` rounds and at the
stop. Stopping rules, checked in this order at every round k:
  diverged  f(x^k) or grad f(x^k) is not finite, or ||grad f(x^k)|| > diverge_factor
            ||grad f(x^0)|| (default 1e6, DIVERGE_FACTOR; diverge_factor=null: only the
            non-finite rule). Status "diverged", exit code 0: a sweep goes on; summary.json
            records the round and the rule. The factor is needed because natural compression
            and power-of-two rounding saturate at +-2^127: a blown-up run keeps a finite loss
            (lr=100 with quantizer=natural on mushrooms: f - f* = 5e80 at round 300) and
            would end "completed". The gradient norm is the measure because it is scale-free,
            needs no f*, and bounds the gap of a strongly convex f (f - f* <= ||grad f||^2 /
            2 mu), while without l2 it stays bounded where x may rightly run off to infinity
            (separable data); the runs that converge peak at a few times their initial
            gradient norm (DIVERGE_FACTOR says what was measured)
  tol       tol_metric reaches tol: by default ||grad f(x^k)|| / ||grad f(x^0)|| <= tol
  rounds    k == rounds
  max_bits  the round's message would take the bits per worker past max_bits; the round is
            not applied (spec Part B: "stop before the round that would exceed it")

Stochastic (neural) problems. Round k: every worker draws its minibatch and computes its
stochastic gradient at x^k (``problem.stochastic_grads``), the method turns them into
messages, aggregates them and returns the direction, the server optimizer moves x. Row k of
metrics.csv (written every ``eval_every`` rounds and at the end) describes x^k: the mean
training loss of the minibatches since the previous row, the test loss and accuracy at x^k,
the bits spent to reach x^k, the epoch (images each worker has seen / shard size) and the
training throughput since the previous row. Stops: ``rounds``, ``max_bits`` (before the round
that would exceed it), ``tol`` (a logged row whose ``tol_metric``, train_loss, test_loss or
test_accuracy, reached ``tol``; accuracy from above), or divergence: the round's training loss
(the workers' mean minibatch loss) is not finite, or is more than ``diverge_factor`` (default
1e6, DIVERGE_FACTOR; null: the non-finite rule only) times the training loss at x^0 (round 0's
minibatches). Status ``diverged``, exit code 0, the round and the rule in summary.json. The
training loss, not a test metric, because it is computed every round anyway; a factor, because
natural compression and power-of-two rounding saturate at +-2^127 and a blown-up network can
keep a finite loss (MNIST, natural compression, lr=100: 3e14 at round 2, then 1e24, then back
to 85, accuracy 2%: "completed" without the factor); a factor of x^0's loss so large because
the minibatch loss fluctuates above its first value early on (the MNIST smoke runs: up to
2.1x). Its checkpoint also holds the running BatchNorm statistics (in the data state), the
training losses since the last row and the training loss at x^0.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from compress_bench.errors import UserError
from compress_bench.methods.base import Evaluation, compression_error, evaluate
from compress_bench.report import METRIC_COLUMNS, THESIS_BITS_COLUMN, plot_run
from compress_bench.run.ledger import BitLedger, ledger_for, ledger_needs, time_totals
from compress_bench.run.state import RunState

#: what ``tol`` can stop on: the convex problems' metrics, and the neural ones' (on the rows they
#: log, every ``eval_every`` rounds); a metric stops when it is <= tol, or >= tol for those
#: where higher is better
CONVEX_TOL_METRICS = ("grad_norm_rel", "grad_norm", "loss_gap", "loss")
TRAINING_TOL_METRICS = ("train_loss", "test_loss", "test_accuracy")
HIGHER_IS_BETTER = frozenset({"test_accuracy"})

#: ``diverge_factor``'s default: a run has diverged once its gradient norm (convex problems)
#: or its training loss (networks) is this many times its value at x^0. Runs that converge stay
#: far below it: on mushrooms every operator of thesis_logreg, error_feedback and
#: biased_compression at its preset step stays at or below 1x, and plain GD, TopK + EF and
#: natural compression at steps up to 19 (past 2/L = 0.74, oscillating, not converging) peak
#: at 57x, 17x and 9.2e3x; the MNIST smoke runs (dcgd, ef, ef21) peak at 2.1x their first
#: loss. A run blown up by natural compression or power-of-two rounding, which saturate at
#: +-2^127 and so never reach inf, passes it within a few rounds (lr=100: 1.2e6x at round 6).
DIVERGE_FACTOR = 1e6


def diverge_factor(cfg) -> float | None:
    """The run's divergence factor: ``diverge_factor`` (None: only a non-finite value
    diverges), DIVERGE_FACTOR when the config has no such key."""
    value = cfg.get("diverge_factor", DIVERGE_FACTOR)
    return None if value is None else float(value)


def tol_reached(row: dict[str, Any], metric: str, tol: float | None) -> bool:
    """Whether the row's ``metric`` has reached ``tol`` (never for a missing or NaN value)."""
    if tol is None:
        return False
    value = row.get(metric)
    if value is None or not math.isfinite(value):
        return False
    return value >= tol if metric in HIGHER_IS_BETTER else value <= tol


#: what a convex checkpoint holds besides x, the method state, streams and data order
CONVEX_NEEDS = {
    "ledger": ("total", "thesis_total", "grad_evals"),
    "metrics": ("rows", "grad0", "last_round", "compression_error", "wall_time"),
}

#: what a neural checkpoint holds besides x, the method state, streams and data order
TRAINING_NEEDS = {"ledger": ("total",), "metrics": ("rows", "losses_since", "wall_time")}

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

#: backend=torch_distributed: bytes each rank put on the wire so far (mean over the ranks),
#: next to ``bits`` (the message's exact encoding; comm/distributed.py says why they differ)
BYTES_SENT_COLUMN = "bytes_sent"


def metrics_for(run) -> ConvexMetrics | NeuralMetrics:
    """The strategy of ``run``'s problem kind: neural for a stochastic problem, else convex."""
    return NeuralMetrics(run) if run.problem.stochastic else ConvexMetrics(run)


class ConvexMetrics:
    """Full-gradient problems: row k (loss, f - f*, gradient norms, bits, gradient evaluations,
    the last round's compression error and bits per coordinate) computed every round, written
    every ``log_every`` rounds and at the stop, before the round is attempted (a crash in it
    keeps the row); divergence and ``tol`` on the gradient norm (module docstring)."""

    progress_name = "grad_norm_rel"

    def __init__(self, run):
        cfg, self.run = run.cfg, run
        self.n = run.n_workers
        self.bits: BitLedger = ledger_for(
            cfg, self.n, thesis=cfg.bits_convention == "thesis", first_worker=run.rank
        )
        columns = METRIC_COLUMNS + ((THESIS_BITS_COLUMN,) if self.bits.thesis else ())
        columns += self.bits.columns
        if run.communicator is not None:
            columns += (BYTES_SENT_COLUMN,)
        self.columns = columns
        # plain attributes: OmegaConf attribute access costs microseconds, and a round is hot
        self.rounds, self.max_bits, self.log_every = cfg.rounds, cfg.max_bits, cfg.log_every
        self.tol, self.tol_metric = cfg.tol, cfg.tol_metric
        self.factor = diverge_factor(cfg)
        self.minibatch = run.problem.minibatch
        self.grad0: float | None = None
        self.last_round: dict[str, Any] = {"bits_per_coordinate": math.nan}
        self.pending_error = _no_error  # the last round's compression error, on demand
        self.row: dict[str, Any] = {}  # the last row computed: what the summary reports
        self.logged, self.rel = False, math.nan

    @property
    def needs(self) -> dict[str, Any]:
        return ledger_needs(CONVEX_NEEDS, self.bits)

    def restore(self, resumed: RunState | None) -> int | None:
        """The run's counters from ``resumed`` (None: a fresh run); the metrics rows to keep."""
        problem, bits = self.run.problem, self.bits
        problem.evaluations = 0  # count only the run's own oracle calls, not the f* solve
        if resumed is None:
            return None
        bits.total, bits.thesis_total = resumed.ledger["total"], resumed.ledger["thesis_total"]
        bits.restore_time(resumed.ledger)
        problem.evaluations = resumed.ledger["grad_evals"]
        self.grad0, kept_rows = resumed.metrics["grad0"], resumed.metrics["rows"]
        if self.run.rank != 0:  # a rank other than 0 writes its rows into a scratch folder
            kept_rows = None
        self.last_round = dict(resumed.metrics["last_round"])
        stored_error = resumed.metrics["compression_error"]
        self.pending_error = lambda: stored_error
        return kept_rows

    def started(self, session) -> None:
        """The rounds start now (nothing to mark)."""

    def checkpoint(self, session) -> tuple[dict[str, Any], dict[str, Any]]:
        """A checkpoint's ledger and metrics entries at a round start."""
        bits = self.bits
        ledger = {
            "total": bits.total,
            "thesis_total": bits.thesis_total,
            "grad_evals": self.run.problem.evaluations,
            **bits.time_state(),
        }
        metrics = {
            "rows": session.writer.rows,
            "last_row_round": session.writer.last_round,
            "grad0": self.grad0,
            "last_round": self.last_round,
            "compression_error": self.pending_error(),
            "wall_time": time.perf_counter() - session.start,
        }
        return ledger, metrics

    def _write(self, session, row: dict[str, Any]) -> None:
        row["compression_error"] = self.pending_error()  # for logged rows only
        session.writer.write(row)

    def evaluate(self, session, state: RunState) -> Evaluation | None:
        """Row k of x^k, written when logged; the stop rules in order; what the workers step
        with (None: the run stops at x^k)."""
        run, k = self.run, state.round
        problem, comm = run.problem, run.communicator
        grad_evals = problem.evaluations
        ev, full = _evaluate(problem, run.workers, state.x, self.minibatch, comm)
        loss, grad_norm = float(full.loss), float(full.grad.norm())
        if self.grad0 is None:
            self.grad0 = grad_norm
        grad0, factor = self.grad0, self.factor
        rel = grad_norm / grad0 if grad0 > 0 else 0.0
        row = {
            "round": k,
            "loss": loss,
            "loss_gap": loss - run.fstar,
            "grad_norm": grad_norm,
            "grad_norm_rel": rel,
            **self.bits.row(),
            "grad_evals": grad_evals,
            **self.last_round,
            "compression_error": math.nan,
            "wall_time": time.perf_counter() - session.start,
        }
        self.bits.stamp(row)
        self.row, self.rel = row, rel
        stop = None
        if not _finite(loss, grad_norm) or (factor is not None and rel > factor):
            stop = "diverged"
            session.diverged(_divergence(loss, grad_norm, rel, factor))
        elif tol_reached(row, self.tol_metric, self.tol):
            stop = "tol"
        elif k == self.rounds:
            stop = "rounds"
        self.logged = stop is not None or k % self.log_every == 0
        if self.logged and comm is not None:  # the bytes the ranks really sent, per rank
            row[BYTES_SENT_COLUMN] = comm.sum_ints((comm.bytes_sent,))[0] / self.n
        if self.logged:  # before the round is attempted: a crash in it keeps this row
            self._write(session, row)
        if stop is not None:
            session.stop(stop)
            return None
        return ev

    def stepped(self, session, state: RunState, ev: Evaluation) -> bool:
        """Nothing stops a convex run after its step (divergence was checked at x^k)."""
        return False

    def refused(self, session, state: RunState) -> None:
        """The round would pass max_bits: row k written, if it was not."""
        if not self.logged:
            self._write(session, self.row)

    def applied(self, proposal, spent: tuple[int, ...]) -> float:
        """The round is taken: its diagnostics for the next row; the progress value."""
        comm = self.run.communicator
        self.last_round = {"bits_per_coordinate": spent[0] / (self.n * self.run.problem.d)}
        self.pending_error = (
            proposal.compression_error
            if comm is None
            else partial(_gathered_compression_error, proposal, comm)
        )
        return self.rel

    def final(self, start: float) -> dict[str, Any]:
        """The summary's figures from the last row."""
        row = self.row
        counts = {
            "total_bits_thesis": row.get(THESIS_BITS_COLUMN),
            "grad_evals": row.get("grad_evals", 0),
        }
        return _final(row, start, counts, ("loss", "loss_gap", "grad_norm", "grad_norm_rel"))

    def plot(self, out_dir: Path, summary: dict[str, Any]) -> None:
        """loss.png of a run that ended by itself: a figure that cannot be written is one
        line."""
        from compress_bench.run.session import run_title

        try:
            plot_run(out_dir / "metrics.csv", out_dir / "loss.png", title=run_title(summary))
        except OSError as err:
            raise UserError(
                f"cannot write {out_dir / 'loss.png'}: {err.strerror or err}; metrics.csv and "
                f"summary.json are complete"
            ) from err


class NeuralMetrics:
    """Stochastic problems: each round's minibatch gradients; row k (train loss since the last
    row, test loss and accuracy at x^k, epoch, throughput) every ``eval_every`` rounds and at
    the stop; divergence on the round's training loss, read once the step is queued (module
    docstring)."""

    progress_name = "train_loss"

    def __init__(self, run):
        cfg, self.run = run.cfg, run
        problem = run.problem
        self.n = problem.n_workers
        self.bits: BitLedger = ledger_for(cfg, self.n, thesis=False)
        self.columns = TRAINING_COLUMNS + self.bits.columns
        self.eval_every = cfg.get("eval_every") or cfg.log_every
        self.rounds, self.max_bits = cfg.rounds, cfg.max_bits
        self.tol, self.tol_metric = cfg.tol, cfg.tol_metric
        self.factor = diverge_factor(cfg)
        self.losses_since: list[float] = []
        # the training loss at x^0 (round 0's minibatches), the divergence rule's reference;
        # NaN (the factor rule off) for a checkpoint written before it was recorded
        self.loss0: float | None = None
        self.loss = math.nan
        self.row: dict[str, Any] = {}  # the last row written: what the summary reports
        self.mark: dict[str, float] = {}

    @property
    def needs(self) -> dict[str, Any]:
        return ledger_needs(TRAINING_NEEDS, self.bits)

    def restore(self, resumed: RunState | None) -> int | None:
        """The run's counters from ``resumed`` (None: a fresh run); the metrics rows to keep."""
        if resumed is None:
            return None
        self.bits.total = resumed.ledger["total"]
        self.bits.restore_time(resumed.ledger)
        self.losses_since = list(resumed.metrics["losses_since"])
        self.loss0 = resumed.metrics.get("loss0", math.nan)
        return resumed.metrics["rows"]

    def started(self, session) -> None:
        """The rounds start now: the throughput's first mark."""
        self.mark = {"time": time.perf_counter(), "images": self.run.problem.images_seen}

    def checkpoint(self, session) -> tuple[dict[str, Any], dict[str, Any]]:
        """A checkpoint's ledger and metrics entries at a round start."""
        ledger = {"total": self.bits.total, **self.bits.time_state()}
        metrics = {
            "rows": session.writer.rows,
            "last_row_round": session.writer.last_round,
            "losses_since": self.losses_since,
            "loss0": self.loss0,
            "wall_time": time.perf_counter() - session.start,
        }
        return ledger, metrics

    def _row(self, session, state: RunState) -> dict[str, Any]:
        problem, mark = self.run.problem, self.mark
        now, images = time.perf_counter(), problem.images_seen
        rate = (images - mark["images"]) / (now - mark["time"]) if now > mark["time"] else 0.0
        mark.update(time=now, images=images)
        losses = self.losses_since
        train = sum(losses) / len(losses) if losses else math.nan
        losses.clear()
        row = {
            "round": state.round,
            "epoch": problem.epoch,
            "train_loss": train,
            **problem.evaluate(state.x),
            **self.bits.row(),
            "images_per_second": rate,
            "wall_time": now - session.start,
        }
        self.bits.stamp(row)
        return row

    def _write(self, session, row: dict[str, Any]) -> None:
        self.row = row
        session.writer.write(row)

    def evaluate(self, session, state: RunState) -> Evaluation | None:
        """Row k on an evaluation round (``tol`` checked on it); at ``rounds`` the stop; else
        the round's minibatch losses and gradients."""
        k = state.round
        if k % self.eval_every == 0 or k == self.rounds:
            row = self._row(session, state)
            self._write(session, row)
            if tol_reached(row, self.tol_metric, self.tol):
                session.stop("tol")
                return None
        if k == self.rounds:
            session.stop("rounds")
            return None
        losses, grads = self.run.problem.stochastic_grads(state.x)
        return Evaluation(losses, grads)

    def stepped(self, session, state: RunState, ev: Evaluation) -> bool:
        """The round's training loss, read (the round's one read-back) once its step is queued:
        on an accelerator the compression runs while the host waits; a refused round's
        proposal is dropped, as a step over the bit budget is. True: it diverged."""
        loss = float(ev.losses.mean())
        if self.loss0 is None:
            self.loss0 = loss
        factor, loss0 = self.factor, self.loss0
        if not math.isfinite(loss) or (factor is not None and loss > factor * loss0 > 0):
            session.diverged(_training_divergence(loss, loss0, factor))
            session.stop("diverged")
            self._write(session, {**self._row(session, state), "train_loss": loss})
            return True
        self.losses_since.append(loss)
        self.loss = loss
        return False

    def refused(self, session, state: RunState) -> None:
        """The round would pass max_bits: row k written."""
        self._write(session, self._row(session, state))

    def applied(self, proposal, spent: tuple[int, ...]) -> float:
        """The round is taken; the progress value: its training loss."""
        return self.loss

    def final(self, start: float) -> dict[str, Any]:
        """The summary's figures from the last row."""
        return _final(self.row, start, {}, ("train_loss", "test_loss", "test_accuracy", "epoch"))

    def plot(self, out_dir: Path, summary: dict[str, Any]) -> None:
        """loss.png, quietly: rows and summary are written, a figure never fails a run."""
        from compress_bench.run.session import plot_quietly

        plot_quietly(out_dir, summary)


def _final(
    row: dict[str, Any], start: float, counts: dict[str, Any], finals: tuple[str, ...]
) -> dict[str, Any]:
    """The summary's figures from a run's last row: rounds, bits (``counts``: the kind's
    own), the ``finals`` metrics, simulated time, wall time and rounds per second."""
    wall = time.perf_counter() - start
    rounds_done = int(row.get("round", 0))
    return {
        "rounds_done": rounds_done,
        "total_bits": row.get("bits", 0.0),
        "total_bits_all_workers": row.get("bits_total", 0),
        **counts,
        "final": {key: row.get(key) for key in finals},
        **time_totals(row),
        "wall_time": wall,
        "rounds_per_second": rounds_done / wall if wall > 0 else None,
    }


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _divergence(loss: float, grad_norm: float, rel: float, factor: float | None) -> str:
    """Which convex divergence rule fired (module docstring), for summary.json and the log."""
    if not _finite(loss, grad_norm):
        return "non-finite loss or gradient"
    return f"||grad f(x^k)|| / ||grad f(x^0)|| = {rel:.3g} > diverge_factor {factor:g}"


def _training_divergence(loss: float, loss0: float, factor: float | None) -> str:
    """Which neural divergence rule fired (module docstring), for summary.json and the log."""
    if not math.isfinite(loss):
        return "non-finite training loss"
    return f"training loss {loss:.3g} > diverge_factor {factor:g} x its value at x^0 {loss0:.3g}"


def _evaluate(problem, workers, x: torch.Tensor, minibatch: bool, comm=None):
    """(what the workers step with, what the metrics report) at x: the same full-batch
    evaluation, or with ``problem.batch_size`` the round's minibatch gradients and the
    full-data loss and gradient (which the metrics need and no worker pays for). ``workers``
    is what this process's workers evaluate (``Run.workers``): in a torch.distributed rank
    (``comm``) the problem is this rank's worker alone, the workers' evaluation is its row and
    the metrics' the rows of every rank, gathered."""
    if not minibatch:
        ev = evaluate(workers, x)
        return ev, _gathered(ev, comm)
    problem.next_batches()
    full = Evaluation(*problem.shard_loss_and_grad(x.expand(problem.n_workers, -1)))
    return evaluate(workers, x), _gathered(full, comm)


def _gathered(ev: Evaluation, comm) -> Evaluation:
    """Every rank's rows of ``ev`` (one gather: each row's loss, then its gradient)."""
    if comm is None:
        return ev
    rows = comm.gather_metric(torch.cat([ev.losses[:, None], ev.grads], dim=1))
    return Evaluation(rows[:, 0], rows[:, 1:])


def _no_error() -> float:
    return math.nan


def _gathered_compression_error(proposal, comm) -> float:
    """The simulator's compression error over every rank's worker: inputs and outputs
    gathered (a logged row's diagnostic, not the method's traffic)."""
    if proposal.message is None or proposal.inputs is None:
        return math.nan
    inputs = comm.gather_metric(proposal.inputs)
    return compression_error(inputs, comm.gather_metric(proposal.message.values))
