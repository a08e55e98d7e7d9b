"""Cost of every compressor and quantizer on a ResNet18-sized vector, relative to one abs() pass.

On one seeded Gaussian vector of 11,173,962 float32 values (ResNet18's parameter count), shape
(1, d), this times in one run on this machine:
  * ``v.abs()`` (the unit: ratio 1),
  * the full ``compress(...)`` call of every registered compressor built with
    ``build_compressor({"name": name}, ratio=0.2)`` (the md_* operators need a problem and are
    skipped, with a note),
  * every registered quantizer applied to the dense message ``Message.dense(v)``, and to the
    message of top_k (the row times top_k's compress plus the quantizer: a full uplink).
Timings are medians over repeats, measured interleaved so that machine noise hits all rows
alike; the issue's goals are printed next to their rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from compress_bench.compressors import (
    COMPRESSORS,
    QUANTIZERS,
    Message,
    RoundContext,
    build_compressor,
    build_quantizer,
)
from compress_bench.rng import Streams

RESNET18_D = 11_173_962
RATIO = 0.2
#: Goals of the issue, as ratios to one abs() pass.
GOALS = {
    "compress rand_k": 4.0,
    "compress top_k": 8.0,
    "dense power_of_two": 3.0,
    "dense natural": 3.0,
}
SKIPPED_PREFIXES = ("md_",)


def cases(v: torch.Tensor, seed: int) -> dict[str, Callable[[], object]]:
    """Row label -> a call to time (each call does the whole operation once)."""
    n, d = v.shape
    ctx = RoundContext()
    rows: dict[str, Callable[[], object]] = {"abs": v.abs}
    for name in sorted(COMPRESSORS):
        if name.startswith(SKIPPED_PREFIXES):
            print(f"note: {name} skipped (it needs a problem to score coordinates)")
            continue
        comp = build_compressor({"name": name}, ratio=RATIO)
        state = comp.init_state(n, d, v.device, v.dtype)
        rng = Streams(seed, n)
        rows[f"compress {name}"] = lambda comp=comp, state=state, rng=rng: comp.compress(
            v, state, rng, ctx
        )
    top_k = build_compressor({"name": "top_k"}, ratio=RATIO)
    dense = Message.dense(v)
    for name in sorted(QUANTIZERS):
        quant = build_quantizer({"name": name})
        rng = Streams(seed, n)
        rows[f"dense {name}"] = lambda quant=quant, rng=rng: quant.quantize(dense, rng)
        rows[f"top_k + {name}"] = lambda quant=quant, rng=rng: quant.quantize(
            top_k.compress(v, None, rng, ctx)[0], rng
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=RESNET18_D)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, "
        f"d = {args.d:,}, ratio = {RATIO}"
    )
    gen = torch.Generator().manual_seed(args.seed)
    v = torch.randn(1, args.d, generator=gen, dtype=torch.float32)
    rows = cases(v, args.seed)
    for fn in rows.values():  # warm-up: first-call allocations and lazy initialisation
        fn()
    times: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(args.repeats):
        for label, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times["abs"])
    width = max(len(label) for label in rows)
    print(f"{'operation':<{width}} {'ms':>9} {'/ abs':>7}  goal")
    for label in rows:
        t = statistics.median(times[label])
        goal = GOALS.get(label)
        mark = "" if goal is None else f"<= {goal:g}  {'met' if t / base <= goal else 'MISSED'}"
        print(f"{label:<{width}} {1e3 * t:>9.2f} {t / base:>7.2f}  {mark}")
    print(f"medians of {args.repeats} interleaved repeats; abs() = 1")


if __name__ == "__main__":
    main()
