"""The compressor interface shared by every operator.

A compressor is a small object built from its config. It acts on all workers at once:
``compress(G, state, rng, ctx)`` takes the (n, d) tensor whose row i is worker i's input and
returns a :class:`Message` (what the server reconstructs, plus the exact wire size) and the
compressor's new state. State is explicit (``init_state``) so that checkpoints, error
feedback wrappers and the distributed backend can hold it; compressors keep no hidden globals
and never touch the global RNG.

Bit accounting (spec section 0.6): ``bits_i = value_count_i * value_bits + side_bits_i``,
where ``value_bits`` is 32 for float32 values and a quantizer applied afterwards replaces it
(9 for signed powers of two) and may add side information (a norm). Indices and other side
information are counted in ``side_bits``.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

import torch

from compress_bench.rng import Streams

FLOAT_BITS = 32


def index_bits(d: int) -> int:
    """Bits of one index in [0, d): ceil(log2 d), and 0 when d = 1 (spec 0.6)."""
    if d < 1:
        raise ValueError(f"dimension must be positive, got {d}")
    return (d - 1).bit_length()


def k_from_ratio(ratio: float, d: int) -> int:
    """k = floor(ratio * d), at least 1 (spec 0.3).

    The product is rounded to 9 decimals before the floor so that e.g. 0.29 * 100 gives 29,
    not the 28 that float arithmetic (28.999999999999996) would give.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return max(1, math.floor(round(ratio * d, 9)))


def tensor_k(ratio: float, numel: int) -> int:
    """k_l = ceil(ratio * numel), at least 1 (spec 0.8); the product is rounded to 9 decimals
    first, as spec 0.3's floor is, so 0.29 * 100 gives 29."""
    return max(1, math.ceil(round(ratio * numel, 9)))


def k_of(op: Any, d: int) -> int:
    """min(k, d) of a sparsifier: its per-tensor integer k when it was built for a tensor,
    else floor(ratio d) (spec 0.3)."""
    k = op.k if op.k is not None else k_from_ratio(op.ratio, d)
    return min(k, d)


SCALES = ("none", "dk")


