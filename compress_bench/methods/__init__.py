"""Methods: the update rules, each with explicit per-worker state.

Importing this package registers every built-in method (``@register_method``)."""

from compress_bench.errors import ConfigError
from compress_bench.methods import dcgd, diana, ef, ef21  # noqa: F401  (registration)
from compress_bench.methods.base import (
    METHODS,
    Evaluation,
    Method,
    Proposal,
    evaluate,
    register_method,
)
from compress_bench.methods.dcgd import DCGD
from compress_bench.methods.diana import DIANA
from compress_bench.methods.ef import EF14
from compress_bench.methods.ef21 import EF21

__all__ = [
    "DCGD",
    "DIANA",
    "EF14",
    "EF21",
    "METHODS",
    "Evaluation",
    "Method",
    "Proposal",
    "evaluate",
    "method_class",
    "register_method",
]


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (available: {', '.join(sorted(METHODS))})")
    return METHODS[name]
