"""The wire encoding: every message as the bytes a worker would really send.

A message is, per worker, in this order (spec 0.6):

  support  the indices of the sent coordinates, ascending, ceil(log2 d) bits each; nothing for
           a dense message or when the receiver derives the support from a shared seed
  scalar   one float32 of side information, for the formats that have one (a dithering norm,
           the scale of scaled sign)
  values   one symbol per sent coordinate:
             float32       32 bits, IEEE single precision
             power_of_two  9 bits: sign, then the 8-bit float32 exponent field (0 means 0)
             dithering     1 sign bit, then the level index in ceil(log2(s + 1)) bits
             sign          1 bit (1 for +1)

The static format (:class:`WireFormat`) is declared by the operator, never looked up by name:
the compressor declares its support (``Compressor.wire_support``) and the number of values when
it is fixed, the last quantizer its value symbol (``Quantizer.wire_values``) and whether a
scalar precedes the values (``Quantizer.wire_scalar``); ``Chain.wire_format(d)`` combines them
and every message a chain produces carries it (``Message.format``).

The bit counts the runner reports (``Message.bits``) follow the same rules
(:meth:`WireFormat.bits`), so the packed length equals them up to the padding of the last
byte; ``tests/test_wire.py`` checks it for every registered operator. ``decode`` sees only the
bytes, the static format both ends know from the configuration (d, the formats, the number of
values when it is fixed) and, for shared-seed supports, the support itself.

Symbols are exact: indices, signs, power-of-two exponents and dithering levels decode to what
was sent, bit for bit. Float32 fields are the one lossy part, by the spec's own rule (spec 0.6:
the simulator computes in float64 and counts 32 bits for a real value): a float32 value, a
dithering norm or a scaled-sign scale reaches the receiver rounded to float32, so the decoded
vector equals the simulator's within float32 rounding there (``receiver_view``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from compress_bench.compressors.base import FLOAT_BITS, Message, index_bits

FORMATS = ("float32", "power_of_two", "dithering", "sign")
SUPPORTS = ("dense", "indices", "shared", "factors")


@dataclass(frozen=True)
class WireFormat:
    """What sender and receiver agree on before any message: the static format."""

    d: int
    support: str  # "dense" | "indices" | "shared"
    values: str  # one of FORMATS
    scalar: bool = False  # a float32 of side information precedes the values
    levels: int = 0  # dithering: s
    grid: str = "standard"  # dithering: "standard" {0, 1/s, .., 1} or "natural" {0, 2^(1-s), .., 1}
    count: int | None = None  # values per message when fixed; None: read from the length
    matrix: tuple[int, int, int] | None = None  # factors: (m, c, r), left m x r, right c x r

    @property
    def index_bits(self) -> int:
        return index_bits(self.d) if self.support == "indices" else 0

    @property
    def level_bits(self) -> int:
        return int(np.ceil(np.log2(self.levels + 1)))

    @property
    def value_bits(self) -> int:
        return {"float32": FLOAT_BITS, "power_of_two": 9, "sign": 1}.get(
            self.values, 1 + self.level_bits
        )

    def bits(self, count: torch.Tensor) -> torch.Tensor:
        """(n,) bits of messages holding ``count`` values each, from this format alone: the
        indices, the scalar (only in a non-empty message) and one symbol per value."""
        per_value = self.index_bits + self.value_bits
        scalar = FLOAT_BITS * (count > 0) if self.scalar else 0
        return count * per_value + scalar


def uncompressed(values: torch.Tensor) -> Message:
    """Every coordinate as a float32 (32 d bits per worker), in the dense float32 format: what
    EF21 and DIANA send in their first round (the gradients themselves)."""
    d = values.shape[1]
    fmt = WireFormat(d=d, support="dense", values="float32", count=d)
    return replace(Message.dense(values), format=fmt)


def wire_format(compressor, quantizers: tuple, d: int) -> WireFormat:
    """The format of what ``compressor`` then ``quantizers`` send, from their declarations:
    the compressor's support and fixed count, the last quantizer's value symbol; a scalar
    when any quantizer adds one."""
    last = quantizers[-1] if quantizers else None
    support = compressor.wire_support()
    if support not in SUPPORTS:
        raise ValueError(f"{compressor!r} declares an unknown wire support {support!r}")
    values = last.wire_values if last is not None else "float32"
    if values not in FORMATS:
        raise ValueError(f"{last!r} declares an unknown wire format {values!r}")
    return WireFormat(
        d=d,
        support=support,
        values=values,
        scalar=any(q.wire_scalar for q in quantizers),
        levels=getattr(last, "levels", 0),
        grid=getattr(last, "grid", "standard"),
        count=compressor.sent_count(d),
        matrix=compressor.plan(d) if support == "factors" else None,
    )


# --- bit packing -----------------------------------------------------------------------------


def _bits(values: np.ndarray, width: int) -> np.ndarray:
    """(len, width) 0/1 matrix, most significant bit first."""
    if width == 0:
        return np.zeros((len(values), 0), dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((values.astype(np.uint64)[:, None] >> shifts) & 1).astype(np.uint8)


def _read(bits: np.ndarray, start: int, count: int, width: int) -> tuple[np.ndarray, int]:
    """``count`` unsigned fields of ``width`` bits from ``start``; returns them and the end."""
    end = start + count * width
    if end > len(bits):
        raise ValueError("message too short for its layout")
    if width == 0:
        return np.zeros(count, dtype=np.uint64), end
    chunk = bits[start:end].reshape(count, width).astype(np.uint64)
    weights = np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64)
    return (chunk * weights).sum(axis=1, dtype=np.uint64), end


def _float32_bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


# --- one worker's message ----------------------------------------------------------------------


def _symbols(fmt: WireFormat, values: np.ndarray, scalar: float) -> np.ndarray:
    """The per-value bit matrix of the layout's value format."""
    negative = np.signbit(values) & (values != 0)
    if fmt.values == "float32":
        return _bits(_float32_bits(values), FLOAT_BITS)
    if fmt.values == "power_of_two":
        _, exponent = np.frexp(np.abs(values))  # |v| = 2^e = 0.5 * 2^(e + 1)
        field = np.where(values == 0, 0, exponent - 1 + 127).astype(np.uint64)
        return np.concatenate([_bits(negative, 1), _bits(field, 8)], axis=1)
    if fmt.values == "sign":
        return _bits(~np.signbit(values) | (values == 0), 1)
    # dithering: the level index of |v| / N on the grid
    ratio = np.abs(values) / scalar if scalar > 0 else np.zeros_like(values)
    if fmt.grid == "standard":
        index = np.rint(ratio * fmt.levels)
    else:
        with np.errstate(divide="ignore"):
            index = np.where(ratio > 0, np.rint(np.log2(ratio)) + fmt.levels, 0)
    return np.concatenate(
        [_bits(negative, 1), _bits(index.astype(np.uint64), fmt.level_bits)], axis=1
    )


