"""A signal while the command is still starting (importing Hydra, torch, matplotlib, composing
the config) stops it like one during the rounds: exit 128 + s and one line, never a chain of
import tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import start_cli

SYNTH = ("problem=synthetic_logreg", "progress=false", "rounds=10000000", "log_every=1000")
INTERRUPTED = "compress-bench: interrupted by SIGTERM; metrics written so far are kept"


def assert_interrupted(returncode: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert returncode == 143, (returncode, err)
    assert err.strip().splitlines() == [INTERRUPTED], err


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0, 1.3])
def test_sigterm_at_start_up_is_one_line_exit_143(delay, tmp_path):
    """Before: the default action until main() installed the handler (the process died with
    no word, -15), and now and then chained import tracebacks (exit 1) or extra log lines."""
    proc = start_cli(*SYNTH, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_interrupted(proc.returncode, err)


# Runs the command with SIGTERM sent to itself when ``module`` starts to be imported (so the
# signal lands inside that import, every time), and records in ``fired`` that it was sent.
_KILL_WHILE_IMPORTING = textwrap.dedent(
    """
    import importlib.abc, os, runpy, signal, sys
    module, fired = sys.argv.pop(1), sys.argv.pop(1)

    class Trigger(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == module:
                sys.meta_path.remove(self)
                open(fired, "w").close()
                os.kill(os.getpid(), signal.SIGTERM)
            return None

    sys.meta_path.insert(0, Trigger())
    runpy.run_module("compress_bench", run_name="__main__", alter_sys=True)
    """
)


@pytest.mark.parametrize(
    "module",
    [
        "hydra.core.hydra_config",  # compress_bench.cli, before main()
        "matplotlib.scale",  # the sweep-report callback Hydra instantiates before the job
        "torch.nn",  # compress_bench.run.build, imported by the job
    ],
)
def test_sigterm_inside_an_import_is_one_line_exit_143(module, tmp_path):
    """Before: with matplotlib.scale, the half-imported matplotlib made the sweep-report
    import in the signal's error path fail: exit 1 and three chained tracebacks."""
    script, fired = tmp_path / "kill_while_importing.py", tmp_path / "fired"
    script.write_text(_KILL_WHILE_IMPORTING)
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            module,
            str(fired),
            *SYNTH,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env={**os.environ, "COMPRESS_BENCH_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fired.exists(), f"{module} was not imported: choose another module"
    assert_interrupted(result.returncode, result.stderr)
