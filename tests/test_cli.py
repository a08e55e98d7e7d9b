"""The command line, end to end: outputs, sweeps, bad input, kills."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from compress_bench.cli import main
from compress_bench.compressors import COMPRESSORS, QUANTIZERS
from tests.conftest import run_cli

SYNTH = ("problem=synthetic_logreg", "progress=false")


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "outputs").glob("20*/*/summary.json"))


def test_console_script_from_another_directory(tmp_path):
    result = run_cli(*SYNTH, "rounds=20", cwd=tmp_path, module=False)
    assert result.returncode == 0, result.stderr
    (out,) = run_dirs(tmp_path)
    assert {"metrics.csv", "summary.json", "loss.png"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == 20
    assert "Traceback" not in result.stderr


def test_mushrooms_with_power_of_two_end_to_end(tmp_path, mushrooms_dir):
    result = run_cli(
        f"data_dir={mushrooms_dir}",
        "quantizer=power_of_two",
        "rounds=5",
        "log_every=1",
        "progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (out,) = run_dirs(tmp_path)
    metrics = pd.read_csv(out / "metrics.csv")
    # d = 112, k = 22, index bits 7, 9-bit powers of two: 22 * (9 + 7) = 352 per round
    assert metrics["bits"].tolist() == [352.0 * r for r in range(6)]
    assert metrics["loss"].iloc[0] == pytest.approx(0.6931471805599453, abs=1e-15)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["L"] == pytest.approx(2.686214, abs=1e-6) and summary["d"] == 112


def test_concurrent_runs_get_distinct_directories(tmp_path):
    env = {"COMPRESS_BENCH_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "compress_bench", *SYNTH, "rounds=3"],
            cwd=tmp_path,
            env={**__import__("os").environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(run_dirs(tmp_path)) == 3


def test_multirun_sweep_keeps_going_past_a_failed_job_and_reports(tmp_path):
    result = run_cli(
        "-m",
        *SYNTH,
        "rounds=5",
        "compressor=top_k,rand_k",
        "seed=0,1,2",
        "lr=0.5,-1",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(sweep.glob("*/summary.json"))
    statuses = [json.loads(p.read_text())["status"] for p in jobs]
    assert sorted(statuses) == ["completed"] * 6 + ["failed"] * 6
    assert result.returncode == 1 and "lr must be positive" in result.stderr
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 12 and {"compressor", "seed", "lr", "status"} <= set(table.columns)
    failed = table[table["status"] == "failed"]
    assert (failed["lr"].astype(float) == -1).all() and len(failed) == 6
    assert (sweep / "comparison.png").stat().st_size > 20_000
    assert "failed" in result.stderr  # the report names the failed jobs


def test_divergence_exits_zero_with_a_warning(tmp_path):
    result = run_cli(*SYNTH, "dtype=float32", "lr=1e37", "compressor=identity", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "diverged" in result.stderr
    (out,) = run_dirs(tmp_path)
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    assert len(pd.read_csv(out / "metrics.csv")) >= 1


def test_a_killed_run_keeps_its_rows(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "compress_bench", *SYNTH, "rounds=10000000", "log_every=1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            found = list((tmp_path / "outputs").glob("20*/*/metrics.csv"))
            if found and len(found[0].read_text().splitlines()) > 20:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    metrics = pd.read_csv(found[0])
    assert len(metrics) > 19 and metrics["round"].tolist() == list(range(len(metrics)))
    summary = json.loads((found[0].parent / "summary.json").read_text())
    assert summary["status"] == "running"  # what a killed run honestly says


BAD_INPUT = [
    (
        ["compressor=no_such_operator"],
        "unknown compressor 'no_such_operator' (available: " + ", ".join(sorted(COMPRESSORS)),
    ),
    (["problem=nope"], "unknown problem 'nope'"),
    (["quantizer=nope"], "unknown quantizer 'nope' (available: " + ", ".join(sorted(QUANTIZERS))),
    (["ratio=0"], "ratio must be in (0, 1], got 0"),
    (["ratio=1.5"], "ratio must be in (0, 1], got 1.5"),
    (["ratio=-0.1"], "ratio must be in (0, 1]"),
    (["ratio=abc"], "'abc'"),
    (["n_workers=0"], "n_workers must be an integer >= 1, got 0"),
    (["n_workers=601"], "n_workers=601 is more than the 600 samples"),
    (["rounds=-1"], "rounds must be an integer >= 0, got -1"),
    (["lr=0"], "lr must be positive"),
    (["lr=-2"], "lr must be positive"),
    (["lr=fast"], "lr (a positive number or 'auto') must be a number"),
    (["foo=1"], "unknown key 'foo' (--help lists the keys)"),
    (["problem.foo=1"], "unknown key 'problem.foo' for problem=synthetic_logreg (its keys: "),
    (["ratio"], "Error parsing override 'ratio'"),
    (["compressor.scale=huge"], "Invalid value 'huge'"),
    (["device=tpu"], "Invalid value 'tpu'"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["compress-bench", *SYNTH, *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("compress-bench: error: ") and message in err, err


def test_missing_dataset_is_one_line(tmp_path):
    result = run_cli("rounds=1", f"data_dir={tmp_path / 'empty'}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "mushrooms not found at" in lines[0], result.stderr


def test_corrupted_dataset_is_one_line(tmp_path, mushrooms_dir):
    bad = tmp_path / "bad"
    (bad / "mushrooms").mkdir(parents=True)
    data = (mushrooms_dir / "mushrooms" / "mushrooms").read_bytes()
    (bad / "mushrooms" / "mushrooms").write_bytes(data[:-5000])
    result = run_cli("rounds=1", f"data_dir={bad}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is corrupted" in lines[0], result.stderr
