"""Issue 8: every bad input is one line and exit 2; bugs are one line and exit 1 with the
traceback kept in the run folder; signals are recorded; output folders are never reused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from compress_bench.run import rounds
from tests.conftest import run_main, start_cli

SYNTH = ("problem=synthetic_logreg", "progress=false")


ONE_LINE_ERRORS = [
    (["seed=-1", "rounds=10"], "seed must be in [0, 9223372036854775807], got -1"),
    (["problem.split_seed=-3", "n_workers=2"], "problem.split_seed must be in [0,"),
    (["problem.l2=nan"], "problem.l2 must be a finite number, got nan"),
    (["problem.l2=inf"], "problem.l2 must be a finite number, got inf"),
    (["problem.label_noise=nan"], "problem.label_noise must be a finite number"),
    (["problem.l2=-1"], "problem.l2 must be a number >= 0, got -1"),
    (["tol=nan"], "tol must be a finite number"),
    (["max_bits=inf"], "max_bits must be a finite number"),
    (["lr=inf"], "lr must be positive and finite"),
    (["compressor=md_greedy", "importance.steps=0"], "importance.steps must be an integer >= 1"),
    (["quantizer=qsgd", "quantizer.levels=0"], "quantizer.levels must be an integer >= 1"),
    (["quantizer=standard_dithering", "quantizer.norm=0.5"], "quantizer.norm must be a number"),
    (["=0.2"], "malformed override '=0.2': nothing before '='"),
    (["compressor=null"], "compressor=null: compressor is a config group and needs one of"),
    (["experiment=null"], "experiment is a config group"),
    (["-sc", "install=tcsh"], "No completion plugin for 'tcsh'"),
    (["-sc"], "Expecting one subcommand"),
    (["hydra/launcher=ray"], "pip install hydra-ray-launcher"),
    (["-m", "hydra/launcher=slurm_local", "hydra.launcher.runs_per_job=0"], "runs_per_job must"),
    (["problem.n_samples=100000000000"], "more than the"),
]


@pytest.mark.parametrize(("args", "message"), ONE_LINE_ERRORS)
def test_bad_input_is_one_line_exit_2(args, message, tmp_path, monkeypatch, capfd):
    code, _, err = run_main([*args, *SYNTH], tmp_path, monkeypatch, capfd)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("compress-bench: error: ") and message in err, err
    assert "Traceback" not in err


def test_a_run_folder_that_holds_a_run_is_refused_untouched(tmp_path, monkeypatch, capfd):
    run_dir = tmp_path / "run"
    args = [*SYNTH, "rounds=3", f"hydra.run.dir={run_dir}"]
    assert run_main(args, tmp_path, monkeypatch, capfd)[0] == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = run_main([*args, "lr=-1"], tmp_path, monkeypatch, capfd)
    assert code == 2 and "already holds a run (summary.json, metrics.csv)" in err, err
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # .hydra/ included: nothing was rewritten


def test_a_sweep_folder_that_holds_a_sweep_is_refused(tmp_path, monkeypatch, capfd):
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    code, _, err = run_main(
        ["-m", *SYNTH, "rounds=2", "seed=0,1", f"hydra.sweep.dir={sweep}"],
        tmp_path,
        monkeypatch,
        capfd,
    )
    assert code == 2 and "already holds a sweep (jobs 0)" in err, err
    assert sorted(p.name for p in sweep.iterdir()) == ["0"]


def test_a_run_folder_that_is_a_file(tmp_path, monkeypatch, capfd):
    (tmp_path / "f").write_text("x")
    code, _, err = run_main(
        [*SYNTH, f"hydra.run.dir={tmp_path / 'f'}"], tmp_path, monkeypatch, capfd
    )
    assert code == 2 and "is a file, not a folder" in err, err


def _without_root_override() -> list[str] | None:
    """A command prefix that drops root's permission override (so mode bits apply to us),
    or None where that is impossible."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.mark.parametrize("where", ["run_dir", "sweep_dir", "cwd"])
