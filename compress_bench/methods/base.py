"""The method interface: one communication round as an explicit state transition.

A round is a worker phase (every worker turns its gradient into a message and updates its own
state), a collective (the communicator averages the decoded messages, or votes on signs), and
a server phase (the aggregate becomes the direction, and x moves). The phases are separate so
that a distributed backend and a DDP hook can run them where they belong. All workers are one
batch: per-worker state has a leading dimension n.

A method is built from its operator, step, server optimizer and communicator, and the shape
of what it runs on (``n_workers`` rows of ``d`` entries), never from a problem::

    method = METHODS["ef21"](operator, lr, n_workers=n, d=d)
    state = method.init_state(x)
    ev = evaluate(problem, x)                 # the loop's call: the workers' losses, gradients
    proposal = method.step(x, ev, state, streams, k, objective=problem)

The gradients come from the loop (:func:`evaluate` of a problem, a training step's minibatch,
a DDP bucket); ``objective`` (the problem the workers evaluate) is passed only to what
queries the objective: the operators tagged ``needs_objective`` (the md_* importance family,
through ``RoundContext.objective``). A method whose operator needs it and is given none
raises a ValueError. ``theory_lr`` (``lr=auto``) still reads the problem's constants.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from compress_bench.comm import Communicator, SimulatedCommunicator
from compress_bench.compressors.base import Message, RoundContext
from compress_bench.compressors.operator import Operator
from compress_bench.errors import ConfigError
from compress_bench.optim import ServerOptimizer
from compress_bench.problems.base import Problem
from compress_bench.rng import Streams

METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``method=<cls.name>`` selectable (and run it through the method tests)."""
    if cls.name in METHODS:
        raise RuntimeError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Evaluation:
    """The workers' local view of the model at the start of a round."""

    losses: torch.Tensor  # (n,) f_i at the point each worker evaluates
    grads: torch.Tensor  # (n, d) grad f_i there

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()

    @property
    def grad(self) -> torch.Tensor:
        return self.grads.mean(dim=0)


def evaluate(problem: Problem, x: torch.Tensor) -> Evaluation:
    """All of ``problem``'s workers' losses and gradients at x, in one batched call: what a
    loop hands to :meth:`Method.step` (the problem is the loop's, never the method's)."""
    losses, grads = problem.loss_and_grad(x.expand(problem.n_workers, -1))
    return Evaluation(losses, grads)


@dataclass(frozen=True)
class Proposal:
    """The outcome of a round, not yet accepted by the runner (which may refuse it when the
    round's bits would take the run past its bit budget)."""

    x: torch.Tensor
    state: Any
    message: Message  # what was sent: its bits, and alternative bit conventions
    inputs: torch.Tensor | None = None  # what the workers compressed, (n, d)

    @property
    def bits(self) -> torch.Tensor:
        """(n,) int64 uplink bits of this round per worker (computed when read)."""
        return self.message.bits

    def total_bits(self) -> int:
        """The round's uplink bits summed over the workers, a host integer: from the message's
        fixed size when it has one (no tensor read back), else from ``bits``."""
        per_worker = self.message.fixed_bits
        if per_worker is not None:
            return per_worker * self.message.value_count.shape[0]
        return int(self.bits.sum())

    def compression_error(self) -> float:
        """mean_i ||C(v_i) - v_i||^2 / ||v_i||^2 of this round; computed on demand, since the
        runner needs it only for the rounds it logs."""
        if self.message is None or self.inputs is None:
            return float("nan")
        return compression_error(self.inputs, self.message.values)


def compression_error(inputs: torch.Tensor, outputs: torch.Tensor) -> float:
    """Mean over workers of ||C(v_i) - v_i||^2 / ||v_i||^2, the empirical 1 - 1/delta of the
    operator (spec 0.7); workers whose input is 0 have no ratio and are left out (NaN if all)."""
    norms = (inputs * inputs).sum(dim=1)
    errors = ((outputs - inputs) ** 2).sum(dim=1)
    live = norms > 0
    if not bool(live.any()):
        return float("nan")
    return float((errors[live] / norms[live]).mean())


@dataclass(frozen=True)
class WorkerOutput:
    """What the worker phase produces: the message, the workers' new state, and what they
    compressed (for the compression-error diagnostic)."""

    message: Message
    state: dict[str, Any]
    inputs: torch.Tensor