def encode(message: Message, worker: int, fmt: WireFormat | None = None) -> bytes:
    """Worker ``worker``'s message as bytes (padded with zeros to a whole byte), in the
    message's own format unless ``fmt`` is given."""
    return np.packbits(_encode_bits(message, worker, fmt)).tobytes()


def payload(message: Message, worker: int) -> torch.Tensor:
    """Worker ``worker``'s payload: one flat uint8 buffer holding the message's parts (a
    layerwise message's tensors, in layout order) back to back, each in its own format
    (indices, scalar, symbols or factors), padded to a whole byte once at the end, so its
    length is the reported bits rounded up to a byte. The receiver needs the static formats
    and, for the parts whose count varies, the counts (sent first, as an all-gather of uneven
    sizes must be)."""
    parts = message.parts or (message,)
    bits = np.concatenate([_encode_bits(p, worker, p.format) for p in parts])
    return torch.from_numpy(np.packbits(bits))


def decode_payload(
    buffer: torch.Tensor,
    formats: list[WireFormat],
    counts: list[int],
    supports: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """The (sum_l d_l,) float64 vector a :func:`payload` decodes to, from the parts' formats,
    their value counts and (shared-seed parts) their supports."""
    bits = np.unpackbits(buffer.cpu().numpy())
    supports = supports or [None] * len(formats)
    out, position = [], 0
    for fmt, count, support in zip(formats, counts, supports, strict=True):
        values, position = _decode_bits(bits, fmt, support, count, position)
        out.append(values)
    return torch.cat(out)


def _encode_bits(message: Message, worker: int, fmt: WireFormat | None = None) -> np.ndarray:
    """Worker ``worker``'s message as a 0/1 array, unpadded."""
    fmt = fmt or message.format
    if fmt is None:
        raise ValueError("the message carries no wire format: build it with a chain")
    if fmt.support == "factors":  # left then right, row-major, float32
        left, right = (f[worker].detach().cpu().double().numpy() for f in message.factors)
        floats = np.concatenate([left.reshape(-1), right.reshape(-1)])
        return _bits(_float32_bits(floats), FLOAT_BITS).reshape(-1)
    values = message.values[worker].detach().cpu().double().numpy()
    sent = message.sent()[worker].cpu().numpy()
    parts = []
    if fmt.support == "indices":
        parts.append(_bits(np.flatnonzero(sent), fmt.index_bits).reshape(-1))
    scalar = 0.0
    if fmt.scalar and sent.any():  # an empty message carries no scalar
        scalar = float(message.scalar[worker]) if message.scalar is not None else 0.0
        parts.append(_bits(_float32_bits(np.array([scalar])), FLOAT_BITS).reshape(-1))
    parts.append(_symbols(fmt, values[sent], scalar).reshape(-1))
    return np.concatenate(parts)


def decode(data: bytes, fmt: WireFormat, support: torch.Tensor | None = None) -> torch.Tensor:
    """The (d,) float64 vector the receiver reconstructs from ``data`` (and, for a shared-seed
    layout, the support it derives from the shared stream)."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    return _decode_bits(bits, fmt, support, None, 0)[0]


def _decode_bits(
    bits: np.ndarray, fmt: WireFormat, support: torch.Tensor | None, count: int | None, start: int
) -> tuple[torch.Tensor, int]:
    """One part from ``bits[start:]``: its (d,) values and where it ends. ``count``: the
    number of values when the format does not fix it (None: read from the length, which
    works for the last part only)."""
    position = start
    if fmt.support == "factors":
        m, c, r = fmt.matrix
        raw, end = _read(bits, position, r * (m + c), FLOAT_BITS)
        floats = raw.astype(np.uint32).view(np.float32).astype(np.float64)
        left, right = floats[: m * r].reshape(m, r), floats[m * r :].reshape(c, r)
        return torch.from_numpy((left @ right.T).reshape(-1)), end
    if fmt.support == "dense":
        indices = np.arange(fmt.d)
    elif fmt.support == "shared":
        if support is None:
            raise ValueError("a shared-seed message needs the support from the shared stream")
        indices = np.flatnonzero(support.cpu().numpy())
    else:
        count = fmt.count if count is None else count
        if count is None:  # variable length: every entry is wider than the byte padding
            scalar_bits = FLOAT_BITS if fmt.scalar and len(bits) > start else 0
            count = (len(bits) - start - scalar_bits) // (fmt.index_bits + fmt.value_bits)
        indices, position = _read(bits, position, count, fmt.index_bits)
        indices = indices.astype(np.int64)
    out = np.zeros(fmt.d)
    if len(indices) == 0:
        return torch.from_numpy(out), position
    scalar = 0.0
    if fmt.scalar:
        raw, position = _read(bits, position, 1, FLOAT_BITS)
        scalar = float(raw.astype(np.uint32).view(np.float32)[0])
    out[indices] = _values_from(bits, position, len(indices), fmt, scalar)
    return torch.from_numpy(out), position + len(indices) * fmt.value_bits


def _values_from(bits, position, count, fmt: WireFormat, scalar: float) -> np.ndarray:
    if fmt.values == "float32":
        raw, _ = _read(bits, position, count, FLOAT_BITS)
        return raw.astype(np.uint32).view(np.float32).astype(np.float64)
    if fmt.values == "sign":
        raw, _ = _read(bits, position, count, 1)
        magnitude = scalar if fmt.scalar else 1.0
        return np.where(raw == 1, magnitude, -magnitude)
    width = fmt.value_bits
    raw, _ = _read(bits, position, count, width)
    sign = np.where(raw >> np.uint64(width - 1) == 1, -1.0, 1.0)
    field = (raw & np.uint64((1 << (width - 1)) - 1)).astype(np.int64)
    if fmt.values == "power_of_two":
        return np.where(field == 0, 0.0, sign * np.ldexp(1.0, field - 127))
    if fmt.grid == "standard":
        return sign * field * (scalar / fmt.levels)
    level = np.where(field == 0, 0.0, np.ldexp(1.0, field - fmt.levels))
    return sign * level * scalar


def receiver_view(message: Message, fmt: WireFormat) -> torch.Tensor:
    """The simulator's vector as the receiver can know it when every value is a float32 field
    (exact for the symbol formats; the scalar formats differ by the float32 rounding of their
    one scalar, a relative 2^-24 at most)."""
    if fmt.values == "float32":
        return message.values.to(torch.float32).to(torch.float64)
    return message.values.to(torch.float64)
