"""Images/s of the on-device CIFAR-10 pipeline vs. a ResNet18 training step, on 1 CPU thread.

Pipeline: ``WorkerSampler.next`` + ``ImageData.batch`` (gather, random crop with 4-pixel
zero padding, horizontal flip, normalisation to float32) for 2 workers x 32 images and for
1 worker x 128. Model: ResNet18 forward + backward (cross-entropy) at batch 32. Uses the real
``data_batch_1.bin`` when ``$COMPRESS_BENCH_DATA`` (or ``../shared/datasets``) has it, random
pixels otherwise (the speed is the same). Runs in well under a minute.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from compress_bench.data.cifar10 import load_cifar10
from compress_bench.data.pipeline import ImageData, WorkerSampler, shard
from compress_bench.errors import DataError
from compress_bench.models import build_model


def cifar_images() -> tuple[torch.Tensor, torch.Tensor, str]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    root = Path(os.environ.get("COMPRESS_BENCH_DATA") or shared)
    try:
        # data_batch_1.bin is an official member, so as a test file it is verified too.
        images, labels, _, _ = load_cifar10(
            root, (1,), test_file="cifar-10-batches-bin/data_batch_1.bin", download=False
        )
        return images, labels, f"data_batch_1.bin from {root}"
    except DataError:  # no offline copy: random pixels run at the same speed
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (10_000, 3, 32, 32), generator=gen, dtype=torch.uint8)
        return images, torch.randint(0, 10, (10_000,), generator=gen), "random pixels"


def pipeline_rate(data: ImageData, workers: int, batch: int, seconds: float) -> float:
    gen = torch.Generator().manual_seed(0)
    sampler = WorkerSampler(shard(data.labels, workers, "iid", gen), batch, gen)
    data.batch(sampler.next(), gen)  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, _ = data.batch(sampler.next(), gen)
        steps += 1
    assert x.dtype == torch.float32 and x.shape == (workers, batch, 3, 32, 32)
    return steps * workers * batch / (time.perf_counter() - start)


def resnet_rate(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model("resnet18")
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per pipeline setting")
    parser.add_argument("--steps", type=int, default=5, help="ResNet18 training steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels, source = cifar_images()
    data = ImageData.cifar10(images, labels)
    print(f"CIFAR-10 pipeline on 1 thread ({source}): sample + crop/flip + normalise")
    for workers, batch in ((2, 32), (1, 128)):
        rate = pipeline_rate(data, workers, batch, args.seconds)
        print(f"  {workers} x {batch:3d}: {rate:10,.0f} images/s")
    rate = resnet_rate(32, args.steps)
    print(f"ResNet18 forward + backward, batch 32, 1 thread: {rate:,.1f} images/s")


if __name__ == "__main__":
    main()