class Method(ABC):
    """A distributed method: workers compress, the communicator aggregates, x moves.

    Built from the operator, the step ``lr``, the communicator (None: the simulator's) and
    the server optimizer (None: x - lr g), for ``n_workers`` workers (the rows this process
    holds: all n in the simulator, one in a torch.distributed rank or a DDP hook) of
    dimension ``d``; subclasses add their options as keywords. No problem: the loop passes the
    workers' evaluation to :meth:`step`, and the objective where the operator queries one.

    Subclasses set ``name`` and implement :meth:`worker` and :meth:`server`; :meth:`theory_lr`
    gives the step ``lr=auto`` uses (spec 20-24), None where the method has no rule for the
    operator (the runner then stops with one line).
    """

    name: ClassVar[str]

    def __init__(
        self,
        operator: Operator,
        lr: float,
        *,
        n_workers: int,
        d: int,
        communicator: Communicator | None = None,
        optimizer: ServerOptimizer | None = None,
    ):
        self.operator = operator
        self.lr = lr
        self.n_workers, self.d = int(n_workers), int(d)
        self.communicator = communicator or SimulatedCommunicator()
        # x^{k+1} = x^k - lr g^k unless the run configures another server optimizer
        self.optimizer = optimizer or ServerOptimizer(lr=lr)

    def init_state(self, x0: torch.Tensor) -> dict[str, Any]:
        n, d = self.n_workers, self.d
        return {
            "operator": self.operator.init_state(n, d, x0.device, x0.dtype),
            "optimizer": self.optimizer.init_state(x0),
        }

    def context(
        self,
        x: torch.Tensor,
        round_index: int,
        losses: torch.Tensor | None = None,
        objective: Any = None,
    ) -> RoundContext:
        """The round as the operator sees it; ``objective`` (the problem the workers evaluate)
        is required when the operator queries it (tagged ``needs_objective``)."""
        if objective is None and self.operator.tags.needs_objective:
            raise ValueError(
                f"{self.operator.display.name} queries the objective (tagged "
                f"needs_objective): pass the problem the workers evaluate as "
                f"method.step(..., objective=problem)"
            )
        return RoundContext(
            round_index=round_index, x=x, lr=self.lr, objective=objective, losses=losses
        )

    def compress(
        self, inputs: torch.Tensor, state: dict[str, Any], streams: Streams, ctx: RoundContext
    ):
        """The operator on every worker's row: the message and the state with the
        operator's new part. An operator tagged ``collective`` receives the communicator
        (it averages inside the round); the others never see it."""
        args = (self.communicator,) if self.operator.tags.collective else ()
        message, op_state = self.operator.compress(inputs, state["operator"], streams, ctx, *args)
        return message, {**state, "operator": op_state}

    @abstractmethod
    def worker(
        self,
        x: torch.Tensor,
        ev: Evaluation,
        state: dict[str, Any],
        streams: Streams,
        round_index: int,
        objective: Any = None,
    ) -> WorkerOutput:
        """Every worker's message of round ``round_index`` and their new state. Row i of
        everything depends only on worker i's gradient, state and streams (and, for an
        operator tagged needs_objective, on ``objective``, which :meth:`context` passes on)."""

    def aggregate(self, message: Message) -> torch.Tensor:
        """The collective: (1/n) sum_i of the decoded messages, shape (d,)."""
        return self.communicator.mean(message)

    @abstractmethod
    def server(
        self, aggregate: torch.Tensor, state: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The direction g^k and the server's new state, from the aggregate of the messages;
        the server optimizer (compress_bench/optim.py) turns g^k into x^{k+1}."""

    def step(
        self,
        x: torch.Tensor,
        ev: Evaluation,
        state: Any,
        streams: Streams,
        round_index: int,
        objective: Any = None,
    ) -> Proposal:
        """Round ``round_index`` from x, given the workers' evaluation at x and their random
        streams (passed in, never held: a checkpoint or a rank owns them); ``objective``: the
        problem the workers evaluate, for an operator tagged needs_objective (ValueError
        without it), unused otherwise."""
        out = self.worker(x, ev, state, streams, round_index, objective)
        direction, new_state = self.server(self.aggregate(out.message), out.state)
        x_next, opt_state = self.optimizer.step(x, direction, new_state["optimizer"], round_index)
        new_state = {**new_state, "optimizer": opt_state}
        return Proposal(x_next, new_state, out.message, out.inputs)

    @classmethod
    def theory_lr(cls, problem: Problem, operator: Operator) -> float | None:
        """The step of the method's analysis for this operator (``lr=auto``), from the
        problem's constants (L, L_i, mu); the method itself never holds the problem."""
        return None

    @classmethod
    def auto_lr_error(cls, operator: Operator) -> str:
        return f"method={cls.name} has no theoretical step for {operator.display.name}; set lr"


def check_choice(value: Any, options: tuple[str, ...], key: str) -> str:
    if value not in options:
        raise ConfigError(f"{key} must be one of {', '.join(options)}, got {value!r}")
    return str(value)
