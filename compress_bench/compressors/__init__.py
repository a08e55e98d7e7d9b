"""Compression operators and value quantizers.

Importing this package registers every built-in operator, so ``build_compressor`` and
``build_quantizer`` (and the conformance suite) see them all.
"""

from compress_bench.compressors import (  # noqa: F401  (registration)
    biased,
    esgd,
    lowrank,
    md,
    quantizers,
    sparsifiers,
)
from compress_bench.compressors.base import Compressor, Message, Quantizer, RoundContext
from compress_bench.compressors.registry import (
    COMPRESSORS,
    QUANTIZERS,
    build_compressor,
    build_quantizer,
)

__all__ = [
    "COMPRESSORS",
    "QUANTIZERS",
    "Compressor",
    "Message",
    "Quantizer",
    "RoundContext",
    "build_compressor",
    "build_quantizer",
]
