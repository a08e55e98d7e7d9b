"""The aten ops and host syncs of one round of method.step on ResNet18's layout (62 tensors,
11,173,962 parameters), without the model's forward/backward: a device-independent count of
what a GPU would launch (each op a kernel) and stall on (each sync), counted under a
TorchDispatchMode on the CPU (compress_bench.testing.layout_round_cost).

For each operator pair (per tensor, k_l = ceil(0.2 numel_l)) and method, at n = 2 and n = 8
workers: the ops and syncs on the portable kernels (``kernels=portable``, what an accelerator
runs) and on the CPU's fast paths (``kernels=auto`` on the CPU, where a sync costs nothing).
Issue 17's target: TopK + power-of-two with DCGD at most 400 ops and no sync per round at
n = 2, the same count at n = 8 (3,156 ops and 238 syncs before it).

RandK is the exception in this count: on the CPU a tensor of 65,536 entries or more draws its
support with the CPU's subset sampler (kernels=portable keeps the CPU's draws, so that a run's
numbers never depend on it), which reads counts back; an accelerator draws d uniforms per
worker from its own generator instead, with no sync but one draw per worker and tensor.

    python benchmarks/bench_round_ops.py [--workers 2 8] [--pairs top_k+power_of_two ...]
"""

from __future__ import annotations

import argparse
import platform

import torch

from compress_bench.layout import Layout
from compress_bench.models import build_model
from compress_bench.testing import layout_round_cost, syncs

PAIRS = [
    "top_k+power_of_two",
    "top_k+none",
    "identity+none",
    "rand_k+power_of_two",
    "identity+sign",
    "power_sgd+none",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="compressor+quantizer")
    parser.add_argument("--methods", nargs="+", default=["dcgd", "ef21"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    layout = Layout.of(build_model("resnet18"))
    print(
        f"ResNet18 layout: {len(layout)} tensors, d = {layout.d:,}; torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}; ops per round (last of 3), float32"
    )
    print(
        f"{'operator':<22} {'method':<6} {'n':>3} {'portable ops':>13} {'syncs':>6} "
        f"{'CPU-path ops':>13} {'syncs':>6}"
    )
    for pair in args.pairs:
        c, q = pair.split("+")
        for method in args.methods:
            for n in args.workers:
                row = []
                for portable in (True, False):
                    ops = layout_round_cost(
                        layout,
                        {"name": c},
                        {"name": q},
                        n,
                        method=method,
                        portable_kernels=portable,
                    )
                    row += [sum(ops.values()), sum(syncs(ops).values())]
                print(
                    f"{pair:<22} {method:<6} {n:>3} {row[0]:>13,} {row[1]:>6} "
                    f"{row[2]:>13,} {row[3]:>6}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
