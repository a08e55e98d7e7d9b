"""DIANA (spec 24; Mishchenko, Gorbunov, Takac, Richtarik 2019).

worker i:  Delta_i = grad f_i(x^k) - h_i,  m_i = op(Delta_i) (sent),  h_i <- h_i + alpha m_i
server:    g^k = h + (1/n) sum_i m_i,  x^{k+1} = x^k - gamma g^k,  h <- h + alpha (1/n) sum_i m_i

Shifts h_i^0 = 0 (default) or, with ``init=gradient``, h_i^0 = grad f_i(x^0) sent
uncompressed in round 0 (32 d bits per worker; that round then steps along h^0 = grad f(x^0)).
alpha = 1/(omega + 1) of the operator (``method.alpha`` overrides it); needs an unbiased
operator with omega. Step (``lr=auto``): gamma = 1/((1 + 6 omega/n) L_max).
Invariant: h = (1/n) sum_i h_i. Identity operator (omega = 0, alpha = 1): gradient descent.
"""

from __future__ import annotations

import torch

from compress_bench.compressors.wire import uncompressed
from compress_bench.errors import ConfigError
from compress_bench.methods.base import (
    Method,
    WorkerOutput,
    check_choice,
    register_method,
)

INITS = ("zeros", "gradient")


@register_method
class DIANA(Method):
    name = "diana"

    def __init__(self, *args, alpha: float | None = None, init: str = "zeros", **kwargs):
        super().__init__(*args, **kwargs)
        self.init = check_choice(init, INITS, "method.init")
        omega = self.operator.constants(self.d).omega
        if alpha is None:
            if omega is None:
                raise ConfigError(
                    f"method=diana needs an unbiased operator with a variance constant omega "
                    f"(alpha = 1/(omega + 1)); {self.operator.display.name} has none: choose one "
                    "(rand_k, natural, ...) or set method.alpha"
                )
            alpha = 1.0 / (omega + 1.0)
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"method.alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)

    def init_state(self, x0):
        state = super().init_state(x0)
        n, d = self.n_workers, self.d
        zeros = torch.zeros(n, d, device=x0.device, dtype=x0.dtype)
        return {**state, "h_workers": zeros, "h": zeros[0].clone(), "started": False}

    def worker(self, x, ev, state, streams, round_index, objective=None):
        if not state["started"] and self.init == "gradient":
            dense = uncompressed(ev.grads)  # the shifts themselves, uncompressed: 32 d bits
            return WorkerOutput(dense, {**state, "h_workers": ev.grads}, ev.grads)
        inputs = ev.grads - state["h_workers"]
        ctx = self.context(x, round_index, ev.losses, objective)
        message, state = self.compress(inputs, state, streams, ctx)
        h_workers = state["h_workers"] + self.alpha * message.values
        return WorkerOutput(message, {**state, "h_workers": h_workers}, inputs)

    def server(self, aggregate, state):
        if not state["started"] and self.init == "gradient":
            h = aggregate  # round 0 of the variant: the shifts themselves were sent
            return h, {**state, "h": h, "started": True}
        direction = state["h"] + aggregate
        h = state["h"] + self.alpha * aggregate
        return direction, {**state, "h": h, "started": True}

    @classmethod
    def theory_lr(cls, problem, operator) -> float | None:
        omega = operator.constants(problem.d).omega
        if omega is None:
            return None
        L_max = float(problem.worker_smoothness.max())
        return 1.0 / ((1.0 + 6.0 * omega / problem.n_workers) * L_max)

    @classmethod
    def auto_lr_error(cls, operator) -> str:
        # both needs at once: a user who sets only lr would meet the alpha one next
        return (
            "method=diana needs an unbiased operator's variance constant omega for lr=auto and "
            "for its shift step alpha = 1/(omega + 1) (spec 24); "
            f"{operator.display.name} has none: choose one (rand_k, natural, ...), or set both lr "
            "and method.alpha"
        )
