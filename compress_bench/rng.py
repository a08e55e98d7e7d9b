"""Deterministic random streams.

Every stream is a ``torch.Generator`` seeded from a tuple of integers through NumPy's
``SeedSequence`` (a well-mixed hash, so neighbouring seeds give unrelated streams):

* worker ``i``'s private stream:           ``(seed, STREAM_WORKER, i)``
* the stream worker ``i`` shares with the
  server in round ``t`` (shared-seed RandK): ``(seed, STREAM_SHARED_ROUND, i, t)``
* the stream shared by all workers:         ``(seed, STREAM_ALL_WORKERS)``
* the initial point ``init=random``:        ``(seed, STREAM_INIT)``

A worker's stream does not depend on how many other workers there are, so worker ``i`` draws
the same numbers in the simulator and in a real ``torch.distributed`` run.
"""

from __future__ import annotations

import numpy as np
import torch

STREAM_WORKER = 0
STREAM_SHARED_ROUND = 1
STREAM_ALL_WORKERS = 2
STREAM_INIT = 3


def seed_from(*words: int) -> int:
    """A 63-bit seed derived from non-negative integers (order matters)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def generator(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded from ``words``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_from(*words))
    return gen


class WorkerRNG:
    """One private random stream per worker, drawn as a batch of shape (n, ...)."""

    def __init__(self, seed: int, n_workers: int, device: torch.device | str = "cpu"):
        self.seed = int(seed)
        self.n_workers = int(n_workers)
        self.device = torch.device(device)
        self.generators = [
            generator(self.seed, STREAM_WORKER, i, device=self.device) for i in range(n_workers)
        ]

    def uniform(self, d: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Row i holds d draws from U[0, 1) of worker i's stream; shape (n, d)."""
        # A loop over workers is unavoidable here: torch has no batched multi-generator draw,
        # and one stream per worker is what keeps the simulator faithful to a real cluster.
        # Filling the rows of one tensor in place draws the same numbers as torch.rand(d)
        # per worker without the copy torch.stack would make. The result is a fresh tensor
        # the caller owns (the natural quantizer computes in it).
        out = torch.empty((self.n_workers, d), dtype=dtype, device=self.device)
        for row, g in zip(out, self.generators, strict=True):
            row.uniform_(generator=g)
        return out

    def shared_round_generators(self, round_index: int) -> list[torch.Generator]:
        """Fresh generators, one per worker i, of the stream worker i shares with the server in
        this round (the server rebuilds the same one from ``(seed, i, round_index)``)."""
        return [
            generator(self.seed, STREAM_SHARED_ROUND, i, round_index, device=self.device)
            for i in range(self.n_workers)
        ]

    def shared_round_uniform(
        self, round_index: int, d: int, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Row i: d uniforms from the stream worker i shares with the server in this round."""
        return torch.stack(
            [
                torch.rand(d, generator=g, dtype=dtype, device=self.device)
                for g in self.shared_round_generators(round_index)
            ]
        )

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        for g, s in zip(self.generators, states, strict=True):
            g.set_state(s)
