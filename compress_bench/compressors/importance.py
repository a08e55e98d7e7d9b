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

Variant ``thesis_resnet`` (the thesis ResNet18 notebook): the same trial point
x - eta (w / max_j w_j) (.) g, but the gradient in w is the exact one (as automatic
differentiation gives it, the derivative of max w included; at ties it is split evenly over the
tied coordinates, as torch's ``amax`` does):

    grad phi(w) = -eta s / m + e_max * eta (w . s) / m^2,   s = g (.) grad f(trial), m = max w,

and the entropic term enters as a proximal step, z <- (z - gamma grad phi) / (1 + gamma alpha_ent)
(w <- w^{1/(1+gamma alpha)} exp(-gamma/(1+gamma alpha) grad phi), normalised); the notebook
starts from a uniformly random w (``init="random"``) and runs gamma 2, alpha 0.1, K 200.

Schedule: ``every`` = N runs the solver on rounds 0, N, 2N, ... (the notebook: the first
minibatch of each epoch) and keeps the last w in between; the md_* operators still select with
it every round.

Blocks (``granularity=layer``): with ``scope="tensor"`` each tensor's operator solves for its
own w with the other tensors fixed (one forward/backward per tensor and step); with
``scope="joint"`` one solve moves every tensor's w at once, each on its own simplex (softmax,
max and normalisation per tensor), so a step is one forward/backward of the whole model.

All n workers are one batch: the n trial points are one (n, d) tensor and each step is one
batched gradient call, so the solver costs K local gradient evaluations per worker per round
and no bits. References: Beck & Teboulle (2003) for entropic mirror descent; Khafizov, BSc
thesis (MIPT 2024) for its use as an importance vector.
"""

from __future__ import annotations

from typing import Any

import torch

VARIANTS = ("spec", "thesis_code", "thesis_resnet")
INITS = ("uniform", "abs_grad", "random")
SCOPES = ("tensor", "joint")
#: the tensors' column ranges in x (each its own simplex); None: one simplex over all of d
Blocks = tuple[slice, ...] | None


def _per_block(z: torch.Tensor, blocks: Blocks, normalise) -> torch.Tensor:
    """``normalise(z, dim=1)`` (softmax, log_softmax) applied to each block's columns."""
    if blocks is None:
        return normalise(z, dim=1)
    return torch.cat([normalise(z[:, b], dim=1) for b in blocks], dim=1)


def _reduced_per_block(t: torch.Tensor, blocks: Blocks, reduce) -> torch.Tensor:
    """``reduce`` (amax, sum) of each row over each block, broadcast back to (n, d)."""
    if blocks is None:
        return reduce(t, dim=1, keepdim=True)
    return torch.cat(
        [reduce(t[:, b], dim=1, keepdim=True).expand(-1, b.stop - b.start) for b in blocks], dim=1
    )


