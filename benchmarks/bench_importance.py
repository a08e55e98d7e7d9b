"""Cost of the importance solver on mushrooms: one mirror-descent step against one
full-gradient evaluation of the same problem, at n = 1 and n = 10 workers (goal: <= 2x).

A step is one batched gradient call at the n workers' trial points plus the simplex update;
a full-gradient evaluation is f and grad f at one point (the average over the workers' shards).
Medians over repeats, interleaved, measured in one run on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from compress_bench.config import compose_config
from compress_bench.runner import build_run


def build(n: int):
    cfg = compose_config(
        "experiment=thesis_logreg", "compressor=md_weighted_greedy", f"n_workers={n}", "device=cpu"
    )
    return build_run(cfg)


def seconds(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, CPU")
    cases = {}
    for n in (1, 10):
        run = build(n)
        problem, solver = run.problem, run.method.compressor.solver
        x = problem.initial_point()
        G = problem.grad(x.expand(n, -1))
        z = solver.initial_log_weights(G)
        cases[n] = (
            lambda problem=problem, x=x: problem.full_loss_and_grad(x),
            lambda solver=solver, z=z, x=x, G=G, problem=problem: solver.step(
                z, x, G, 0.4, problem
            ),
        )
    timings = {(n, kind): [] for n in cases for kind in ("grad", "step")}
    for _ in range(args.repeats):
        for n, (grad, step) in cases.items():
            timings[n, "grad"].append(seconds(grad, args.calls))
            timings[n, "step"].append(seconds(step, args.calls))
    print(f"{'n':>3} {'full grad ms':>13} {'MD step ms':>11} {'step/grad':>10}")
    for n in cases:
        g = statistics.median(timings[n, "grad"])
        s = statistics.median(timings[n, "step"])
        print(f"{n:>3} {1e3 * g:>13.3f} {1e3 * s:>11.3f} {s / g:>10.2f}")
    print("goal: step/grad <= 2 at n = 1 and n = 10")


if __name__ == "__main__":
    main()
