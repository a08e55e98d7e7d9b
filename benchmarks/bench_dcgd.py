"""Round time of TopK + Q DCGD on mushrooms at n = 1, 10, 100 workers (same total data).

Prints, from one run on this machine:
  * rounds per second of the real round loop (run/rounds.py's execute, metrics logged once at
    the end),
  * the ratio of the round time at n to the round time at n = 1 (goal at n = 100: <= 1.5),
  * the ratio of one round to one full-gradient evaluation of the problem (goal at n = 1: <= 3).
Timings are medians over repeats, measured interleaved so that machine noise hits all equally.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from compress_bench.config import compose_config
from compress_bench.runner import build_run, execute


def build(n: int, rounds: int, storage: str = "auto"):
    cfg = compose_config(
        "compressor=top_k",
        "quantizer=power_of_two",
        f"n_workers={n}",
        f"rounds={rounds}",
        f"log_every={rounds + 1}",
        "progress=false",
        "device=cpu",
        f"problem.storage={storage}",
    )
    return build_run(cfg)


def round_seconds(run) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        summary = execute(run, Path(tmp))
    return 1.0 / summary["rounds_per_second"]


def gradient_seconds(problem, repeats: int = 200) -> float:
    x = problem.initial_point() + 0.01
    start = time.perf_counter()
    for _ in range(repeats):
        problem.full_loss_and_grad(x)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--storage", default="auto", choices=["auto", "dense", "sparse"])
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, CPU, "
        f"storage {args.storage}"
    )
    workers = (1, 10, 100)
    runs = {n: build(n, args.rounds, args.storage) for n in workers}
    rounds = {n: [] for n in workers}
    grads = {n: [] for n in workers}
    for _ in range(args.repeats):
        for n in workers:
            rounds[n].append(round_seconds(runs[n]))
            grads[n].append(gradient_seconds(runs[n].problem))
    base_round = statistics.median(rounds[1])
    base_grad = statistics.median(grads[1])
    print(
        f"{'n':>4} {'rounds/s':>9} {'round ms':>9} {'grad ms':>8} {'round/round(n=1)':>17} "
        f"{'round/grad(n=1)':>16}"
    )
    for n in workers:
        r, g = statistics.median(rounds[n]), statistics.median(grads[n])
        print(
            f"{n:>4} {1 / r:>9.0f} {1e3 * r:>9.3f} {1e3 * g:>8.3f} {r / base_round:>17.2f} "
            f"{r / base_grad:>16.2f}"
        )
    print("goals: round(n=100)/round(n=1) <= 1.5; round(n=1)/grad(n=1) <= 3")


if __name__ == "__main__":
    main()
