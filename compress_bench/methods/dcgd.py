"""DCGD, distributed compressed gradient descent (spec sections 20, 21).

x^{k+1} = x^k - (eta / n) sum_i op(grad f_i(x^k)),   op = Q(C(.)) (any operator chain)

With ``aggregation="majority_vote"`` (spec 11, signSGD with majority vote; needs an operator
whose values are signs) the server steps along the vote instead:
x^{k+1} = x^k - eta sgn(sum_i sign(g_i)).

Bits per round: sum_i bits(op(.)). With the identity compressor and no quantizer this is
plain distributed gradient descent, bit for bit.
References: Khirirat, Feyzmahdavian, Johansson (2018); the thesis (Khafizov, 2024).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from compress_bench.compressors.base import Message
from compress_bench.errors import ConfigError
from compress_bench.methods.base import Evaluation, Method, WorkerOutput, register_method

log = logging.getLogger("compress_bench")

AGGREGATIONS = ("mean", "majority_vote")


@register_method
class DCGD(Method):
    name = "dcgd"

    def __init__(self, *args: Any, aggregation: str = "mean", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if aggregation == "majority_vote" and not self.operator.tags.sign_only:
            raise ConfigError(
                "method.aggregation=majority_vote votes on signs: it needs quantizer=sign"
            )
        self.aggregation = aggregation

    def worker(
        self, x, ev: Evaluation, state, streams, round_index: int, objective=None
    ) -> WorkerOutput:
        ctx = self.context(x, round_index, ev.losses, objective)
        message, state = self.compress(ev.grads, state, streams, ctx)
        return WorkerOutput(message, state, ev.grads)

    def aggregate(self, message: Message) -> torch.Tensor:
        if self.aggregation == "majority_vote":
            return torch.sign(self.communicator.sum_signs(message))
        return self.communicator.mean(message)

    def server(self, aggregate, state):
        return aggregate, state

    @classmethod
    def theory_lr(cls, problem, operator) -> float:
        """1/L for deterministic and unscaled operators, (k/d)/L for the d/k-scaled forms,
        1/(L + 2 omega L_max / n) for unbiased ones (spec 20). An operator in no class (sign,
        the md_* greedy operators) gets 1/L with a warning: a default, not a theory step."""
        L, d, n = problem.smoothness, problem.d, problem.n_workers
        constants = operator.constants(d)
        omega = constants.omega
        if operator.tags.unbiased and omega is not None and omega > 0:
            L_max = float(problem.worker_smoothness.max())
            return 1.0 / (L + 2.0 * omega * L_max / n)
        if not constants.class_constant:
            log.warning(
                "lr=auto: %s has no class constant (no omega, no contraction delta), so its "
                "step %s/L is a default, not a theory step; set lr explicitly or use error "
                "feedback",
                operator.display.name,
                "1" if constants.lr_factor == 1 else "(k/d)",
            )
        return constants.lr_factor / L
