"""The in-process communicator: all n workers are rows of one tensor."""

from __future__ import annotations

import torch

from compress_bench.compressors.base import Message


class SimulatedCommunicator:
    """Aggregates the workers' decoded messages, as an all-reduce would: their mean, or the
    majority vote of their signs.

    Only the message's decoded values travel; bits are counted from the message itself.
    """

    def average(self, message: Message) -> torch.Tensor:
        """(1/n) sum_i values_i, shape (d,)."""
        return message.worker_mean()

    def majority_vote(self, message: Message) -> torch.Tensor:
        """sgn(sum_i values_i) with sgn(0) = 0, shape (d,): the server's majority vote over
        sign messages (spec 11; signSGD with majority vote, Bernstein et al. 2019)."""
        return torch.sign(message.values.sum(dim=0))
