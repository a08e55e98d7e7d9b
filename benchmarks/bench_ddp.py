"""The DDP communication hook (compress_bench/ddp.py) against DDP's default all-reduce: time
per training step on ResNet18-sized gradients.

Two gloo ranks on 127.0.0.1, 1 thread per process; the CIFAR ResNet18 of
``compress_bench.models`` (11.2M float32 parameters, ResNet18's tensor shapes) fed a tiny
batch (``--batch`` images of 3x32x32 per rank) so that forward and backward are cheap
against the exchange of the gradients. Each setting builds the same model afresh, wraps it in
DistributedDataParallel, registers its hook (if any) and times ``--steps`` training steps
(forward, backward with DDP's reduction, SGD step) after ``--warmup`` untimed ones; the ranks
meet at a barrier before every step and a step's time is the slower rank's. Printed per
setting: the median seconds per step, its ratio to the default, the step minus the local
forward+backward+step (the bare model without DDP: the reduction's and the hook's share), and
the bytes a rank put on the wire per step for the hook's collectives (its send buffers,
``CompressionHook.bytes_sent``) against dense float32 gradients (4 bytes x parameters).

    python benchmarks/bench_ddp.py [--steps 50] [--warmup 3] [--batch 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from compress_bench import ddp
from compress_bench.models import build_model

WORLD = 2

#: name, hook options (None: DDP's default all-reduce; "local": the bare model, no DDP)
SETTINGS = [
    ("local fwd+bwd+step (no DDP)", "local"),
    ("DDP default all-reduce", None),
    ("hook identity + dcgd", {"compressor": "identity", "method": "dcgd"}),
    (
        "hook top_k 0.01 + ef, layer",
        {"compressor": "top_k", "ratio": 0.01, "method": "ef", "granularity": "layer"},
    ),
    (
        "hook power_sgd r=4 + ef, layer",
        {"compressor": {"name": "power_sgd", "rank": 4}, "method": "ef", "granularity": "layer"},
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_setting(rank: int, options, args) -> tuple[list[float], ddp.CompressionHook | None]:
    torch.manual_seed(0)  # the same initial model on both ranks
    net = build_model("resnet18")
    model = net if options == "local" else DDP(net)
    hook = ddp.register(model, **options) if isinstance(options, dict) else None
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)
    images = torch.randn(args.batch, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (args.batch,), generator=g)
    times = []
    for step in range(args.warmup + args.steps):
        dist.barrier()
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    slowest = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return slowest.tolist(), hook


def _rank(rank: int, port: int, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        d = sum(p.numel() for p in build_model("resnet18").parameters())
        dense = 4 * d
        if rank == 0:
            print(
                f"torch {torch.__version__}, {WORLD} gloo ranks on 127.0.0.1, "
                f"{torch.get_num_threads()} thread per rank; resnet18 (CIFAR), {d:,} float32 "
                f"parameters (dense {dense / 1e6:.1f} MB); batch {args.batch} of 3x32x32 per "
                f"rank; median of {args.steps} steps after {args.warmup} warm-up, slower rank"
            )
            print(
                f"{'setting':<31} {'s/step':>8} {'x default':>9} {'- local':>8} "
                f"{'MB sent/rank/step':>17} {'/ dense':>8} {'bits/32d':>9}"
            )
        local = default = None
        for name, options in SETTINGS:
            times, hook = time_setting(rank, options, args)
            per_step = statistics.median(times)
            if options == "local":
                local = per_step
            elif options is None:
                default = per_step
            if rank != 0:
                continue
            ratio = f"{per_step / default:>9.2f}" if default else f"{'':>9}"
            extra = f"{per_step - local:>8.3f}" if options != "local" else f"{'':>8}"
            if hook is not None:
                sent = hook.bytes_sent / max(1, hook.step)
                traffic = f"{sent / 1e6:>17.3f} {sent / dense:>8.4f} {hook.compression():>9.4f}"
            elif options is None:
                traffic = f"{dense / 1e6:>17.3f} {1:>8.4f} {'(dense)':>9}"
            else:
                traffic = f"{'-':>17} {'':>8} {'':>9}"
            print(f"{name:<31} {per_step:>8.3f} {ratio} {extra} {traffic}", flush=True)
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (default 3)")
    parser.add_argument("--batch", type=int, default=2, help="images per rank (default 2)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.batch < 2:
        parser.error("--steps and --warmup at least 1, --batch at least 2 (batch norm)")
    mp.start_processes(
        _rank, args=(_free_port(), args), nprocs=WORLD, join=True, start_method="spawn"
    )


if __name__ == "__main__":
    main()
