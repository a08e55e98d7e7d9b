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
