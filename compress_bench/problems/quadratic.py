"""A separable quadratic, f_i(x) = 1/2 sum_j a_j (x_j - c_ij)^2: the spec's toy problem.

Used by the importance solver's worked example (spec section 12) and by the conformance suite,
which needs some objective for the operators that query one. Not a CLI problem.
"""

from __future__ import annotations

import torch

from compress_bench.problems.base import Problem, Reference


class SeparableQuadratic(Problem):
    def __init__(self, curvature: torch.Tensor, centers: torch.Tensor):
        """curvature: (d,) positive a_j; centers: (n, d), row i is worker i's c_i."""
        self.curvature = curvature
        self.centers = centers
        self.n_workers, self.d = centers.shape
        self.name, self.device, self.dtype = "separable_quadratic", centers.device, centers.dtype

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.evaluations += 1
        diff = X - self.centers
        return 0.5 * (self.curvature * diff * diff).sum(dim=1), self.curvature * diff

    def initial_point(self) -> torch.Tensor:
        return torch.zeros(self.d, dtype=self.dtype, device=self.device)

    @property
    def smoothness(self) -> float:
        return float(self.curvature.max())

    @property
    def worker_smoothness(self) -> torch.Tensor:
        return self.curvature.max().expand(self.n_workers).cpu()

    def reference(self) -> Reference:
        xstar = self.centers.mean(dim=0)
        loss, grad = self.full_loss_and_grad(xstar)
        return Reference(float(loss), xstar.tolist(), float(grad.norm()))
