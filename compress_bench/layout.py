"""Parameter layouts: the named tensors a flat parameter vector of length d is made of.

A problem exposes its layout (``Problem.layout``): logistic regression is one tensor (or, with
``problem.layout``, named blocks of its coordinates), a network is its parameter tensors in
``named_parameters()`` order. Row i of every (n, d) batch is worker i's flat vector; tensor l
occupies the columns ``offsets[l] : offsets[l] + numels[l]``. ``layerwise(op, layout)``
(compressors/layerwise.py) compresses each tensor on its own (spec 0.8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Layout:
    """Names and shapes of the tensors of a flat vector, in order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if len(self.names) != len(self.shapes) or not self.names:
            raise ValueError("a layout needs one shape per name, and at least one tensor")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"tensor names must be distinct, got {self.names}")
        if any(math.prod(s) < 1 for s in self.shapes):
            raise ValueError(f"every tensor needs at least one entry, got shapes {self.shapes}")

    @cached_property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        out, total = [], 0
        for numel in self.numels:
            out.append(total)
            total += numel
        return tuple(out)

    @property
    def d(self) -> int:
        return sum(self.numels)

    def __len__(self) -> int:
        return len(self.names)

    def slices(self) -> list[slice]:
        """The column range of each tensor in the flat vector."""
        return [slice(o, o + m) for o, m in zip(self.offsets, self.numels, strict=True)]

    @staticmethod
    def flat(d: int, name: str = "x") -> Layout:
        """One tensor of d entries (logistic regression's default)."""
        return Layout((name,), ((int(d),),))

    @staticmethod
    def blocks(sizes: Sequence[int], d: int, names: Sequence[str] | None = None) -> Layout:
        """Consecutive blocks of the given sizes, which must add up to d; named
        ``block0, block1, ...`` unless names are given."""
        sizes = [int(s) for s in sizes]
        if sum(sizes) != d or any(s < 1 for s in sizes):
            raise ValueError(f"block sizes {sizes} must be >= 1 and add up to d = {d}")
        names = list(names) if names is not None else [f"block{i}" for i in range(len(sizes))]
        return Layout(tuple(names), tuple((s,) for s in sizes))

    @staticmethod
    def of(module: torch.nn.Module) -> Layout:
        """The trainable parameters of a module, in ``named_parameters()`` order."""
        named = [(n, tuple(p.shape)) for n, p in module.named_parameters() if p.requires_grad]
        return Layout(tuple(n for n, _ in named), tuple(s or (1,) for _, s in named))
