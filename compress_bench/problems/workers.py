"""A problem seen by some of its workers: what a torch.distributed rank holds.

:func:`rank_problem` gives a rank its workers' part of a problem. A problem with rank-separable
data builds that part itself (``for_workers``: logistic regression holds and evaluates only
those workers' shards, with the simulator's numbers for their rows bit for bit; L, f* and the
data order stay the whole problem's). Any other problem gets a :class:`WorkerView`, the
fallback: ``WorkerView(problem, (i,))`` has ``n_workers`` 1, and ``loss_and_grad(X)`` returns
worker i's loss and gradient at X's row, with the numbers the simulator's batched call gives
for row i. It evaluates through the whole problem (the other rows at the same point, then
dropped): exact whatever the problem's batching, but n times the work of worker i alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from compress_bench.layout import Layout
from compress_bench.problems.base import Constants, Problem, Reference


def rank_problem(problem: Problem, workers: Sequence[int]) -> Problem:
    """Workers ``workers`` of ``problem``: its own ``for_workers(workers)`` where it has one
    (only their data is kept), else a :class:`WorkerView` of the whole problem."""
    for_workers = getattr(problem, "for_workers", None)
    return WorkerView(problem, workers) if for_workers is None else for_workers(workers)


class WorkerView(Problem):
    """Workers ``workers`` of ``problem``, evaluated through the whole problem (the fallback
    of :func:`rank_problem` for a problem without ``for_workers``; module docstring)."""

    def __init__(self, problem: Problem, workers: Sequence[int]):
        self.problem = problem
        self.workers = tuple(int(i) for i in workers)
        if not self.workers or not all(0 <= i < problem.n_workers for i in self.workers):
            raise ValueError(
                f"workers {self.workers} outside the problem's 0..{problem.n_workers - 1}"
            )
        self.name = problem.name
        self.d, self.n_workers = problem.d, len(self.workers)
        self.device, self.dtype = problem.device, problem.dtype
        self.stochastic, self.minibatch = problem.stochastic, problem.minibatch
        self._rows = torch.tensor(self.workers, device=problem.device)

    @property
    def layout(self) -> Layout:
        return self.problem.layout

    @property
    def evaluations(self) -> int:
        return self.problem.evaluations

    @evaluations.setter
    def evaluations(self, calls: int) -> None:  # the run loop's counter is the problem's
        self.problem.evaluations = calls

    def _embed(self, X: torch.Tensor) -> torch.Tensor:
        full = X[:1].expand(self.problem.n_workers, -1).clone()
        full[self._rows] = X
        return full

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, grads = self.problem.loss_and_grad(self._embed(X))
        return losses[self._rows], grads[self._rows]

    def shard_loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A minibatch problem's full-data evaluation (the metrics'), these workers' rows."""
        losses, grads = self.problem.shard_loss_and_grad(self._embed(X))
        return losses[self._rows], grads[self._rows]

    def initial_point(self) -> torch.Tensor:
        return self.problem.initial_point()

    @property
    def smoothness(self) -> float:
        return self.problem.smoothness

    @property
    def worker_smoothness(self) -> torch.Tensor:
        return self.problem.worker_smoothness[self._rows]

    def constants(self) -> Constants | None:
        """The whole problem's L and max_i L_i (the run's step and summary)."""
        return self.problem.constants()

    def get_data_state(self) -> dict:
        return self.problem.get_data_state()

    def set_data_state(self, state: dict) -> None:
        self.problem.set_data_state(state)

    def reference(self) -> Reference:
        return self.problem.reference()

    def __getattr__(self, name: str):
        # the rest (next_batches, matrix_shape, fingerprint, ...) is the whole problem's
        if name == "problem":
            raise AttributeError(name)
        return getattr(self.problem, name)
