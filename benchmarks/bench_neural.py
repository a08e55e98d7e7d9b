"""Round-time split of a neural round: the workers' forward/backward passes against the rest
(data pipeline, compression, aggregation, the update), in one run.

ResNet18 on CIFAR-10, batch 32 per worker, n = 2, TopK + power-of-two, granularity=layer, SGD
with momentum, on the CPU with the thread count the run uses (``--threads``, default 1).
Goal: the share outside forward/backward under 10%, and the data pipeline never the
bottleneck (its images/s against the model's forward/backward images/s).
"""

from __future__ import annotations

import argparse
import time

import torch

from compress_bench.config import compose_config
from compress_bench.methods.base import Evaluation
from compress_bench.runner import build_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = compose_config(
        "problem=cifar10_resnet18",
        "problem.train_batches=[1]",
        "problem.test_file=test_subset/test_batch_first1000.bin",
        f"problem.batch_size={args.batch}",
        "n_workers=2",
        "compressor=top_k",
        "quantizer=power_of_two",
        "granularity=layer",
        "optimizer=sgd",
        "lr=0.001",
        "dtype=float32",
        f"device={args.device}",
        f"threads={args.threads}",
    )
    run = build_run(cfg)
    problem, method = run.problem, run.method
    x = problem.initial_point()
    state = method.init_state(x)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    timing = {"pipeline": 0.0, "forward_backward": 0.0, "rest": 0.0}
    for k in range(args.rounds + 1):  # round 0 warms up and is not counted
        sync()
        t0 = time.perf_counter()
        problem.next_batches()
        sync()
        t1 = time.perf_counter()
        losses, grads = problem.loss_and_grad(x.expand(problem.n_workers, -1))
        sync()
        t2 = time.perf_counter()
        proposal = method.step(x, Evaluation(losses, grads), state, run.streams, k)
        x, state = proposal.x, proposal.state
        sync()
        t3 = time.perf_counter()
        if k:
            timing["pipeline"] += t1 - t0
            timing["forward_backward"] += t2 - t1
            timing["rest"] += t3 - t2
    total = sum(timing.values())
    images = args.rounds * args.batch * problem.n_workers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {x.device}")
    print(f"rounds {args.rounds}, {images} images, round {total / args.rounds:.3f} s")
    for name, seconds in timing.items():
        print(f"  {name:>16}: {seconds / total:6.1%}  ({seconds / args.rounds:.4f} s per round)")
    print(f"share outside forward/backward: {(total - timing['forward_backward']) / total:.1%}")
    print(
        f"images/s: pipeline {images / timing['pipeline']:.0f}, "
        f"forward/backward {images / timing['forward_backward']:.1f}"
    )


if __name__ == "__main__":
    main()
