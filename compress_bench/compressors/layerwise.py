"""``layerwise(op_for, layout)``: an operator per parameter tensor, built from its (name, shape).

Spec 0.8 (the thesis ResNet code): tensor l of ``numel_l`` entries is compressed by its own
operator ``op_for(name_l, shape_l)``: a sparsifier built for it keeps the integer
``k_l = ceil(ratio * numel_l)`` (a ceiling, unlike the global floor of spec 0.3; computed once,
:meth:`Compressor.for_tensor`), a low-rank operator takes the tensor's matrix shape. Worker
state is kept per tensor (the state is the tuple of the tensors' states, the same structure
whatever the batching below), and bits are summed over tensors.

Equal shapes, one batch: tensors of one shape whose operators are equal and tagged
``stackable`` are compressed by one call on their n T stacked rows (ResNet18 has 17 shapes
among its 62 tensors; row ``i T + t`` is worker i's tensor t), gathered by one indexing of
the (n, d - m + 1, m) window view of x at the tensors' offsets and written back the same way, so
the number of kernels per round does not grow with the tensors of a shape (PyTorch's
``batch_tensors_with_same_shape`` and epfml's ``_matrices_per_shape``, for the idea). A stacked
call gives, row for row, what one call per tensor gives: stackable operators are row-wise, and
the random ones among them draw per (worker, round, tensor) (see Tags.stackable). Operators
that draw from a worker's sequential stream (RandK), query the objective or are not equal
run one call per tensor, in layout order, as before, which keeps their numbers. The gather
is one copy of the group (a call per tensor reads its columns in place): on the CPU, where
launches are cheap, stacking costs time, so there each tensor gets its own call unless
``stack=True`` (the numbers are the same); stacking is for accelerators.

The message keeps its pieces (:class:`Concatenated`): each tensor's or each stacked group's
message with the columns it fills; the (n, d) values are assembled on first use only, and
``parts`` gives the per-tensor messages (each with its own wire format: a tensor's indices are
ceil(log2 numel_l) bits) on demand, for the wire and the payload.

Constants: compressing the blocks of x independently gives
E||op(x) - x||^2 = sum_l E||op_l(x_l) - x_l||^2 <= (1 - 1/max_l delta_l) ||x||^2, so delta is
the largest of the tensors' deltas, and likewise omega the largest omega.

The importance-based operators (needs_objective) query the objective of their own tensor with
the other tensors fixed at x (spec 12, variant ``thesis_resnet``): their problem is a
:class:`BlockView` of the full one. With ``importance.scope=joint`` one solve over the whole
model finds every tensor's w instead (one forward/backward per step rather than one per tensor
and step), and each tensor's operator selects with its block of it.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch

from compress_bench.compressors.base import (
    Message,
    RoundContext,
    per_worker_constant,
    tensor_k,
)
from compress_bench.compressors.operator import Constants, Display, Tags
from compress_bench.compressors.paths import cpu_fast
from compress_bench.layout import Layout
from compress_bench.rng import Streams

__all__ = ["BlockView", "Concatenated", "Layerwise", "layerwise", "tensor_k", "tensor_ratio"]


def tensor_ratio(ratio: float, numel: int) -> float:
    """The ratio that makes a compressor keep k_l = :func:`tensor_k` of numel entries."""
    return min(tensor_k(ratio, numel), numel) / numel


class BlockView:
    """The objective of one tensor, the others fixed at x: what an importance-based operator
    of that tensor evaluates (``grad`` and ``loss_and_grad`` on (n, numel_l) points)."""

    def __init__(self, problem: Any, columns: slice, x: torch.Tensor):
        self.problem, self.columns, self.x = problem, columns, x
        self.n_workers = problem.n_workers
        self.d = columns.stop - columns.start

    def _embed(self, X: torch.Tensor) -> torch.Tensor:
        full = self.x.expand(X.shape[0], -1).clone()
        full[:, self.columns] = X
        return full

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        return self.problem.grad(self._embed(X))[:, self.columns]

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, grads = self.problem.loss_and_grad(self._embed(X))
        return losses, grads[:, self.columns]


@dataclass(frozen=True)
class Group:
    """Tensors compressed by one call: their indices in the layout, and, for a stacked group
    (T > 1), the offsets of their first columns (:class:`Windows`); one tensor: its slice."""

    tensors: tuple[int, ...]
    numel: int
    columns: slice | Windows

    @property
    def stacked(self) -> bool:
        return len(self.tensors) > 1


@dataclass(frozen=True)
class Windows:
    """The columns of T tensors of ``numel`` entries starting at ``offsets`` (tensor-major):
    ``take`` and ``put`` index the window view ``x.unfold(-1, numel, 1)`` (one indexing op
    whatever T, and block copies, several times faster on the CPU than an index per
    column)."""

    offsets: torch.Tensor  # (T,) int64, on the CPU
    numel: int
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)

    def on(self, device: torch.device) -> torch.Tensor:
        """The offsets on ``device``, copied there once (not every round)."""
        if device not in self._on_device:
            self._on_device[device] = self.offsets.to(device)
        return self._on_device[device]

    def take(self, X: torch.Tensor) -> torch.Tensor:
        """(..., T, numel): the tensors' columns of X (..., d), a new tensor."""
        return X.unfold(-1, self.numel, 1)[..., self.on(X.device), :]

    def put(self, out: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` (..., T, numel) into the tensors' columns of ``out`` (..., d)."""
        out.unfold(-1, self.numel, 1)[..., self.on(out.device), :] = values


class GroupComm:
    """The communicator seen by a stacked call of T tensors: row ``i T + t`` holds worker i's
    tensor t, and a collective averages over the workers only (never across tensors)."""

    def __init__(self, comm: Any, T: int):
        self.comm, self.T = comm, T

    def all_reduce_mean(self, X: torch.Tensor) -> torch.Tensor:
        per_worker = X.reshape(-1, self.T, *X.shape[1:])  # (n, T, ...): a view
        return self.comm.all_reduce_mean(per_worker).reshape(X.shape)


class Layerwise:
    """One operator per tensor of ``layout``, built by ``op_for(name, shape)`` (module doc)."""

    def __init__(
        self,
        op_for: Callable[[str, tuple[int, ...]], Any],
        layout: Layout,
        stack: bool | None = None,
    ):
        self.layout = layout
        self.op_for = op_for
        # None: stacked groups on the portable path (accelerators, paths.portable), one call
        # per tensor on the CPU, where kernel launches are cheap and the gather copy of a
        # stacked group costs more than it saves (TopK + power-of-two over ResNet18, n = 2:
        # about 300 ms stacked, 200 ms per tensor); the numbers are the same either way.
        # True/False force one path.
        self.stack = stack
        self.parts = tuple(op_for(n, s) for n, s in zip(layout.names, layout.shapes, strict=True))
        first = self.parts[0].tags
        self.tags = Tags(
            unbiased=all(p.tags.unbiased for p in self.parts),
            deterministic=all(p.tags.deterministic for p in self.parts),
            zero_to_zero=all(p.tags.zero_to_zero for p in self.parts),
            sign_only=first.sign_only,
            needs_objective=any(p.tags.needs_objective for p in self.parts),
            collective=any(p.tags.collective for p in self.parts),
            stackable=False,  # a layerwise operator already batches what it can
        )
        self.groups = self._groups()

    def _groups(self) -> tuple[Group, ...]:
        """Tensors of one shape with equal stackable operators (compared by their pickled
        configuration) form a group; every other tensor is a group of its own. Groups are in
        the order of their first tensor."""
        keys: dict[Any, list[int]] = {}
        for index, (shape, part) in enumerate(zip(self.layout.shapes, self.parts, strict=True)):
            key: Any = index
            if part.tags.stackable and not part.tags.needs_objective:
                try:
                    key = (shape, pickle.dumps(part))
                except (pickle.PicklingError, TypeError, AttributeError):
                    key = index
            keys.setdefault(key, []).append(index)
        slices = self.layout.slices()
        groups = []
        for members in keys.values():
            numel = self.layout.numels[members[0]]
            if len(members) == 1:
                columns: slice | Windows = slices[members[0]]
            else:
                offsets = torch.tensor([slices[t].start for t in members], dtype=torch.int64)
                columns = Windows(offsets, numel)
            groups.append(Group(tuple(members), numel, columns))
        return tuple(groups)

    @cached_property
    def singles(self) -> tuple[Group, ...]:
        """Every tensor a group of its own (one call per tensor), in layout order."""
        slices = self.layout.slices()
        return tuple(Group((t,), numel, slices[t]) for t, numel in enumerate(self.layout.numels))

    @cached_property
    def display(self) -> Display:
        inner = self.parts[0].display
        return replace(
            inner,
            name=f"layerwise({inner.name})",
            display_name=f"layerwise({inner.display_name})",
            label=f"{inner.label} per tensor",
        )

    def constants(self, d: int) -> Constants:
        per_tensor = [p.constants(m) for p, m in zip(self.parts, self.layout.numels, strict=True)]
        omegas = [c.omega for c in per_tensor]
        deltas = [c.delta for c in per_tensor]
        return Constants(
            omega=None if any(w is None for w in omegas) else max(omegas),
            delta=None if any(x is None for x in deltas) else max(deltas),
            lr_factor=min(c.lr_factor for c in per_tensor),
            class_constant=all(c.class_constant for c in per_tensor),
            thesis_bits=per_tensor[0].thesis_bits,
        )

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype):
        if d != self.layout.d:
            raise ValueError(f"layout has d = {self.layout.d}, the operator was given d = {d}")
        return tuple(
            p.init_state(n_workers, m, device, dtype)
            for p, m in zip(self.parts, self.layout.numels, strict=True)
        )

    def _context(
        self, ctx: RoundContext | None, columns: slice, tensor: int
    ) -> RoundContext | None:
        """Tensor ``tensor``'s view of the round: its own shared stream and, for the
        importance-based operators, its block of x and of the objective."""
        if ctx is None:
            return None
        if not self.parts[tensor].tags.needs_objective or ctx.x is None:
            return replace(ctx, tensor=tensor)
        view = BlockView(ctx.objective, columns, ctx.x)
        return replace(ctx, x=ctx.x[columns], objective=view, tensor=tensor)

    def _joint_solver(self):
        """The importance solver when it moves every tensor's w at once (scope joint)."""
        if not self.tags.needs_objective:
            return None
        solver = getattr(self.parts[0].compressor, "solver", None)
        return solver if solver is not None and solver.scope == "joint" else None

    def _joint_log_weights(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext | None
    ) -> torch.Tensor | None:
        """One solve over all tensors, each on its own simplex (one forward/backward of the
        whole model per step), on the rounds the solver runs; None otherwise (the tensors'
        operators then keep their last w)."""
        solver = self._joint_solver()
        if solver is None or ctx is None or ctx.x is None:
            return None
        zs = [p.compressor_state(s)["log_weights"] for p, s in zip(self.parts, state, strict=True)]
        previous = None if any(z is None for z in zs) else torch.cat(zs, dim=1)
        if not solver.due(previous, ctx.round_index):
            return None
        blocks = tuple(self.layout.slices())
        return solver.solve(previous, ctx.x, G, ctx.lr, ctx.objective, rng, blocks)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext, comm: Any = None
    ) -> tuple[Message, Any]:
        joint = self._joint_log_weights(G, state, rng, ctx)
        pieces: list[Piece] = []
        states: list[Any] = list(state)
        n = G.shape[0]
        stacking = self.stack if self.stack is not None else not cpu_fast(G)
        # stacked groups leave an elementwise quantizer to one pass over the assembled
        # message (a pass per group otherwise: 8 ops each, 17 groups for ResNet18)
        tail = self._shared_tail if stacking else None
        for group in self.groups if stacking else self.singles:
            first = group.tensors[0]
            part = self.parts[first]
            compress = part.select if tail is not None else part.compress
            part_comm = comm if part.tags.collective else None
            if not group.stacked:
                part_ctx = self._context(ctx, group.columns, first)
                if joint is not None:
                    part_ctx = replace(part_ctx, log_weights=joint[:, group.columns])
                args = (part_comm,) if part_comm is not None else ()
                message, states[first] = compress(
                    G[:, group.columns], state[first], rng, part_ctx, *args
                )
                pieces.append(Piece(group, message))
                continue
            T, m = len(group.tensors), group.numel
            rows = group.columns.take(G).view(n * T, m)  # row i T + t: worker i's tensor t
            stacked_state = stack_states([state[t] for t in group.tensors])
            part_ctx = None if ctx is None else replace(ctx, tensor=first, group=group.tensors)
            args = (GroupComm(part_comm, T),) if part_comm is not None else ()
            message, new_state = compress(rows, stacked_state, rng, part_ctx, *args)
            for t, s in zip(group.tensors, unstack_state(new_state, T), strict=True):
                states[t] = s
            pieces.append(Piece(group, message))
        if tail is not None:
            finish = [lambda m, p=p: p.finish(m, rng) for p in self.parts]
            return Concatenated(tuple(pieces), n, self.layout, tail, finish), tuple(states)
        return merge(pieces, n, self.layout), tuple(states)

    @cached_property
    def _shared_tail(self) -> Any:
        """The first tensor's chain when every tensor's operator is a chain ending in the same
        elementwise quantizers (``Chain.elementwise_tail``, compared by their pickled
        configuration), else None: its quantizers then run once, on the assembled message."""
        chains = [p for p in self.parts if getattr(p, "elementwise_tail", False)]
        if len(chains) != len(self.parts) or not chains[0].quantizers:
            return None
        try:
            tails = {pickle.dumps(p.quantizers) for p in chains}
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        return chains[0] if len(tails) == 1 else None

    def on_layout(self, layout: Layout) -> Layerwise:
        """The same per-tensor operators on another layout (the conformance checks grow the
        tensors to see that the ops of a round do not)."""
        return Layerwise(self.op_for, layout, self.stack)

    def contractive(self, d: int) -> Layerwise:
        """Each tensor's operator in its contractive form (Chain.contractive)."""
        scaled = [p.contractive(m) for p, m in zip(self.parts, self.layout.numels, strict=True)]
        if all(s is p for s, p in zip(scaled, self.parts, strict=True)):
            return self
        out = copy.copy(self)
        out.parts = tuple(scaled)
        out.__dict__.pop("display", None)
        return out

    def __repr__(self) -> str:
        return f"layerwise({self.parts[0]!r}, tensors={len(self.layout)})"


def stack_states(states: list[Any]) -> Any:
    """The tensors' states (n rows each) as one state of n T rows, row ``i T + t`` worker i's
    row of tensor t; None, numbers and strings must agree and are kept."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        stacked = torch.stack(states, dim=1)  # (n, T, ...)
        return stacked.reshape(-1, *first.shape[1:])
    if isinstance(first, tuple | list):
        return type(first)(stack_states(list(parts)) for parts in zip(*states, strict=True))
    if isinstance(first, dict):
        return {key: stack_states([s[key] for s in states]) for key in first}
    return first


def unstack_state(state: Any, T: int) -> list[Any]:
    """The inverse of :func:`stack_states`: T states of n rows (views)."""
    if isinstance(state, torch.Tensor):
        return list(state.reshape(-1, T, *state.shape[1:]).unbind(dim=1))
    if isinstance(state, tuple | list):
        columns = [unstack_state(part, T) for part in state]
        return [type(state)(column[t] for column in columns) for t in range(T)]
    if isinstance(state, dict):
        columns = {key: unstack_state(value, T) for key, value in state.items()}
        return [{key: columns[key][t] for key in state} for t in range(T)]
    return [state] * T


@dataclass(frozen=True)
class Piece:
    """One call's message and the group of tensors it holds (T n rows when stacked)."""

    group: Group
    message: Message

    def values(self, n: int) -> torch.Tensor:
        """(n, T m) values, tensor-major columns (those of ``group.columns``): a view."""
        values = self.message.values
        if not self.group.stacked:
            return values
        return values.view(n, len(self.group.tensors) * self.group.numel)

    def per_worker(self, field: torch.Tensor, n: int) -> torch.Tensor:
        """An (n T,) per-row field summed over the group's tensors: (n,)."""
        if not self.group.stacked:
            return field
        return field.view(n, len(self.group.tensors)).sum(dim=1)

    def tensor_messages(self, n: int) -> list[tuple[int, Message]]:
        """(tensor, message of n rows) for each tensor of the group."""
        if not self.group.stacked:
            return [(self.group.tensors[0], self.message)]
        msg, out = self.message, []
        T = len(self.group.tensors)
        for t, tensor in enumerate(self.group.tensors):
            rows = slice(t, n * T, T)  # worker i's tensor t is row i T + t
            out.append(
                (
                    tensor,
                    replace(
                        msg,
                        values=msg.values[rows],
                        value_count=msg.value_count[rows],
                        side_bits=msg.side_bits[rows],
                        kept=None if msg.kept is None else msg.kept[rows],
                        scalar=None if msg.scalar is None else msg.scalar[rows],
                        factors=None
                        if msg.factors is None
                        else tuple(f[rows] for f in msg.factors),
                    ),
                )
            )
        return out


class Concatenated(Message):
    """The tensors' messages side by side (:func:`merge`): counts and bits are summed per
    worker at once, while the (n, d) ``values`` and ``kept`` are assembled on first use only.
    A round of DCGD never needs them: the communicator averages block by block
    (:meth:`blocks`), which saves copying the whole (n, d) message once more (for ResNet18,
    89 MB of values and 22 MB of mask per round at n = 2). ``parts`` (the per-tensor messages,
    in layout order) is built on demand too."""

    def __init__(
        self,
        pieces: tuple[Piece, ...],
        n: int,
        layout: Layout,
        tail: Any = None,
        finish: list[Callable[[Message], Message]] | None = None,
    ):
        # the same operator on every tensor; an elementwise tail (see Layerwise.compress) sets
        # the bits per value of the pieces, which hold the compressor's messages
        value_bits = pieces[0].message.value_bits
        if tail is not None and tail.value_bits is not None:
            value_bits = tail.value_bits
        fixed = None
        if all(p.message.fixed is not None for p in pieces):  # sizes known on the host
            T = [len(p.group.tensors) for p in pieces]
            fixed = (
                sum(t * p.message.fixed[0] for t, p in zip(T, pieces, strict=True)),
                sum(t * p.message.fixed[1] for t, p in zip(T, pieces, strict=True)),
            )
        for key, value in (
            ("value_bits", value_bits),
            ("scalar", None),
            ("format", None),
            ("fixed", fixed),
        ):
            object.__setattr__(self, key, value)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "tail", tail)
        object.__setattr__(self, "finish", finish)

    # counts and bits are summed over the pieces when first read (from the host sizes of
    # fixed-size pieces: no op at all), not in every round whether read or not
    @cached_property
    def value_count(self) -> torch.Tensor:  # noqa: D102 - see Message
        if self.fixed is not None:
            return per_worker_constant(self.n, self.fixed[0], self._device)
        return sum(p.per_worker(p.message.value_count, self.n) for p in self.pieces)

    @cached_property
    def side_bits(self) -> torch.Tensor:  # noqa: D102 - see Message
        if self.fixed is not None:
            return per_worker_constant(self.n, self.fixed[1], self._device)
        bits = sum(p.per_worker(p.message.bits, self.n) for p in self.pieces)
        return bits - self.value_count * self.value_bits

    @property
    def _device(self) -> torch.device:
        return self.pieces[0].message.values.device

    @property
    def d(self) -> int:
        return self.layout.d

    @cached_property
    def parts(self) -> tuple[Message, ...]:  # noqa: D102 - see the class docstring
        found = dict(t for p in self.pieces for t in p.tensor_messages(self.n))
        if self.finish is not None:  # the pieces hold the compressor's messages
            return tuple(self.finish[t](found[t]) for t in range(len(self.layout)))
        return tuple(found[t] for t in range(len(self.layout)))

    def _assemble(self, field) -> torch.Tensor:
        blocks = [(p.group, field(p)) for p in self.pieces]
        if all(not g.stacked for g, _ in blocks) and all(
            a.columns.stop == b.columns.start
            for (a, _), (b, _) in zip(blocks, blocks[1:], strict=False)
        ):
            return torch.cat([v for _, v in blocks], dim=1)
        first = blocks[0][1]
        out = torch.empty(self.n, self.d, dtype=first.dtype, device=first.device)
        for group, v in blocks:
            if group.stacked:
                group.columns.put(out, v.view(self.n, len(group.tensors), group.numel))
            else:
                out[:, group.columns] = v
        return out

    @cached_property
    def values(self) -> torch.Tensor:  # noqa: D102 - see the class docstring
        values = self._assemble(lambda p: p.values(self.n))
        return values if self.tail is None else self.tail.finish_values(values)

    @cached_property
    def kept(self) -> torch.Tensor | None:
        if all(p.message.kept is None for p in self.pieces):
            return None
        return self._assemble(
            lambda p: Piece(p.group, _as_message(p.message.sent())).values(self.n)
        )

    def blocks(self) -> list[tuple[Any, torch.Tensor]] | None:
        """(columns, values) per piece, never copied: a slice and (n, width) values for one
        tensor, :class:`Windows` and (n, T, m) values for a stacked group."""
        if "values" in self.__dict__ or self.tail is not None:
            return None  # assembled already, or quantized in one pass once assembled
        out: list[tuple[Any, torch.Tensor]] = []
        for p in self.pieces:
            values = p.message.values
            if p.group.stacked:
                T = len(p.group.tensors)
                out.append((p.group.columns, values.view(self.n, T, p.group.numel)))
            else:
                out.append((p.group.columns, values))
        return out


def _as_message(mask: torch.Tensor) -> Message:
    return Message(mask, mask.new_zeros(0), 0, mask.new_zeros(0))


def merge(pieces: list[Piece], n: int, layout: Layout) -> Message:
    """The tensors' messages side by side (see :class:`Concatenated`); one tensor's message is
    returned as it is, with ``parts`` holding it (the wire sends the parts one after the
    other)."""
    if len(pieces) == 1 and not pieces[0].group.stacked:
        message = pieces[0].message
        return replace(message, parts=(message,))
    return Concatenated(tuple(pieces), n, layout)


def layerwise(
    op_for: Callable[[str, tuple[int, ...]], Any], layout: Layout, stack: bool | None = None
) -> Layerwise:
    """``op_for(name, shape)`` applied per tensor of ``layout`` (see :class:`Layerwise`;
    ``stack``: None chooses by device, True/False force stacked groups or one call per
    tensor)."""
    return Layerwise(op_for, layout, stack)
