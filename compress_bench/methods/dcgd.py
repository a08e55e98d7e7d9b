"""DCGD, distributed compressed gradient descent (spec sections 20, 21).

x^{k+1} = x^k - (eta / n) sum_i Q(C_i(grad f_i(x^k)))

With ``aggregation="majority_vote"`` (spec 11, signSGD with majority vote; needs the sign
quantizer) the server steps along the vote instead: x^{k+1} = x^k - eta sgn(sum_i sign(g_i)).

Bits per round: sum_i bits(Q(C_i(.))). With the identity compressor and no quantizer this is
plain distributed gradient descent, bit for bit.
References: Khirirat, Feyzmahdavian, Johansson (2018); the thesis (Khafizov, 2024).
"""

from __future__ import annotations

from typing import Any

import torch

from compress_bench.compressors.base import RoundContext
from compress_bench.errors import ConfigError
from compress_bench.methods.base import Evaluation, Method, Proposal

AGGREGATIONS = ("mean", "majority_vote")


class DCGD(Method):
    name = "dcgd"

    def __init__(self, *args: Any, aggregation: str = "mean", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if aggregation == "majority_vote" and self.quantizer.name != "sign":
            raise ConfigError(
                "method.aggregation=majority_vote votes on signs: it needs quantizer=sign"
            )
        self.aggregation = aggregation

    def step(self, x: torch.Tensor, ev: Evaluation, state: Any, round_index: int) -> Proposal:
        ctx = RoundContext(round_index=round_index, x=x, lr=self.lr, problem=self.problem)
        message, cstate = self.compress(ev.grads, state["compressor"], ctx)
        if self.aggregation == "majority_vote":
            update = self.communicator.majority_vote(message)
        else:
            update = self.communicator.average(message)
        x_next = x - self.lr * update
        return Proposal(
            x_next,
            {**state, "compressor": cstate},
            message.bits,
            message,
            ev.grads,
        )
