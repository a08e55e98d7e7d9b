"""Cost of one low-rank compression call over ResNet18's 62 gradient tensors, in one run.

PowerSGD (rank 4, collective and per-worker forms) and rsvd (rank 4), ``layerwise`` over
ResNet18's layout (CIFAR variant, 11,173,962 parameters, 17 shapes among 62 tensors), n = 2
workers, float32, one call each, against one ``abs()`` over all the gradients (the memory
floor of any operator that reads them once). Also, under a ``TorchDispatchMode``, the number
of aten ops and of host syncs (``aten._local_scalar_dense``) per call, for ResNet18 and for a
layout holding every tensor twice: the counts must not grow with the number of tensors of a
shape (one batched call per shape). rsvd's Gaussian test matrices are drawn on the host per
(worker, tensor) (``Streams.tensor_gaussians``) and copied once per call, so they add no op
per tensor; the count is reported with and without them.

Usage: ``python benchmarks/bench_lowrank.py [--threads 1] [--repeats 3] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from compress_bench.comm import SimulatedCommunicator
from compress_bench.compressors import RoundContext, build_compressor
from compress_bench.compressors.chain import chain
from compress_bench.compressors.layerwise import layerwise
from compress_bench.layout import Layout
from compress_bench.models.resnet import ResNet18
from compress_bench.rng import Streams
from compress_bench.testing import OpCounter

N = 2


def operator(layout: Layout, cfg: dict):
    # stacked groups (the accelerators' path; on the CPU a run calls each tensor alone)
    return layerwise(
        lambda _, shape: chain(build_compressor(cfg, 1.0, shape=shape)), layout, stack=True
    )


def one_call(op, G, state, streams, round_index=1):
    args = (SimulatedCommunicator(),) if op.tags.collective else ()
    ctx = RoundContext(round_index=round_index)
    message, state = op.compress(G, state, streams, ctx, *args)
    message.bits  # noqa: B018 - the per-worker bits are part of a call
    return message, state


def timed(op, G, repeats: int) -> tuple[float, object]:
    streams = Streams(0, N, G.device)
    state = op.init_state(N, G.shape[1], G.device, G.dtype)
    _, state = one_call(op, G, state, streams, 0)  # the first round draws Q
    best = float("inf")
    for _ in range(repeats):
        if G.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        one_call(op, G, state, streams)
        if G.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, state


def counted(op, G) -> Counter:
    streams = Streams(0, N, G.device)
    state = op.init_state(N, G.shape[1], G.device, G.dtype)
    _, state = one_call(op, G, state, streams, 0)
    with OpCounter() as counter:
        one_call(op, G, state, streams)
    return counter.ops


def repeated(layout: Layout, times: int) -> Layout:
    """Every tensor of ``layout`` ``times`` times (so every shape has >= ``times`` tensors)."""
    names = tuple(f"{n}_{copy}" for copy in range(times) for n in layout.names)
    return Layout(names, layout.shapes * times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    layout = Layout.of(ResNet18())
    d = layout.d
    print(f"ResNet18: {len(layout)} tensors, {len(set(layout.shapes))} shapes, d = {d:,}, n = {N}")
    G = torch.randn(N, d, generator=torch.Generator().manual_seed(0)).to(device)
    configs = {
        "power_sgd r4 collective": {"name": "power_sgd", "rank": 4},
        "power_sgd r4 per_worker": {"name": "power_sgd", "rank": 4, "form": "per_worker"},
        "rsvd r4": {"name": "rsvd", "rank": 4},
    }
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        G.abs()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    print(f"{'abs() over all gradients':32s} {best * 1e3:9.1f} ms")
    for name, cfg in configs.items():
        seconds, _ = timed(operator(layout, cfg), G, args.repeats)
        print(f"{name:32s} {seconds * 1e3:9.1f} ms  ({seconds / best:.1f}x abs)")
    print(
        "\naten ops / host syncs per call: ResNet18 | every tensor twice | three times (from "
        "twice on every shape is a stacked group, so the counts must stay equal)"
    )
    for name, cfg in configs.items():
        counts = [counted(operator(repeated(layout, t), cfg), G.repeat(1, t)) for t in (1, 2, 3)]
        draws = ("randn", "stack")
        total = " | ".join(f"{sum(c.values()):5d}" for c in counts)
        plain = " | ".join(f"{sum(v for k, v in c.items() if k not in draws):5d}" for c in counts)
        syncs = " | ".join(str(c["_local_scalar_dense"]) for c in counts)
        print(f"{name:26s} ops {total}   without the draws {plain}   syncs {syncs}")


if __name__ == "__main__":
    main()
