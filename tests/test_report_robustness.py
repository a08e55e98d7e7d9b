"""The report does not take damage for a result: the failure summary of a sweep goes to stderr
(not to the stdout of Hydra's logging), a corrupt summary.json is called corrupt (not missing),
and a metrics.csv with rows that are not whole is flagged (not completed)."""

from __future__ import annotations

import logging
import sys

import pandas as pd
import pytest
from matplotlib.figure import Figure

from compress_bench.report import callback
from compress_bench.report.sweep import collect, exit_code, main, report
from tests.conftest import run_cli
from tests.test_sweep_report import fake_metrics, fake_summary, make_sweep, write_job


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)
    monkeypatch.delenv("COMPRESS_BENCH_DEBUG", raising=False)


def completed_jobs(sweep, seeds=(0, 1, 2)) -> None:
    for seed in seeds:
        m = fake_metrics("top_k", seed)
        s = fake_summary("top_k", seed, m)
        write_job(sweep, seed, ["compressor=top_k", f"seed={seed}"], s, m)


# --- the failure summary goes to stderr ------------------------------------------------------


def test_the_failure_summary_of_a_sweep_goes_to_stderr(tmp_path, capsys):
    """At the end of a multirun, Hydra's hydra_logging config has a console handler on stdout
    on the root logger; the report's lines (failed job 6, missing job 10) went through it to
    stdout. Now they go to stderr, and the stdout handler is left as it was."""
    sweep = make_sweep(tmp_path)
    root = logging.getLogger()
    hydra_console = logging.StreamHandler(sys.stdout)  # what hydra_logging installs
    hydra_console.setFormatter(logging.Formatter("[HYDRA] %(message)s"))
    root.addHandler(hydra_console)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        result = callback.run_report(sweep)
        logging.getLogger("hydra").info("a line of Hydra's own")
    finally:
        root.removeHandler(hydra_console)
        root.setLevel(level)
    out, err = capsys.readouterr()
    assert result["failed"] == [6] and result["missing"] == [10]
    assert "sweep report" not in out
    assert "[HYDRA] a line of Hydra's own" in out  # Hydra's own lines stay where they were
    assert "[compress-bench] sweep report: failed: job 6 (compressor=bogus" in err
    assert "[compress-bench] sweep report: missing: job 10" in err
    assert "sweep report: 9 jobs (" in err  # the summary line with the files written
    assert hydra_console.filters == []


