"""Rank-separable data (issue 18): logistic regression built for some of its workers holds only
their shards and computes, for them, the whole problem's numbers bit for bit: losses and
gradients, minibatches round after round, constants and f* (problems/logreg.py's module
docstring); problems/workers.py's rank_problem gives a rank that part, or a WorkerView of a
problem that cannot build one; a torch.distributed run built on it writes the simulator's
metrics (tests/test_dist_cli.py runs the other cases)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.distributed as dist

from compress_bench.config import compose_config
from compress_bench.problems import build_problem
from compress_bench.problems.logreg import LogisticRegression
from compress_bench.problems.quadratic import SeparableQuadratic
from compress_bench.problems.workers import WorkerView, rank_problem
from compress_bench.runner import plain_config
from tests.conftest import DATASETS, dataset_path, run_cli

N = 3
ROUNDS = 4
CASES = [
    pytest.param(name, storage, batch, id=f"{name}-{storage}-{batch or 'full'}")
    for name in ("mushrooms", "synthetic_logreg")
    for storage in ("dense", "sparse")
    for batch in (None, 5)
]


def _build(name: str, storage: str, batch: int | None) -> LogisticRegression:
    if name == "mushrooms":
        dataset_path("mushrooms", "mushrooms")  # skipped without the offline file
    overrides = [f"problem={name}", f"n_workers={N}", f"problem.storage={storage}", "seed=5"]
    if batch is not None:
        overrides.append(f"problem.batch_size={batch}")
    cfg = plain_config(compose_config(*overrides))
    return build_problem(
        cfg.problem, cfg.n_workers, cfg.seed, torch.device("cpu"), torch.float64, str(DATASETS)
    )


def _points(problem, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, problem.d, generator=gen, dtype=torch.float64)


def _same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("name", "storage", "batch"), CASES)
def test_a_workers_part_computes_the_whole_problems_row_bit_for_bit(name, storage, batch):
    whole = _build(name, storage, batch)
    parts = [whole.for_workers([i]) for i in range(N)]
    for k in range(ROUNDS if batch else 1):
        if batch:  # each draws the round's minibatches from its own copy of the stream
            whole.next_batches()
            for part in parts:
                part.next_batches()
        X = _points(whole, k)
        expected, grads = whole.loss_and_grad(X), whole.grad(X)
        metrics = whole.shard_loss_and_grad(X)
        for i, part in enumerate(parts):
            row = slice(i, i + 1)
            assert part.workers == (i,) and part.n_workers == 1
            assert _same(part.loss_and_grad(X[row]), (expected[0][row], expected[1][row]))
            assert torch.equal(part.grad(X[row]), grads[row])
            assert _same(part.shard_loss_and_grad(X[row]), (metrics[0][row], metrics[1][row]))
    # one batched call, one evaluation: the run's grad_evals column is the simulator's
    assert {part.evaluations for part in parts} == {whole.evaluations}
    if batch:
        assert {str(part.get_data_state()) for part in parts} == {str(whole.get_data_state())}


@pytest.mark.parametrize(("name", "storage", "batch"), CASES[::2])
def test_a_workers_part_has_the_whole_problems_constants_and_fstar(name, storage, batch):
    whole = _build(name, storage, batch)
    parts = [whole.for_workers([i]) for i in range(N)]  # before the whole one has constants
    x = _points(whole, 1)[0]
    for i, part in enumerate(parts):
        direct = LogisticRegression(
            whole.features,
            whole.labels,
            whole.shards,
            whole.l2,
            np.zeros(whole.d),
            whole.name,
            cache_dir=whole.cache_dir,
            storage=whole.storage,
            workers=[i],
        )
        twin = direct.float64_twin()  # what solves f*: the whole problem
        assert twin.workers is None and twin.storage == whole.storage
        assert _same(twin.full_loss_and_grad(x), whole.full_loss_and_grad(x))
        for p in (part, direct):
            assert p.smoothness == whole.smoothness
            assert torch.equal(p.worker_smoothness, whole.worker_smoothness[[i]])
            assert p.constants() == whole.constants()  # L_max over every worker
            assert p.fingerprint() == whole.fingerprint()
            assert p.reference() == whole.reference()
            assert torch.equal(p.initial_point(), whole.initial_point())
    # storage=auto picks from all the shards what the whole problem picks
    auto = LogisticRegression(
        whole.features, whole.labels, whole.shards, 0.1, np.zeros(whole.d), "a", workers=[2]
    )
    assert auto.storage == _build(name, "auto", batch).storage
    with pytest.raises(ValueError, match="needs every worker's shard"):
        part.full_loss_and_grad(whole.initial_point())


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_a_rank_stores_only_its_workers_rows(storage):
    whole = _build("synthetic_logreg", storage, None)
    m_max = max(len(s) for s in whole.shards)
    assert tuple(whole._signed_rows.shape) == (N, m_max, whole.d)
    for workers in ([1], [0, 2]):
        part = rank_problem(whole, workers)
        h = len(workers)
        assert isinstance(part, LogisticRegression) and part.n_workers == h
        # padded to the whole problem's m_max: the batched products' shapes, per worker
        assert tuple(part._signed_rows.shape) == (h, m_max, whole.d)
        assert tuple(part._row_weights.shape) == (h, m_max)
        if storage == "sparse":
            assert tuple(part._sparse_rows.shape) == (h * m_max, h * whole.d)
        for i, j in enumerate(workers):
            assert torch.equal(part._signed_rows[i], whole._signed_rows[j])
    with pytest.raises(ValueError, match="distinct workers"):
        whole.for_workers([0, N])


def test_a_problem_without_for_workers_gets_a_worker_view():
    centers = torch.arange(6, dtype=torch.float64).reshape(N, 2)
    whole = SeparableQuadratic(torch.tensor([1.0, 2.0], dtype=torch.float64), centers)
    view = rank_problem(whole, [2])
    assert isinstance(view, WorkerView) and view.n_workers == 1
    X = _points(whole, 0)
    losses, grads = whole.loss_and_grad(X)
    assert _same(view.loss_and_grad(X[2:]), (losses[2:], grads[2:]))
    view.evaluations = 0  # the run loop resets the count
    view.loss_and_grad(X[2:])
    assert whole.evaluations == view.evaluations == 1
    assert view.constants() == whole.constants()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no gloo backend",
)
def test_ranks_on_sparse_minibatches_write_the_simulators_metrics(tmp_path):
    """Mushrooms (sparse storage), minibatches, 3 ranks: the metrics of the simulator, the
    grad_evals column included."""
    data = dataset_path("mushrooms")
    common = (
        "problem=mushrooms",
        "problem.batch_size=10",
        "n_workers=3",
        "compressor=top_k",
        "method=ef21",
        "rounds=12",
        "log_every=3",
        "progress=false",
        f"data_dir={data.parent}",
    )
    ranks = run_cli(
        *common, "backend=torch_distributed", f"hydra.run.dir={tmp_path / 'd'}", cwd=tmp_path
    )
    assert ranks.returncode == 0, ranks.stderr
    simulated = run_cli(*common, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr

    def rows(folder):
        with open(folder / "metrics.csv") as f:
            return [
                {k: v for k, v in r.items() if k not in ("wall_time", "bytes_sent")}
                for r in csv.DictReader(f)
            ]

    assert rows(tmp_path / "d") == rows(tmp_path / "s")
    assert rows(tmp_path / "s")[-1]["grad_evals"] == "12"
