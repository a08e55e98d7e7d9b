"""The one interface every operator a method runs presents: :class:`Operator`.

A method sees one operator, whatever it is made of (a compressor and its quantizers, an error
memory around one, one operator per tensor). Each of them offers the same five members, so
the combinators forward two values instead of a dozen members (optax's
``GradientTransformation``, for the idea):

  tags                :class:`Tags`, the declared capabilities the methods, the conformance
                      checks (compress_bench/testing.py) and the layerwise batching read
  init_state(n, d, device, dtype)
                      the explicit per-worker state (leading dimension n)
  compress(G, state, rng, ctx, comm=None)
                      (n, d) inputs -> (Message, new state); ``comm`` is given to operators
                      tagged ``collective`` only (PowerSGD's mid-round all-reduce)
  constants(d)        :class:`Constants`: omega, delta, the default step factor, whether a
                      class constant exists, whether the thesis bit convention applies
  display             :class:`Display`: the names, label, family and colour reports use
  contractive(d)      the operator in the form the error-feedback analyses need (B3): itself,
                      or a scaled chain (spec 10, 23)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from compress_bench.compressors.base import Message, RoundContext
from compress_bench.rng import Streams


@dataclass(frozen=True)
class Tags:
    """Declared capabilities of an operator (scikit-learn's estimator tags, for the idea).

    unbiased         E op(x) = x
    deterministic    no randomness
    zero_to_zero     op(0) = 0 (one-bit sign sends +1 for a zero input)
    sign_only        the decoded values are signs (+-1): majority vote applies
    needs_objective  the operator queries the objective (``RoundContext.objective``: the
                     importance-based md_* family); a method's step then needs ``objective``
    collective       workers' outputs depend on each other: ``compress`` receives the
                     communicator and calls it mid-round (PowerSGD's collective form)
    stackable        rows may be stacked: the operator treats an input of n T rows (row
                     i T + t: worker i's tensor t) as the n workers' T tensors (tensors of
                     one shape compressed as one batch by ``layerwise``) with results
                     identical, row for row, to T calls. True for
                     row-wise deterministic operators and for operators whose randomness is
                     drawn per (worker, round, tensor) (the low-rank family); false for those
                     that draw from a worker's sequential stream (RandK), whose draws depend
                     on the order of the calls
    """

    unbiased: bool
    deterministic: bool
    zero_to_zero: bool = True
    sign_only: bool = False
    needs_objective: bool = False
    collective: bool = False
    stackable: bool = False


@dataclass(frozen=True)
class Constants:
    """What the step-size rules and the bit conventions need, for dimension d.

    omega         the U(omega) variance constant (None: not unbiased with one)
    delta         the B3 contraction constant (None: in no B3 class)
    lr_factor     default multiplier of 1/L (spec 20): k/d for the d/k-scaled forms
    class_constant  in a class of spec 26.1, possibly after a scaling
    thesis_bits   every value a power of two (``bits_convention=thesis`` applies)
    """

    omega: float | None
    delta: float | None
    lr_factor: float = 1.0
    class_constant: bool = False
    thesis_bits: bool = False


@dataclass(frozen=True)
class Display:
    """How reports and logs name an operator.

    name             'top_k + natural_dithering', 'ef(top_k)', 'layerwise(top_k)'
    display_name     the name with a known scale: '0.889 * (top_k + natural)'
    label            'TopK + natural dithering', 'EF(TopK)', 'TopK per tensor'
    family           the part a report colours the operator by ('top_k'; 'natural' for
                     identity + natural)
    colour           the family's declared colour (None: reports hash the name)
    compressor_label the compressor's display name alone ('TopK')
    """

    name: str
    display_name: str
    label: str
    family: str
    colour: str | None
    compressor_label: str


@runtime_checkable
class Operator(Protocol):
    """See the module docstring."""

    tags: Tags

    def init_state(
        self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype
    ) -> Any: ...

    def compress(
        self,
        G: torch.Tensor,
        state: Any,
        rng: Streams,
        ctx: RoundContext,
        comm: Any = None,
    ) -> tuple[Message, Any]: ...

    def constants(self, d: int) -> Constants: ...

    @property
    def display(self) -> Display: ...

    def contractive(self, d: int) -> Operator: ...