def test_an_unwritable_output_folder_is_one_line(where, tmp_path):
    prefix = _without_root_override()
    if prefix is None:
        pytest.skip("cannot drop the permission override here")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    args = {
        "run_dir": [f"hydra.run.dir={locked / 'run'}"],
        "sweep_dir": ["-m", "seed=0,1", f"hydra.sweep.dir={locked / 'sweep'}"],
        "cwd": [],
    }[where]
    cwd = locked if where == "cwd" else tmp_path
    flags = ["-m"] if where == "sweep_dir" else []  # flags before the overrides (argparse)
    args = [a for a in args if a != "-m"]
    command = [*prefix, sys.executable, "-m", "compress_bench", *flags, *SYNTH, "rounds=2", *args]
    env = {**__import__("os").environ, "COMPRESS_BENCH_OFFLINE": "1"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "permission denied" in lines[0] and str(locked) in lines[0], lines
    assert list(locked.iterdir()) == []


def test_a_bug_is_one_line_exit_1_with_the_traceback_kept(tmp_path, monkeypatch, capfd):
    def broken(run, out_dir):
        raise RuntimeError("boom")

    monkeypatch.setattr(rounds, "execute", broken)
    run_dir = tmp_path / "run"
    code, _, err = run_main([*SYNTH, f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "internal error" in err and "RuntimeError: boom" in err
    assert str(run_dir / "error.log") in err
    assert "RuntimeError: boom" in (run_dir / "error.log").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_version_help_and_info(tmp_path, monkeypatch, capfd):
    from compress_bench import __version__

    code, out, _ = run_main(["--version"], tmp_path, monkeypatch, capfd)
    assert code == 0 and out.startswith(f"compress-bench {__version__} (hydra-core ")
    code, out, _ = run_main(["--help"], tmp_path, monkeypatch, capfd)
    groups = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0] for line in groups.splitlines() if ":" in line}
    assert {"compressor", "quantizer", "problem", "experiment", "method"} <= listed
    assert not any(g.startswith("schema") or g == "experiment_operator" for g in listed), listed
    code, out, err = run_main(["--info"], tmp_path, monkeypatch, capfd)
    assert code == 0 and "matplotlib" not in out + err and "fontManager" not in out + err


def test_thesis_bits_in_the_final_line(tmp_path, monkeypatch, capfd):
    args = [*SYNTH, "rounds=3", "quantizer=power_of_two", "bits_convention=thesis"]
    code, _, err = run_main(args, tmp_path, monkeypatch, capfd)
    (summary,) = (tmp_path / "outputs").glob("20*/*/summary.json")
    thesis = json.loads(summary.read_text())["total_bits_thesis"]
    assert code == 0 and f"{thesis:.4g} thesis bits per worker" in err, err


def test_sign_with_lr_auto_warns(tmp_path, monkeypatch, capfd):
    code, _, err = run_main([*SYNTH, "rounds=2", "quantizer=sign"], tmp_path, monkeypatch, capfd)
    assert code == 0 and "top_k + sign has no class constant" in err, err
    code, _, err = run_main(
        [*SYNTH, "rounds=2", "quantizer=scaled_sign"], tmp_path, monkeypatch, capfd
    )
    assert code == 0 and "class constant" not in err, err


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """The command in a subprocess, its stderr kept."""
    return start_cli(*args, cwd=cwd)


def wait_for_rows(metrics: Path, rows: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not (
        metrics.exists() and len(metrics.read_text().splitlines()) > rows
    ):
        time.sleep(0.05)


def assert_rows_intact(metrics: Path) -> pd.DataFrame:
    """Every row written is there and whole: rounds 0, 1, 2, ... (log_every=1)."""
    rows = pd.read_csv(metrics)
    assert rows["round"].tolist() == list(range(len(rows))), metrics
    assert rows.notna()["loss"].all()
    return rows


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_is_recorded_as_interrupted(sig, code, tmp_path):
    run_dir = tmp_path / "run"
    proc = start([*SYNTH, "rounds=10000000", "log_every=1", f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for_rows(run_dir / "metrics.csv", 20)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [
        f"compress-bench: interrupted by {sig.name}; metrics written so far are kept"
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == sig.name
    rows = assert_rows_intact(run_dir / "metrics.csv")
    assert summary["rounds_done"] == rows["round"].iloc[-1]
    assert (run_dir / "loss.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_sweep_killed_at_a_random_moment_keeps_rows_and_reports_every_job(sig, seed, tmp_path):
    """kill -9, SIGTERM or SIGINT at a seeded random moment of a 3-job sweep: every row
    written survives, and the report (the callback's, or compress-bench-report's after
    kill -9) lists all three declared jobs."""
    import random

    sweep = tmp_path / "sweep"
    proc = start(
        ["-m", *SYNTH, "seed=0,1,2", "rounds=400", "log_every=1", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    moment = random.Random(f"{sig.name}-{seed}")
    job, rows = moment.randrange(3), moment.randrange(1, 300)
    wait_for_rows(sweep / str(job) / "metrics.csv", rows)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 128 + sig), proc.returncode
    for metrics in sweep.glob("*/metrics.csv"):
        assert_rows_intact(metrics)
    report = subprocess.run(
        [str(Path(sys.executable).with_name("compress-bench-report")), str(sweep)],
        capture_output=True,
        text=True,
    )
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["job"]) == [0, 1, 2], table
    finished = set(table["status"]) <= {"completed"}
    assert report.returncode == (0 if finished else 1), report.stderr
    assert "Traceback" not in report.stderr
