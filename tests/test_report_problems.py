"""Jobs the report must not drop silently: completed jobs without usable metrics, interrupted
jobs, and jobs whose summary.json still says running."""

from __future__ import annotations

import logging
import os
import sys

import pandas as pd
import pytest

from compress_bench.report import callback
from compress_bench.report.jobs import process_note
from compress_bench.report.sweep import collect, exit_code, main, problem_lines, report
from tests.test_sweep_report import fake_metrics, fake_summary, write_job


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)
    monkeypatch.delenv("COMPRESS_BENCH_DEBUG", raising=False)


def test_completed_jobs_without_usable_metrics_are_named_everywhere(tmp_path, caplog, capsys):
    for seed in range(4):
        m = fake_metrics("top_k", seed)
        write_job(
            tmp_path, seed, ["compressor=top_k", f"seed={seed}"], fake_summary("top_k", seed, m), m
        )
    (tmp_path / "1" / "metrics.csv").unlink()
    (tmp_path / "2" / "metrics.csv").write_text('round,loss\n0,1\n"never closed\n1,2,3,4\n')
    (tmp_path / "3" / "metrics.csv").write_text("step,loss\n0,1\n")  # no 'round' column
    with caplog.at_level(logging.ERROR, logger="compress_bench"):
        assert main([str(tmp_path)]) == 1  # was 0: the jobs were silently left out
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for job in (1, 2, 3):
        assert any(f"no metrics: job {job} (compressor=top_k, seed={job})" in e for e in errors)
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table["status"].tolist() == ["completed"] * 4
    assert pd.isna(table.loc[0, "error"])
    assert table.loc[1, "error"] == "metrics.csv is missing (completed, not drawn)"
    assert table.loc[2, "error"].startswith("metrics.csv cannot be read: ")
    assert table.loc[3, "error"] == "metrics.csv has no 'round' column (completed, not drawn)"
    result = report(tmp_path)
    assert result["no_metrics"] == [1, 2, 3] and exit_code(result) == 1


def test_the_figure_box_names_the_jobs_without_metrics(tmp_path):
    from compress_bench.report.comparison import box_lines

    m = fake_metrics("rand_k", 0)
    s = fake_summary("rand_k", 0, m, status="diverged", stop_reason="diverged")
    write_job(tmp_path, 0, ["compressor=rand_k"], s, None)
    box = box_lines(collect(tmp_path))
    assert box == [
        "diverged: job 0 (compressor=rand_k): non-finite at round 100",
        "no metrics: job 0 (compressor=rand_k): metrics.csv is missing (diverged, not drawn)",
    ]


def test_interrupted_is_a_status_of_its_own_and_not_finished(tmp_path):
    m = fake_metrics("top_k", 0).iloc[:3]
    s = fake_summary("top_k", 0, m, status="interrupted", stop_reason="signal", signal="SIGINT")
    write_job(tmp_path, 0, ["compressor=top_k"], s, m)
    ((job, kind, text),) = problem_lines(collect(tmp_path))
    assert (job, kind) == (0, "interrupted")
    assert text == (
        "interrupted: job 0 (compressor=top_k): interrupted by SIGINT at round 20, "
        "before it finished"
    )
    result = report(tmp_path)
    assert result["interrupted"] == [0] and result["incomplete"] == [] and exit_code(result) == 1
    assert exit_code({"interrupted": [0]}) == 1 and exit_code({"no_metrics": [2]}) == 1
    assert exit_code({"unexpected": [5]}) == 1 and exit_code({"unknown": [1]}) == 1


def test_an_unknown_status_is_not_taken_for_a_finished_run(tmp_path):
    m = fake_metrics("top_k", 0)
    write_job(tmp_path, 0, ["seed=0"], fake_summary("top_k", 0, m, status="cancelled"), m)
    ((_, kind, text),) = problem_lines(collect(tmp_path))
    assert kind == "unknown" and "'cancelled'" in text


def test_running_is_reported_as_running_or_killed():
    assert process_note({}).startswith("still running, or killed")
    assert "probably still running" in process_note({"pid": os.getpid()})
    assert process_note({"pid": 2**31 - 1}).startswith("killed: its process")  # > pid_max
    elsewhere = process_note({"pid": os.getpid(), "host": "some-other-host.invalid"})
    assert "not this machine" in elsewhere


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pids")
def test_a_running_job_whose_process_is_gone_is_reported_killed(tmp_path):
    m = fake_metrics("top_k", 0).iloc[:2]
    write_job(tmp_path, 0, ["seed=0"], {"status": "running", "pid": 2**31 - 1}, m)
    ((_, kind, text),) = problem_lines(collect(tmp_path))
    assert kind == "incomplete"
    assert text.startswith("running or killed: job 0 (seed=0): summary.json still says 'running'")
    assert text.endswith("killed: its process (pid 2147483647) is gone")
