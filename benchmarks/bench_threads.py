"""Round time against torch's thread count and OpenMP's wait policy, idle and beside a busy
process, for a convex and a neural run (the `threads` default, issue 15 item 6).

Each measurement is a fresh process (OpenMP reads ``OMP_WAIT_POLICY`` when torch loads it, so
it cannot change inside one process) that builds the run, warms it up, then times
``execute`` alone (no start-up, no data loading). The workloads:

  convex   experiment=thesis_logreg compressor=md_weighted_greedy (100 importance-solver steps
           a round on d = 112: thousands of small ops), ``--convex-rounds`` rounds
  neural   experiment=mnist_ef_smoke method=ef (the MNIST CNN, batch 64 per worker, n = 4),
           ``--neural-rounds`` rounds

Each is run with 1 thread (the default) and with every core's threads under three wait policies
(``spin``: libgomp's default, a waiting thread spins 300,000 times before it sleeps; ``short``:
3,000 spins, what compress_bench sets; ``passive``: it sleeps at once), first
on the idle machine, then with ``--spinners`` other processes spinning (default: one per core
but one, the case that made the 2-thread default collapse). Every configuration is measured
``--repeats`` times, interleaved, and the fastest is kept (noise on a shared machine only ever
adds time). Printed: seconds, busy/idle, and each setting against the best setting of that
load. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    "convex": ("experiment=thesis_logreg", "compressor=md_weighted_greedy", "tol=null"),
    "neural": ("experiment=mnist_ef_smoke", "method=ef", "eval_every=1000"),
}
#: how OpenMP's waiting threads wait (libgomp, torch's CPU OpenMP): ``spin``, libgomp's own
#: default (300,000 spins before sleeping); ``short``, compress_bench's (3,000, set when the
#: package is imported); ``passive`` (sleep at once)
POLICIES = {
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "short": {"GOMP_SPINCOUNT": "3000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def _measure(workload: str, threads: int, rounds: int) -> float:
    """In the child: seconds of ``execute`` for ``rounds`` rounds (after a 3-round warm-up)."""
    from compress_bench.config import compose_config
    from compress_bench.runner import build_run, execute

    def timed(n: int) -> float:
        cfg = compose_config(
            *WORKLOADS[workload],
            f"rounds={n}",
            f"log_every={n}",
            "progress=false",
            f"threads={threads}",
        )
        run = build_run(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            execute(run, Path(tmp))
            return time.perf_counter() - start

    timed(3)
    return timed(rounds)


def measure(workload: str, threads: int, policy: str, rounds: int) -> float:
    """Seconds of one measurement in a fresh process with the given OpenMP wait policy."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); from bench_threads import _measure; "
        f"print(json.dumps(_measure({workload!r}, {threads}, {rounds})))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{workload}, {threads} threads, {policy}: {out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def table(args, cores: int) -> dict:
    # one thread never waits for another: its wait policy does not matter
    settings = [(1, "short")] + [(cores, p) for p in POLICIES if cores > 1]
    rounds = {"convex": args.convex_rounds, "neural": args.neural_rounds}
    best: dict = {}
    for _ in range(args.repeats):
        for workload in WORKLOADS:
            for threads, policy in settings:
                s = measure(workload, threads, policy, rounds[workload])
                key = (workload, threads, policy)
                best[key] = min(best.get(key, float("inf")), s)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convex-rounds", type=int, default=60)
    parser.add_argument("--neural-rounds", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--spinners", type=int, default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    spinners = args.spinners if args.spinners is not None else max(cores - 1, 1)
    idle = table(args, cores)
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(spinners)]
    try:
        time.sleep(1.0)
        busy = table(args, cores)
    finally:
        for proc in procs:
            proc.kill()
    import torch

    print(
        f"torch {torch.__version__}, {cores} cores; busy = {spinners} spinning process(es); "
        f"fastest of {args.repeats}"
    )
    print(
        f"{'workload':8} {'threads':>7} {'wait':>8} {'idle s':>8} {'busy s':>8} "
        f"{'busy/idle':>9} {'idle/best':>9} {'busy/best':>9}"
    )
    for workload in WORKLOADS:
        keys = [k for k in idle if k[0] == workload]
        best_idle = min(idle[k] for k in keys)
        best_busy = min(busy[k] for k in keys)
        for key in keys:
            _, threads, policy = key
            print(
                f"{workload:8} {threads:7d} {policy:>8} {idle[key]:8.2f} {busy[key]:8.2f} "
                f"{busy[key] / idle[key]:9.2f} {idle[key] / best_idle:9.2f} "
                f"{busy[key] / best_busy:9.2f}"
            )


if __name__ == "__main__":
    main()
