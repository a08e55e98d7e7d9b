"""The round loop: build the run from a validated config, iterate, log, stop.

Row k of metrics.csv describes x^k and the bits spent to reach it; row 0 is x^0 with 0 bits.
Stopping rules, checked in this order at every round k:
  diverged  f(x^k) or grad f(x^k) is not finite, or ||grad f(x^k)|| > diverge_factor
            ||grad f(x^0)|| (default 1e6, loop.DIVERGE_FACTOR; diverge_factor=null: only the
            non-finite rule). Status "diverged", exit code 0: a sweep goes on; summary.json
            records the round and the rule. The factor is needed because natural compression
            and power-of-two rounding saturate at +-2^127: a blown-up run keeps a finite loss
            (lr=100 with quantizer=natural on mushrooms: f - f* = 5e80 at round 300) and
            would end "completed". The gradient norm is the measure because it is scale-free,
            needs no f*, and bounds the gap of a strongly convex f (f - f* <= ||grad f||^2 /
            2 mu), while without l2 it stays bounded where x may rightly run off to infinity
            (separable data); the runs that converge peak at a few times their initial
            gradient norm (loop.DIVERGE_FACTOR says what was measured)
  tol       tol_metric reaches tol: by default ||grad f(x^k)|| / ||grad f(x^0)|| <= tol
  rounds    k == rounds
  max_bits  the round's message would take the bits per worker past max_bits; the round is
            not applied (spec Part B: "stop before the round that would exceed it")
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from compress_bench import signals
from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.base import k_from_ratio
from compress_bench.compressors.chain import chain
from compress_bench.compressors.layerwise import layerwise, tensor_k
from compress_bench.config import network_node, validate
from compress_bench.errors import ConfigError, UserError
from compress_bench.loop import (
    CONVEX_TOL_METRICS,
    TRAINING_TOL_METRICS,
    Progress,
    diverge_factor,
    failure_to_raise,
    finish_summary,
    ledger_for,
    ledger_needs,
    run_title,
    start_run,
    time_totals,
    tol_reached,
)
from compress_bench.memory import keep_freed_memory
from compress_bench.methods import method_class
from compress_bench.methods.base import Evaluation, compression_error, evaluate
from compress_bench.optim import build_optimizer
from compress_bench.problems import build_problem
from compress_bench.report import (
    METRIC_COLUMNS,
    THESIS_BITS_COLUMN,
    MetricsWriter,
    plot_run,
)
from compress_bench.rng import Streams
from compress_bench.state import RunState

log = logging.getLogger("compress_bench")


def _text(value: Any) -> Any:
    return getattr(value, "name", value)  # an enum member's name, or the value itself


def plain_config(cfg: DictConfig) -> DictConfig:
    """The composed config as plain data: enums as strings, interpolations resolved."""
    keys = [key for key in cfg if key != "hydra"]  # Hydra's own node may not resolve here
    if network_node(cfg) is None:  # network=none (spec 28): the config as it was without one
        keys = [key for key in keys if key != "network"]
    if _text(cfg.get("dist_reduce")) in (None, "gather"):  # the default: fingerprints kept
        keys = [key for key in keys if key != "dist_reduce"]
    container = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, keys), resolve=True, enum_to_str=True
    )
    return OmegaConf.create(container)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but no CUDA device is available")
    return torch.device(name)


def resolve_lr(lr: Any, lr_mult: float, method_cls, operator, problem) -> float:
    """The step: ``lr`` times ``lr_mult``; ``lr=auto`` is the method's theoretical step for
    this operator (spec 20-24), so ``lr_mult`` sweeps "theory step x factor"."""
    if lr != "auto":
        return float(lr) * lr_mult
    theory = method_cls.theory_lr(problem, operator)
    if theory is None:
        raise ConfigError(method_cls.auto_lr_error(operator))
    return theory * lr_mult


def build_operator(plain: DictConfig, problem) -> Any:
    """The run's operator: chain(C, Q) over x (granularity=global), or one chain per tensor
    of the problem's layout, built from the tensor's (name, shape): a sparsifier with
    k_l = ceil(ratio numel_l), a low-rank operator with the tensor's matrix shape
    (granularity=layer, spec 0.8). A global low-rank operator sees x as the problem's one
    tensor (logistic regression's ``problem.matrix_shape``, spec 18's 8 x 14 reshape)."""

    def chained(compressor):
        try:
            return chain(compressor, build_quantizer(plain.quantizer))
        except ValueError as err:  # a pair that cannot compose (a quantizer on factors)
            raise ConfigError(f"compressor {compressor.name} with quantizer: {err}") from err

    def op_for(name: str, shape: tuple[int, ...]):
        return chained(build_compressor(plain.compressor, ratio=plain.ratio, shape=shape))

    if plain.get("granularity", "global") == "layer":
        return layerwise(op_for, problem.layout)
    layout = problem.layout
    shape = layout.shapes[0] if len(layout) == 1 else (problem.d,)
    return chained(build_compressor(plain.compressor, ratio=plain.ratio, global_shape=shape))


@dataclass
class Run:
    """Everything a run is made of, built from the config before the first round."""

    cfg: DictConfig
    problem: Any
    method: Any
    lr: float
    fstar: float
    k: int
    streams: Streams  # every worker's random streams: the run owns them, the method borrows
    #: backend=torch_distributed: this rank's communicator (None: the simulator) and index;
    #: the method then runs worker ``rank``'s row only, and the problem is worker ``rank``'s
    #: part (problems/workers.py's rank_problem; the metrics gather every rank's rows)
    communicator: Any = None
    rank: int = 0
    #: the part of the problem this process's workers evaluate (None: the whole problem, the
    #: simulator's; a rank: worker ``rank``'s view), which the loop evaluates and passes to
    #: the method's step as the objective (the md_* operators query it)
    worker_problem: Any = None

    @property
    def workers(self) -> Any:
        """What this process's workers evaluate: ``worker_problem``, else the problem."""
        return self.problem if self.worker_problem is None else self.worker_problem

    @property
    def n_workers(self) -> int:
        """Every worker of the run, the other ranks' included."""
        return self.problem.n_workers if self.communicator is None else self.communicator.world