def test_without_a_handler_on_stdout_the_report_logs_as_configured(tmp_path, caplog, capsys):
    """The jobs' console handler is on stderr (conf/hydra/job_logging): nothing to move, and
    no line twice."""
    sweep = make_sweep(tmp_path)
    with caplog.at_level(logging.INFO, logger="compress_bench"):
        callback.run_report(sweep)
    failed = [r for r in caplog.records if "failed: job 6" in r.getMessage()]
    assert len(failed) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_a_real_sweep_prints_its_failure_summary_on_stderr(tmp_path):
    """End to end, through Hydra's own logging: stdout has Hydra's job listing only."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "problem=synthetic_logreg",
        "progress=false",
        "rounds=5",
        "lr=0.5,-1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "sweep report" not in result.stdout and "Launching 2 jobs" in result.stdout
    (line,) = [x for x in result.stderr.splitlines() if "sweep report: failed: job 1 (" in x]
    assert "lr=-1" in line and "lr must be positive" in line


# --- a corrupt summary.json ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"status": "completed", "final": {', "is corrupt or unreadable: Expecting"),
        ("[1, 2]", "is corrupt: not a JSON object"),
    ],
)
def test_a_corrupt_summary_json_is_named_corrupt_not_missing(tmp_path, caplog, capsys, text, why):
    """Before: status missing, "summary.json unreadable: ..." without the file's path."""
    completed_jobs(tmp_path)
    path = tmp_path / "1" / "summary.json"
    path.write_text(text)  # a disk full, a copy cut short
    frame = collect(tmp_path)
    assert frame["status"].tolist() == ["completed", "corrupt", "completed"]
    assert frame.loc[1, "error"].startswith(f"{path} {why}")
    with caplog.at_level(logging.ERROR, logger="compress_bench"):
        assert main([str(tmp_path)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    (line,) = [e for e in errors if "job 1" in e]
    assert line.startswith("sweep report: corrupt summary.json: job 1 (compressor=top_k, seed=1): ")
    assert str(path) in line and "missing" not in line
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table.loc[1, "status"] == "corrupt" and str(path) in table.loc[1, "error"]
    result = report(tmp_path)
    assert result["corrupt"] == [1] and result["missing"] == [] and exit_code(result) == 1


def test_a_job_without_summary_json_is_still_missing(tmp_path):
    completed_jobs(tmp_path)
    (tmp_path / "1" / "summary.json").unlink()
    frame = collect(tmp_path)
    assert frame.loc[1, "status"] == "missing"
    assert frame.loc[1, "error"].startswith("no summary.json")


# --- a malformed metrics.csv ----------------------------------------------------------------


def test_a_ragged_metrics_csv_is_flagged_not_completed(tmp_path, caplog, monkeypatch):
    """Job 1's last line is cut short (a killed writer: fewer fields, no line end), job 2 has a
    row with an extra field. Before: both read by pandas as whole runs (NaN padding; the extra
    field shifts the first row into the index), "completed", exit 0."""
    completed_jobs(tmp_path)
    one = tmp_path / "1" / "metrics.csv"
    text = one.read_text().rstrip("\n")
    one.write_text(text[: text.rindex("\n") + 1] + "100,0.1000")  # the last row, cut short
    two = tmp_path / "2" / "metrics.csv"
    lines = two.read_text().splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n") + ",7\n"  # row 0 (line 2) with one field too many
    two.write_text("".join(lines))
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    with caplog.at_level(logging.ERROR, logger="compress_bench"):
        assert main([str(tmp_path)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for job, detail in ((1, "line 12 has 2 fields, the header 9"), (2, "line 2 has 10 fields")):
        (line,) = [e for e in errors if f"job {job}" in e]
        assert line.startswith(f"sweep report: malformed metrics.csv: job {job} (")
        assert str(tmp_path / str(job) / "metrics.csv") in line and detail in line
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table["status"].tolist() == ["completed"] * 3  # what the runs said, and ...
    assert pd.isna(table.loc[0, "error"])
    assert "line 12 has 2 fields, the header 9 (left out)" in table.loc[1, "error"]
    assert "line 2 has 10 fields, the header 9 (left out)" in table.loc[2, "error"]
    # ... on the figure: listed in the box, and drawn on their own from their whole rows
    (fig,) = figures
    box = "\n".join(t.get_text() for t in fig.texts)
    assert "malformed metrics.csv: job 1 (compressor=top_k, seed=1)" in box
    assert "malformed metrics.csv: job 2 (compressor=top_k, seed=2)" in box
    curves = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert "top_k" in curves  # job 0 alone: no band over seeds with damaged rows
    one, two = (curves[f"top_k (job {job}: malformed metrics.csv)"] for job in (1, 2))
    assert list(one.get_xdata()) == list(range(0, 91, 10))  # round 100 left out
    assert list(two.get_xdata()) == list(range(10, 101, 10))  # round 0 left out
    result = report(tmp_path)
    assert result["malformed"] == [1, 2] and exit_code(result) == 1


def test_a_last_line_without_its_line_end_is_flagged(tmp_path):
    """The right number of fields, but no line end: the last value may be cut short
    (1.2345e-05 written as 1.2), so the row is not trusted."""
    completed_jobs(tmp_path, seeds=(0,))
    path = tmp_path / "0" / "metrics.csv"
    path.write_text(path.read_text().rstrip("\n"))
    frame = collect(tmp_path)
    assert "line 12, the last, is cut short (no line end)" in frame.loc[0, "error"]
    assert frame.attrs["problems"][0][1] == "malformed"


def test_a_divergence_is_told_by_the_rule_the_run_recorded(tmp_path):
    """A run stopped by ``diverge_factor`` has finite values: the report says the rule its
    summary.json records, not "non-finite" (as it did for every diverged job before)."""
    m = fake_metrics("rand_k", 0).iloc[:5]
    rule = "||grad f(x^k)|| / ||grad f(x^0)|| = 9.72e+07 > diverge_factor 1e+06"
    s = fake_summary("rand_k", 0, m, status="diverged", stop_reason="diverged")
    s["divergence"] = {"round": 40, "rule": rule}
    write_job(tmp_path, 0, ["compressor=rand_k"], s, m)
    (line,) = collect(tmp_path).attrs["problems"]
    assert line == (0, "diverged", f"diverged: job 0 (compressor=rand_k): {rule} at round 40")
