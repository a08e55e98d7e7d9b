"""A second sweep into a folder that holds a sweep is refused before Hydra writes anything: one
line on stderr, exit 2, the old sweep's files untouched."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from compress_bench.errors import PassThrough, UserError
from compress_bench.report import callback
from compress_bench.report.reuse import ranges, refuse_used_sweep_folder
from tests.conftest import run_cli
from tests.test_sweep_report import make_sweep


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes (folders too, as None)."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def test_ranges():
    assert ranges([]) == ""
    assert ranges([3]) == "3"
    assert ranges([0, 1, 2, 3, 4, 5]) == "0-5"
    assert ranges([11, 0, 1, 5, 10]) == "0-1, 5, 10-11"


@pytest.mark.parametrize(
    ("paths", "what"),
    [
        (["0/.hydra/"], "jobs 0"),  # a job folder Hydra set up
        (["0/summary.json", "1/summary.json", "2/metrics.csv", "7/summary.json"], "jobs 0-2, 7"),
        (["summary.csv"], "summary.csv"),  # a report, its job folders deleted
        (["multirun.yaml"], "multirun.yaml"),  # a sweep killed before its first job
    ],
)
def test_a_used_sweep_folder_is_refused_in_one_line(tmp_path, paths, what):
    for path in paths:  # a trailing "/" makes a folder, else a file
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if path.endswith("/") else target.write_text("{}")
    with pytest.raises(UserError) as refused:
        refuse_used_sweep_folder(tmp_path)
    assert str(refused.value) == (
        f"sweep folder {tmp_path} already holds a sweep ({what}); choose another "
        "hydra.sweep.dir or delete it"
    )


def test_new_empty_or_unrelated_folders_are_accepted(tmp_path):
    refuse_used_sweep_folder(tmp_path / "new")  # Hydra creates it
    refuse_used_sweep_folder(tmp_path)  # empty
    (tmp_path / "notes.txt").write_text("plan")
    (tmp_path / "3").mkdir()  # an empty numbered folder holds no job
    refuse_used_sweep_folder(tmp_path)


def test_the_callback_stops_the_sweep_before_it_starts(tmp_path):
    sweep = make_sweep(tmp_path)
    before = snapshot(sweep)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    # an Exception would become a Hydra warning and the sweep would run: a BaseException
    # that compress_bench.cli.main unwraps into its UserError
    with pytest.raises(PassThrough) as stopped:
        callback.SweepReportCallback().on_multirun_start(config)
    assert isinstance(stopped.value.error, UserError)
    assert "already holds a sweep (jobs 0-7)" in str(stopped.value.error)
    assert callback.finish_pending_report() is None  # the old sweep is not reported again
    assert snapshot(sweep) == before


def test_a_second_sweep_into_a_used_folder_exits_2_with_one_line(tmp_path):
    sweep = make_sweep(tmp_path)
    before = snapshot(sweep)
    # an interpolated folder is not checked before Hydra starts (cli_checks): the callback is
    result = run_cli(
        "-m",
        "problem=synthetic_logreg",
        "progress=false",
        "rounds=2",
        "seed=0,1",
        "hydra.sweep.dir=${oc.env:SWEEP_FOLDER}",
        cwd=tmp_path,
        env={"SWEEP_FOLDER": str(sweep)},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"compress-bench: error: sweep folder {sweep} already holds a sweep (jobs 0-7); "
        "choose another hydra.sweep.dir or delete it"
    ]
    assert snapshot(sweep) == before  # multirun.yaml, summary.csv and the jobs untouched
