"""Alternative bit conventions, reported next to the exact encoding of spec section 0.6.

``thesis``: the accounting of the thesis LogReg code (``greedy_compress``), offered so that
figures can be compared with the thesis's x-axis. A kept value +-2^-p costs ceil(log2(p + 1))
bits (so +-1 costs nothing), a kept zero costs 1 bit, indices and signs cost nothing. It is
defined for power-of-two values only (the thesis applies its rounding Q everywhere); for
exponents above 0 (no clipping) |p| is used. Not a real encoding: the default stays ``spec``.
"""

from __future__ import annotations

import torch

from compress_bench.compressors.base import Message

CONVENTIONS = ("spec", "thesis")


def thesis_bits(message: Message) -> torch.Tensor:
    """(n,) int64 bits per worker under the thesis convention.

    Equals value_count + sum over non-zero values of (ceil(log2(|p| + 1)) - 1): every kept
    value is charged 1 bit, and a non-zero one ceil(log2(|p| + 1)) - 1 on top (thesis code).
    """
    values = message.values
    nonzero = values != 0
    _, exponent = torch.frexp(values.abs())  # |v| = 2^e = 0.5 * 2^(e + 1)
    p = (1 - exponent).abs().to(torch.float64)
    extra = torch.ceil(torch.log2(p + 1)) - 1
    extra = torch.where(nonzero, extra, torch.zeros((), dtype=extra.dtype, device=extra.device))
    return message.value_count + extra.sum(dim=1).to(torch.int64)
