"""The importance vector w: entropic mirror descent on the simplex (spec section 12).

Worker i, at the outer iterate x with local gradient g_i and outer step eta, looks for

    w_i = argmin_{w in simplex} phi_i(w),   phi_i(w) = f_i(x - eta * rho * w (.) g_i),

    grad phi_i(w) = -eta * rho * g_i (.) grad f_i(x - eta * rho * w (.) g_i)

(+ alpha_ent (log w + 1) with the optional entropic regulariser), by K steps of entropic mirror
descent with step gamma, kept in log-weights z (w = softmax(z); z <- z - gamma grad phi;
z <- z - max z), warm-started across rounds from each worker's previous z, uniform at first.

Variant ``thesis_code`` (the thesis LogReg code, ``MirrorDescentOnSimplex``): the trial point
is x - eta (w / max_j w_j) (.) g and the gradient ignores the derivative of that
normalisation; the thesis runs it with entropy 0.1, gamma 1, K 100, warm start.

All n workers are one batch: the n trial points are one (n, d) tensor and each step is one
batched gradient call, so the solver costs K local gradient evaluations per worker per round
and no bits. References: Beck & Teboulle (2003) for entropic mirror descent; Khafizov, BSc
thesis (MIPT 2024) for its use as an importance vector.
"""

from __future__ import annotations

from typing import Any

import torch

VARIANTS = ("spec", "thesis_code")
INITS = ("uniform", "abs_grad")


class ImportanceSolver:
    def __init__(
        self,
        *,
        steps: int = 100,
        lr: float = 1.0,
        rho: float = 1.0,
        entropy: float = 0.0,
        warm_start: bool = True,
        init: str = "uniform",
        variant: str = "spec",
    ):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"importance.steps must be a non-negative integer, got {steps!r}")
        for key, value in (("lr", lr), ("rho", rho)):
            if not value > 0:
                raise ValueError(f"importance.{key} must be positive, got {value!r}")
        if not entropy >= 0:
            raise ValueError(f"importance.entropy must be non-negative, got {entropy!r}")
        if init not in INITS:
            raise ValueError(f"importance.init must be one of {', '.join(INITS)}, got {init!r}")
        if variant not in VARIANTS:
            raise ValueError(
                f"importance.variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
            )
        self.steps, self.lr, self.rho, self.entropy = steps, float(lr), float(rho), float(entropy)
        self.warm_start, self.init, self.variant = bool(warm_start), init, variant

    def initial_log_weights(self, G: torch.Tensor) -> torch.Tensor:
        """z for a cold start: uniform w (z = 0), or w proportional to |g| (init abs_grad)."""
        if self.init == "uniform":
            return torch.zeros_like(G)
        # log 0 would pin a weight at 0 forever (the updates are multiplicative): floor it
        return torch.log(G.abs().clamp_min(torch.finfo(G.dtype).tiny))

    def trial_scale(self, w: torch.Tensor, eta: float) -> torch.Tensor:
        """The coordinate-wise step eta * rho * w (spec) or eta * w / max w (thesis code)."""
        if self.variant == "spec":
            return (eta * self.rho) * w
        return eta * w / w.amax(dim=1, keepdim=True)

    def step(
        self, z: torch.Tensor, x: torch.Tensor, G: torch.Tensor, eta: float, problem: Any
    ) -> torch.Tensor:
        """One mirror-descent step for every worker: one batched gradient evaluation."""
        w = torch.softmax(z, dim=1)
        trial = x - self.trial_scale(w, eta) * G
        chain = eta * self.rho if self.variant == "spec" else eta
        grad_phi = -chain * G * problem.grad(trial)
        if self.entropy:
            grad_phi = grad_phi + self.entropy * (torch.log_softmax(z, dim=1) + 1.0)
        z = z - self.lr * grad_phi
        return z - z.amax(dim=1, keepdim=True)

    def solve(
        self, z: torch.Tensor | None, x: torch.Tensor, G: torch.Tensor, eta: float, problem: Any
    ) -> torch.Tensor:
        """K steps from ``z`` (the previous round's, when warm-starting); returns the new z."""
        if z is None or not self.warm_start:
            z = self.initial_log_weights(G)
        for _ in range(self.steps):
            z = self.step(z, x, G, eta, problem)
        return z
