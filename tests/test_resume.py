"""RunState checkpoints: a run killed with SIGKILL and resumed writes the metrics.csv of an
uninterrupted run with the same seed, bit for bit (wall_time and throughput aside)."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest
import torch

from compress_bench.run.state import RunState, load_checkpoint, save_checkpoint
from tests.conftest import start_cli

TIMING_COLUMNS = {"wall_time", "images_per_second"}


def _cli(args, env):
    return start_cli(*args, env=env)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(fh)
        ]


def _env(data_dir) -> dict[str, str]:
    return {"COMPRESS_BENCH_DATA": str(data_dir)}


def kill_and_resume(tmp_path, data_dir, args, wait_rows: int, timeout: float = 300):
    env = _env(data_dir)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = _cli([*args, f"hydra.run.dir={straight}"], env)
    assert done.wait(timeout) == 0, done.stderr.read()
    proc = _cli([*args, f"hydra.run.dir={killed}"], env)
    deadline = time.monotonic() + timeout
    metrics = killed / "metrics.csv"
    # kill once a checkpoint exists and some rows were written after it
    while time.monotonic() < deadline and proc.poll() is None:
        ready = (killed / "checkpoint.pt").exists() and metrics.exists()
        if ready and sum(1 for _ in metrics.open()) > wait_rows:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill = len(_rows(metrics))
    resumed = _cli([*args, f"resume={killed}", f"hydra.run.dir={tmp_path / 'resume'}"], env)
    assert resumed.wait(timeout) == 0, resumed.stderr.read()
    want, got = _rows(straight / "metrics.csv"), _rows(metrics)
    assert 0 < rows_at_kill < len(want)
    assert got == want
    return want


@pytest.mark.parametrize(
    "extra",
    # the minibatch case (~50 s) runs under `slow` (make test-slow) to keep the default suite
    # under 10 minutes; the full-batch case keeps kill -9 + resume in it
    [[], pytest.param(["problem.batch_size=16"], marks=pytest.mark.slow)],
    ids=["full", "minibatch"],
)
def test_logreg_killed_and_resumed_is_bit_for_bit(tmp_path, mushrooms_dir, extra):
    """Full batch, and minibatches (the data-order stream is in the checkpoint)."""
    args = [
        *extra,
        "method=ef21",
        "quantizer=natural",
        "n_workers=4",
        "rounds=20000",
        "log_every=50",
        "checkpoint_every=2000",
        "progress=false",
        "threads=1",
    ]
    kill_and_resume(tmp_path, mushrooms_dir, args, wait_rows=5)


def test_resume_under_another_config_is_refused(tmp_path, mushrooms_dir):
    env = _env(mushrooms_dir)
    base = ["rounds=30", "checkpoint_every=10", "progress=false", "threads=1"]
    run = _cli([*base, f"hydra.run.dir={tmp_path / 'a'}"], env)
    assert run.wait(120) == 0
    other = _cli(
        [*base, "ratio=0.3", f"resume={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'b'}"], env
    )
    assert other.wait(120) == 2
    err = other.stderr.read().strip().splitlines()
    assert len(err) == 1 and "another config" in err[0]


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    state = RunState(3, torch.arange(4.0), {"e": torch.ones(2, 4), "started": True}, {"s": [1]})
    save_checkpoint(tmp_path, state, "abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left
    loaded = load_checkpoint(tmp_path, "abc")
    assert loaded.round == 3 and torch.equal(loaded.method["e"], torch.ones(2, 4))
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    from compress_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path, "abc")
