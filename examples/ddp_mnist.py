"""Train MNIST with PyTorch DDP and a compress-bench communication hook, one line added to an
ordinary training script (the ``ddp.register`` call below)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_mnist.py --steps 200
    torchrun --standalone --nproc_per_node=2 examples/ddp_mnist.py \\
        --compressor power_sgd --rank 2 --method ef

Each rank draws its own minibatches (a per-rank shuffle of the training set); the dataset
folder is ``$COMPRESS_BENCH_DATA`` (or the user cache, downloading unless
``COMPRESS_BENCH_OFFLINE=1``). Gloo on the CPU, NCCL when CUDA is available.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from compress_bench import ddp
from compress_bench.data.mnist import load_mnist
from compress_bench.data.paths import resolve_data_dir
from compress_bench.data.pipeline import ImageData
from compress_bench.models.mnist import MnistCNN


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    p.add_argument("--batch-size", type=int, default=64, help="per rank (default 64)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--compressor", default="top_k", help="any registered compressor")
    p.add_argument("--ratio", type=float, default=0.01, help="kept fraction (sparsifiers)")
    p.add_argument("--rank", type=int, default=None, help="rank of the low-rank operators")
    p.add_argument("--quantizer", default="none", help="any registered quantizer")
    p.add_argument("--method", default="ef", choices=ddp.HOOK_METHODS)
    p.add_argument("--granularity", default="layer", choices=("layer", "global"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--data-dir", default=None, help="default: $COMPRESS_BENCH_DATA")
    return p.parse_args()


def main() -> None:
    args = arguments()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    raw = load_mnist(resolve_data_dir(args.data_dir))
    train = ImageData.mnist(raw.train_images, raw.train_labels, device)
    test = ImageData.mnist(raw.test_images, raw.test_labels, device)

    torch.manual_seed(args.seed)  # the same initial model on every rank (DDP broadcasts it too)
    model = DDP(MnistCNN().to(device), device_ids=[device.index] if cuda else None)
    compressor = {"name": args.compressor}
    if args.rank is not None:
        compressor["rank"] = args.rank
    # the one line: compress the gradients DDP exchanges
    hook = ddp.register(
        model,
        compressor=compressor,
        ratio=args.ratio,
        method=args.method,
        quantizer=args.quantizer,
        granularity=args.granularity,
        seed=args.seed,
    )
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    order = torch.Generator().manual_seed(args.seed * 1000 + rank)
    perm, position = torch.randperm(len(train), generator=order), 0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        if position + args.batch_size > len(perm):
            perm, position = torch.randperm(len(train), generator=order), 0
        indices = perm[position : position + args.batch_size].to(device)
        position += args.batch_size
        images, labels = train.batch(indices)
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.log_every == 0 or step == args.steps:
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            if rank == 0:
                print(f"step {step:5d}  train loss {float(mean) / world:.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model.module(x).argmax(1) == y).sum())
            for x, y in zip(test.normalised().split(1000), test.labels.split(1000), strict=True)
        )
    if rank == 0:
        print(
            f"{args.method} + {args.compressor} ({args.granularity}), {world} ranks, "
            f"{args.steps} steps in {time.perf_counter() - start:.1f} s: test accuracy "
            f"{correct / len(test):.4f}; uplink {hook.compression():.4f} of 32-bit dense "
            f"gradients per step, {hook.bytes_sent / max(1, hook.step) / 1e3:.1f} kB "
            "sent per rank and step",
            flush=True,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
