"""backend=torch_distributed against the simulator: time per round and bytes against bits.

Mushrooms, TopK (k/d = 0.2), DCGD, n = 2 and 4: each configuration runs once through the CLI
with ``backend=simulated`` and once with ``backend=torch_distributed`` (gloo ranks on
127.0.0.1), ``rounds`` rounds, 1 thread per process. Printed: the seconds per round of each
(the run's wall time, start-up excluded: the summary's rounds_per_second), their ratio, and
per worker and round the bits of the exact encoding (32-bit values, ceil(log2 d)-bit indices)
against the bytes the rank really sent (values and indices in float64/int64, gathers of
equal buffers: comm/distributed.py), whose ratio is the framing overhead.

    python benchmarks/bench_distributed.py [--rounds 500] [--workers 2 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(args: list[str], folder: Path) -> tuple[dict, dict]:
    env = {**os.environ, "COMPRESS_BENCH_OFFLINE": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compress_bench",
            *args,
            "progress=false",
            f"hydra.run.dir={folder}",
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = json.loads((folder / "summary.json").read_text())
    with open(folder / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    return summary, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--compressor", default="top_k")
    options = parser.parse_args()
    print(f"mushrooms, {options.compressor}, dcgd, {options.rounds} rounds, 1 thread per process")
    print(
        f"{'n':>3} {'simulated s/round':>18} {'ranks s/round':>14} {'ratio':>7} "
        f"{'bits/round':>11} {'bytes/round':>12} {'bytes*8/bits':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in options.workers:
            common = [
                f"compressor={options.compressor}",
                f"n_workers={n}",
                f"rounds={options.rounds}",
                f"log_every={options.rounds}",
                "threads=1",
            ]
            sim, _ = run(common, Path(tmp) / f"s{n}")
            ranks, last = run([*common, "backend=torch_distributed"], Path(tmp) / f"d{n}")
            per_sim = 1 / sim["rounds_per_second"]
            per_ranks = 1 / ranks["rounds_per_second"]
            rounds = int(last["round"])
            bits = float(last["bits"]) / rounds
            sent = float(last["bytes_sent"]) / rounds
            print(
                f"{n:>3} {per_sim:>18.6f} {per_ranks:>14.6f} {per_ranks / per_sim:>7.1f} "
                f"{bits:>11.0f} {sent:>12.0f} {8 * sent / bits:>13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
