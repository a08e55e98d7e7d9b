"""Operator combinators: ``chain(C, Q)`` and ``error_feedback(op)``.

A method sees one operator, whatever it is made of. ``chain(C, Q1, ..., Qm)`` applies the
compressor C and then each quantizer to the values C sends; it is itself an operator
(``init_state`` / ``compress`` with explicit state: the tuple of its parts' states) and
derives its constants once, here, from its parts' (optax's ``chain``, for the idea):

  unbiased      every part unbiased (independent randomness)
  omega         prod_j (1 + omega_j) - 1 when every part is unbiased with a known omega
                (the quantizers' omega taken at d values: an upper bound after a sparsifier)
  contraction   delta_C * prod_j delta_Qj when every part has a contraction constant (the
                alphas of spec 23 multiply: Q o TopK has alpha = 8k / (9d)); None otherwise.
                An unbiased quantizer without a contraction (C_nat, dithering) leaves the
                unscaled chain without one: spec 10 and 23 scale it by 1/(1 + omega) first.
  tags          :class:`Tags`, for the method, the bit conventions and the reports

``error_feedback(op)`` (EF14, spec 22) wraps any operator: worker i keeps the error
``e_i``, compresses ``v_i = e_i + g_i`` and keeps ``e_i <- v_i - op(v_i)``, so the error it
remembers is the whole operator's, quantizer included.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cached_property
from typing import Any

import torch

from compress_bench.compressors.base import Compressor, Message, Quantizer, RoundContext
from compress_bench.compressors.operator import Constants, Display, Tags
from compress_bench.rng import Streams

__all__ = ["Chain", "Constants", "Display", "ErrorFeedback", "Tags", "chain", "error_feedback"]


class Chain:
    """Q_m(...Q_1(C(v))): a compressor followed by quantizers, acting on (n, d) batches.

    Bits: those of the last message (the quantizers replace the bits per value and add side
    information; the count of sent values stays the compressor's, spec 0.6 and 21).
    """

    def __init__(self, compressor: Compressor, *quantizers: Quantizer, scale: float = 1.0):
        self.compressor = compressor
        # a known factor on the decoded values (no bits: the receiver knows it), as in
        # (1/(1 + omega)) Q(C(.)); see :meth:`contractive`
        self.scale = float(scale)
        self._scaled_delta: float | None = None
        # the identity quantizer changes nothing: dropping it keeps repr and constants simple
        self.quantizers = tuple(q for q in quantizers if not q.passthrough)
        if self.quantizers and compressor.wire_support() == "factors":
            raise ValueError(
                f"{compressor.name} sends low-rank factors: a quantizer would round the "
                "reconstruction, not what travels; use quantizer=none"
            )
        parts = (compressor, *self.quantizers)
        self.tags = Tags(
            unbiased=all(p.unbiased for p in parts),
            deterministic=all(p.deterministic for p in parts),
            zero_to_zero=all(p.zero_to_zero for p in parts),
            sign_only=bool(self.quantizers) and self.quantizers[-1].sign_only,
            needs_objective=compressor.needs_objective,
            collective=compressor.collective,
            # rows may be stacked when every part is row-wise: the compressor says so, and
            # the quantizers draw nothing from the workers' sequential streams
            stackable=compressor.stackable and all(q.deterministic for q in self.quantizers),
        )
        self._formats: dict[tuple[int, bool], Any] = {}

    @property
    def name(self) -> str:
        """'top_k', 'top_k + natural_dithering': the name reports and logs show."""
        return " + ".join(p.name for p in (self.compressor, *self.quantizers))

    @property
    def unbiased(self) -> bool:
        return self.tags.unbiased

    @property
    def _family_part(self) -> Compressor | Quantizer:
        """The part reports colour the operator by: the compressor, or the first quantizer
        after a compressor that sends every value as is (identity + natural is natural
        compression)."""
        if self.compressor.passthrough and self.quantizers:
            return self.quantizers[0]
        return self.compressor

    @property
    def family(self) -> str:
        return self._family_part.name

    @property
    def colour(self) -> str | None:
        """The declared colour of :attr:`family` (None: reports hash the name)."""
        return self._family_part.colour

    @property
    def label(self) -> str:
        """Display name: 'TopK + natural dithering'."""
        parts = [p for p in (self.compressor, *self.quantizers) if not p.passthrough]
        parts = parts or [self.compressor]
        text = " + ".join(p.label or p.name for p in parts)
        return text if self.scale == 1.0 else f"{self.scale:.4g} * ({text})"

    @property
    def compressor_label(self) -> str:
        """The compressor's display name alone ('TopK'), for figures of one quantizer."""
        return self.compressor.label or self.compressor.name

    def wire_format(self, d: int, dense: bool = False):
        """The static format of this chain's messages for dimension d (``dense``: of a
        message that sends every coordinate, as a sparsifier does when k >= d)."""
        key = (d, dense)
        if key not in self._formats:
            from compress_bench.compressors.wire import wire_format

            fmt = wire_format(self.compressor, self.quantizers, d)
            if dense and fmt.support != "dense":
                fmt = replace(fmt, support="dense", count=d)
            self._formats[key] = fmt
        return self._formats[key]

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype):
        return (self.compressor.init_state(n_workers, d, device, dtype),)

    @staticmethod
    def compressor_state(state: Any) -> Any:
        """The compressor's own part of this chain's state (the quantizers keep none)."""
        return state[0]

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext, comm: Any = None
    ) -> tuple[Message, Any]:
        message, new_state = self.select(G, state, rng, ctx, comm)
        return self.finish(message, rng), new_state

    def select(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext, comm: Any = None
    ) -> tuple[Message, Any]:
        """The compressor's stage alone: its message (32-bit values) and the new state."""
        if self.compressor.collective:
            message, cstate = self.compressor.compress(G, state[0], rng, ctx, comm=comm)
        else:
            message, cstate = self.compressor.compress(G, state[0], rng, ctx)
        return message, (cstate,)

    def finish(self, message: Message, rng: Streams) -> Message:
        """The quantizers and the scale applied to the compressor's ``message``, and the wire
        format set: the chain's message."""
        for quantizer in self.quantizers:
            message = quantizer.quantize(message, rng)
        if self.scale != 1.0:  # new values: a mean computed in the round no longer holds
            message = replace(message, values=message.values * self.scale, averaged=None)
        dense = message.kept is None and message.factors is None
        fmt = self.wire_format(message.values.shape[1], dense=dense)
        return replace(message, format=fmt)

    @property
    def elementwise_tail(self) -> bool:
        """True when everything after the compressor maps value to value with no side bits
        (elementwise quantizers, scale 1): the tail then commutes with concatenation, and
        ``layerwise`` runs it once over all tensors (:meth:`finish_values`)."""
        return self.scale == 1.0 and all(q.elementwise for q in self.quantizers)

    def finish_values(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise tail on the values of any concatenation of messages."""
        for quantizer in self.quantizers:
            values = quantizer.quantize_values(values)
        return values

    @property
    def value_bits(self) -> int | None:
        """Bits per value after the quantizers (None: the compressor's own)."""
        bits = [q.value_bits for q in self.quantizers if q.value_bits is not None]
        return bits[-1] if bits else None

    def omega(self, d: int) -> float | None:
        """The variance constant of the chain, when every part is unbiased with one."""
        if not self.unbiased or self.scale != 1.0:
            return None
        omegas = [p.omega(d) for p in (self.compressor, *self.quantizers)]
        if any(w is None for w in omegas):
            return None
        return math.prod(1.0 + w for w in omegas) - 1.0

    def contraction(self, d: int) -> float | None:
        """delta of B3 for the chain: the product of its parts' (None if a part has none)."""
        if self.scale != 1.0:
            return self._scaled_delta
        deltas = [p.contraction(d) for p in (self.compressor, *self.quantizers)]
        if any(delta is None for delta in deltas):
            return None
        return math.prod(deltas)

    def has_class_constant(self, d: int) -> bool:
        """Whether the chain is in a class of spec 26.1 (possibly after a scaling): unbiased
        with omega, contractive, or contractive followed by unbiased quantizers with omega
        ((1/(1 + omega)) Q(C(.)) is then contractive, as spec 10 uses for TopK + dithering)."""
        if self.omega(d) is not None or self.contraction(d) is not None:
            return True
        c = self.compressor
        c_ok = c.contraction(d) is not None or c.omega(d) is not None
        q_ok = all(
            q.contraction(d) is not None or (q.unbiased and q.omega(d) is not None)
            for q in self.quantizers
        )
        return c_ok and q_ok

    def lr_factor(self, d: int) -> float:
        """Default multiplier of 1/L (spec 20): k/d for the d/k-scaled compressors."""
        return self.compressor.lr_factor(d)

    def contractive(self, d: int) -> Chain:
        """This chain, or its scaled form when only that is contractive: a contractive C
        (delta_C) followed by unbiased quantizers (omega) gives lambda Q(C(.)) with
        lambda = 1/(1 + omega) in B3(delta_C (1 + omega)), since
        E||lambda QC(x) - x||^2 <= lambda ||C(x) - x||^2 + (1 - lambda)||x||^2
        <= (1 - lambda/delta_C) ||x||^2 (spec 10's TopK + natural dithering / zeta_k). The
        error-feedback methods, whose analysis needs B3, run this form."""
        delta_c = self.compressor.contraction(d)
        if self.contraction(d) is not None or delta_c is None or not self.quantizers:
            return self
        omegas = [q.omega(d) if q.unbiased else None for q in self.quantizers]
        if any(w is None for w in omegas):
            return self
        omega = math.prod(1.0 + w for w in omegas) - 1.0
        scaled = Chain(self.compressor, *self.quantizers, scale=1.0 / (1.0 + omega))
        scaled._scaled_delta = delta_c * (1.0 + omega)
        return scaled

    @property
    def display_name(self) -> str:
        return self.name if self.scale == 1.0 else f"{self.scale:.4g} * ({self.name})"

    def constants(self, d: int) -> Constants:
        """The chain's constants for dimension d (see the module docstring)."""
        return Constants(
            omega=self.omega(d),
            delta=self.contraction(d),
            lr_factor=self.lr_factor(d),
            class_constant=self.has_class_constant(d),
            thesis_bits=self.thesis_bits_defined(),
        )

    @cached_property
    def display(self) -> Display:
        return Display(
            name=self.name,
            display_name=self.display_name,
            label=self.label,
            family=self.family,
            colour=self.colour,
            compressor_label=self.compressor_label,
        )

    def thesis_bits_defined(self) -> bool:
        """Whether the thesis bit convention applies: every value a power of two."""
        return bool(self.quantizers) and self.quantizers[-1].wire_values == "power_of_two"

    def __repr__(self) -> str:
        parts = ", ".join(repr(p) for p in (self.compressor, *self.quantizers))
        return f"chain({parts}, scale={self.scale:.6g})" if self.scale != 1.0 else f"chain({parts})"


def chain(compressor: Compressor, *quantizers: Quantizer) -> Chain:
    """The operator Q_m o ... o Q_1 o C (see :class:`Chain`)."""
    return Chain(compressor, *quantizers)


class ErrorFeedback:
    """EF14 memory around an operator (spec 22, gradient units):

    v_i = e_i + g_i,   c_i = op(v_i),   e_i <- v_i - c_i      (e_i^0 = 0)

    State: ``(e, inner_state)`` with e of shape (n, d). Bits: the inner operator's. Not
    unbiased (the memory carries the past), deterministic iff the inner operator is; its
    delta (and step factor) is the inner operator's, which is what EF14's step uses.
    Reference: Seide et al. (2014); Stich, Cordonnier, Jaggi (2018); Karimireddy et al. (2019).
    """

    def __init__(self, inner):
        self.inner = inner
        self.tags = replace(
            inner.tags,
            unbiased=False,
            zero_to_zero=False,  # a non-zero memory is sent even for a zero input
        )

    @cached_property
    def display(self) -> Display:
        inner = self.inner.display
        return replace(
            inner,
            name=f"ef({inner.name})",
            display_name=f"ef({inner.display_name})",
            label=f"EF({inner.label})",
        )

    def constants(self, d: int) -> Constants:
        return replace(self.inner.constants(d), omega=None)

    def contractive(self, d: int) -> ErrorFeedback:
        return self

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype):
        error = torch.zeros(n_workers, d, device=device, dtype=dtype)
        return (error, self.inner.init_state(n_workers, d, device, dtype))

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext, comm: Any = None
    ) -> tuple[Message, Any]:
        error, inner_state = state
        v = error + G
        message, inner_state = self.inner.compress(v, inner_state, rng, ctx, comm)
        return message, (v - message.values, inner_state)

    def __repr__(self) -> str:
        return f"error_feedback({self.inner!r})"


def error_feedback(op) -> ErrorFeedback:
    """``op`` with an EF14 error memory per worker (see :class:`ErrorFeedback`)."""
    return ErrorFeedback(op)
