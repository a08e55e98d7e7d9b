"""CPU runs keep freed memory in the process (compress_bench/memory.py)."""

from __future__ import annotations

import platform

import pytest

from compress_bench import memory
from compress_bench.config import compose_config
from compress_bench.runner import build_run


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_a_cpu_run_keeps_freed_memory():
    build_run(compose_config("problem=synthetic_logreg", "rounds=1", "device=cpu"))
    assert memory._done
    assert memory.keep_freed_memory()  # idempotent
