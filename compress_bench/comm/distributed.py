"""The torch.distributed communicator: one process (rank) per worker, messages moved between
processes by collectives (gloo on the CPU, NCCL on GPUs).

Each rank holds one worker's row (``n_local = 1``) of a job of ``world`` workers, the
rank's index being the worker's. What crosses the process boundary, per call:

  dense message (every coordinate sent)     one ``all_gather`` of the (d,) values
  fixed-size sparse message (TopK, RandK,   one ``all_gather`` of one flat buffer: the k
    the md_* family, per tensor or not)       values, then the k indices, in the run's dtype
                                              (indices reinterpreted bit for bit, int64 in a
                                              float64 run, int32 in a float32 one)
  variable-size sparse message              the counts first (``all_gather`` of one integer),
                                              then the buffers padded to the largest
                                              (``all_gather`` refuses uneven sizes on gloo)
  sign message (majority vote)              one ``all_gather`` of int8 signs
  ``all_reduce_mean`` (PowerSGD's factors)  one ``all_gather`` of the rank's rows

Every call gathers the rows and reduces them with the simulator's own expression (``mean``
or ``sum`` over dim 0 of the (world, d) rows), so a run over n ranks computes the simulator's
numbers with n workers bit for bit, in float64 and float32 alike; an ``all_reduce`` sums in
the backend's order instead. The price is world x d memory per call and (world - 1) x d
bytes received per rank, which a tool that compares compressors can pay on a few ranks.
``reduce="all_reduce"`` (``dist_reduce=all_reduce``) averages dense messages and
``all_reduce_mean`` by one all_reduce instead: 2 (world - 1) / world x d bytes per rank on a
ring, the numbers equal to the simulator's to rounding (about 1e-15 relative per round in
float64; tested to 1e-9 over whole runs). Sparse and sign messages are gathered either way.

The values travel in the run's dtype, not in the message's wire format (32-bit floats,
ceil(log2 d)-bit indices, quantized symbols: ``Message.bits``); ``bytes_sent`` counts what
this rank really put on the wire (its send buffers: the gather moves the same buffer to
every other rank), so that the computed bits and the real bytes stand side by side. The
reference encoder of the wire format is :mod:`compress_bench.compressors.wire`.

Index extraction reads the mask's nonzero entries (a host sync): free on the CPU, one stall
per call on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from compress_bench.compressors.base import Message

_INDEX_DTYPE = {torch.float64: torch.int64, torch.float32: torch.int32}


class TorchDistributedCommunicator:
    """The :class:`~compress_bench.comm.base.Communicator` of a torch.distributed rank (see
    the module docstring). ``group``: the process group (None: the default one)."""

    n_local: int | None = 1

    def __init__(self, group: dist.ProcessGroup | None = None, reduce: str = "gather"):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised in this process")
        if reduce not in ("gather", "all_reduce"):
            raise ValueError(f"reduce must be gather or all_reduce, got {reduce!r}")
        self.group = group
        #: "all_reduce": dense messages and all_reduce_mean by one all_reduce (the module
        #: docstring says what that trades)
        self.reduce = reduce
        self.world: int | None = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        #: bytes this rank has put on the wire so far (its send buffers), and collectives
        self.bytes_sent = 0
        self.collectives = 0
        self.metric_bytes = 0  # the run loop's gathers (metrics, bit counts), apart

    # -- the protocol -------------------------------------------------------------------

    def mean(self, message: Message) -> torch.Tensor:
        """(1/world) sum_i values_i, shape (d,), every rank the same numbers."""
        if self.reduce == "all_reduce" and message.kept is None:
            return self._all_reduce_mean(message.values.reshape(-1))
        return self.gather_rows(message).mean(dim=0)

    def all_reduce_mean(self, X: torch.Tensor) -> torch.Tensor:
        """This rank's rows replaced by the mean over every worker's rows, shape kept."""
        if self.reduce == "all_reduce":
            return self._all_reduce_mean(X.reshape(X.shape[1:])).unsqueeze(0).expand_as(X)
        # X's rows are this rank's workers: every rank's, concatenated, are the simulator's X
        rows = self._gather_equal(X.contiguous(), concatenate=True)
        return rows.mean(dim=0, keepdim=True).expand_as(X)

    def all_gather(self, payload: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every worker's payload (this rank holds one), of any sizes: sizes first, then the
        buffers padded to the largest."""
        (mine,) = payload
        flat = mine.reshape(-1)
        sizes = self._sizes(flat.numel())
        buffers = self._gather_padded(flat, sizes)
        return [b[:s] for b, s in zip(buffers, sizes, strict=True)]

    def sum_signs(self, message: Message) -> torch.Tensor:
        """sum_i values_i of sign messages (values in {-1, 0, 1}), shape (d,)."""
        signs = message.values.reshape(-1).to(torch.int8)
        rows = self._gather_equal(signs).to(message.values.dtype)
        return rows.sum(dim=0)

    # -- what the run loop reads (metrics, bit counts): not the method's traffic ------------

    def gather_metric(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of ``t`` concatenated along dim 0, the simulator's (n, ...)
        tensor; counted in ``metric_bytes``, not ``bytes_sent``."""
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t.contiguous(), group=self.group)
        self.metric_bytes += t.numel() * t.element_size()
        return torch.cat(out)

    def sum_ints(self, values: tuple[int, ...]) -> tuple[int, ...]:
        """Host integers summed over the ranks (a round's bits), exact in int64."""
        total = self.gather_metric(torch.tensor([values], dtype=torch.int64)).sum(dim=0)
        return tuple(int(v) for v in total.tolist())

    # -- what checkpoints move (host objects, off the round's path) ------------------------

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank: a checkpoint's
        per-rank method state and streams, gathered only on the rounds that write one."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (the others pass None): the checked resume point,
        or the one line that refused it, so that every rank starts or stops together."""
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def max_int(self, value: int) -> int:
        """max over the ranks of a host integer: whether any rank holds a signal."""
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return int(t[0])

    # -- moving messages -----------------------------------------------------------------

    def gather_rows(self, message: Message) -> torch.Tensor:
        """Every worker's decoded row, (world, d), from this rank's message (1, d)."""
        values = message.values
        if values.shape[0] != 1:
            raise ValueError(f"a rank holds one worker's row, got {values.shape[0]}")
        row = values[0]
        if message.kept is None:
            return self._gather_equal(row.contiguous())
        kept = message.sent()[0]
        indices = kept.nonzero().reshape(-1)  # a host sync: see the module docstring
        index_dtype = _INDEX_DTYPE.get(row.dtype)
        if index_dtype is None:
            raise ValueError(f"values of dtype {row.dtype} cannot carry their indices")
        buffer = torch.cat([row[indices], indices.to(index_dtype).view(row.dtype)])
        if message.fixed is not None:  # every rank sends the same count: no size exchange
            sizes = [buffer.numel()] * self.world
            buffers = list(self._gather_equal(buffer).unbind(0))
        else:
            sizes = self._sizes(buffer.numel())
            buffers = self._gather_padded(buffer, sizes)
        rows = torch.zeros(self.world, row.numel(), dtype=row.dtype, device=row.device)
        for i, (b, size) in enumerate(zip(buffers, sizes, strict=True)):
            count = size // 2
            where = b[count:size].view(index_dtype).to(torch.int64)
            rows[i].index_copy_(0, where, b[:count])
        return rows

    def _gather_equal(self, t: torch.Tensor, concatenate: bool = False) -> torch.Tensor:
        """(world, *t.shape): every rank's ``t`` (same shape everywhere); ``concatenate``:
        along t's first dimension instead."""
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t, group=self.group)
        self._count(t)
        return torch.cat(out) if concatenate else torch.stack(out)

    def _all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        """(1/world) sum over the ranks of ``t``: one all_reduce (``bytes_sent`` counts the
        buffer once, as for a gather: the rank's contribution, not the ring's forwarding)."""
        total = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        self._count(total)
        return total / self.world

    def _sizes(self, size: int) -> list[int]:
        """Every rank's buffer length (one small all_gather; read on the host)."""
        mine = torch.tensor([size], dtype=torch.int64)
        sizes = self._gather_equal(mine)
        return [int(s) for s in sizes.reshape(-1).tolist()]

    def _gather_padded(self, flat: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        longest = max(sizes)
        padded = torch.zeros(longest, dtype=flat.dtype, device=flat.device)
        padded[: flat.numel()] = flat
        return list(self._gather_equal(padded).unbind(0))

    def _count(self, t: torch.Tensor) -> None:
        self.bytes_sent += t.numel() * t.element_size()
        self.collectives += 1