def check_ratio(ratio: Any) -> float:
    """The ratio k/d as a float; ValueError unless it is a number in (0, 1]."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
    k_from_ratio(float(ratio), 1)  # raises ValueError outside (0, 1]
    return float(ratio)


def check_scale(scale: Any) -> str:
    """``"none"`` (as sent) or ``"dk"`` (times d/k); ValueError otherwise."""
    if scale not in SCALES:
        raise ValueError(f"scale must be 'none' or 'dk', got {scale!r}")
    return scale


def check_batch(G: torch.Tensor) -> tuple[int, int]:
    """(n, d) of a batch of worker inputs; ValueError unless G is two-dimensional."""
    if G.dim() != 2:
        raise ValueError(f"expected an (n, d) tensor, got shape {tuple(G.shape)}")
    return G.shape[0], G.shape[1]


@dataclass(frozen=True)
class RoundContext:
    """What a compressor may know about the round besides its input.

    ``round_index`` seeds shared-seed streams; ``x``, ``lr`` and ``objective`` (the problem
    the workers evaluate, or a layerwise operator's view of its block) are there for operators
    that look at the objective (the importance-based family, tagged ``needs_objective``; the
    method passes on what the loop gave its step). ``log_weights`` is the importance a joint
    solve over all tensors already found for this operator's tensor
    (``importance.scope=joint``); the operator then uses it instead of solving. ``tensor`` is
    the operator's tensor in a layerwise layout (0 for the whole vector): shared-seed
    operators draw from that tensor's own shared stream. ``group`` lists the tensors of a
    stacked call (tensors of one shape compressed as one batch of n T rows, row ``i T + t``
    worker i's tensor ``group[t]``; empty: one tensor, ``tensor``). ``losses`` is
    each worker's loss at x, shape (n,) (eSGD's loss-comparison rule), when the method has it.
    """

    round_index: int = 0
    x: torch.Tensor | None = None
    lr: float | None = None
    objective: Any = None
    log_weights: torch.Tensor | None = None
    tensor: int = 0
    group: tuple[int, ...] = ()
    losses: torch.Tensor | None = None

    @property
    def tensors(self) -> tuple[int, ...]:
        """The tensors of this call, in row-block order."""
        return self.group or (self.tensor,)


@dataclass(frozen=True)
class Message:
    """The uplink of one round, for all n workers.

    values:      (n, d) vectors the server reconstructs (decoded and scaled).
    value_count: (n,) int64, number of real values on the wire per worker.
    value_bits:  bits per value on the wire (32 = float32).
    side_bits:   (n,) int64, indices, norms and other side information per worker.
    kept:        (n, d) bool, the coordinates on the wire (a sent value may be 0), or None
                 when every coordinate is sent (a dense message).
    scalar:      (n,) float side information (a norm, a scale), if the format has one.
    parts:       the per-tensor messages a layerwise operator concatenated (each with its
                 own format), or None.
    factors:     a low-rank message's (left (n, m, r), right (n, c, r)) with
                 values = left @ right^T row-major (what travels), or None.
    fixed:       (values, side bits) per worker when every worker's message has that size
                 whatever the input (a fixed-k sparsifier, a dense message; known from the
                 configuration), else None. The runner then counts the round's bits on the
                 host, with no read-back of ``bits`` (a host sync on an accelerator).
    format:      the static :class:`~compress_bench.compressors.wire.WireFormat` both ends
                 agree on, set by the operator chain that produced the message (None for
                 a part's raw output).
    averaged:    (d,) the mean of every worker's ``values`` (all ranks' workers), when a
                 collective operator already computed it inside the round from what it
                 exchanged (PowerSGD with the DDP hook's communicator), else None: the
                 communicator then returns it and moves nothing more. New ``values`` drop it.

    The payload (what really travels) is this message in its format: the support (indices,
    or nothing when dense or shared-seed), the scalar and one symbol per sent value;
    ``wire.encode`` packs it and ``format.bits(value_count)`` counts it, equal to ``bits``
    (checked for every operator by the conformance suite). The simulator's fast path reads
    ``values`` and never packs.
    """

    values: torch.Tensor
    value_count: torch.Tensor
    value_bits: int
    side_bits: torch.Tensor
    kept: torch.Tensor | None = None
    scalar: torch.Tensor | None = None
    format: Any = None
    parts: tuple[Message, ...] | None = None  # per-tensor messages of a layerwise operator
    factors: tuple[torch.Tensor, torch.Tensor] | None = None  # low-rank: (left, right)
    fixed: tuple[int, int] | None = None  # (values, side bits) of every worker, when fixed
    averaged: torch.Tensor | None = None  # (d,) mean over every worker, if already known

    @property
    def bits(self) -> torch.Tensor:
        """(n,) int64 exact uplink bits per worker."""
        return self.value_count * self.value_bits + self.side_bits

    @property
    def fixed_bits(self) -> int | None:
        """Bits of every worker's message when its size is fixed (``fixed``), else None: a
        host integer, no tensor read back."""
        if self.fixed is None:
            return None
        count, side = self.fixed
        return count * self.value_bits + side

    @property
    def d(self) -> int:
        """The dimension of the decoded vectors."""
        return self.values.shape[1]

    def blocks(self) -> list[tuple[Any, torch.Tensor]] | None:
        """The message as (columns, values) blocks when it is made of separately computed
        pieces that were not assembled (a layerwise message), else None: a slice and (n,
        width) values for one tensor; for T tensors of one shape compressed as one batch, a
        ``layerwise.Windows`` (``put(out, values)`` writes them) and (n, T, m) values. A
        communicator may aggregate block by block instead of assembling ``values``."""
        return None

    def payload(self, worker: int) -> torch.Tensor:
        """What worker ``worker`` really sends, built on demand: its parts' indices, scalar,
        symbols or factors in their formats, one flat uint8 buffer across a layout's tensors
        (:func:`compress_bench.compressors.wire.payload`; its length is ``bits[worker]``
        rounded up to a byte). The simulator's fast path never calls it."""
        from compress_bench.compressors.wire import payload

        return payload(self, worker)

    def sent(self) -> torch.Tensor:
        """(n, d) bool mask of the coordinates on the wire (all True for a dense message)."""
        if self.kept is None:
            return torch.ones_like(self.values, dtype=torch.bool)
        return self.kept

    def with_values(
        self,
        values: torch.Tensor,
        value_bits: int | None = None,
        extra_side_bits: int | torch.Tensor = 0,
    ) -> Message:
        """The same coordinates with new values (a quantizer's output): ``value_bits`` per value
        from now on, and ``extra_side_bits`` more side information per worker (a norm; an int,
        or an (n,) int64 tensor when it differs between workers)."""
        varies = isinstance(extra_side_bits, torch.Tensor)
        more = varies or extra_side_bits != 0
        fixed = self.fixed
        if fixed is not None and more:
            fixed = None if varies else (fixed[0], fixed[1] + int(extra_side_bits))
        return replace(
            self,
            values=values,
            value_bits=self.value_bits if value_bits is None else value_bits,
            side_bits=self.side_bits + extra_side_bits if more else self.side_bits,
            fixed=fixed,
            averaged=None,
        )

    @staticmethod
    def dense(values: torch.Tensor) -> Message:
        """Every coordinate sent as a float32, no indices."""
        n, d = values.shape
        full = per_worker_constant(n, d, values.device)
        return Message(
            values, full, FLOAT_BITS, per_worker_constant(n, 0, values.device), fixed=(d, 0)
        )

    @staticmethod
    def of_fixed_size(
        values: torch.Tensor, count: int, side: int, value_bits: int = FLOAT_BITS, **fields: Any
    ) -> Message:
        """A message in which every worker sends ``count`` values and ``side`` side bits, sizes
        the configuration fixes (:attr:`fixed`); the (n,) counts are cached constants, so a
        round builds no tensor for them."""
        n = values.shape[0]
        return Message(
            values,
            per_worker_constant(n, count, values.device),
            value_bits,
            per_worker_constant(n, side, values.device),
            fixed=(count, side),
            **fields,
        )

    @staticmethod
    def sparse(values: torch.Tensor, kept: torch.Tensor, send_indices: bool = True) -> Message:
        """The coordinates in the boolean mask ``kept`` (n, d) sent as (index, value) pairs.

        ``values`` must already be zero outside ``kept``. With ``send_indices=False`` the
        receiver knows the support (shared seed) and only values travel.
        """
        count = kept.sum(dim=1, dtype=torch.int64)
        side = count * index_bits(values.shape[1]) if send_indices else torch.zeros_like(count)
        return Message(values, count, FLOAT_BITS, side, kept)


@lru_cache(maxsize=256)
def per_worker_constant(n: int, value: int, device: torch.device) -> torch.Tensor:
    """The (n,) int64 tensor of ``value``, built once per (n, value, device) and shared: a
    fixed-size message's counts. Never modify it in place (nothing does: bit arithmetic
    builds new tensors)."""
    return torch.full((n,), value, dtype=torch.int64, device=device)


class Compressor(ABC):
    """A batched compression operator C: R^{n x d} -> R^{n x d}, one row per worker.

    Subclasses set ``name`` and the class metadata used by the conformance suite:
    ``unbiased`` (E C(x) = x), and implement :meth:`compress`. ``contraction(d)`` returns the
    B3 constant delta (E||C(x) - x||^2 <= (1 - 1/delta)||x||^2) or None when the operator is
    not in B3; ``omega(d)`` the variance constant of unbiased operators.
    """

    name: ClassVar[str]
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    #: True for the operators that query the objective (RoundContext.objective): the md_* family
    needs_objective: ClassVar[bool] = False
    #: op(0) = 0
    zero_to_zero: ClassVar[bool] = True
    #: True when every value is sent unchanged (the identity): reports then name and colour
    #: the operator after its quantizer
    passthrough: ClassVar[bool] = False
    #: how the receiver learns the support: "dense" (all of it), "indices" (sent,
    #: ceil(log2 d) bits each) or "shared" (rebuilt from a shared seed); see wire_support
    support: ClassVar[str] = "indices"
    #: True for the operators that call the communicator mid-round (PowerSGD collective)
    collective: ClassVar[bool] = False
    #: True when n T stacked rows may be compressed in one call (see Tags.stackable)
    stackable: ClassVar[bool] = False
    #: display name in figures and tables ("" means the registry name)
    label: ClassVar[str] = ""
    #: the integer k of a compressor built for one tensor (:meth:`for_tensor`); None: k
    #: follows from the ratio and d at compress time (spec 0.3)
    k: int | None = None

    @classmethod
    def for_tensor(cls, shape: tuple[int, ...], ratio: float, **params: Any) -> Compressor:
        """This compressor for one tensor of ``shape`` (spec 0.8): built with the ratio that
        keeps ``k_l = ceil(ratio numel_l)`` (so the d/k-scaled and weighted forms keep
        today's arithmetic) and with that integer k, computed once here. The low-rank
        operators override it to take the tensor's matrix shape instead."""
        numel = math.prod(shape)
        k = tensor_k(ratio, numel)
        op = cls(ratio=min(k, numel) / numel, **params)
        op.k = k
        return op

    @classmethod
    def for_vector(cls, shape: tuple[int, ...], ratio: float, **params: Any) -> Compressor:
        """This compressor for the whole vector x, which the problem views as one tensor of
        ``shape`` (k = floor(ratio d), spec 0.3; the low-rank operators take the shape)."""
        return cls(ratio=ratio, **params)

    #: the colour of this operator in every figure; None: hashed from its name
    colour: ClassVar[str | None] = None

    def wire_support(self) -> str:
        """The support format of this instance's messages (see ``support``)."""
        return self.support

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype) -> Any:
        """Initial per-worker state; stateless operators return None."""
        return None

    @abstractmethod
    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        """Compress every row of G; return the message and the new state."""

    def expected_bits(self, d: int) -> int | None:
        """Nominal bits per worker per round for dimension d (spec table 26.2), if fixed."""
        return None

    def sent_count(self, d: int) -> int | None:
        """Values per message when the configuration fixes it (the receiver then knows it, as
        the wire decoder does); None when it varies from message to message."""
        return None

    def contraction(self, d: int) -> float | None:
        return None

    def omega(self, d: int) -> float | None:
        return None

    def lr_factor(self, d: int) -> float:
        """Default step-size multiplier of 1/L (spec 20): k/d for the d/k-scaled forms."""
        return 1.0


class Quantizer(ABC):
    """A value quantizer applied after a compressor to the values it sends.

    The class constants describe the quantizer applied to a vector of ``d`` transmitted
    coordinates (the compressor's output restricted to what it sends, so ``d = k`` after a
    sparsifier): ``contraction(d)`` the B3 constant delta or None, ``omega(d)`` the variance
    constant of unbiased quantizers (``E||Q(v)||^2 <= (omega + 1)||v||^2``) or None.
    """

    name: ClassVar[str]
    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    #: Bits per transmitted value after quantizing (9 for signed powers of two); None keeps
    #: the compressor's ``value_bits``. The conformance suite checks bits against it.
    value_bits: ClassVar[int | None] = None
    #: Side information the quantizer adds to every non-empty message (32 for a norm).
    extra_side_bits: ClassVar[int] = 0
    #: False for the operators that send something for a zero input (one-bit sign).
    zero_to_zero: ClassVar[bool] = True
    #: True when the decoded values are signs (+-1): majority vote applies (spec 11).
    sign_only: ClassVar[bool] = False
    #: True for the quantizer that changes nothing: chains drop it
    passthrough: ClassVar[bool] = False
    #: True when it maps value to value, reading nothing else (no norm, no mask, no draw) and
    #: adding no side bits: quantizing a concatenation of messages then equals concatenating
    #: the quantized messages, so ``layerwise`` quantizes all tensors in one pass
    #: (:meth:`quantize_values`)
    elementwise: ClassVar[bool] = False
    #: the symbol of one value on the wire: "float32", "power_of_two" (sign + 8-bit
    #: exponent), "dithering" (sign + level index) or "sign" (1 bit); see compressors/wire.py
    wire_values: ClassVar[str] = "float32"
    #: True when one float32 of side information (a norm, a scale) precedes the values
    wire_scalar: ClassVar[bool] = False
    label: ClassVar[str] = ""
    colour: ClassVar[str | None] = None

    @abstractmethod
    def quantize(self, message: Message, rng: Streams) -> Message:
        """Quantize the transmitted values of ``message`` (``message.sent()``: the coordinates
        on the wire; the others must stay 0); return the new message."""

    def quantize_values(self, values: torch.Tensor) -> torch.Tensor:
        """An ``elementwise`` quantizer's values for ``values`` (zeros stay zeros)."""
        raise NotImplementedError(f"{self.name} is not elementwise")

    def contraction(self, d: int) -> float | None:
        return None

    def omega(self, d: int) -> float | None:
        return None
