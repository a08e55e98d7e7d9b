"""The in-process communicator: all n workers are rows of one tensor."""

from __future__ import annotations

import torch

from compress_bench.compressors.base import Message


class SimulatedCommunicator:
    """Averages the workers' decoded messages, as an all-reduce would.

    Only the message's decoded values travel; bits are counted from the message itself.
    """

    def average(self, message: Message) -> torch.Tensor:
        """(1/n) sum_i values_i, shape (d,)."""
        return message.values.mean(dim=0)
