"""torch.distributed: n gloo processes on localhost, one worker each, compute the simulator's
numbers with n workers bit for bit (compress_bench/comm/distributed.py).

For every case (an operator, a method) every rank runs ROUNDS rounds of ``method.step`` on its
worker's view of one logistic-regression problem (problems/workers.py), drawing worker i's
streams; rank 0 writes each round's x and each rank its bits. The parent runs the same cases
in the simulator and compares: x bit for bit (float64), each worker's bits exactly. One
process group per world size runs every case, so that start-up is paid twice."""

from __future__ import annotations

import os
import pickle
import socket
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from compress_bench.comm.distributed import TorchDistributedCommunicator
from compress_bench.compressors import build_compressor, build_quantizer
from compress_bench.compressors.chain import chain
from compress_bench.methods import METHODS, evaluate
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.splits import split_indices
from compress_bench.problems.workers import WorkerView
from compress_bench.rng import Streams

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no gloo backend",
)

ROUNDS = 4
D = 12  # a 3 x 4 matrix for PowerSGD
#: (compressor, quantizer, compressor options, methods)
CASES = [
    ("identity", "none", {}, ("dcgd", "ef", "ef21", "diana")),
    ("top_k", "none", {}, ("dcgd", "ef", "ef21", "diana")),
    ("identity", "power_of_two", {}, ("dcgd", "ef", "ef21", "diana")),
    ("identity", "sign", {}, ("dcgd_vote", "ef")),
    ("md_greedy", "none", {}, ("dcgd", "ef21")),
    ("power_sgd", "none", {"rank": 1}, ("dcgd", "ef21")),
    ("rand_k", "none", {}, ("dcgd", "diana")),
    ("identity", "natural", {}, ("dcgd", "diana")),
    ("biased_rand_k", "none", {}, ("ef",)),
]


def problem(n: int) -> LogisticRegression:
    features, labels = synthetic_logreg_data(120, D, seed=3, label_noise=0.3)
    shards = split_indices(labels, n, "iid", 0)
    return LogisticRegression(features, labels, shards, 0.1, np.zeros(D), "t")


def build_method(name: str, prob, c: str, q: str, options: dict, communicator=None):
    shape = (3, 4) if c == "power_sgd" else None
    op = chain(
        build_compressor({"name": c, **options}, ratio=0.34, global_shape=shape),
        build_quantizer({"name": q}),
    )
    kwargs = {}
    if name == "dcgd_vote":
        name, kwargs = "dcgd", {"aggregation": "majority_vote"}
    if name == "diana" and not op.unbiased:
        kwargs["alpha"] = 0.5
    return METHODS[name](
        op, 0.5, n_workers=prob.n_workers, d=prob.d, communicator=communicator, **kwargs
    )


def cases():
    for c, q, options, methods in CASES:
        for m in methods:
            yield f"{m}-{c}+{q}", m, c, q, options


def run_case(method, prob, streams) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    x = prob.initial_point()
    state = method.init_state(x)
    xs, bits = [], []
    for k in range(ROUNDS):
        proposal = method.step(x, evaluate(prob, x), state, streams, k, objective=prob)
        x, state = proposal.x, proposal.state
        xs.append(x.clone())
        bits.append(proposal.message.bits.clone())
    return xs, bits


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        view = WorkerView(problem(world), [rank])
        results = {}
        for name, m, c, q, options in cases():
            comm = TorchDistributedCommunicator()
            method = build_method(m, view, c, q, options, comm)
            xs, bits = run_case(method, view, Streams(7, [rank]))
            results[name] = (xs, bits, comm.bytes_sent, comm.collectives)
        with open(f"{out}.{rank}", "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=[2, 3])
def ranks(request, tmp_path_factory):
    world = request.param
    out = str(tmp_path_factory.mktemp(f"ranks{world}") / "result")
    mp.start_processes(
        _rank, args=(world, _free_port(), out), nprocs=world, join=True, start_method="spawn"
    )
    results = []
    for r in range(world):
        with open(f"{out}.{r}", "rb") as f:
            results.append(pickle.load(f))
    return world, results


@pytest.mark.parametrize("case", list(cases()), ids=[c[0] for c in cases()])
def test_ranks_compute_the_simulators_numbers(ranks, case):
    world, results = ranks
    name, m, c, q, options = case
    prob = problem(world)
    xs, bits = run_case(build_method(m, prob, c, q, options), prob, Streams(7, world))
    for r in range(world):
        rank_xs, rank_bits, sent, collectives = results[r][name]
        for k in range(ROUNDS):
            assert torch.equal(rank_xs[k], xs[k]), (name, r, k, rank_xs[k] - xs[k])
            assert rank_bits[k].tolist() == [int(bits[k][r])], (name, r, k)
        assert sent > 0 and collectives <= 3 * ROUNDS, (name, collectives)


def test_a_communicator_needs_an_initialised_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not initialised"):
        TorchDistributedCommunicator()


if __name__ == "__main__":  # pragma: no cover - a manual run
    sys.exit(pytest.main([__file__, "-q"]))
