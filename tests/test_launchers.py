"""Sweeps under other Hydra launchers (README "Cluster sweeps"): joblib's parallel processes,
submitit's local executor, and the SLURM launcher's grouping of sweep jobs (runs_per_job).

The same 4-job sweep (one of each pair fails) gives the same summary.csv under every launcher.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

pytest.importorskip(
    "hydra_plugins.hydra_joblib_launcher",
    reason="the cluster extra is not installed (pip install -e '.[cluster]')",
)
pytest.importorskip(
    "hydra_plugins.hydra_submitit_launcher",
    reason="the cluster extra is not installed (pip install -e '.[cluster]')",
)

from hydra_plugins import compress_bench_launcher as grouped  # noqa: E402

# 4 jobs: two compressors x two step sizes, lr=-1 fails (recorded; the others go on)
SWEEP = (
    "-m",
    "problem=synthetic_logreg",
    "progress=false",
    "rounds=5",
    "compressor=top_k,rand_k",
    "lr=0.5,-1",
)


def sweep(tmp_path: Path, name: str, *launcher: str):
    folder = tmp_path / name
    result = run_cli(*SWEEP, *launcher, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    return result, folder


def check_like_the_basic_launcher(result, folder: Path, reference: pd.DataFrame) -> None:
    assert result.returncode == 1, result.stderr  # a job failed: exit 1, as with basic
    assert "sweep report: failed: job 1" in result.stderr
    assert "sweep report: failed: job 3" in result.stderr
    assert "Traceback" not in result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(folder / "summary.csv"), reference)
    for num in range(4):  # each job its own folder, config record and log, as with basic
        job = folder / str(num)
        assert (job / ".hydra" / "overrides.yaml").is_file()
        assert (job / "compress-bench.log").is_file()
        status = json.loads((job / "summary.json").read_text())["status"]
        assert status == ("completed" if num % 2 == 0 else "failed")
    assert (folder / "comparison.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """summary.csv of the sweep under Hydra's basic launcher (one job after the other)."""
    tmp_path = tmp_path_factory.mktemp("basic")
    result, folder = sweep(tmp_path, "sweep")
    assert result.returncode == 1, result.stderr
    table = pd.read_csv(folder / "summary.csv")
    assert table["status"].tolist() == ["completed", "failed", "completed", "failed"]
    return table


