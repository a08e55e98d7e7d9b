"""The sweep report on hand-made multirun folders: table, labels, band, colours, CLI, callback."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from compress_bench.report import callback
from compress_bench.report import sweep as sweep_module
from compress_bench.report.sweep import (
    FALLBACK_PALETTE,
    choose_bits_column,
    collect,
    colour_for,
    exit_code,
    figure_comparison,
    label_of,
    main,
    mean_std_log10,
    plot_comparison,
    problem_lines,
    read_metrics,
    report,
    scan,
    varying_keys,
)

ROUNDS = np.arange(0, 101, 10)
TOL = 0.015
# bits per round and per-seed slope of log10(grad_norm_rel) against rounds
BITS_PER_ROUND = {"top_k": 390, "rand_k": 200}
SLOPE = {"top_k": 0.040, "rand_k": 0.020}


def write_job(
    sweep: Path,
    num: int,
    overrides: list[str] | None,
    summary: dict | None = None,
    metrics: pd.DataFrame | None = None,
) -> Path:
    job = sweep / str(num)
    job.mkdir(parents=True)
    if overrides is not None:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary, indent=2))
    if metrics is not None:
        metrics.to_csv(job / "metrics.csv", index=False)
    return job


def fake_metrics(compressor: str, seed: int, extra: dict | None = None) -> pd.DataFrame:
    rel = 10.0 ** (-(SLOPE[compressor] + 0.001 * seed) * ROUNDS)
    bits = ROUNDS * BITS_PER_ROUND[compressor]
    frame = pd.DataFrame(
        {
            "round": ROUNDS,
            "loss": 0.1 + 0.5 * rel,
            "loss_gap": 0.5 * rel,
            "grad_norm": 2.0 * rel,
            "grad_norm_rel": rel,
            "bits": bits.astype(float),
            "bits_total": bits,
            "grad_evals": ROUNDS,
            "wall_time": ROUNDS * 1e-3,
        }
    )
    for key, value in (extra or {}).items():
        frame[key] = value
    return frame


def fake_summary(compressor: str, seed: int, metrics: pd.DataFrame, **extra) -> dict:
    last = metrics.iloc[-1]
    summary = {
        "status": "completed",
        "stop_reason": "rounds",
        "problem": "synthetic_logreg",
        "compressor": compressor,
        "quantizer": "none",
        "method": "dcgd",
        "n_workers": 2,
        "seed": seed,
        "lr": 0.5,
        "rounds_done": int(last["round"]),
        "total_bits": float(last["bits"]),
        "final": {k: float(last[k]) for k in ("loss", "loss_gap", "grad_norm", "grad_norm_rel")},
        "config": {"tol": TOL, "seed": seed, "bits_convention": "spec"},
    }
    summary.update(extra)
    return summary


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No report state leaks between tests; errors are one line (no debug tracebacks)."""
    monkeypatch.setattr(callback, "LAST_REPORT", None)
    monkeypatch.setattr(callback, "_pending", None)
    monkeypatch.delenv("COMPRESS_BENCH_DEBUG", raising=False)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The sweep reported once (drawing the figure is the slow part): (root, result, log)."""
    root = make_sweep(tmp_path_factory.mktemp("reported"))
    logger = logging.getLogger("compress_bench")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        result = report(root)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return root, result, handler.records


def make_sweep(tmp_path: Path) -> Path:
    """2 compressors x 3 seeds (jobs 0-5), a failed job (6), a diverged one (7), an empty
    folder (10, so that numerical order matters), and the files Hydra leaves at the root."""
    root = tmp_path / "multirun"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "notes").mkdir()  # not a job folder
    num = 0
    for compressor in ("top_k", "rand_k"):
        for seed in range(3):
            m = fake_metrics(compressor, seed)
            overrides = [f"compressor={compressor}", f"seed={seed}", "+experiment=quick"]
            write_job(root, num, overrides, fake_summary(compressor, seed, m), m)
            num += 1
    write_job(
        root,
        6,
        ["compressor=bogus", "seed=0", "+experiment=quick"],
        {"status": "failed", "error": "unknown compressor 'bogus'\n(available: rand_k, top_k)"},
    )
    m = fake_metrics("rand_k", 3)
    m.loc[m.index[-3:], ["loss", "loss_gap", "grad_norm", "grad_norm_rel"]] = [
        [5.0, 4.9, 50.0, 20.0],
        [math.inf, math.inf, math.inf, math.inf],
        [math.nan, math.nan, math.nan, math.nan],
    ]
    s = fake_summary("rand_k", 3, m, status="diverged", stop_reason="diverged", rounds_done=100)
    s["final"] = {"loss": math.nan, "loss_gap": math.nan, "grad_norm": math.nan}
    write_job(root, 7, ["compressor=rand_k", "seed=3", "++experiment=quick"], s, m)
    (root / "10").mkdir()  # killed before it started: no summary.json, no .hydra
    return root


# --- the table -------------------------------------------------------------------------------


def test_collect_one_row_per_job_in_numerical_order(sweep):
    frame = collect(sweep)
    assert frame["job"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10]
    cols = frame.columns.tolist()
    assert cols[:4] == ["job", "compressor", "seed", "experiment"]  # overrides, '+' stripped
    for column in (
        "status",
        "stop_reason",
        "rounds_done",
        "total_bits",
        "final_loss_gap",
        "final_grad_norm_rel",
        "rounds_to_tol",
        "bits_to_tol",
        "error",
        "quantizer",
        "label",
    ):
        assert column in cols
    assert frame["status"].tolist() == ["completed"] * 6 + ["failed", "diverged", "missing"]
    assert frame["experiment"].tolist()[:8] == ["quick"] * 8
    assert pd.isna(frame["experiment"].iloc[8])
    assert frame["compressor"].tolist()[:8] == ["top_k"] * 3 + ["rand_k"] * 3 + ["bogus", "rand_k"]
    assert frame["seed"].tolist()[:8] == [0, 1, 2, 0, 1, 2, 0, 3]
    # override values are kept as typed (strings); the seed column is made an integer
    assert frame.loc[0, "compressor"] == "top_k"
    first = frame.iloc[0]
    expected = fake_metrics("top_k", 0).iloc[-1]
    assert first["rounds_done"] == 100
    assert first["total_bits"] == pytest.approx(100 * 390)
    assert first["final_grad_norm_rel"] == pytest.approx(expected["grad_norm_rel"])
    assert first["final_loss_gap"] == pytest.approx(expected["loss_gap"])
    assert first["quantizer"] == "none"
    assert "unknown compressor 'bogus'" in frame.loc[6, "error"]
    assert pd.isna(frame.loc[0, "error"])
    assert "summary.json" in frame.loc[8, "error"]


def test_rounds_and_bits_to_tol(sweep):
    frame = collect(sweep).set_index("job")
    # first logged round with 10**(-slope * round) <= 0.015, i.e. slope * round >= 1.824
    assert frame.loc[[0, 1, 2], "rounds_to_tol"].tolist() == [50, 50, 50]
    assert frame.loc[[3, 4, 5], "rounds_to_tol"].tolist() == [100, 90, 90]
    assert frame.loc[[0, 3, 4], "bits_to_tol"].tolist() == [50 * 390, 100 * 200, 90 * 200]
    # the failed, diverged (never reached tol) and missing jobs have none
    assert frame.loc[[6, 7, 10], "rounds_to_tol"].isna().all()
    assert frame.loc[[6, 7, 10], "bits_to_tol"].isna().all()


def test_no_tol_means_no_rounds_to_tol(tmp_path):
    m = fake_metrics("top_k", 0)
    s = fake_summary("top_k", 0, m)
    s["config"]["tol"] = None
    write_job(tmp_path, 0, ["compressor=top_k"], s, m)
    assert collect(tmp_path)["rounds_to_tol"].isna().all()


def test_summary_csv_round_trips(reported):
    sweep, result, _ = reported
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == result["jobs"] == 9
    assert table["job"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10]
    assert table.loc[table["job"] == 0, "rounds_to_tol"].item() == 50
    assert table.loc[table["job"] == 6, "status"].item() == "failed"
    assert table.loc[table["job"] == 10, "status"].item() == "missing"
    # the error is one line in the table
    error = table.loc[table["job"] == 6, "error"].item()
    assert error == "unknown compressor 'bogus' (available: rand_k, top_k)"


def test_a_killed_job_is_incomplete_with_its_last_metrics(tmp_path):
    m = fake_metrics("top_k", 0).iloc[:4]  # rounds 0..30 written before the kill
    s = {"status": "running", "compressor": "top_k", "seed": 0, "config": {"tol": None}}
    write_job(tmp_path, 0, ["compressor=top_k"], s, m)
    frame = collect(tmp_path)
    assert frame.loc[0, "status"] == "running"
    assert frame.loc[0, "rounds_done"] == 30
    assert frame.loc[0, "final_grad_norm_rel"] == pytest.approx(m["grad_norm_rel"].iloc[-1])
    ((job, kind, text),) = problem_lines(frame)
    assert (job, kind) == (0, "incomplete") and "running" in text
    assert exit_code({"failed": [], "missing": [], "incomplete": [0]}) == 1
    assert exit_code({"failed": [], "missing": [], "incomplete": [], "diverged": [3]}) == 0
    assert exit_code(None) == 0  # no report was made (the callback is not enabled)
    assert exit_code({"error": "boom", "failed": []}) == 1  # the report itself failed


# --- labels ----------------------------------------------------------------------------------


def test_labels_are_the_compressor_when_only_seeds_vary(sweep):
    frame = collect(sweep)
    assert varying_keys(frame) == []  # experiment is the same everywhere, seed never counts
    assert frame["label"].tolist()[:8] == ["top_k"] * 3 + ["rand_k"] * 3 + ["bogus", "rand_k"]
    assert label_of(frame.iloc[0]) == "top_k"


def test_labels_name_the_other_swept_keys(tmp_path):
    num = 0
    for compressor in ("top_k", "rand_k"):
        for ratio in ("0.1", "0.5"):
            for seed in (0, 1):
                m = fake_metrics(compressor, seed)
                overrides = [f"compressor={compressor}", f"ratio={ratio}", f"seed={seed}", "lr=1"]
                write_job(tmp_path, num, overrides, fake_summary(compressor, seed, m), m)
                num += 1
    frame = collect(tmp_path)
    assert varying_keys(frame) == ["ratio"]
    assert frame.attrs["label_keys"] == ["ratio"]
    assert frame["label"].tolist() == [
        "top_k, ratio=0.1",
        "top_k, ratio=0.1",
        "top_k, ratio=0.5",
        "top_k, ratio=0.5",
        "rand_k, ratio=0.1",
        "rand_k, ratio=0.1",
        "rand_k, ratio=0.5",
        "rand_k, ratio=0.5",
    ]
    assert label_of(frame.iloc[2], ["ratio"]) == "top_k, ratio=0.5"
    # the two configurations of one compressor: one colour, two line styles
    fig = figure_comparison(frame, {j: read_metrics(tmp_path / str(j)) for j in range(8)})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    a = lines["top_k, ratio=0.1 (mean \u00b1 std over 2 seeds)"]
    b = lines["top_k, ratio=0.5 (mean \u00b1 std over 2 seeds)"]
    assert a.get_color() == b.get_color() == colour_for("top_k")
    assert a.get_linestyle() != b.get_linestyle()


# --- mean and std over seeds -----------------------------------------------------------------


def test_mean_and_std_of_log10_over_seeds():
    x = [0.0, 10.0]
    grid, mean, std = mean_std_log10([(x, [1e-2, 1e-2]), (x, [1e-4, 1e-4])])
    np.testing.assert_allclose(grid, [0.0, 10.0])
    np.testing.assert_allclose(mean, [-3.0, -3.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # population std (ddof=0)
    _, _, std1 = mean_std_log10([(x, [1e-2, 1e-2]), (x, [1e-4, 1e-4])], ddof=1)
    np.testing.assert_allclose(std1, [math.sqrt(2)] * 2)


def test_band_grid_is_where_every_seed_has_data():
    a = ([0, 10, 20, 30], [1e-1, 1e-2, 1e-3, 1e-4])
    b = ([5, 15, 25], [1e-1, 1e-2, 0.0])  # the 0 is dropped: b ends at x = 15
    grid, mean, _ = mean_std_log10([a, b])
    np.testing.assert_allclose(grid, [5, 10, 15])
    # a at 5 interpolates log10 linearly: -1.5; b at 10: -1.5
    np.testing.assert_allclose(mean, [(-1.5 - 1) / 2, (-2 - 1.5) / 2, (-2.5 - 2) / 2])
    assert mean_std_log10([a]) is None
    assert mean_std_log10([([0, 1], [1, 1]), ([2, 3], [1, 1])]) is None  # no overlap


# --- colours ---------------------------------------------------------------------------------


def test_colours_are_fixed_per_compressor():
    known = [
        "rand_k",
        "top_k",
        "md_greedy",
        "md_greedy_weighted",
        "md_weighted_greedy",
        "md_stochastic",
        "identity",
        "natural",
        "natural_dithering",
        "qsgd",
        "sign",
        "scaled_sign",
        "biased_rand_k",
        "adaptive_rand_k",
        "standard_dithering",
    ]
    colours = [colour_for(name) for name in known]
    assert len(set(colours)) == len(known)
    # unknown names: sha256 of the name into the palette, the same in every process
    # (str hashes are salted per process; this value is not)
    assert colour_for("my_new_operator") == FALLBACK_PALETTE[8] == "#636363"
    assert colour_for("another") in FALLBACK_PALETTE


def test_a_compressor_keeps_its_colour_whatever_else_is_in_the_sweep(sweep):
    frame = collect(sweep)
    metrics = {j: read_metrics(sweep / str(j)) for j in frame["job"]}
    both = figure_comparison(frame, metrics)
    alone = figure_comparison(frame[frame["compressor"] == "rand_k"], metrics)

    def colours(fig):
        return {
            line.get_label().split(" ")[0]: line.get_color()
            for ax in fig.axes
            for line in ax.get_lines()
            if not line.get_label().startswith("_")
        }

    assert colours(both)["rand_k"] == colours(alone)["rand_k"] == colour_for("rand_k")
    assert colours(both)["top_k"] == colour_for("top_k")


# --- the report ------------------------------------------------------------------------------


def test_report_writes_the_files_and_names_the_failed_job(reported):
    sweep, result, records = reported
    assert result["jobs"] == 9
    assert result["failed"] == [6]
    assert result["diverged"] == [7]
    assert result["missing"] == [10]
    assert result["bits_column"] == "bits"
    assert result["files"] == [str(sweep / "summary.csv"), str(sweep / "comparison.png")]
    png = sweep / "comparison.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 30_000
    failed = [r for r in records if "job 6" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    text = failed[0].getMessage()
    assert "compressor=bogus" in text and "unknown compressor 'bogus'" in text
    assert "\n" not in text
    assert any("job 7" in r.getMessage() and "diverged" in r.getMessage() for r in records)
    assert any("job 10" in r.getMessage() and "missing" in r.getMessage() for r in records)


def test_the_figure_lists_problem_jobs_and_draws_the_diverged_one_dashed(sweep):
    frame = collect(sweep)
    metrics = {j: read_metrics(sweep / str(j)) for j in frame["job"]}
    fig = figure_comparison(frame, metrics)
    texts = "\n".join(t.get_text() for t in [*fig.texts, *(t for ax in fig.axes for t in ax.texts)])
    assert "failed: job 6 (compressor=bogus, seed=0, experiment=quick): unknown" in texts
    assert "diverged: job 7" in texts and "missing: job 10" in texts
    labels = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert "top_k (mean \u00b1 std over 3 seeds)" in labels
    assert "rand_k (mean \u00b1 std over 3 seeds)" in labels
    diverged = labels["rand_k (job 7 diverged)"]
    assert diverged.get_linestyle() == "--"
    assert np.all(np.isfinite(diverged.get_ydata()))
    assert not any("bogus" in name for name in labels)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[3].get_yscale() == "log"


def test_thesis_bits_are_the_default_axis_when_every_run_counted_them(tmp_path):
    for seed in (0, 1):
        m = fake_metrics("top_k", seed, extra={"bits_thesis": ROUNDS * 300.0})
        s = fake_summary("top_k", seed, m)
        s["config"]["bits_convention"] = "thesis"
        write_job(tmp_path, seed, ["compressor=top_k", f"seed={seed}"], s, m)
    jobs = scan(tmp_path)
    assert choose_bits_column(jobs, None) == "bits_thesis"
    assert choose_bits_column(jobs, "bits") == "bits"
    jobs[1].summary["config"]["bits_convention"] = "spec"  # not every run counted them
    assert choose_bits_column(jobs, None) == "bits"
    frame = collect(tmp_path)
    assert frame["bits_thesis_to_tol"].tolist() == [50 * 300, 50 * 300]
    paths = plot_comparison(frame, tmp_path, x_bits_column="bits_thesis")
    assert paths == [tmp_path / "comparison.png"] and paths[0].stat().st_size > 30_000
    metrics = {j: read_metrics(tmp_path / str(j)) for j in frame["job"]}
    fig = figure_comparison(frame, metrics, x_bits_column="bits_thesis")
    assert "bits_thesis" in fig.axes[1].get_xlabel()
    assert fig.axes[1].get_lines()[0].get_xdata()[-1] == 100 * 300


# --- the command -----------------------------------------------------------------------------


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("compress-bench-report: error: ")
    return lines[0]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in _one_line(capsys.readouterr().err)
    (tmp_path / "file.txt").write_text("x")
    assert main([str(tmp_path / "file.txt")]) == 2
    assert "not a directory" in _one_line(capsys.readouterr().err)
    assert main([str(tmp_path)]) == 2
    assert "no job folders" in _one_line(capsys.readouterr().err)
    assert main([]) == 2  # usage error, also one line
    _one_line(capsys.readouterr().err)


def test_cli_unknown_bits_column_writes_nothing(sweep, capsys):
    assert main([str(sweep), "--bits-column", "bits_nope"]) == 2
    assert "bits_nope" in _one_line(capsys.readouterr().err)
    assert not (sweep / "summary.csv").exists()


def test_cli_exit_1_with_a_failed_job_but_writes_everything_then_0(sweep, capsys):
    assert main([str(sweep)]) == 1
    out = capsys.readouterr().out.split()
    assert out == [str(sweep / "summary.csv"), str(sweep / "comparison.png")]
    assert all(Path(p).is_file() for p in out)
    for num in (6, 10):  # leave the completed and diverged jobs: exit 0
        for path in sorted((sweep / str(num)).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (sweep / str(num)).rmdir()
    assert main([str(sweep)]) == 0
    assert len(capsys.readouterr().out.split()) == 2


def test_installed_command_has_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("compress-bench-report")
    if not script.exists():
        pytest.skip("compress-bench-report is not installed next to this interpreter")
    out = subprocess.run(
        [str(script), str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    _one_line(out.stderr)


# --- the Hydra callback ----------------------------------------------------------------------


def test_callback_reports_and_keeps_the_result(tmp_path):
    sweep = tmp_path / "multirun"  # what make_sweep fills, after the multirun started
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    cb = callback.SweepReportCallback()
    cb.on_multirun_start(config)
    assert callback.LAST_REPORT is None
    make_sweep(tmp_path)
    cb.on_multirun_end(config)
    assert callback.LAST_REPORT["failed"] == [6]
    assert (sweep / "summary.csv").is_file()
    assert callback.finish_pending_report() is None  # already reported


def test_callback_never_raises(tmp_path, caplog):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "nowhere")}}})
    with caplog.at_level(logging.ERROR, logger="compress_bench"):
        callback.SweepReportCallback().on_multirun_end(config)
    assert "nowhere" in callback.LAST_REPORT["error"]
    assert any("sweep report" in r.getMessage() for r in caplog.records)


def test_pending_report_after_a_job_raised(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        sweep_module, "report", lambda d, x_bits_column=None: calls.append(d) or {"failed": [6]}
    )
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    callback.SweepReportCallback(bits_column="bits").on_multirun_start(config)
    # Hydra re-raised a job's exception: on_multirun_end never ran
    result = callback.finish_pending_report()
    assert calls == [tmp_path]
    assert result is callback.LAST_REPORT and result == {"failed": [6]}
    assert callback.finish_pending_report() is None
