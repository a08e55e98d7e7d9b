"""Models of the neural problems (compress_bench.models)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from compress_bench.errors import ConfigError
from compress_bench.models import BasicBlock, MnistCNN, ResNet18, build_model
from tests.conftest import SHARED_DATASETS


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_has_the_cifar_parameter_count() -> None:
    model = build_model("resnet18")
    assert isinstance(model, ResNet18)
    assert _parameters(model) == 11_173_962
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    shortcuts = [b for b in blocks if not isinstance(b.shortcut, torch.nn.Identity)]
    assert len(shortcuts) == 3  # the first block of stages 2, 3, 4
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_resnet18_forward_backward() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18")
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mnist_cnn_shape() -> None:
    model = build_model("mnist_cnn")
    assert isinstance(model, MnistCNN)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert _parameters(model) < 100_000


def test_a_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("mnist_cnn")
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_unknown_model() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("vgg11")


@pytest.mark.slow
def test_mnist_cnn_reaches_97_percent_in_one_epoch() -> None:
    """One epoch of Adam (lr 2e-3 decayed linearly to 0, batch 64) through the on-device
    pipeline; about 10 s on one CPU thread, ~98.8% test accuracy."""
    from compress_bench.data.mnist import load_mnist
    from compress_bench.data.pipeline import ImageData, WorkerSampler, shard

    root = Path(SHARED_DATASETS)
    if not (root / "mnist").is_dir():
        pytest.skip(f"offline MNIST copy not found at {root / 'mnist'}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        data = load_mnist(root, download=False)
        train = ImageData.mnist(data.train_images, data.train_labels)
        test = ImageData.mnist(data.test_images, data.test_labels)
        gen = torch.Generator().manual_seed(0)
        sampler = WorkerSampler(shard(train.labels, 1, "iid", gen), 64, gen)
        model = build_model("mnist_cnn")
        steps = len(train) // 64
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
        start = time.perf_counter()
        for _ in range(steps):
            x, y = train.batch(sampler.next())
            loss = torch.nn.functional.cross_entropy(model(x[0]), y[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        with torch.no_grad():
            accuracy = float((model(test.normalised()).argmax(1) == test.labels).float().mean())
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    print(f"MNIST CNN: {accuracy:.4f} test accuracy after one epoch in {elapsed:.1f} s")
    assert sampler.epoch == pytest.approx(1.0, abs=64 / len(train))
    assert accuracy >= 0.97
