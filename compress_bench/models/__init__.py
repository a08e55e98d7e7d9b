"""Neural-network models of the neural problems (plain ``torch.nn.Module``s)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from compress_bench.errors import ConfigError
from compress_bench.models.mnist import MnistCNN
from compress_bench.models.resnet import BasicBlock, ResNet18

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "mnist_cnn": MnistCNN,
}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised model by name: ``resnet18`` (CIFAR-10) or ``mnist_cnn``.

    Initialisation draws from torch's global generator: seed it (``torch.manual_seed``)
    first for a reproducible model.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (available: {', '.join(MODELS)})") from None
    return factory(num_classes=num_classes)


__all__ = ["MODELS", "BasicBlock", "MnistCNN", "ResNet18", "build_model"]