def test_joblib_runs_jobs_in_parallel_processes_with_the_same_report(tmp_path, reference):
    result, folder = sweep(tmp_path, "sweep", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    check_like_the_basic_launcher(result, folder, reference)


@pytest.mark.slow  # ~10 s; the slurm test below runs submitit's local executor by default
def test_submitit_local_runs_each_job_in_its_own_process_with_the_same_numbers(tmp_path, reference):
    """Hydra's own submitit_local launcher (one submitted job per sweep job); 2 of the 4 jobs
    (a submitit job starts a fresh Python: seconds each on 2 cores)."""
    args = [a for a in SWEEP if not a.startswith("compressor=")]
    folder = tmp_path / "sweep"
    result = run_cli(
        *args,
        "compressor=rand_k",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={folder}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "sweep report: failed: job 1" in result.stderr and "Traceback" not in result.stderr
    table = pd.read_csv(folder / "summary.csv")
    same = ["status", "rounds_done", "total_bits", "final_loss", "final_grad_norm", "error"]
    expected = reference[reference["compressor"] == "rand_k"].reset_index(drop=True)
    pd.testing.assert_frame_equal(table[same], expected[same])
    assert len([p for p in (folder / ".submitit").iterdir() if p.name.isdigit()]) == 2


def test_slurm_grouping_on_submitits_local_executor(tmp_path, reference):
    """runs_per_job=2: 4 sweep jobs in 2 submitted jobs, still 4 job folders, same report."""
    result, folder = sweep(
        tmp_path, "sweep", "hydra/launcher=slurm_local", "hydra.launcher.runs_per_job=2"
    )
    check_like_the_basic_launcher(result, folder, reference)
    submitted = [p for p in (folder / ".submitit").iterdir() if p.name.isdigit()]
    assert len(submitted) == 2
    # each submitted job ran two sweep jobs, in one process, one after the other
    pids = [json.loads((folder / f"{n}" / "summary.json").read_text())["pid"] for n in (0, 2)]
    assert len(set(pids)) == 2
    assert "4 jobs in 2 submitted, 2 per job" in result.stdout + result.stderr


def test_chunks_keep_the_sweep_order():
    assert grouped.chunks([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert grouped.chunks([0, 1], 5) == [[0, 1]]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(grouped.UserError, match="runs_per_job must be an integer >= 1"):
            grouped.runs_per_job_of(bad)


class _DeadJob:
    """A submitted job that died as a whole (killed, out of time)."""

    job_id = "77"

    class paths:  # as submitit's attribute
        folder = Path("sweep/.submitit/77")

    def results(self):
        raise RuntimeError("job 77 was killed (signal 9)")


class _DoneJob:
    job_id = "78"

    def __init__(self, returns):
        self.returns = returns

    def results(self):
        return [self.returns]


def test_a_submitted_job_that_dies_is_logged_and_the_others_kept(tmp_path, caplog):
    from omegaconf import OmegaConf

    launcher = grouped.LocalLauncher(runs_per_job=2, submitit_folder=str(tmp_path))
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "s")}}})
    submitted: list = []

    class Executor:
        def map_array(self, function, groups, states):
            submitted.extend(groups)
            return [_DeadJob(), _DoneJob(["ret 2", "ret 3"])]

    launcher._executor = Executor
    with caplog.at_level(logging.ERROR):
        results = launcher.launch([["a=1"], ["a=2"], ["a=3"], ["a=4"]], initial_job_idx=0)
    assert submitted == [[(["a=1"], 0), (["a=2"], 1)], [(["a=3"], 2), (["a=4"], 3)]]
    assert results == ["ret 2", "ret 3"]  # the sweep report names jobs 0 and 1 from their folders
    assert "submitted job 77 (sweep jobs 0-1) failed: job 77 was killed" in caplog.text


def test_the_slurm_preset_gives_sbatch_the_threads_and_partition(monkeypatch):
    """hydra/launcher=slurm as sbatch would get it (no cluster: submitit's script text)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmExecutor

    import compress_bench.cli  # noqa: F401  (the resolvers the config uses)

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    overrides = [
        "hydra/launcher=slurm",
        "threads=4",
        "hydra.launcher.partition=short",
        "hydra.launcher.runs_per_job=20",
        "hydra.sweep.dir=/scratch/sweep",
    ]
    with initialize_config_module("compress_bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_") == "hydra_plugins.compress_bench_launcher.SlurmLauncher"
    launcher = grouped.SlurmLauncher(**params)
    assert launcher.runs_per_job == 20
    script = launcher._executor()._executor._make_submission_file_text("python x", "0")
    assert "#SBATCH --cpus-per-task=4" in script
    assert "#SBATCH --partition=short" in script
    assert "#SBATCH --time=60" in script
    assert "/scratch/sweep/.submitit/%j" in script


def test_a_worker_job_handles_signals_as_the_command_then_gives_them_back(monkeypatch):
    """In a launcher's worker (main() never ran there) a job gets the command's handlers for
    its time; the worker's own come back after it."""
    import signal

    from compress_bench import signals

    monkeypatch.setattr(signals, "_ready", False)  # as in a fresh worker process
    before = {sig: signal.getsignal(sig) for sig in signals.HANDLED}
    worker_own = signal.SIG_IGN  # e.g. a launcher's own choice for SIGHUP
    signal.signal(signal.SIGHUP, worker_own)
    try:
        signals.enter_worker_job()
        assert all(signal.getsignal(sig) is signals._handler for sig in signals.HANDLED)
        signals.leave_worker_job()
        assert signal.getsignal(signal.SIGHUP) is worker_own
        assert not signals._ready and signals._worker_handlers is None
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
