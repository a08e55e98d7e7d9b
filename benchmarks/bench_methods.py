"""Round time of ef, ef21 and diana against dcgd, TopK + power-of-two on mushrooms, at n = 1
and n = 100 (same total data). Goal (issue 9): each method's round <= 1.3x dcgd's.

diana needs an unbiased operator, so it runs RandK + natural compression, and its ratio is
taken against dcgd with the same operator. Medians over interleaved repeats, one run.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from bench_dcgd import round_seconds  # run as a script from benchmarks/

from compress_bench.config import compose_config
from compress_bench.runner import build_run

CASES = {  # method -> (operator overrides, dcgd baseline key)
    "dcgd": (("compressor=top_k", "quantizer=power_of_two"), None),
    "ef": (("compressor=top_k", "quantizer=power_of_two"), "dcgd"),
    "ef21": (("compressor=top_k", "quantizer=power_of_two"), "dcgd"),
    "dcgd_unbiased": (("compressor=rand_k", "quantizer=natural"), None),
    "diana": (("compressor=rand_k", "quantizer=natural"), "dcgd_unbiased"),
}


def build(case: str, n: int, rounds: int):
    method = case.split("_")[0]
    ops, _ = CASES[case]
    cfg = compose_config(
        *ops,
        f"method={method}",
        "lr=0.1",
        f"n_workers={n}",
        f"rounds={rounds}",
        f"log_every={rounds + 1}",
        "progress=false",
        "device=cpu",
    )
    return build_run(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, CPU")
    for n in (1, 100):
        runs = {case: build(case, n, args.rounds) for case in CASES}
        times = {case: [] for case in CASES}
        for _ in range(args.repeats):
            for case, run in runs.items():
                times[case].append(round_seconds(run))
        median = {case: statistics.median(t) for case, t in times.items()}
        for case, (_, base) in CASES.items():
            ratio = "" if base is None else f"  {median[case] / median[base]:.2f}x {base}"
            print(f"n = {n:>3}  {case:<14} {1e3 * median[case]:7.3f} ms/round{ratio}")
    print("goal: ef, ef21, diana <= 1.3x dcgd with the same operator")


if __name__ == "__main__":
    main()