def block_softmax(z: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """w = softmax(z) over each block's columns (each block its own simplex)."""
    return _per_block(z, blocks, torch.softmax)


def block_log_softmax(z: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """log w, w = :func:`block_softmax` (z)."""
    return _per_block(z, blocks, torch.log_softmax)


def block_max(t: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """The maximum of each row over each block, broadcast back to (n, d)."""
    return _reduced_per_block(t, blocks, torch.amax)


def block_sum(t: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """The sum of each row over each block, broadcast back to (n, d)."""
    return _reduced_per_block(t, blocks, torch.sum)


class ImportanceSolver:
    """K entropic mirror-descent steps for every worker's w (see the module docstring)."""

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
        every: int = 1,
        scope: str = "tensor",
    ):
        for key, value, low in (("steps", steps, 0), ("every", every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"importance.{key} must be an integer >= {low}, got {value!r}")
        for key, value in (("lr", lr), ("rho", rho)):
            if not value > 0:
                raise ValueError(f"importance.{key} must be positive, got {value!r}")
        if not entropy >= 0:
            raise ValueError(f"importance.entropy must be non-negative, got {entropy!r}")
        for key, value, options in (
            ("init", init, INITS),
            ("variant", variant, VARIANTS),
            ("scope", scope, SCOPES),
        ):
            if value not in options:
                raise ValueError(
                    f"importance.{key} must be one of {', '.join(options)}, got {value!r}"
                )
        self.steps, self.lr, self.rho, self.entropy = steps, float(lr), float(rho), float(entropy)
        self.warm_start, self.init, self.variant = bool(warm_start), init, variant
        self.every, self.scope = every, scope

    def due(self, z: torch.Tensor | None, round_index: int) -> bool:
        """Whether round ``round_index`` runs the solver (always when there is no w yet)."""
        return z is None or round_index % self.every == 0

    def initial_log_weights(self, G: torch.Tensor, rng: Any = None) -> torch.Tensor:
        """z for a cold start: uniform w (z = 0), w proportional to |g| (abs_grad), or to
        uniform random numbers from the workers' streams (random)."""
        if self.init == "uniform":
            return torch.zeros_like(G)
        if self.init == "random":
            if rng is None:
                raise ValueError("importance.init=random needs the workers' random streams")
            source = rng.uniform(G.shape[1], dtype=G.dtype)
        else:
            source = G.abs()
        # log 0 would pin a weight at 0 forever (the updates are multiplicative): floor it
        return torch.log(source.clamp_min(torch.finfo(G.dtype).tiny))

    def trial_scale(self, w: torch.Tensor, eta: float, blocks: Blocks = None) -> torch.Tensor:
        """The coordinate-wise step eta * rho * w (spec) or eta * w / max w (thesis forms)."""
        if self.variant == "spec":
            return (eta * self.rho) * w
        return eta * w / block_max(w, blocks)

    def step(
        self,
        z: torch.Tensor,
        x: torch.Tensor,
        G: torch.Tensor,
        eta: float,
        problem: Any,
        blocks: Blocks = None,
    ) -> torch.Tensor:
        """One mirror-descent step for every worker: one batched gradient evaluation."""
        w = block_softmax(z, blocks)
        trial = x - self.trial_scale(w, eta, blocks) * G
        grad_f = problem.grad(trial)
        if self.variant == "thesis_resnet":
            z = z - self.lr * self._exact_gradient(w, G * grad_f, eta, blocks)
            z = z / (1.0 + self.lr * self.entropy)  # the proximal entropic step
        else:
            chain = eta * self.rho if self.variant == "spec" else eta
            grad_phi = -chain * G * grad_f
            if self.entropy:
                grad_phi = grad_phi + self.entropy * (block_log_softmax(z, blocks) + 1.0)
            z = z - self.lr * grad_phi
        return z - block_max(z, blocks)

    @staticmethod
    def _exact_gradient(
        w: torch.Tensor, s: torch.Tensor, eta: float, blocks: Blocks
    ) -> torch.Tensor:
        """d/dw of f(x - eta (w / max w) (.) g), with s = g (.) grad f(trial): the derivative
        of max w split evenly over the coordinates at the maximum (torch's amax rule)."""
        m = block_max(w, blocks)
        at_max = (w == m).to(w.dtype)
        share = at_max / block_sum(at_max, blocks)
        return -eta * s / m + share * (eta * block_sum(w * s, blocks) / (m * m))

    def solve(
        self,
        z: torch.Tensor | None,
        x: torch.Tensor,
        G: torch.Tensor,
        eta: float,
        problem: Any,
        rng: Any = None,
        blocks: Blocks = None,
    ) -> torch.Tensor:
        """K steps from ``z`` (the previous round's, when warm-starting); returns the new z."""
        if z is None or not self.warm_start:
            z = self.initial_log_weights(G, rng)
            if blocks is not None:  # each block's log-weights start at max 0
                z = z - block_max(z, blocks)
        for _ in range(self.steps):
            z = self.step(z, x, G, eta, problem, blocks)
        return z
