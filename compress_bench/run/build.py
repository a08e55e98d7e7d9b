"""A run built from its validated config, before its first round: the plain config, the
device and thread count, the problem, the operator (global or per tensor), the step (``lr=auto``:
the method's theory step), the method with its server optimizer and, in a torch.distributed
rank, its communicator and the rank's part of the problem; one line (a ConfigError) for what
the config cannot run."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.base import k_from_ratio
from compress_bench.compressors.chain import chain
from compress_bench.compressors.layerwise import layerwise, tensor_k
from compress_bench.config import network_node, validate
from compress_bench.errors import ConfigError
from compress_bench.memory import keep_freed_memory
from compress_bench.methods import method_class
from compress_bench.optim import build_optimizer
from compress_bench.problems import build_problem
from compress_bench.rng import Streams
from compress_bench.run.metrics import CONVEX_TOL_METRICS, TRAINING_TOL_METRICS

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
