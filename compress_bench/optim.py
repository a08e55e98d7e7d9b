"""Server optimizers: how the method's direction moves x (``optimizer=...``).

The method's server phase produces a direction g^k (the aggregate of the messages, or EF21's
running g, or DIANA's h + aggregate); the optimizer turns it into the step:

  gd   x^{k+1} = x^k - eta_k g^k                                    (the convex default)
  sgd  b^{k+1} = mu b^k + (g^k + lambda x^k),  x^{k+1} = x^k - eta_k b^{k+1}
       (heavy-ball momentum mu and weight decay lambda, as ``torch.optim.SGD`` with
       dampening 0; the thesis ResNet setting is eta 0.001, mu 0.9, lambda 5e-4)

eta_k follows ``schedule``: ``constant``; ``cosine`` (eta (1 + cos(pi k / K)) / 2 over the
run's K rounds); ``step`` (eta * gamma^floor(k / step_every)). State: the momentum buffer b, a
tensor (so a checkpoint read with ``torch.load(weights_only=True)`` holds it). With ``gd`` and
a constant schedule the update is the methods' former ``x - lr * g`` expression, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from compress_bench.errors import ConfigError

SCHEDULES = ("constant", "cosine", "step")


@dataclass
class ServerOptimizer:
    """x <- x - eta_k (momentum-filtered g + weight decay), see the module docstring."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    rounds: int = 1
    step_every: int = 1
    gamma: float = 0.1

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optimizer.schedule must be one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")

    def init_state(self, x0: torch.Tensor) -> dict[str, Any]:
        if self.momentum == 0.0:
            return {}
        return {"momentum": torch.zeros_like(x0)}

    def lr_at(self, k: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(k, self.rounds) / self.rounds))
        if self.schedule == "step":
            return self.lr * self.gamma ** (k // self.step_every)
        return self.lr

    def step(
        self, x: torch.Tensor, direction: torch.Tensor, state: dict[str, Any], k: int
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        lr = self.lr_at(k)
        if not (self.weight_decay or self.momentum):
            return x - lr * direction, state  # gd: the methods' former expression, bit for bit
        # sgd: two fresh tensors and three passes over d (x, the direction and the old buffer
        # are left as they are: the runner may refuse the round)
        buffer = torch.add(direction, x, alpha=self.weight_decay) if self.weight_decay else None
        if self.momentum:
            old = state["momentum"]
            if buffer is None:
                buffer = torch.add(direction, old, alpha=self.momentum)
            else:
                buffer.add_(old, alpha=self.momentum)
            state = {"momentum": buffer}
        return torch.add(x, buffer, alpha=-lr), state


def build_optimizer(cfg: Any, lr: float, rounds: int) -> ServerOptimizer:
    """The optimizer of ``cfg`` (the ``optimizer`` group; None: plain gd)."""
    if cfg is None:
        return ServerOptimizer(lr=lr, rounds=max(rounds, 1))
    name = str(cfg.get("name", "gd"))
    if name not in ("gd", "sgd"):
        raise ConfigError(f"unknown optimizer {name!r} (available: gd, sgd)")
    momentum = float(cfg.get("momentum", 0.0)) if name == "sgd" else 0.0
    return ServerOptimizer(
        lr=lr,
        momentum=momentum,
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        schedule=str(cfg.get("schedule", "constant")),
        rounds=max(rounds, 1),
        step_every=int(cfg.get("step_every", 1) or 1),
        gamma=float(cfg.get("gamma", 0.1)),
    )
