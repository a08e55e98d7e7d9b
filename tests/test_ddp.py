"""The DDP communication hook (compress_bench/ddp.py) with 2 gloo processes and a tiny model.

One process group runs every scenario (start-up is paid once); each rank pickles what it saw
and the tests below compare:

  identity    the hook with compressor=identity, method=dcgd gives DDP's default all-reduce
              gradients bit for bit (float64 and float32), step after step
  top_k + ef  trains the tiny regression to a target loss
  checkpoint  hook, model and optimizer saved after some steps (torch.save, read back with
              weights_only=True), a fresh DDP model and hook loaded and continued: the same
              parameters as the uninterrupted run, bit for bit (ef and ef21; DDP rebuilds its
              buckets after the first step, so the continued run sees other buckets)
  simulator   the hook's direction on every step equals the simulator's, bit for bit (the
              method run by SimulatedCommunicator on both ranks' recorded gradients):
              collective PowerSGD with EF per tensor, TopK with EF21 over the whole bucket
"""

from __future__ import annotations

import io
import os
import pickle
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from compress_bench import ddp
from compress_bench.comm import SimulatedCommunicator
from compress_bench.errors import ConfigError
from compress_bench.layout import Layout
from compress_bench.methods.base import Evaluation
from compress_bench.rng import Streams

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="this torch build has no gloo backend",
)

WORLD = 2
POWER_SGD = {"name": "power_sgd", "rank": 1}


def tiny(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def data(rank: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    X = torch.randn(32, 6, generator=g, dtype=dtype)
    W = torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=dtype)
    return X, torch.tanh(X @ W) + 0.01 * torch.randn(32, 3, generator=g, dtype=dtype)


def loss_of(model, X, Y) -> torch.Tensor:
    return ((model(X) - Y) ** 2).mean()


def identity_case(rank: int) -> dict:
    out = {}
    for dtype in (torch.float64, torch.float32):
        X, Y = data(rank, dtype)
        plain, hooked = DDP(tiny(dtype)), DDP(tiny(dtype))
        ddp.register(hooked, compressor="identity", method="dcgd")
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (plain, hooked)]
        equal, diff = True, 0.0
        for _ in range(4):
            for m, opt in zip((plain, hooked), opts, strict=True):
                opt.zero_grad()
                loss_of(m, X, Y).backward()
            for a, b in zip(plain.parameters(), hooked.parameters(), strict=True):
                equal &= torch.equal(a.grad, b.grad)
                diff = max(diff, float((a.grad - b.grad).abs().max()))
            for opt in opts:
                opt.step()
        out[str(dtype)] = (equal, diff)
    return out


