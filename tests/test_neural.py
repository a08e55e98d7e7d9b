"""The neural problems end to end on the offline data: ResNet18 on CIFAR-10 learns on CPU,
MNIST with TopK + EF reaches 95% test accuracy, a killed MNIST run resumes bit for bit, and
what a network cannot do (lr=auto, tol) is one line."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.conftest import SHARED_DATASETS, run_cli
from tests.test_resume import kill_and_resume

DATA = {"COMPRESS_BENCH_DATA": str(SHARED_DATASETS)}
needs_cifar = pytest.mark.skipif(
    not (SHARED_DATASETS / "cifar10").is_dir(), reason="offline CIFAR-10 not found"
)
needs_mnist = pytest.mark.skipif(
    not (SHARED_DATASETS / "mnist").is_dir(), reason="offline MNIST not found"
)


def _train(tmp_path, *args):
    """Run the CLI on the offline data into tmp_path/run; assert it succeeded."""
    out = tmp_path / "run"
    result = run_cli(*args, f"hydra.run.dir={out}", cwd=tmp_path, env=DATA)
    assert result.returncode == 0, result.stderr
    return out, result


def _metrics(folder):
    with (folder / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


@needs_cifar
def test_resnet18_lowers_its_training_loss_on_cpu(tmp_path):
    """Two workers, 16 images each (the whole shard every round), plain SGD with momentum:
    the minibatch loss falls round after round."""
    out, result = _train(
        tmp_path,
        "problem=cifar10_resnet18",
        "problem.train_batches=[1]",
        "problem.test_file=test_subset/test_batch_first1000.bin",
        "problem.test_limit=50",
        "problem.train_limit=32",
        "problem.augment=false",
        "problem.batch_size=16",
        "n_workers=2",
        "granularity=layer",
        "quantizer=power_of_two",
        "ratio=0.5",
        "lr=0.05",
        "optimizer=sgd",
        "rounds=4",
        "eval_every=1",
    )
    losses = [float(r["train_loss"]) for r in _metrics(out)[1:]]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert "unverified" in result.stderr.lower() or "no official" in result.stderr.lower()


@needs_mnist
def test_mnist_top_k_with_error_feedback_reaches_95_percent(tmp_path):
    out, result = _train(
        tmp_path,
        "experiment=mnist_ef_smoke",
        "method=ef",
        "rounds=200",
        "problem.test_limit=2000",
    )
    rows = _metrics(out)
    assert float(rows[-1]["test_accuracy"]) >= 0.95, rows[-1]
    assert float(rows[-1]["epoch"]) == pytest.approx(200 * 64 / 15000)
    assert all(math.isfinite(float(r["bits"])) for r in rows)


@needs_mnist
def test_mnist_killed_and_resumed_is_bit_for_bit(tmp_path):
    args = [
        "experiment=mnist_ef_smoke",
        "method=ef21",
        "rounds=400",
        "eval_every=20",
        "checkpoint_every=40",
        "problem.test_limit=200",
        "progress=false",
        "threads=1",
    ]
    kill_and_resume(tmp_path, SHARED_DATASETS, args, wait_rows=4)


@needs_mnist
@pytest.mark.parametrize(
    ("override", "message"),
    [("lr=auto", "lr=auto needs the smoothness constant"), ("tol=1e-3", "tol stops on")],
)
def test_what_a_network_cannot_do_is_one_line(tmp_path, override, message):
    args = ["problem=mnist", "rounds=1"] + (["lr=0.1"] if override != "lr=auto" else [])
    result = run_cli(*args, override, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path, env=DATA)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@needs_cifar
def test_thesis_cifar_smoke_sweep_draws_the_two_panel_figure(tmp_path):
    """experiment=thesis_cifar_smoke (TopK and MD Weighted Greedy with the joint importance
    solve) runs as a sweep, and the thesis_cifar figure and table are drawn from it."""
    from compress_bench.report.figures import thesis_cifar

    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "experiment=thesis_cifar_smoke",
        f"hydra.sweep.dir={sweep}",
        "progress=false",
        cwd=tmp_path,
        env=DATA,
    )
    assert result.returncode == 0, result.stderr
    table = thesis_cifar(sweep, tmp_path / "cifar.png")
    assert sorted(table["operator"]) == ["MD Weighted Greedy", "TopK"]  # one quantizer
    assert (table["status"] == "completed").all()
    assert (table["epochs"] == 0.5).all()  # 2 rounds of 16 of a 64-image shard
    assert (tmp_path / "cifar.png").stat().st_size > 10_000


@needs_mnist
def test_tol_stops_a_network_on_its_test_accuracy(tmp_path):
    """tol_metric=test_accuracy stops at the first logged row at or above tol."""
    import json

    out, result = _train(
        tmp_path,
        "experiment=mnist_ef_smoke",
        "method=ef",
        "rounds=400",
        "eval_every=10",
        "tol=0.8",
        "tol_metric=test_accuracy",
        "problem.test_limit=500",
    )
    accuracy = [float(r["test_accuracy"]) for r in _metrics(out)]
    assert accuracy[-1] >= 0.8 and all(a < 0.8 for a in accuracy[:-1]), accuracy
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "tol" and summary["rounds_done"] < 400


def _strict_json(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _mnist_run(tmp_path, *overrides):
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run, execute

    cfg = compose_config(
        "problem=mnist",
        "n_workers=1",
        "problem.test_limit=100",
        "eval_every=1",
        "progress=false",
        "threads=1",
        f"data_dir={SHARED_DATASETS}",
        *overrides,
    )
    return execute(build_run(cfg), tmp_path)


@needs_mnist
def test_a_network_blown_up_by_saturating_compression_diverges(tmp_path):
    """Natural compression at lr=100: the training loss goes 2.3, 1.2e6, 3e14, ... and, the
    weights saturating at +-2^127, back to 85 (accuracy 2%): `completed` before. Now
    diverged at round 2, where it passes 1e6 times its value at x^0."""
    summary = _mnist_run(
        tmp_path, "compressor=identity", "quantizer=natural", "lr=100", "rounds=20"
    )
    assert summary["status"] == "diverged" and summary["stop_reason"] == "diverged"
    assert summary["rounds_done"] == summary["divergence"]["round"] == 2
    assert "diverge_factor" in summary["divergence"]["rule"]
    rows = _metrics(tmp_path)
    assert int(rows[-1]["round"]) == 2 and math.isfinite(float(rows[-1]["train_loss"]))
    assert _strict_json(tmp_path / "summary.json")["status"] == "diverged"


@needs_mnist
def test_a_network_summary_is_json_and_has_rounds_per_second(tmp_path):
    """f* of a network is NaN, and so is the train loss of a run with no round: summary.json
    writes null (it wrote the bare word NaN, which is not JSON); rounds_per_second as in the
    convex summary."""
    summary = _mnist_run(tmp_path, "lr=0.05", "rounds=3")
    assert summary["status"] == "completed" and summary["rounds_per_second"] > 0
    written = _strict_json(tmp_path / "summary.json")
    assert written["fstar"] is None and written["rounds_per_second"] > 0
    (tmp_path / "zero").mkdir()
    _mnist_run(tmp_path / "zero", "lr=0.05", "rounds=0")
    assert _strict_json(tmp_path / "zero" / "summary.json")["final"]["train_loss"] is None


@needs_mnist
def test_an_interrupted_network_run_keeps_its_figure(tmp_path, monkeypatch):
    """A signal in the middle of a neural run: summary.json says interrupted and loss.png is
    drawn from the rows written (it used to be drawn only at a normal end)."""
    import signal

    from compress_bench.config import compose_config
    from compress_bench.errors import Interrupted
    from compress_bench.runner import build_run, execute

    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(SHARED_DATASETS))
    run = build_run(
        compose_config(
            "experiment=mnist_ef_smoke",
            "rounds=8",
            "eval_every=2",
            "progress=false",
            "problem.test_limit=200",
        )
    )
    step = run.method.step

    def step_until_round_5(x, ev, state, streams, k, objective=None):
        if k == 5:
            raise Interrupted(signal.SIGTERM)
        return step(x, ev, state, streams, k, objective)

    monkeypatch.setattr(run.method, "step", step_until_round_5)
    with pytest.raises(Interrupted):
        execute(run, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert (tmp_path / "loss.png").stat().st_size > 0