def resolve_threads(requested: int | None) -> int:
    """torch's intra-op thread count: ``threads``, or 1.

    Measured with benchmarks/bench_threads.py on 2 cores (figures in the README): on an idle
    machine 1 thread is at most 1.53x slower than the best setting (2 threads, OpenMP's
    default spinning wait), and beside one busy process it is the best, while 2 threads are
    1.7-9.8x behind it (with libgomp's default wait a spinning thread holds the core a
    straggler needs; compress_bench/__init__.py shortens that spin, which keeps an explicit
    ``threads=2`` within 1.8x). So 1 thread is the default whose worst case is smallest,
    for single runs and sweeps alike. The rule reads only the command, never the machine's
    load, so a command's results never depend on what else was running (the thread count
    can change the order of floating-point sums), and a single run gives the same numbers as
    the same job in a sweep."""
    return 1 if requested is None else int(requested)


def build_run(cfg: DictConfig, rank: int | None = None) -> Run:
    """The run of ``cfg``; ``rank``: inside a torch.distributed rank (its process group
    initialised), the part of worker ``rank``."""
    validate(cfg)
    plain = plain_config(cfg)
    torch.set_num_threads(resolve_threads(plain.get("threads")))
    device = resolve_device(plain.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on the round's large tensors (memory.py)
    dtype = getattr(torch, plain.dtype)
    problem = build_problem(
        plain.problem, plain.n_workers, plain.seed, device, dtype, plain.data_dir
    )
    operator = build_operator(plain, problem)
    if plain.bits_convention == "thesis" and not operator.constants(problem.d).thesis_bits:
        raise ConfigError(
            "bits_convention=thesis counts powers of two: it needs a quantizer whose values "
            "are powers of two (quantizer=power_of_two or natural)"
        )
    method_cls = method_class(plain.method.name)
    has_constants = problem.constants() is not None
    if not has_constants:
        _refuse_what_needs_constants(plain)
    _check_tol_metric(plain, problem)
    lr = resolve_lr(plain.lr, plain.lr_mult, method_cls, operator, problem)
    if plain.lr == "auto" and problem.minibatch:
        log.warning(
            "lr=auto with problem.batch_size: the step is the full-batch theory's; the "
            "minibatch noise is not in it"
        )
    method_options = {key: value for key, value in plain.method.items() if key != "name"}
    workers: Any = plain.n_workers
    method_problem, communicator = problem, None
    if rank is not None:  # one worker's data, its streams, messages through torch.distributed
        from compress_bench.comm.distributed import TorchDistributedCommunicator
        from compress_bench.problems.workers import rank_problem

        # the whole problem gave the operator, lr, L and f*; the run keeps worker rank's part
        workers, method_problem = [rank], rank_problem(problem, [rank])
        communicator = TorchDistributedCommunicator(reduce=plain.get("dist_reduce", "gather"))
    method = method_cls(
        operator,
        lr,
        n_workers=method_problem.n_workers,
        d=problem.d,
        optimizer=build_optimizer(plain.get("optimizer"), lr, plain.rounds),
        communicator=communicator,
        **method_options,
    )
    fstar = problem.reference().fstar if has_constants else math.nan
    streams = Streams(plain.seed, workers, device)
    k = nominal_k(plain, problem)
    return Run(
        plain,
        method_problem,  # a rank's part: the whole problem is not kept
        method,
        lr,
        fstar,
        k,
        streams,
        communicator,
        rank or 0,
        method_problem,
    )


def _refuse_what_needs_constants(plain: DictConfig) -> None:
    """One line for what a problem without L and f* (a network) cannot do."""
    name = plain.problem.name
    if plain.lr == "auto":
        raise ConfigError(
            f"lr=auto needs the smoothness constant L, which problem={name} does not have; "
            "set lr (e.g. lr=0.05)"
        )


def _check_tol_metric(plain: DictConfig, problem) -> None:
    """One line when ``tol`` would stop on a metric this problem's rows do not have."""
    if plain.tol is None:
        return
    metric, name = plain.tol_metric, plain.problem.name
    allowed = TRAINING_TOL_METRICS if problem.stochastic else CONVEX_TOL_METRICS
    if metric in allowed:
        return
    if problem.stochastic:
        raise ConfigError(
            f"tol stops on {metric}, which problem={name} does not compute (a stochastic "
            f"problem has no full gradient and no f*); set tol_metric to one of "
            f"{', '.join(allowed)}, or use rounds"
        )
    raise ConfigError(
        f"tol_metric={metric} is a metric of the neural problems; problem={name} stops on "
        f"one of {', '.join(allowed)}"
    )


def nominal_k(plain: DictConfig, problem) -> int:
    """k of the summary: floor(ratio d) (spec 0.3), or sum_l ceil(ratio numel_l) per tensor."""
    if plain.get("granularity", "global") == "layer":
        return sum(tensor_k(plain.ratio, m) for m in problem.layout.numels)
    return k_from_ratio(plain.ratio, problem.d)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


#: what a convex checkpoint holds besides x, the method state, streams and data order
CONVEX_NEEDS = {
    "ledger": ("total", "thesis_total", "grad_evals"),
    "metrics": ("rows", "grad0", "last_round", "compression_error", "wall_time"),
}


def execute(run: Run, out_dir: Path) -> dict[str, Any]:
    """Run the rounds, writing metrics.csv, summary.json and loss.png into out_dir.

    A write that fails (a full disk, a read-only folder) stops the run with one line (a
    UserError): the rows written are kept, summary.json says failed (or the line says it could
    not be written), no temporary file is left."""
    if run.problem.stochastic:
        from compress_bench.training import execute_training

        return execute_training(run, out_dir)
    cfg, problem, method, comm = run.cfg, run.problem, run.method, run.communicator
    workers = run.workers  # what this process's workers evaluate: the method's objective
    n = run.n_workers
    bits = ledger_for(cfg, n, thesis=cfg.bits_convention == "thesis", first_worker=run.rank)
    columns = METRIC_COLUMNS + ((THESIS_BITS_COLUMN,) if bits.thesis else ()) + bits.columns
    if comm is not None:
        columns += (BYTES_SENT_COLUMN,)
    started = start_run(run, out_dir, columns, ledger_needs(CONVEX_NEEDS, bits))
    summary, summary_path, checkpoints = started.summary, started.summary_path, started.checkpoints
    resumed = started.resumed
    problem.evaluations = 0  # count only the run's own oracle calls, not the f* solve
    last_round: dict[str, Any] = {"bits_per_coordinate": math.nan}
    pending_error = _no_error  # the compression error of the last round, computed on demand
    if resumed is None:
        x, start_round, grad0, kept_rows, elapsed = problem.initial_point(), 0, None, None, 0.0
        state = method.init_state(x)
    else:
        x, state, start_round = resumed.x, resumed.method, resumed.round
        bits.total, bits.thesis_total = resumed.ledger["total"], resumed.ledger["thesis_total"]
        bits.restore_time(resumed.ledger)
        problem.evaluations = resumed.ledger["grad_evals"]
        grad0, kept_rows = resumed.metrics["grad0"], resumed.metrics["rows"]
        if run.rank != 0:  # a rank other than 0 writes its rows into a scratch folder
            kept_rows = None
        last_round = dict(resumed.metrics["last_round"])
        stored_error = resumed.metrics["compression_error"]
        pending_error, elapsed = (lambda: stored_error), resumed.metrics["wall_time"]
    status, reason, row = "completed", "rounds", started.last_row
    why = ""
    start = time.perf_counter() - elapsed
    progress = Progress(cfg.rounds, cfg.progress, cfg.max_bits, start_round)
    # plain locals: OmegaConf attribute access costs microseconds, and this loop is hot
    rounds, tol, max_bits, log_every = cfg.rounds, cfg.tol, cfg.max_bits, cfg.log_every
    tol_metric, minibatch = cfg.tol_metric, problem.minibatch
    factor = diverge_factor(cfg)
    has_factor = factor is not None

    def run_state(k: int, writer: MetricsWriter) -> RunState:
        return RunState(
            round=k,
            x=x,
            method=state,  # the server optimizer's state included (state["optimizer"])
            streams=run.streams.get_state(),
            data=problem.get_data_state(),
            ledger={
                "total": bits.total,
                "thesis_total": bits.thesis_total,
                "grad_evals": problem.evaluations,
                **bits.time_state(),
            },
            metrics={
                "rows": writer.rows,
                "last_row_round": writer.last_round,
                "grad0": grad0,
                "last_round": last_round,
                "compression_error": pending_error(),
                "wall_time": time.perf_counter() - start,
            },
        )

    try:
        with (
            signals.deferred(),
            MetricsWriter(out_dir / "metrics.csv", columns, keep_rows=kept_rows) as writer,
        ):

            def write_row(row: dict[str, Any]) -> None:
                row["compression_error"] = pending_error()  # for logged rows only
                writer.write(row)

            for k in range(start_round, rounds + 1):
                # a SIGTERM/SIGINT held during the last round stops here
                checkpoints.round_start(k, start_round, lambda k=k: run_state(k, writer))
                grad_evals = problem.evaluations
                ev, full = _evaluate(problem, workers, x, minibatch, comm)
                loss, grad_norm = float(full.loss), float(full.grad.norm())
                if grad0 is None:
                    grad0 = grad_norm
                rel = grad_norm / grad0 if grad0 > 0 else 0.0
                row = {
                    "round": k,
                    "loss": loss,
                    "loss_gap": loss - run.fstar,
                    "grad_norm": grad_norm,
                    "grad_norm_rel": rel,
                    **bits.row(),
                    "grad_evals": grad_evals,
                    **last_round,
                    "compression_error": math.nan,
                    "wall_time": time.perf_counter() - start,
                }
                bits.stamp(row)
                stop = None
                if not _finite(loss, grad_norm) or (has_factor and rel > factor):
                    status, stop = "diverged", "diverged"
                    why = _divergence(loss, grad_norm, rel, factor)
                elif tol_reached(row, tol_metric, tol):
                    stop = "tol"
                elif k == rounds:
                    stop = "rounds"
                logged = stop is not None or k % log_every == 0
                if logged and comm is not None:  # the bytes the ranks really sent, per rank
                    row[BYTES_SENT_COLUMN] = comm.sum_ints((comm.bytes_sent,))[0] / n
                if logged:  # before the round is attempted: a crash in it keeps this row
                    write_row(row)
                if stop is None:
                    proposal = method.step(x, ev, state, run.streams, k, objective=workers)
                    spent = bits.cost(proposal)
                    if comm is not None:  # every rank counts the round's bits of all workers
                        spent = comm.sum_ints(spent)
                    if max_bits is not None and bits.per_worker_after(spent) > max_bits:
                        stop = "max_bits"
                        if not logged:
                            write_row(row)
                if stop is not None:
                    reason = stop
                    break
                x, state = proposal.x, proposal.state
                bits.add(spent)
                last_round = {"bits_per_coordinate": spent[0] / (n * problem.d)}
                pending_error = (
                    proposal.compression_error
                    if comm is None
                    else partial(_gathered_compression_error, proposal, comm)
                )
                progress.update(k + 1, rounds, rel, bits.budget_total / n)
    except BaseException as err:  # record the failure, keep every row written, re-raise
        progress.close()
        summary.update(**_final(row, start))
        raised = failure_to_raise(err, summary_path, summary)
        if raised is err:
            raise
        raise raised from err
    progress.close()

    summary.update(status=status, stop_reason=reason, **_final(row, start))
    if status == "diverged":
        summary["divergence"] = {"round": row["round"], "rule": why}
    finish_summary(summary_path, summary, f"ended ({status}, {reason})")
    if status == "diverged":
        log.warning("diverged at round %d (%s); metrics kept in %s", row["round"], why, out_dir)
    try:
        plot_run(out_dir / "metrics.csv", out_dir / "loss.png", title=run_title(summary))
    except OSError as err:
        raise UserError(
            f"cannot write {out_dir / 'loss.png'}: {err.strerror or err}; metrics.csv and "
            f"summary.json are complete"
        ) from err
    return summary


def _divergence(loss: float, grad_norm: float, rel: float, factor: float | None) -> str:
    """Which divergence rule fired (module docstring), for summary.json and the log."""
    if not _finite(loss, grad_norm):
        return "non-finite loss or gradient"
    return f"||grad f(x^k)|| / ||grad f(x^0)|| = {rel:.3g} > diverge_factor {factor:g}"


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


#: backend=torch_distributed: bytes each rank put on the wire so far (mean over the ranks),
#: next to ``bits`` (the message's exact encoding; comm/distributed.py says why they differ)
BYTES_SENT_COLUMN = "bytes_sent"


def _no_error() -> float:
    return math.nan


def _gathered_compression_error(proposal, comm) -> float:
    """The simulator's compression error over every rank's worker: inputs and outputs
    gathered (a logged row's diagnostic, not the method's traffic)."""
    if proposal.message is None or proposal.inputs is None:
        return math.nan
    inputs = comm.gather_metric(proposal.inputs)
    return compression_error(inputs, comm.gather_metric(proposal.message.values))


def _final(row: dict[str, Any], start: float) -> dict[str, Any]:
    wall = time.perf_counter() - start
    rounds_done = int(row.get("round", 0))
    return {
        "rounds_done": rounds_done,
        "total_bits": row.get("bits", 0.0),
        "total_bits_all_workers": row.get("bits_total", 0),
        "total_bits_thesis": row.get(THESIS_BITS_COLUMN),
        "grad_evals": row.get("grad_evals", 0),
        "final": {key: row.get(key) for key in ("loss", "loss_gap", "grad_norm", "grad_norm_rel")},
        **time_totals(row),
        "wall_time": wall,
        "rounds_per_second": rounds_done / wall if wall > 0 else None,
    }
