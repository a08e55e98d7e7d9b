"""``layerwise(build, layout, ratio)``: an operator applied to each parameter tensor on its own.

Spec 0.8 (the thesis ResNet code): tensor l of ``numel_l`` entries is compressed by its own
operator with ``k_l = ceil(ratio * numel_l)`` (a ceiling, unlike the global floor of spec
0.3), worker state is kept per tensor, and bits are summed over tensors. The state is the
tuple of the tensors' states; the message is the concatenation of the tensors' messages (which
it keeps in ``Message.parts``, each with its own wire format: a tensor's indices are
ceil(log2 numel_l) bits).

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
import math
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import Any

import torch

from compress_bench.compressors.base import Message, RoundContext
from compress_bench.compressors.chain import Chain, Tags
from compress_bench.layout import Layout
from compress_bench.rng import Streams


def tensor_k(ratio: float, numel: int) -> int:
    """k_l = ceil(ratio * numel), at least 1 (spec 0.8); the product is rounded to 9 decimals
    first, as spec 0.3's floor is, so 0.29 * 100 gives 29."""
    return max(1, math.ceil(round(ratio * numel, 9)))


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


class Layerwise:
    """One operator per tensor of ``layout``, built by ``build(ratio_l)`` (see module doc)."""

    def __init__(self, build: Callable[[float], Chain], layout: Layout, ratio: float):
        self.layout = layout
        self.ratio = float(ratio)
        self.parts = tuple(build(tensor_ratio(ratio, m)) for m in layout.numels)
        first = self.parts[0].tags
        self.tags = Tags(
            unbiased=all(p.tags.unbiased for p in self.parts),
            deterministic=all(p.tags.deterministic for p in self.parts),
            zero_to_zero=all(p.tags.zero_to_zero for p in self.parts),
            sign_only=first.sign_only,
            needs_objective=first.needs_objective,
            collective=first.collective,
        )

    @property
    def unbiased(self) -> bool:
        return self.tags.unbiased

    @property
    def name(self) -> str:
        return f"layerwise({self.parts[0].name})"

    @property
    def display_name(self) -> str:
        return f"layerwise({self.parts[0].display_name})"

    @property
    def label(self) -> str:
        return f"{self.parts[0].label} per tensor"

    @property
    def family(self) -> str:
        return self.parts[0].family

    @property
    def colour(self) -> str | None:
        return self.parts[0].colour

    @property
    def compressor_label(self) -> str:
        return self.parts[0].compressor_label

    def thesis_bits_defined(self) -> bool:
        return self.parts[0].thesis_bits_defined()

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
        if not self.tags.needs_objective or ctx.x is None:
            return replace(ctx, tensor=tensor)
        view = BlockView(ctx.problem, columns, ctx.x)
        return replace(ctx, x=ctx.x[columns], problem=view, tensor=tensor)

    def _joint_solver(self):
        """The importance solver when it moves every tensor's w at once (scope joint)."""
        if not self.tags.needs_objective:
            return None
        solver = self.parts[0].compressor.solver
        return solver if solver.scope == "joint" else None

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
        return solver.solve(previous, ctx.x, G, ctx.lr, ctx.problem, rng, blocks)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        joint = self._joint_log_weights(G, state, rng, ctx)
        messages, states = [], []
        slices = self.layout.slices()
        for tensor, (part, columns, part_state) in enumerate(
            zip(self.parts, slices, state, strict=True)
        ):
            part_ctx = self._context(ctx, columns, tensor)
            if joint is not None:
                part_ctx = replace(part_ctx, log_weights=joint[:, columns])
            message, new_state = part.compress(G[:, columns], part_state, rng, part_ctx)
            messages.append(message)
            states.append(new_state)
        return merge(messages), tuple(states)

    def _constant(self, name: str) -> float | None:
        values = [getattr(p, name)(m) for p, m in zip(self.parts, self.layout.numels, strict=True)]
        return None if any(v is None for v in values) else max(values)

    def omega(self, d: int) -> float | None:
        return self._constant("omega")

    def contraction(self, d: int) -> float | None:
        return self._constant("contraction")

    def has_class_constant(self, d: int) -> bool:
        return all(
            p.has_class_constant(m) for p, m in zip(self.parts, self.layout.numels, strict=True)
        )

    def lr_factor(self, d: int) -> float:
        return min(p.lr_factor(m) for p, m in zip(self.parts, self.layout.numels, strict=True))

    def contractive(self, d: int) -> Layerwise:
        """Each tensor's operator in its contractive form (Chain.contractive)."""
        scaled = [p.contractive(m) for p, m in zip(self.parts, self.layout.numels, strict=True)]
        if all(s is p for s, p in zip(scaled, self.parts, strict=True)):
            return self
        out = copy.copy(self)
        out.parts = tuple(scaled)
        return out

    def __repr__(self) -> str:
        return f"layerwise({self.parts[0]!r}, tensors={len(self.layout)}, ratio={self.ratio})"


class Concatenated(Message):
    """The tensors' messages side by side (:func:`merge`): counts and bits are summed per
    worker at once, while the (n, d) ``values`` and ``kept`` are concatenated on first use
    only. A round of DCGD never needs them: the workers' mean is taken per tensor
    (:meth:`worker_mean`), which saves copying the whole (n, d) message once more (for
    ResNet18, 89 MB of values and 22 MB of mask per round at n = 2)."""

    def __init__(self, parts: tuple[Message, ...]):
        count = sum(m.value_count for m in parts)
        bits = sum(m.bits for m in parts)
        value_bits = parts[0].value_bits  # the same operator on every tensor
        for key, value in (
            ("value_count", count),
            ("value_bits", value_bits),
            ("side_bits", bits - count * value_bits),
            ("scalar", None),
            ("format", None),
            ("parts", parts),
        ):
            object.__setattr__(self, key, value)

    @cached_property
    def values(self) -> torch.Tensor:  # noqa: D102 - see the class docstring
        return torch.cat([m.values for m in self.parts], dim=1)

    @cached_property
    def kept(self) -> torch.Tensor | None:
        if all(m.kept is None for m in self.parts):
            return None
        return torch.cat([m.sent() for m in self.parts], dim=1)

    def worker_mean(self) -> torch.Tensor:
        if "values" in self.__dict__:
            return self.values.mean(dim=0)
        first = self.parts[0].values
        width = sum(m.values.shape[1] for m in self.parts)
        out = torch.empty(width, dtype=first.dtype, device=first.device)
        start = 0
        for m in self.parts:  # each tensor's mean written in place: no concatenation pass
            stop = start + m.values.shape[1]
            torch.mean(m.values, dim=0, out=out[start:stop])
            start = stop
        return out


def merge(messages: list[Message]) -> Message:
    """The tensors' messages side by side (see :class:`Concatenated`); ``parts`` keeps each
    (the wire sends them one after the other)."""
    if len(messages) == 1:
        return replace(messages[0], parts=(messages[0],))
    return Concatenated(tuple(messages))


def layerwise(build: Callable[[float], Chain], layout: Layout, ratio: float) -> Layerwise:
    """``build(ratio_l)`` applied per tensor of ``layout`` (see :class:`Layerwise`)."""
    return Layerwise(build, layout, ratio)
