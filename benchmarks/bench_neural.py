"""Round-time split of a neural round: the workers' forward/backward passes against the rest
(data pipeline, compression, aggregation, the update), in one run.

ResNet18 on CIFAR-10, batch 32 per worker, n = 2, TopK + power-of-two, granularity=layer, SGD
with momentum, on the CPU with the thread count the run uses (``--threads``, default 1).
Goal: the share outside forward/backward under 10%, and the data pipeline never the
bottleneck (its images/s against the model's forward/backward images/s).

``--importance-steps K`` (K > 0) also prices the md_* importance solver (spec 12, variant
thesis_resnet, MD Weighted Greedy): a round that solves with K steps per tensor and one with
max(K, 10) steps joint, their gradient calls and seconds per step.
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
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--warmup", type=int, default=4, help="rounds run first and not counted (the allocator)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--importance-steps", type=int, default=0)
    args = parser.parse_args()
    round_split(args)
    if args.importance_steps > 0:
        # the joint step is cheap enough to run 10 (its first steps page-fault fresh memory)
        importance_cost(args, "tensor", args.importance_steps)
        importance_cost(args, "joint", max(args.importance_steps, 10))


def neural_config(args, *overrides: str):
    return compose_config(
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
        *overrides,
    )


def importance_cost(args, scope: str, steps: int) -> None:
    """Seconds and gradient calls of one solve of K steps beyond the round's own pass, timed
    on round 1 (round 0 solves too and warms the allocator up)."""
    run = build_run(
        neural_config(
            args,
            "compressor=md_weighted_greedy",
            "importance=thesis_resnet",
            f"importance.steps={steps}",
            f"importance.scope={scope}",
        )
    )
    problem, method = run.problem, run.method
    x = problem.initial_point()
    state = method.init_state(x)
    for k in range(2):
        losses, grads = problem.stochastic_grads(x)
        calls = problem.evaluations
        start = time.perf_counter()
        proposal = method.step(x, Evaluation(losses, grads), state, run.streams, k)
        seconds = time.perf_counter() - start
        calls = problem.evaluations - calls
        x, state = proposal.x, proposal.state
    print(
        f"importance scope={scope}: {steps} steps, {calls} gradient calls "
        f"({calls / steps:.0f} per step, each a forward/backward of every worker), "
        f"{seconds:.2f} s ({seconds / steps:.2f} s per step, the round's compression included)"
    )


def round_split(args) -> None:
    cfg = neural_config(args)
    run = build_run(cfg)
    problem, method = run.problem, run.method
    x = problem.initial_point()
    state = method.init_state(x)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    timing: dict[str, float] = {}
    counting = [False]

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            if counting[0]:
                timing[name] = timing.get(name, 0.0) + time.perf_counter() - start
            return out

        return wrapper

    # the phases, timed where the run calls them (instance attributes shadow the methods)
    problem.next_batches = timed("data pipeline", problem.next_batches)
    problem._forward_backward = timed("forward/backward", problem._forward_backward)
    problem.loss_and_grad = timed("gradient oracle", problem.loss_and_grad)
    method.worker = timed("compression (worker phase)", method.worker)
    method.aggregate = timed("aggregation", method.aggregate)
    method.optimizer.step = timed("server update", method.optimizer.step)
    round_time = 0.0
    for k in range(args.warmup + args.rounds):
        counting[0] = k >= args.warmup
        sync()
        t0 = time.perf_counter()
        losses, grads = problem.stochastic_grads(x)
        proposal = method.step(x, Evaluation(losses, grads), state, run.streams, k)
        x, state = proposal.x, proposal.state
        sync()
        if counting[0]:
            round_time += time.perf_counter() - t0
    # the oracle's own time besides the passes: loading x into the model, flattening
    oracle = timing.pop("gradient oracle")
    timing["load x, flatten gradients"] = oracle - timing["forward/backward"]
    fb = timing["forward/backward"]
    timing["other"] = round_time - sum(timing.values())
    images = args.rounds * args.batch * problem.n_workers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {x.device}")
    print(f"rounds {args.rounds}, {images} images, round {round_time / args.rounds:.3f} s")
    for name, seconds in timing.items():
        share = seconds / round_time
        print(f"  {name:>28}: {share:6.1%}  ({seconds / args.rounds:.4f} s per round)")
    print(f"share outside forward/backward: {(round_time - fb) / round_time:.1%}")
    print(
        f"images/s: data pipeline {images / timing['data pipeline']:.0f}, "
        f"forward/backward {images / fb:.1f}"
    )


if __name__ == "__main__":
    main()
