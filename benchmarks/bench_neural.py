"""Round-time split of a neural round: the workers' forward/backward passes against the rest
(data pipeline, compression, aggregation, the update), in one run.

ResNet18 on CIFAR-10, batch 32 per worker, n = 2, TopK + power-of-two, granularity=layer, SGD
with momentum, on the CPU with the thread count the run uses (``--threads``, default 1).
Goal: the share outside forward/backward under 10%, and the data pipeline never the
bottleneck (its images/s against the model's forward/backward images/s).

``--importance-steps K`` (K > 0) also prices the md_* importance solver (spec 12, variant
thesis_resnet, MD Weighted Greedy): a round that solves with K steps per tensor and one with
max(K, 10) steps joint, their gradient calls and seconds per step.

``--operators`` (benchmarks/gpu_check.sh runs it on a GPU) times the rounds of
experiment=thesis_cifar_offline's settings (batch 128 per worker, per tensor, SGD with
momentum) for identity, TopK, RandK (both with power-of-two rounding, as in the figure), MD
Weighted Greedy (importance=thesis_resnet, the joint solve, K = 200 or ``--importance-steps``,
every 78 rounds) and PowerSGD (rank 2, DCGD, no quantizer: it sends factors), for
``--workers`` (default 1 and 4): the images/s of the CLI's round (run/rounds.py's run_round
of a neural run: the gradients, the method's step, the loss read back, the bit count; no
syncs inside it), the share of that round outside forward/backward (against the
forward/backward passes alone, timed on their own), and for MD Weighted Greedy the solve's
seconds and the images/s with it spread over its 78 rounds. The rounds between test
evaluations are what a sweep spends its time on; its evaluation and checkpoint every 78 rounds
are not timed.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from compress_bench.config import compose_config
from compress_bench.methods.base import Evaluation
from compress_bench.run.ledger import BitLedger
from compress_bench.runner import build_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--warmup", type=int, default=4, help="rounds run first and not counted (the allocator)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=None, help="per worker (default 32; --operators: 128)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--importance-steps",
        type=int,
        default=None,
        help="K of the md_* solve priced (default: none; --operators: 200, thesis_resnet's)",
    )
    parser.add_argument(
        "--operators", action="store_true", help="images/s of each operator's round (above)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 4], help="n of --operators (default 1 4)"
    )
    args = parser.parse_args()
    if args.operators:
        if args.batch is None:
            args.batch = 128
        if args.importance_steps is None:
            args.importance_steps = 200
        if args.warmup < 1 or args.warmup + args.rounds > EVERY:
            # round 0 solves (in the warm-up); the timed rounds must not reach the next solve
            parser.error(f"--operators needs --warmup >= 1 and --warmup + --rounds <= {EVERY}")
        operators(args)
        return
    if args.batch is None:
        args.batch = 32
    args.importance_steps = args.importance_steps or 0
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


# --- --operators ---------------------------------------------------------------------------

#: thesis_cifar_offline's rounds per epoch (10,000 // 128): its importance.every
EVERY = 78
# The settings of experiment=thesis_cifar_offline, spelled out rather than composed from it:
# its quantizer keys (log2, clipped) would not compose with quantizer=none.
THESIS = (
    "quantizer=power_of_two",
    "quantizer.rounding=log2",
    "quantizer.clip_exponent_at_zero=true",
)
OPERATORS = {
    "identity": ("compressor=identity", "quantizer=none"),
    "top_k": ("compressor=top_k", *THESIS),
    "rand_k": ("compressor=rand_k", "compressor.scale=none", *THESIS),
    "md_weighted_greedy (joint)": (
        "compressor=md_weighted_greedy",
        *THESIS,
        "importance=thesis_resnet",
        "importance.scope=joint",
        f"importance.every={EVERY}",
    ),
    "power_sgd (rank 2)": ("compressor=power_sgd", "quantizer=none"),
}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # platform.processor() is only the architecture on Linux
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def operator_run(args, n: int, extra: tuple[str, ...]):
    return build_run(
        compose_config(
            "problem=cifar10_resnet18",
            "problem.train_batches=[1]",
            "problem.test_file=test_subset/test_batch_first1000.bin",
            f"problem.batch_size={args.batch}",
            f"n_workers={n}",
            "granularity=layer",
            "ratio=0.2",
            "optimizer=sgd",
            "optimizer.momentum=0.9",
            "optimizer.weight_decay=5e-4",
            "lr=0.001",
            "dtype=float32",
            f"device={args.device}",
            f"threads={args.threads}",
            f"importance.steps={args.importance_steps}",
            *extra,
        )
    )


def forward_backward_seconds(args, run, sync) -> float:
    """Seconds a round of the workers' forward/backward passes alone takes (the round's own
    calls, on fresh minibatches, without loading x, flattening or compressing)."""
    problem = run.problem
    problem.model.train()
    total = 0.0
    for r in range(args.warmup + args.rounds):
        problem.next_batches()
        images, labels = problem._batch
        sync()
        start = time.perf_counter()
        for i in range(problem.n_workers):
            problem._forward_backward(images[i], labels[i])
        sync()
        if r >= args.warmup:
            total += time.perf_counter() - start
    return total / args.rounds


class Rounds:
    """A run's rounds as run_round runs a neural run's, in its order: the gradients,
    the method's step, the loss read back (the loop's one read-back a round), the bit count
    (no metrics row, no stop rules)."""

    def __init__(self, run):
        self.run = run
        self.x = run.problem.initial_point()
        self.state = run.method.init_state(self.x)
        self.ledger = BitLedger(run.problem.n_workers, thesis=False)

    def round(self, k: int) -> None:
        problem, method = self.run.problem, self.run.method
        losses, grads = problem.stochastic_grads(self.x)
        proposal = method.step(self.x, Evaluation(losses, grads), self.state, self.run.streams, k)
        float(losses.mean())
        spent = self.ledger.cost(proposal)
        self.x, self.state = proposal.x, proposal.state
        self.ledger.add(spent)


def time_operator(args, run, sync, solves: bool) -> tuple[float, float | None]:
    """Seconds a round (the warm-up's round 0 solves for md_*), and with ``solves`` the
    seconds a solve adds to the round that runs it (round EVERY)."""
    rounds = Rounds(run)
    for k in range(args.warmup):
        rounds.round(k)
    sync()
    start = time.perf_counter()
    for k in range(args.warmup, args.warmup + args.rounds):
        rounds.round(k)
    sync()
    seconds = (time.perf_counter() - start) / args.rounds
    if not solves:
        return seconds, None
    start = time.perf_counter()
    rounds.round(EVERY)
    sync()
    return seconds, time.perf_counter() - start - seconds


def operators(args) -> None:
    torch.set_num_threads(args.threads)  # build_run sets the same; the header reads it first
    print(
        f"device {device_name(args.device)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {args.batch} per worker, "
        f"{args.rounds} rounds timed after {args.warmup}"
    )
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"{'operator':>28} {'n':>2} {'images/s':>9} {'round s':>8} {'outside f/b':>11}")
    for n in args.workers:
        images = n * args.batch
        fb = None
        for name, extra in OPERATORS.items():
            run = operator_run(args, n, extra)
            if fb is None:  # the passes do not depend on the operator: once per n
                fb = forward_backward_seconds(args, run, sync)
                print(f"{'forward/backward alone':>28} {n:>2} {images / fb:>9.1f} {fb:>8.4f}")
            solves = extra[0] == "compressor=md_weighted_greedy"
            seconds, solve = time_operator(args, run, sync, solves)
            outside = max(0.0, 1.0 - fb / seconds)
            print(f"{name:>28} {n:>2} {images / seconds:>9.1f} {seconds:>8.4f} {outside:>11.1%}")
            if solve is not None:
                amortized = seconds + solve / EVERY
                print(
                    f"{'':>28} {'':>2} {images / amortized:>9.1f} {amortized:>8.4f} "
                    f"{max(0.0, 1.0 - fb / amortized):>11.1%}  with its solve every {EVERY} "
                    f"rounds ({args.importance_steps} steps: {solve:.2f} s)"
                )
            del run  # one run's tensors at a time on the device
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
