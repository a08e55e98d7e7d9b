"""The jobs a sweep declared (multirun.yaml) against the job folders it left: a sweep killed with
kill -9 lists the jobs it never ran, with their overrides, and exits 1."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from compress_bench.report import callback
from compress_bench.report.declared import BASIC_SWEEPER, read_declared
from compress_bench.report.sweep import collect, exit_code, main, problem_lines, report
from tests.test_sweep_report import fake_metrics, fake_summary, write_job

CONFIG_SOURCES = [  # as Hydra records them for compress-bench
    {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
    {"path": "compress_bench.conf", "schema": "pkg", "provider": "main"},
    {"path": "", "schema": "structured", "provider": "schema"},
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)
    monkeypatch.delenv("COMPRESS_BENCH_DEBUG", raising=False)


def write_multirun(
    sweep: Path, task: list[str], params: dict | None = None, sweeper: str = BASIC_SWEEPER
) -> Path:
    """The parts of multirun.yaml that Hydra writes at sweep start and the report reads."""
    sweep.mkdir(parents=True, exist_ok=True)
    config = {
        "hydra": {
            "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
            "sweeper": {"_target_": sweeper, "max_batch_size": None, "params": params},
            "overrides": {"hydra": [f"hydra.sweep.dir={sweep}"], "task": task},
            "runtime": {"config_sources": CONFIG_SOURCES},
        },
        "rounds": 2000,
    }
    path = sweep / "multirun.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("task", "params", "expected"),
    [
        (["seed=0,1,2,3", "rounds=20000"], None, [[f"seed={s}", "rounds=20000"] for s in range(4)]),
        (  # a cartesian product, the first list varying slowest
            ["compressor=top_k,rand_k", "seed=0,1"],
            None,
            [
                ["compressor=top_k", "seed=0"],
                ["compressor=top_k", "seed=1"],
                ["compressor=rand_k", "seed=0"],
                ["compressor=rand_k", "seed=1"],
            ],
        ),
        (  # as Hydra writes them into each job's overrides.yaml: 1e6 becomes 1000000.0
            ["+x=range(1,3)", "lr=1e6"],
            None,
            [["+x=1", "lr=1000000.0"], ["+x=2", "lr=1000000.0"]],
        ),
        (  # the sweeper's params (experiment=thesis_logreg) come first
            ["experiment=thesis_logreg", "seed=5"],
            {"compressor": "rand_k,top_k"},
            [
                ["compressor=rand_k", "experiment=thesis_logreg", "seed=5"],
                ["compressor=top_k", "experiment=thesis_logreg", "seed=5"],
            ],
        ),
        (  # glob() lists the group's options from the config sources the sweep used
            ["compressor=glob(*rand_k)"],
            None,
            [
                ["compressor=adaptive_rand_k"],
                ["compressor=biased_rand_k"],
                ["compressor=rand_k"],
            ],
        ),
        (["rounds=3"], None, [["rounds=3"]]),
    ],
)
def test_declared_jobs_are_hydras_basic_sweeper_expansion(tmp_path, task, params, expected):
    write_multirun(tmp_path, task, params)
    declared = read_declared(tmp_path)
    assert declared.jobs == expected and declared.ordered and declared.reason is None


def test_unknown_declared_jobs_say_why(tmp_path):
    assert read_declared(tmp_path).reason == "no multirun.yaml"
    write_multirun(tmp_path, ["seed=0,1"], sweeper="hydra_plugins.optuna.OptunaSweeper")
    assert "cannot be derived" in read_declared(tmp_path).reason
    write_multirun(tmp_path, ["lr=interval(0,1)"])
    assert "INTERVAL_SWEEP" in read_declared(tmp_path).reason
    (tmp_path / "multirun.yaml").write_text("hydra: [unclosed\n")
    assert "unreadable" in read_declared(tmp_path).reason
    write_multirun(tmp_path, ["seed=shuffle(0,1,2)"])
    shuffled = read_declared(tmp_path)
    assert shuffled.count == 3 and not shuffled.ordered


def killed_sweep(root: Path) -> Path:
    """``compress-bench -m seed=0,1,2,3 rounds=20000`` killed with kill -9 during job 1."""
    sweep = root / "sweep"
    write_multirun(sweep, ["seed=0,1,2,3", "rounds=20000"])
    m = fake_metrics("top_k", 0)
    write_job(sweep, 0, ["seed=0", "rounds=20000"], fake_summary("top_k", 0, m), m)
    m = fake_metrics("top_k", 1).iloc[:3]  # killed at round 20: summary.json says running
    s = {"status": "running", "compressor": "top_k", "seed": 1, "config": {"tol": None}}
    write_job(sweep, 1, ["seed=1", "rounds=20000"], s, m)
    return sweep


def test_a_killed_sweep_lists_the_jobs_it_never_ran(tmp_path, caplog, capsys):
    sweep = killed_sweep(tmp_path)
    with caplog.at_level(logging.INFO, logger="compress_bench"):
        assert main([str(sweep)]) == 1
    table = pd.read_csv(sweep / "summary.csv", dtype={"seed": str})
    assert table["job"].tolist() == [0, 1, 2, 3]
    assert table["status"].tolist() == ["completed", "running", "missing", "missing"]
    assert table["seed"].tolist() == ["0", "1", "2", "3"]  # the declared overrides
    assert (table["rounds"] == 20000).all()
    assert table.loc[2, "error"].startswith("no job folder: the sweep never started this job")
    assert table.loc[1, "error"].startswith("summary.json still says 'running' at round 20")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("sweep report: 4 jobs (") for m in messages), messages
    summary = next(m for m in messages if m.startswith("sweep report: 4 jobs"))
    assert "2 missing" in summary and "1 running or killed" in summary
    for job in (2, 3):
        assert any(f"missing: job {job} (seed={job}, rounds=20000)" in m for m in messages)
    running = next(m for m in messages if "job 1" in m)
    assert running.startswith("sweep report: running or killed: job 1")
    assert "still running, or killed" in running


def test_a_killed_sweep_without_the_killed_jobs_folder_still_exits_1(tmp_path):
    sweep = killed_sweep(tmp_path)
    shutil.rmtree(sweep / "1")
    result = report(sweep)
    assert result["jobs"] == 4 and result["declared"] == 4
    assert result["missing"] == [1, 2, 3] and exit_code(result) == 1


def test_a_sweep_killed_before_its_first_job_folder_is_reported(tmp_path):
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["compressor=top_k,rand_k"])
    result = report(sweep)
    assert result["missing"] == [0, 1] and exit_code(result) == 1
    table = pd.read_csv(sweep / "summary.csv")
    assert table["compressor"].tolist() == ["top_k", "rand_k"]


def test_folders_that_are_not_jobs_of_the_declared_sweep_are_listed(tmp_path):
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=0,1"])
    for seed, overrides in ((0, ["seed=0"]), (1, ["seed=7"]), (2, ["seed=2"])):
        m = fake_metrics("top_k", seed)
        write_job(sweep, seed, overrides, fake_summary("top_k", seed, m), m)
    frame = collect(sweep)
    lines = {(j, kind): text for j, kind, text in problem_lines(frame)}
    assert set(lines) == {(1, "unexpected"), (2, "unexpected")}
    assert (
        "(seed=7) are not the ones multirun.yaml declares for job 1 (seed=1)"
        in lines[1, "unexpected"]
    )
    assert "multirun.yaml declares jobs 0-1" in lines[2, "unexpected"]
    assert exit_code(report(sweep)) == 1


def test_without_multirun_yaml_the_folders_found_are_reported_with_a_warning(tmp_path, caplog):
    m = fake_metrics("top_k", 0)
    write_job(tmp_path, 0, ["seed=0"], fake_summary("top_k", 0, m), m)
    with caplog.at_level(logging.WARNING, logger="compress_bench"):
        result = report(tmp_path)
    assert result["jobs"] == 1 and result["declared"] is None and exit_code(result) == 0
    assert any("no multirun.yaml" in r.getMessage() for r in caplog.records)
