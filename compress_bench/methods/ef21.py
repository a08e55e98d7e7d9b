"""EF21 (spec 23; Richtarik, Sokolov, Fatkhullin 2021).

init:    g_i^0 = grad f_i(x^0), sent uncompressed in round 0 (32 d bits per worker; variant
         ``init=compressed``: g_i^0 = op(grad f_i(x^0))), g^0 = (1/n) sum_i g_i^0
round t: x^{t+1} = x^t - gamma g^t; then, at x^{t+1}, worker i sends
         c_i = op(grad f_i(x^{t+1}) - g_i^t), g_i^{t+1} = g_i^t + c_i, and the server keeps
         g^{t+1} = g^t + (1/n) sum_i c_i.

The runner evaluates the gradients at the start of each of its rounds, so its round k sends
the message computed at x^k (round 0: the initialisation) and applies x^{k+1} = x^k - gamma g^k.
An operator that is contractive only after a scaling (TopK + dithering, spec 23's
"TopK+ND/zeta_k") runs scaled by 1/(1 + omega) (:meth:`Chain.contractive`).
Invariant: g^t = (1/n) sum_i g_i^t. Identity operator: gradient descent.
Step (``lr=auto``, the reference code's PL formula), with alpha = 1/delta of the operator,
theta = 1 - sqrt(1 - alpha), beta = (1 - alpha)/theta, L~ = sqrt(mean_i L_i^2):
gamma = min(1/(L + L~ sqrt(2 beta/theta)), theta/(2 mu)) when mu > 0 is known, else the
nonconvex 1/(L + L~ sqrt(beta/theta)).
"""

from __future__ import annotations

import math

import torch

from compress_bench.compressors.wire import uncompressed
from compress_bench.methods.base import (
    Method,
    WorkerOutput,
    check_choice,
    register_method,
)

INITS = ("gradient", "compressed")


@register_method
class EF21(Method):
    name = "ef21"

    def __init__(self, operator, *args, d: int, init: str = "gradient", **kwargs):
        # B3 is what EF21's analysis needs: TopK + dithering runs scaled by 1/(1 + omega)
        super().__init__(operator.contractive(d), *args, d=d, **kwargs)
        self.init = check_choice(init, INITS, "method.init")

    def init_state(self, x0):
        state = super().init_state(x0)
        n, d = self.n_workers, self.d
        zeros = torch.zeros(n, d, device=x0.device, dtype=x0.dtype)
        return {**state, "g_workers": zeros, "g": zeros[0].clone(), "started": False}

    def worker(self, x, ev, state, streams, round_index, objective=None):
        if not state["started"] and self.init == "gradient":
            message = uncompressed(ev.grads)  # uncompressed: 32 d bits
            return WorkerOutput(message, {**state, "g_workers": ev.grads}, ev.grads)
        inputs = ev.grads - state["g_workers"]
        ctx = self.context(x, round_index, ev.losses, objective)
        message, state = self.compress(inputs, state, streams, ctx)
        return WorkerOutput(
            message, {**state, "g_workers": state["g_workers"] + message.values}, inputs
        )

    def server(self, aggregate, state):
        g = state["g"] + aggregate if state["started"] else aggregate
        return g, {**state, "g": g, "started": True}

    @classmethod
    def theory_lr(cls, problem, operator) -> float | None:
        delta = operator.contractive(problem.d).constants(problem.d).delta
        if delta is None:
            return None
        alpha = min(1.0, 1.0 / delta)
        L = problem.smoothness
        if alpha >= 1.0:
            return 1.0 / L
        L_tilde = float(torch.sqrt((problem.worker_smoothness.double() ** 2).mean()))
        theta = 1.0 - math.sqrt(1.0 - alpha)
        beta = (1.0 - alpha) / theta
        mu = getattr(problem, "strong_convexity", None)
        if mu:
            return min(1.0 / (L + L_tilde * math.sqrt(2 * beta / theta)), theta / (2 * mu))
        return 1.0 / (L + L_tilde * math.sqrt(beta / theta))

    @classmethod
    def auto_lr_error(cls, operator) -> str:
        return (
            f"method=ef21 with lr=auto needs an operator with a contraction constant delta "
            f"(alpha = 1/delta, spec 23); {operator.display.name} has none; set lr"
        )
