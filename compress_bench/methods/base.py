"""The method interface: one communication round as an explicit state transition."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from compress_bench.comm import SimulatedCommunicator
from compress_bench.compressors.base import Compressor, Message, Quantizer, RoundContext
from compress_bench.problems.base import Problem
from compress_bench.rng import WorkerRNG


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


@dataclass(frozen=True)
class Proposal:
    """The outcome of a round, not yet accepted by the runner (which may refuse it when the
    round's bits would take the run past its bit budget)."""

    x: torch.Tensor
    state: Any
    bits: torch.Tensor  # (n,) int64 uplink bits of this round per worker
    message: Message | None = None  # what was sent (for alternative bit conventions)
    inputs: torch.Tensor | None = None  # what the workers compressed, (n, d)

    def compression_error(self) -> float:
        """mean_i ||C(v_i) - v_i||^2 / ||v_i||^2 of this round; computed on demand, since the
        runner needs it only for the rounds it logs."""
        if self.message is None or self.inputs is None:
            return float("nan")
        return compression_error(self.inputs, self.message.values)


class Method(ABC):
    """A distributed method: workers compress, the communicator aggregates, x moves."""

    name: str

    def __init__(
        self,
        problem: Problem,
        compressor: Compressor,
        quantizer: Quantizer,
        rng: WorkerRNG,
        lr: float,
        communicator: SimulatedCommunicator | None = None,
    ):
        self.problem = problem
        self.compressor = compressor
        self.quantizer = quantizer
        self.rng = rng
        self.lr = lr
        self.communicator = communicator or SimulatedCommunicator()

    def init_state(self, x0: torch.Tensor) -> Any:
        n, d = self.problem.n_workers, self.problem.d
        return {"compressor": self.compressor.init_state(n, d, x0.device, x0.dtype)}

    def evaluate(self, x: torch.Tensor) -> Evaluation:
        """All workers' losses and gradients at x, in one batched call."""
        losses, grads = self.problem.loss_and_grad(x.expand(self.problem.n_workers, -1))
        return Evaluation(losses, grads)

    def compress(self, inputs: torch.Tensor, state: Any, ctx: RoundContext):
        """C then Q on every worker's row; returns the message and the compressor's state."""
        message, cstate = self.compressor.compress(inputs, state, self.rng, ctx)
        return self.quantizer.quantize(message, self.rng), cstate


def compression_error(inputs: torch.Tensor, outputs: torch.Tensor) -> float:
    """Mean over workers of ||C(v_i) - v_i||^2 / ||v_i||^2, the empirical 1 - 1/delta of the
    operator (spec 0.7); workers whose input is 0 have no ratio and are left out (NaN if all)."""
    norms = (inputs * inputs).sum(dim=1)
    errors = ((outputs - inputs) ** 2).sum(dim=1)
    live = norms > 0
    if not bool(live.any()):
        return float("nan")
    return float((errors[live] / norms[live]).mean())

    @abstractmethod
    def step(self, x: torch.Tensor, ev: Evaluation, state: Any, round_index: int) -> Proposal:
        """Round ``round_index`` from x, given the workers' evaluation at x."""
