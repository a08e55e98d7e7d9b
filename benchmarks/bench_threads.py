"""Busy/idle round time for 1 and 2 torch threads (issue 9's `threads` key).

Runs `experiment=thesis_logreg compressor=md_weighted_greedy` (100 importance-solver steps a
round: many small ops) for a fixed number of rounds with 1 and 2 threads, first on the idle
machine, then with one other process spinning on a core, and prints the busy/idle ratio of
each. Goal: <= 1.3x with the default (1 thread in a sweep). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from compress_bench.config import compose_config
from compress_bench.runner import build_run, execute


def seconds(threads: int, rounds: int) -> float:
    run = build_run(
        compose_config(
            "experiment=thesis_logreg",
            "compressor=md_weighted_greedy",
            f"rounds={rounds}",
            "tol=null",
            f"log_every={rounds + 1}",
            "progress=false",
            f"threads={threads}",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        execute(run, Path(tmp))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    seconds(1, 2)  # warm-up: imports, f*, caches
    idle = {t: seconds(t, args.rounds) for t in (1, 2)}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        busy = {t: seconds(t, args.rounds) for t in (1, 2)}
    finally:
        spinner.kill()
    print(f"torch {torch.__version__}; {args.rounds} rounds of thesis_logreg md_weighted_greedy")
    for t in (1, 2):
        print(
            f"{t} thread(s): idle {idle[t]:6.2f} s, one busy core {busy[t]:6.2f} s, "
            f"busy/idle {busy[t] / idle[t]:.2f}"
        )
    print(f"idle: 1 thread / 2 threads = {idle[1] / idle[2]:.2f}; goal busy/idle <= 1.3 (default)")


if __name__ == "__main__":
    main()
