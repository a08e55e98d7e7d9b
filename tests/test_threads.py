"""The ``threads`` key: an explicit count is used as given; the default is 1 thread, for a
single run and a sweep alike, never read from the machine's load; OpenMP's waiting threads
spin briefly unless the user chose otherwise."""

from __future__ import annotations

import os

import pytest

from compress_bench import runner


def test_explicit_thread_count_is_used():
    assert runner.resolve_threads(3) == 3


def test_the_default_is_one_thread_for_runs_and_sweeps_alike(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert runner.resolve_threads(None) == 1


def _spin_count_after_import(env: dict[str, str]) -> str:
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import os, compress_bench; print(os.environ.get('GOMP_SPINCOUNT', '-'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "3000"),  # a short spin: no collapse beside a busy process
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "-"),  # the user's policy decides the spin count
        ({"GOMP_SPINCOUNT": "1000"}, "1000"),  # the user's count is kept
    ],
)
def test_openmp_threads_spin_briefly_unless_the_user_chose(env, expected):
    assert _spin_count_after_import(env) == expected
