"""``backend=torch_distributed`` from the command line: the ranks spawned from inside the job
write the simulator's metrics (compress_bench/dist.py), a dead rank ends the job with one
line, a run resumes from its checkpoint with the numbers of one that never stopped, and what
the backend cannot do yet is refused with one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from tests.conftest import _cli_env, run_cli, start_cli

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no gloo backend",
)

BASE = ("problem=synthetic_logreg", "progress=false", "rounds=30", "log_every=5")
#: (workers, overrides): deterministic and random operators, every method, an objective
#: (tests/test_distributed.py checks every operator and method at the round level, fast)
CASES = [
    (3, ("compressor=top_k", "method=ef21")),
    # ranks on minibatches run by default in tests/test_rank_data.py (mushrooms, sparse)
    pytest.param(
        2, ("compressor=rand_k", "method=dcgd", "problem.batch_size=20"), marks=pytest.mark.slow
    ),
    pytest.param(
        3, ("compressor=identity", "quantizer=natural", "method=diana"), marks=pytest.mark.slow
    ),
    pytest.param(
        2,
        ("compressor=md_greedy", "method=ef", "lr=0.5", "importance.steps=2"),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        3,
        ("compressor=identity", "quantizer=sign", "method.aggregation=majority_vote"),
        marks=pytest.mark.slow,
    ),
]


def _args(case) -> tuple:
    return case.values[1] if hasattr(case, "values") else case[1]


NOT_COMPARED = ("wall_time", "bytes_sent")


def metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in NOT_COMPARED} for r in csv.DictReader(f)]


def ranks_and_simulator(common: tuple, tmp_path: Path, *backend: str) -> None:
    """The run of ``common`` on ranks (``backend`` options added) into tmp_path/d, and in
    the simulator into tmp_path/s; both must succeed."""
    ranks = run_cli(
        *common,
        "backend=torch_distributed",
        *backend,
        f"hydra.run.dir={tmp_path / 'd'}",
        cwd=tmp_path,
        timeout=180,
    )
    assert ranks.returncode == 0, ranks.stderr
    simulated = run_cli(*common, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr


@pytest.mark.parametrize(("n", "args"), CASES, ids=[" ".join(_args(c)) for c in CASES])
def test_ranks_write_the_simulators_metrics(n, args, tmp_path):
    ranks_and_simulator((*BASE, f"n_workers={n}", *args), tmp_path)
    assert metrics(tmp_path / "d") == metrics(tmp_path / "s")
    with open(tmp_path / "d" / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    # the bytes really sent (values and indices in float64) against the computed bits
    assert float(last["bytes_sent"]) > 0 and float(last["bits"]) > 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        ".hydra",
        "compress-bench.log",
        "loss.png",
        "metrics.csv",
        "summary.json",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("experiment=mnist_ef_smoke",), "runs the convex problems for now"),
    ],
)
def test_what_the_backend_cannot_do_yet_is_one_line(args, message, tmp_path):
    base = BASE if "experiment" not in args[0] else ("progress=false",)
    out = run_cli(*base, "n_workers=2", "backend=torch_distributed", *args, cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr


def start_ranks(folder: Path, *args: str):
    """A distributed run of ``args`` that would go on for 10^7 rounds, started in the
    background into ``folder`` and returned once its metrics.csv exists (or after 60 s)."""
    job = start_cli(
        *args,
        "rounds=10000000",
        "log_every=1000",
        "backend=torch_distributed",
        f"hydra.run.dir={folder}",
        cwd=folder.parent,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (folder / "metrics.csv").exists():
        time.sleep(0.2)
    return job


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_dead_rank_ends_the_job_with_one_line_and_no_orphans(tmp_path):
    job = start_ranks(tmp_path / "d", *BASE, "n_workers=3", "dist_timeout=20")
    time.sleep(1.0)  # the rounds are running
    ranks = [p for p in _children(job.pid) if "spawn_main" in _cmdline(p)]
    assert len(ranks) == 3, ranks
    os.kill(ranks[1], signal.SIGKILL)
    _, err = job.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert job.returncode not in (0, None) and len(lines) == 1 and "rank" in lines[0], err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert [p for p in ranks if Path(f"/proc/{p}").exists() and _state(p) != "Z"] == []
    assert (tmp_path / "d" / "metrics.csv").read_text().count("\n") >= 2  # the rows are kept


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.slow  # ~7 s: a second launcher path; the spawn path is tested by default
def test_an_external_torchrun_writes_the_same_metrics(tmp_path):
    """``torchrun --standalone``: each process is a rank already; rank 0 writes the run."""
    common = (*BASE, "n_workers=2", "compressor=top_k")
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "compress_bench",
            *common,
            "backend=torch_distributed",
            f"hydra.run.dir={tmp_path / 'd'}",
        ],
        cwd=tmp_path,
        env=_cli_env(None),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    simulated = run_cli(*common, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert metrics(tmp_path / "d") == metrics(tmp_path / "s")


def test_sigterm_stops_every_rank_and_the_summary_says_interrupted(tmp_path):
    job = start_ranks(tmp_path / "d", *BASE, "n_workers=2")
    time.sleep(1.0)
    ranks = [p for p in _children(job.pid) if "spawn_main" in _cmdline(p)]
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143 and err.strip().splitlines() == [
        "compress-bench: interrupted by SIGTERM; metrics written so far are kept"
    ], err
    assert '"status": "interrupted"' in (tmp_path / "d" / "summary.json").read_text()
    assert [p for p in ranks if Path(f"/proc/{p}").exists() and _state(p) != "Z"] == []


RESUMED = (
    *BASE,
    "n_workers=2",
    "compressor=biased_rand_k",
    "method=ef21",
    "checkpoint_every=10",
)


def test_a_resumed_run_writes_the_metrics_of_one_that_never_stopped(tmp_path):
    """Rank 0 writes every rank's state and streams (biased_rand_k: each rank draws its own); a
    resume with more rounds continues every rank where it stopped: the metrics of a 60-round
    run, which are the simulator's. The simulator refuses the ranks' checkpoint in one line
    and leaves the folder as it was."""
    run = tmp_path / "d"
    first = run_cli(*RESUMED, "backend=torch_distributed", f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (run / "checkpoint.pt").exists()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    refused = run_cli(*RESUMED, "rounds=60", f"resume={run}", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"compress-bench: error: resume: {run / 'checkpoint.pt'} was written by 2 "
        "torch.distributed "
        "ranks; resume it with backend=torch_distributed"
    ], refused.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    resumed = run_cli(
        *RESUMED, "backend=torch_distributed", "rounds=60", f"resume={run}", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    simulated = run_cli(*RESUMED, "rounds=60", f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert metrics(run) == metrics(tmp_path / "s")
    assert '"resumed_at_round": 30' in (run / "summary.json").read_text()


@pytest.mark.slow  # ~15 s
def test_sigterm_checkpoints_every_rank_at_one_round_and_the_run_resumes(tmp_path):
    """SIGTERM reaches the ranks at different moments: they agree on the round, rank 0 writes
    the checkpoint with every rank's state, and the resumed run ends with the simulator's
    metrics."""
    run = tmp_path / "d"
    args = (*RESUMED, "log_every=1000", "checkpoint_every=100000")
    job = start_ranks(run, *args)
    time.sleep(1.5)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=90)
    assert job.returncode == 143, err
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and (run / "checkpoint.pt").exists()
    rounds = f"rounds={stopped['rounds_done'] + 25}"
    resumed = run_cli(*args, "backend=torch_distributed", rounds, f"resume={run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    simulated = run_cli(*args, rounds, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert metrics(run) == metrics(tmp_path / "s")


@pytest.mark.parametrize(
    "args",
    [
        ("compressor=identity", "method=diana"),
        pytest.param(("compressor=power_sgd", "method=ef21"), marks=pytest.mark.slow),
    ],
    ids=["identity-diana", "power_sgd-ef21"],
)
def test_all_reduce_gives_the_simulators_metrics_to_rounding(args, tmp_path):
    """dist_reduce=all_reduce: dense messages and PowerSGD's factors summed by the backend,
    in its order: every metric within 1e-9 relative of the simulator's (bits exactly)."""
    common = (*BASE, "n_workers=3", "problem.matrix_shape=[4,5]", "lr=0.5", *args)
    ranks_and_simulator(common, tmp_path, "dist_reduce=all_reduce")
    got, want = metrics(tmp_path / "d"), metrics(tmp_path / "s")
    assert [r["round"] for r in got] == [r["round"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["bits_total"] == w["bits_total"]
        for key in ("loss", "grad_norm", "loss_gap"):
            assert float(g[key]) == pytest.approx(float(w[key]), rel=1e-9), (key, g, w)
