"""A small CNN for MNIST (about 46,700 parameters): fast on a CPU, ~98% test accuracy after
one epoch."""

from __future__ import annotations

import torch
from torch import nn


class MnistCNN(nn.Module):
    """conv 1->16 5x5, ReLU, max-pool 2; conv 16->32 5x5, ReLU, max-pool 2; fc 512 -> 64,
    ReLU; fc 64 -> ``num_classes``. Input ``(B, 1, 28, 28)``."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = nn.functional.max_pool2d(torch.relu(self.conv2(out)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(out, 1))))
