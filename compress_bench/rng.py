"""Deterministic random streams.

Every stream is a ``torch.Generator`` (or, for raw bits, a NumPy PCG64) seeded from a tuple of
integers through NumPy's ``SeedSequence`` (a well-mixed hash, so neighbouring seeds give
unrelated streams):

* worker ``i``'s private stream:           ``(seed, STREAM_WORKER, i)``
* the stream worker ``i`` shares with the
  server in round ``t`` (shared-seed RandK): ``(seed, STREAM_SHARED_ROUND, i, t)``
* the stream shared by all workers:         ``(seed, STREAM_ALL_WORKERS)``
* the initial point ``init=random``:        ``(seed, STREAM_INIT)``
* the neural problems' data order, augmentation and split: ``(seed, STREAM_DATA_ORDER)``,
  ``(seed, STREAM_AUGMENT)``, ``(seed, STREAM_SPLIT)``; the model's initial weights
  ``(seed, STREAM_MODEL_INIT)``
* worker ``i``'s draws for tensor ``l`` of a layout in round ``t`` (the low-rank operators'
  Gaussian test matrices and fresh PowerSGD ``Q``): ``(seed, STREAM_WORKER_TENSOR, i, t, l)``,
  a fresh NumPy PCG64 per round drawn on the host (:meth:`Streams.tensor_gaussians`), so
  tensors of one shape compressed as one batch draw what one call per tensor draws, whatever
  the order; the stream all workers share for tensor ``l`` (PowerSGD's collective ``Q``):
  ``(seed, STREAM_ALL_WORKERS, l)`` (``(seed, STREAM_ALL_WORKERS, l, t)`` when drawn afresh in
  round ``t``)
* worker ``i``'s stream of raw random bits:  ``(seed, STREAM_WORKER_BITS, i)``, a NumPy PCG64;
  on the CPU, :meth:`WorkerRNG.uniform` and :meth:`WorkerRNG.random_bits` draw from it (on other
  devices they draw from the private torch stream)

A worker's stream does not depend on how many other workers there are, so worker ``i`` draws
the same numbers in the simulator and in a real ``torch.distributed`` run: ``Streams(seed,
workers=[i])`` builds only worker i's streams (rank i of a real run), and its row 0 draws what
row i of ``Streams(seed, workers=n)`` draws. Streams are passed to the operators and methods
each round, never owned by them, and ``get_state``/``set_state`` capture every position (a
checkpoint holds them).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

STREAM_WORKER = 0
STREAM_SHARED_ROUND = 1
STREAM_ALL_WORKERS = 2
STREAM_INIT = 3
STREAM_WORKER_BITS = 4
STREAM_DATA_ORDER = 5
STREAM_AUGMENT = 6
STREAM_SPLIT = 7
STREAM_MODEL_INIT = 8
STREAM_WORKER_TENSOR = 9


def seed_from(*words: int) -> int:
    """A 63-bit seed derived from non-negative integers (order matters)."""
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def generator(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded from ``words``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_from(*words))
    return gen


class Streams:
    """The private random streams of a set of workers, drawn as a batch of shape (n, ...).

    ``workers`` is a count n (workers 0..n-1, the simulator) or the ids of the workers this
    process runs (``[rank]`` in a real run); row j of every draw belongs to worker
    ``workers[j]`` and holds the same numbers whichever other workers are built beside it.
    """

    def __init__(self, seed: int, workers: int | Sequence[int], device: torch.device | str = "cpu"):
        self.seed = int(seed)
        ids = range(int(workers)) if isinstance(workers, numbers.Integral) else workers
        self.workers = tuple(int(i) for i in ids)
        if any(i < 0 for i in self.workers) or len(set(self.workers)) != len(self.workers):
            raise ValueError(f"worker ids must be distinct and >= 0, got {self.workers}")
        self.n_workers = len(self.workers)
        self.device = torch.device(device)
        self.generators = [
            generator(self.seed, STREAM_WORKER, i, device=self.device) for i in self.workers
        ]
        self.bit_generators = [
            np.random.PCG64(np.random.SeedSequence([self.seed, STREAM_WORKER_BITS, i]))
            for i in self.workers
        ]

    def uniform(self, d: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Row i holds d draws from U[0, 1) of worker i's stream; shape (n, d). A fresh tensor
        the caller owns.

        On the CPU a draw is ``r 2^-b`` with ``r`` uniform on ``{0, ..., 2^b - 1}`` from
        :meth:`random_bits` and ``b`` the dtype's significand width (24 for float32, 53 for
        float64): every representable multiple of 2^-b in [0, 1), equally likely, as
        ``torch.rand`` draws them, at a fraction of MT19937's cost. On other devices the
        worker's torch generator fills the row (Philox on CUDA is fast).
        """
        if self.device.type != "cpu":
            return self._torch_rows(d, dtype, lambda row, g: row.uniform_(generator=g))
        bits = 1 - int(math.log2(torch.finfo(dtype).eps))  # significand bits
        r = self.random_bits(d, bits)
        if r.element_size() == dtype.itemsize:
            u = r.view(dtype)
            u.copy_(r)  # in-place conversion: same size, same positions
        else:
            u = r.to(dtype)
        return u.mul_(2.0**-bits)  # exact: r < 2^bits is representable

    def random_bits(self, d: int, bits: int) -> torch.Tensor:
        """Row i holds d integers uniform on {0, ..., 2^bits - 1} from worker i's stream of raw
        bits; shape (n, d), int32 for ``bits <= 31`` and int64 for ``bits <= 63``. A fresh
        tensor the caller owns (natural compression computes its output in it).

        On the CPU the bits come from worker i's NumPy PCG64 stream: it yields 64 random bits
        in about the time torch's CPU generator (MT19937) takes for one float32 uniform, and
        that draw is most of the cost of a stochastic rounding. On other devices the worker's
        torch generator draws them.
        """
        if not 1 <= bits <= 63:
            raise ValueError(f"bits must be in [1, 63], got {bits}")
        wide = bits > 31
        if self.device.type != "cpu":
            int_dtype = torch.int64 if wide else torch.int32
            return self._torch_rows(
                d, int_dtype, lambda row, g: row.random_(0, 1 << bits, generator=g)
            )
        per_row = d if wide else (d + 1) // 2  # 64-bit words
        words = np.empty((self.n_workers, per_row), dtype=np.uint64)
        for row, g in zip(words, self.bit_generators, strict=True):
            row[:] = g.random_raw(per_row)
        # one tensor for all workers: the ops of a draw do not grow with the workers
        out = torch.from_numpy(words.view(np.int64 if wide else np.int32))
        if out.shape[1] != d:  # an odd d of 32-bit draws: the last word's upper half unused
            out = out[:, :d].contiguous()
        return out.bitwise_and_((1 << bits) - 1)

    def _torch_rows(self, d: int, dtype: torch.dtype, draw) -> torch.Tensor:
        """(n, d) tensor whose row i is filled in place by ``draw(row, generators[i])``: torch
        has no batched multi-generator draw, so one call per worker's stream."""
        out = torch.empty((self.n_workers, d), dtype=dtype, device=self.device)
        for row, g in zip(out, self.generators, strict=True):
            draw(row, g)
        return out

    def shared_round_generators(self, round_index: int, tensor: int = 0) -> list[torch.Generator]:
        """Fresh generators, one per worker i, of the stream worker i shares with the server in
        this round for tensor ``tensor`` of a layerwise layout (the server rebuilds the same
        one from ``(seed, i, round_index, tensor)``; tensor 0 is the whole vector's stream, so
        that a global operator draws what it always drew, and every other tensor its own)."""
        words = (round_index,) if tensor == 0 else (round_index, tensor)
        return [
            generator(self.seed, STREAM_SHARED_ROUND, i, *words, device=self.device)
            for i in self.workers
        ]

    def shared_round_uniform(
        self, round_index: int, d: int, dtype: torch.dtype = torch.float64, tensor: int = 0
    ) -> torch.Tensor:
        """Row i: d uniforms from the stream worker i shares with the server in this round
        (for tensor ``tensor``)."""
        return torch.stack(
            [
                torch.rand(d, generator=g, dtype=dtype, device=self.device)
                for g in self.shared_round_generators(round_index, tensor)
            ]
        )

    def tensor_gaussians(
        self, round_index: int, tensors: tuple[int, ...], rows: int, cols: int
    ) -> np.ndarray:
        """(n T, rows, cols) float64 i.i.d. N(0, 1) on the host: block ``i T + t`` from worker
        i's generator for tensor ``tensors[t]`` in this round, ``(seed, STREAM_WORKER_TENSOR,
        i, round_index, tensor)`` (a NumPy PCG64). Drawn on the host so that a stacked call of
        T tensors costs one copy to the device whatever T is (a torch generator per tensor is
        one kernel each), and a tensor draws the same numbers batched or alone."""
        out = np.empty((len(self.workers) * len(tensors), rows, cols))
        for j, i in enumerate(self.workers):
            for t, tensor in enumerate(tensors):
                words = [self.seed, STREAM_WORKER_TENSOR, i, round_index, tensor]
                bits = np.random.PCG64(np.random.SeedSequence(words))
                np.random.Generator(bits).standard_normal(out=out[j * len(tensors) + t])
        return out

    def all_workers_generator(self, tensor: int, *round_index: int) -> torch.Generator:
        """The generator every worker builds alike for tensor ``tensor`` (and, when given,
        round ``round_index``): ``(seed, STREAM_ALL_WORKERS, tensor[, round])``."""
        return generator(self.seed, STREAM_ALL_WORKERS, tensor, *round_index, device=self.device)

    def get_state(self) -> dict[str, Any]:
        """Every worker's stream positions as tensors and plain data (so that
        ``torch.load(weights_only=True)`` reads a checkpoint holding them): the torch
        generator states (uint8 tensors) and the PCG64 states (128-bit integers as decimal
        strings, which no tensor dtype holds)."""
        return {
            "seed": self.seed,
            "workers": list(self.workers),
            "torch": [g.get_state() for g in self.generators],
            "bits": [_pcg_to_plain(g.state) for g in self.bit_generators],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore positions from :meth:`get_state` of the same seed and workers."""
        if state.get("seed", self.seed) != self.seed or list(
            state.get("workers", self.workers)
        ) != list(self.workers):
            raise ValueError(
                f"stream state of seed {state.get('seed')} workers {state.get('workers')} "
                f"cannot be restored into seed {self.seed} workers {list(self.workers)}"
            )
        for g, s in zip(self.generators, state["torch"], strict=True):
            g.set_state(s)
        for g, s in zip(self.bit_generators, state["bits"], strict=True):
            g.state = _pcg_from_plain(s)


#: The name used before streams could be built for a subset of workers.
WorkerRNG = Streams


def _pcg_to_plain(state: dict[str, Any]) -> dict[str, Any]:
    inner = state["state"]
    return {
        "state": str(int(inner["state"])),
        "inc": str(int(inner["inc"])),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _pcg_from_plain(plain: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": "PCG64",
        "state": {"state": int(plain["state"]), "inc": int(plain["inc"])},
        "has_uint32": int(plain["has_uint32"]),
        "uinteger": int(plain["uinteger"]),
    }
