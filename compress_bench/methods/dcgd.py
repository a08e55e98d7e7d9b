"""DCGD, distributed compressed gradient descent (spec sections 20, 21).

x^{k+1} = x^k - (eta / n) sum_i Q(C_i(grad f_i(x^k)))

Bits per round: sum_i bits(Q(C_i(.))). With the identity compressor and no quantizer this is
plain distributed gradient descent, bit for bit.
References: Khirirat, Feyzmahdavian, Johansson (2018); the thesis (Khafizov, 2024).
"""

from __future__ import annotations

from typing import Any

import torch

from compress_bench.compressors.base import RoundContext
from compress_bench.methods.base import Evaluation, Method, Proposal


class DCGD(Method):
    name = "dcgd"

    def step(self, x: torch.Tensor, ev: Evaluation, state: Any, round_index: int) -> Proposal:
        ctx = RoundContext(round_index=round_index, x=x, lr=self.lr, problem=self.problem)
        message, cstate = self.compress(ev.grads, state["compressor"], ctx)
        x_next = x - self.lr * self.communicator.average(message)
        return Proposal(
            x_next,
            {**state, "compressor": cstate},
            message.bits,
            message,
            ev.grads,
        )