def train(model, hook, steps: int, X, Y, opt) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(model, X, Y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def top_k_ef_case(rank: int) -> dict:
    X, Y = data(rank, torch.float32)
    model = DDP(tiny(torch.float32))
    hook = ddp.register(model, compressor="top_k", ratio=0.1, method="ef")
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    losses = train(model, hook, 300, X, Y, opt)
    mean = torch.tensor([losses[0], losses[-1]])
    dist.all_reduce(mean)
    return {"losses": (mean / WORLD).tolist(), "compression": hook.compression()}


def checkpoint_case(rank: int, method: str) -> dict:
    X, Y = data(rank, torch.float32)
    options = {"compressor": "top_k", "ratio": 0.2, "method": method}

    def fresh(seed_shift: int = 0):
        net = tiny(torch.float32)
        if seed_shift:  # another initialisation: the checkpoint must overwrite it
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(seed_shift)
        return net

    model = DDP(fresh())
    hook = ddp.register(model, **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, hook, 6, X, Y, opt)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    model = DDP(fresh())
    hook = ddp.register(model, **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, hook, 3, X, Y, opt)
    buffer = io.BytesIO()
    saved = {"model": model.module.state_dict(), "opt": opt.state_dict()}
    torch.save({**saved, "hook": hook.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    net = fresh(seed_shift=1)
    net.load_state_dict(checkpoint["model"])
    model = DDP(net)
    hook = ddp.register(model, **options)
    hook.load_state_dict(checkpoint["hook"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(checkpoint["opt"])
    train(model, hook, 3, X, Y, opt)
    resumed = [p.detach().clone() for p in model.parameters()]
    return {"equal": all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))}


class Recorder:
    """The hook state plus a log of each call's layout, local gradient and direction."""

    def __init__(self, inner: ddp.CompressionHook):
        self.inner, self.log = inner, []

    def __call__(self, bucket):
        names = self.inner.layout(bucket).names
        grads = bucket.buffer().clone()
        direction = self.inner(bucket).clone()
        self.log.append((names, grads, direction))
        return direction


#: hook options whose directions are compared with the simulator's, step by step
SIMULATED = {
    "power_sgd": {"compressor": POWER_SGD, "method": "ef"},
    "top_k_global": {
        "compressor": "top_k",
        "ratio": 0.1,
        "method": "ef21",
        "granularity": "global",
    },
}


def simulated_case(rank: int, options: dict) -> dict:
    X, Y = data(rank, torch.float64)
    model = DDP(tiny(torch.float64))
    state = Recorder(ddp.CompressionHook(model, seed=3, **options))
    model.register_comm_hook(state, ddp.comm_hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, state, 5, X, Y, opt)
    return {"log": state.log, "bytes_sent": state.inner.bytes_sent}


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {
            "identity": identity_case(rank),
            "top_k_ef": top_k_ef_case(rank),
            "checkpoint_ef": checkpoint_case(rank, "ef"),
            "checkpoint_ef21": checkpoint_case(rank, "ef21"),
            **{name: simulated_case(rank, options) for name, options in SIMULATED.items()},
        }
        with open(f"{out}.{rank}", "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp") / "result")
    mp.start_processes(
        _rank, args=(_free_port(), out), nprocs=WORLD, join=True, start_method="spawn"
    )
    results = []
    for r in range(WORLD):
        with open(f"{out}.{r}", "rb") as f:
            results.append(pickle.load(f))
    return results


@pytest.mark.parametrize("dtype", ["torch.float64", "torch.float32"])
def test_identity_hook_is_ddps_all_reduce(ranks, dtype):
    for r in range(WORLD):
        equal, diff = ranks[r]["identity"][dtype]
        assert equal, (r, diff)


def test_top_k_with_error_feedback_trains(ranks):
    first, last = ranks[0]["top_k_ef"]["losses"]
    assert last < 0.05 * first, (first, last)
    assert ranks[0]["top_k_ef"]["compression"] < 0.5


@pytest.mark.parametrize("method", ["ef", "ef21"])
def test_hook_state_survives_a_checkpoint(ranks, method):
    for r in range(WORLD):
        assert ranks[r][f"checkpoint_{method}"]["equal"], r


@pytest.mark.parametrize("case", list(SIMULATED))
def test_the_hook_computes_the_simulators_directions(ranks, case):
    names = [n for n, _ in tiny(torch.float64).named_parameters()]
    shapes = [tuple(p.shape) for p in tiny(torch.float64).parameters()]
    layout = Layout(tuple(names), tuple(shapes))
    method = ddp.build_method(
        layout,
        **SIMULATED[case],
        n_workers=WORLD,
        communicator=SimulatedCommunicator(),
    )
    x = torch.zeros(layout.d, dtype=torch.float64)
    state, streams = method.init_state(x), Streams(3, WORLD)
    logs = [ranks[r][case]["log"] for r in range(WORLD)]
    assert len(logs[0]) == 5  # one bucket per step: the model is tiny

    def in_layout_order(bucket_names, flat):
        sizes = [layout.numels[names.index(n)] for n in bucket_names]
        pieces = dict(zip(bucket_names, flat.split(sizes), strict=True))
        return torch.cat([pieces[n] for n in names])

    for k in range(5):
        grads = torch.stack([in_layout_order(logs[r][k][0], logs[r][k][1]) for r in range(WORLD)])
        out = method.worker(None, Evaluation(None, grads), state, streams, k)
        direction, state = method.server(method.aggregate(out.message), out.state)
        for r in range(WORLD):
            hooked = in_layout_order(logs[r][k][0], logs[r][k][2])
            assert torch.equal(hooked, direction), (k, r, (hooked - direction).abs().max())
    assert logs[0][0][0] != logs[0][1][0]  # DDP rebuilt its bucket (another order) after step 0


def test_collective_power_sgd_sends_its_factors_once(ranks):
    """Collective PowerSGD's message arrives averaged: per step and matrix (m x c, rank 1) a
    rank sends m values (the all-reduce of P) and c (the all-gather of M^T P^), and the
    biases dense, nothing more at the aggregation (the factors used to travel again)."""
    floats = (8 + 6) + (3 + 8) + 8 + 3  # Linear(6, 8): m 8, c 6; Linear(8, 3): m 3, c 8; biases
    for r in range(WORLD):
        assert ranks[r]["power_sgd"]["bytes_sent"] == 5 * floats * 8, r  # 5 steps, float64


def test_the_hook_refuses_what_it_cannot_run():
    layout = Layout.flat(12)
    with pytest.raises(ConfigError, match="runs methods"):
        ddp.build_method(layout, method="diana")
    with pytest.raises(ConfigError, match="granularity"):
        ddp.build_method(layout, granularity="tensor")
    with pytest.raises(ConfigError, match="matrix"):
        ddp.build_method(layout, compressor="power_sgd", granularity="global")
