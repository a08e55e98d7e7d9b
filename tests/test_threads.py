"""The ``threads`` key: an explicit count is used as given; the default reads only the
command (1 thread in a sweep, every core for a single run), never the machine's load."""

from __future__ import annotations

import os

import pytest

from compress_bench import runner


def test_explicit_thread_count_is_used():
    assert runner.resolve_threads(3) == 3


@pytest.mark.parametrize(("sweeping", "expected"), [(True, 1), (False, os.cpu_count() or 1)])
def test_default_follows_the_command(sweeping, expected, monkeypatch):
    monkeypatch.setattr(runner, "_in_sweep", lambda: sweeping)
    assert runner.resolve_threads(None) == expected


def test_outside_hydra_is_not_a_sweep():
    assert runner._in_sweep() is False


def _wait_policy_after_import(env: dict[str, str]) -> str:
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import os, compress_bench; print(os.environ.get('OMP_WAIT_POLICY', '-'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "PASSIVE"),  # waiting OpenMP threads sleep: no collapse beside a busy process
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice is kept
        ({"GOMP_SPINCOUNT": "1000"}, "-"),  # libgomp's own knob, kept and not overridden
    ],
)
def test_openmp_threads_wait_passively_unless_the_user_chose(env, expected):
    assert _wait_policy_after_import(env) == expected
