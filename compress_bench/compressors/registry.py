"""Name -> class registries for compressors and quantizers.

Registering a class here is all it takes to make it selectable from the CLI
(``compressor=<name>``) and to run it through the conformance suite in
``tests/test_conformance.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compress_bench.compressors.base import Compressor, Quantizer
from compress_bench.errors import ConfigError

COMPRESSORS: dict[str, type[Compressor]] = {}
QUANTIZERS: dict[str, type[Quantizer]] = {}


def register_compressor(cls: type[Compressor]) -> type[Compressor]:
    if cls.name in COMPRESSORS:
        raise RuntimeError(f"compressor {cls.name!r} registered twice")
    COMPRESSORS[cls.name] = cls
    return cls


def register_quantizer(cls: type[Quantizer]) -> type[Quantizer]:
    if cls.name in QUANTIZERS:
        raise RuntimeError(f"quantizer {cls.name!r} registered twice")
    QUANTIZERS[cls.name] = cls
    return cls


def _params(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    params = dict(cfg)
    return str(params.pop("name")), params


def build_compressor(
    cfg: Mapping[str, Any],
    ratio: float,
    shape: tuple[int, ...] | None = None,
    global_shape: tuple[int, ...] | None = None,
) -> Compressor:
    """The compressor named by ``cfg['name']``, with the remaining keys as its options: for
    one tensor of ``shape`` of a layerwise operator (``Compressor.for_tensor``: an integer k,
    or a matrix shape), for the whole vector viewed as ``global_shape``
    (``Compressor.for_vector``), or, with neither, from the ratio alone."""
    name, params = _params(cfg)
    if name not in COMPRESSORS:
        raise ConfigError(
            f"unknown compressor {name!r} (available: {', '.join(sorted(COMPRESSORS))})"
        )
    cls = COMPRESSORS[name]
    try:
        if shape is not None:
            return cls.for_tensor(tuple(shape), ratio, **params)
        if global_shape is not None:
            return cls.for_vector(tuple(global_shape), ratio, **params)
        return cls(ratio=ratio, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"compressor {name}: {err}") from err


def build_quantizer(cfg: Mapping[str, Any]) -> Quantizer:
    name, params = _params(cfg)
    if name not in QUANTIZERS:
        raise ConfigError(
            f"unknown quantizer {name!r} (available: {', '.join(sorted(QUANTIZERS))})"
        )
    try:
        return QUANTIZERS[name](**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"quantizer {name}: {err}") from err
