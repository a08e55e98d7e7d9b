"""Methods: the update rules, each with explicit per-worker state."""

from compress_bench.errors import ConfigError
from compress_bench.methods.base import Evaluation, Method, Proposal
from compress_bench.methods.dcgd import DCGD

METHODS: dict[str, type[Method]] = {"dcgd": DCGD}

__all__ = ["METHODS", "Evaluation", "Method", "Proposal", "build_method"]


def build_method(name: str, **kwargs) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} (available: {', '.join(sorted(METHODS))})")
    return METHODS[name](**kwargs)
