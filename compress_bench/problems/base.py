"""The problem interface: an objective split across n workers, evaluated batched."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from compress_bench.layout import Layout


@dataclass(frozen=True)
class Constants:
    """What the theory steps need: L (smoothness of f) and max_i L_i."""

    L: float
    L_max: float


@dataclass(frozen=True)
class Reference:
    """The minimiser found once per problem: f*, x*, and the gradient norm reached there."""

    fstar: float
    xstar: list[float]
    grad_norm: float


class Problem(ABC):
    """f(x) = (1/n) sum_i f_i(x), worker i holding f_i.

    ``loss_and_grad(X)`` evaluates every worker at its own point in one batched call:
    row i of X is worker i's point, and the result is (f_i(X_i))_i of shape (n,) and
    (grad f_i(X_i))_i of shape (n, d). Methods and the importance solver depend only on it.
    """

    name: str
    d: int
    n_workers: int
    device: torch.device
    dtype: torch.dtype
    #: batched oracle calls so far (each is one local gradient evaluation per worker); the
    #: runner reports it so that the price of operators that query the objective is visible
    evaluations: int = 0
    #: the named tensors of x (layerwise compression acts on each); None: one tensor
    _layout: Layout | None = None

    @property
    def layout(self) -> Layout:
        return self._layout if self._layout is not None else Layout.flat(self.d)

    @layout.setter
    def layout(self, layout: Layout) -> None:
        if layout.d != self.d:
            raise ValueError(f"layout covers {layout.d} coordinates, the problem has {self.d}")
        self._layout = layout

    @abstractmethod
    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-worker losses (n,) and gradients (n, d) at the rows of X."""

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        """Per-worker gradients (n, d) at the rows of X (override when losses cost extra)."""
        return self.loss_and_grad(X)[1]

    @abstractmethod
    def initial_point(self) -> torch.Tensor:
        """x^0, shape (d,)."""

    @property
    @abstractmethod
    def smoothness(self) -> float:
        """L, the smoothness constant of f."""

    @property
    @abstractmethod
    def worker_smoothness(self) -> torch.Tensor:
        """(L_i)_i, shape (n,)."""

    #: True for problems whose oracle draws minibatches (the neural problems)
    stochastic: bool = False
    #: True when a convex problem's workers step on minibatches (``problem.batch_size``):
    #: the round loop then draws them each round and reports metrics on all the data
    minibatch: bool = False

    def get_data_state(self) -> dict:
        """What a checkpoint must hold of the problem's data order (none by default)."""
        return {}

    def set_data_state(self, state: dict) -> None:
        """Restore :meth:`get_data_state` (nothing by default)."""
        return None

    def constants(self) -> Constants | None:
        """L and max L_i where the problem has them (convex problems); None otherwise, and
        then ``lr=auto``, ``loss_gap`` and a gradient-norm ``tol`` are unavailable."""
        return Constants(float(self.smoothness), float(self.worker_smoothness.max()))

    @abstractmethod
    def reference(self) -> Reference:
        """f* and x*, computed once and cached."""

    def full_loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) and grad f(x) = the worker average at a common point x of shape (d,)."""
        losses, grads = self.loss_and_grad(x.expand(self.n_workers, -1))
        return losses.mean(), grads.mean(dim=0)
