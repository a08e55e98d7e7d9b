"""The communicator protocol: the only place where workers' data is aggregated.

A method's round is worker -> communicator -> server; an operator tagged ``collective``
(PowerSGD's collective form) also calls the communicator inside its ``compress``. Every
implementation holds ``n_local`` workers' rows (all n in the simulator, one in a
``torch.distributed`` rank) of a job of ``world`` workers:

  mean(message)        (d,): (1/world) sum_i values_i, what an averaging all-reduce delivers
  all_reduce_mean(X)   X of shape (n_local, ...) -> the same shape, every row the mean over
                       all workers' rows (the collective a mid-round operator calls)
  all_gather(payload)  every worker's payload (a list of per-worker tensors, sizes first),
                       for formats an all-reduce cannot sum (TopK's indices)
  sum_signs(message)   (d,): sum_i values_i of sign messages, whose sign is the majority vote
                       (spec 11; signSGD with majority vote, Bernstein et al. 2019)

Bits are counted from the messages themselves (``Message.bits``), never here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from compress_bench.compressors.base import Message


@runtime_checkable
class Communicator(Protocol):
    """See the module docstring."""

    n_local: int | None
    world: int | None

    def mean(self, message: Message) -> torch.Tensor: ...

    def all_reduce_mean(self, X: torch.Tensor) -> torch.Tensor: ...

    def all_gather(self, payload: list[torch.Tensor]) -> list[torch.Tensor]: ...

    def sum_signs(self, message: Message) -> torch.Tensor: ...
