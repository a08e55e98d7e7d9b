"""A problem seen by some of its workers: what a torch.distributed rank holds.

``WorkerView(problem, (i,))`` is worker i's part of ``problem``: ``n_workers`` is 1, and
``loss_and_grad(X)`` returns worker i's loss and gradient at X's row, with the numbers the
simulator's batched call gives for row i. It evaluates through the whole problem (the other
rows at the same point, then dropped), so a rank's numbers are the simulator's bit for bit
whatever the problem's batching; a problem that can evaluate one shard alone can replace
this by a view that loads only its shard (issue 18's rank-separable data, not done yet).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from compress_bench.layout import Layout
from compress_bench.problems.base import Problem, Reference


class WorkerView(Problem):
    """Workers ``workers`` of ``problem`` (see the module docstring)."""

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

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = X[:1].expand(self.problem.n_workers, -1).clone()
        full[self._rows] = X
        losses, grads = self.problem.loss_and_grad(full)
        return losses[self._rows], grads[self._rows]

    def initial_point(self) -> torch.Tensor:
        return self.problem.initial_point()

    @property
    def smoothness(self) -> float:
        return self.problem.smoothness

    @property
    def worker_smoothness(self) -> torch.Tensor:
        return self.problem.worker_smoothness[self._rows]

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
