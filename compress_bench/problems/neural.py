"""Image classification with a neural network, split across n workers (CIFAR-10 ResNet18, MNIST).

f_i(x) = E_{(a, b) ~ shard i} CE(model_x(a), b): each round worker i draws its own minibatch
of ``batch_size`` images from its shard (``iid`` or ``label_sorted``), augments it on the
device (CIFAR-10: random crop with 4-pixel padding and horizontal flip) and computes the
stochastic gradient at x, the model's parameters as one flat float32 vector (``Layout.of``
gives the tensors, in ``named_parameters()`` order). No constants exist (no L, no f*):
``lr=auto``, ``loss_gap`` and a gradient-norm ``tol`` are unavailable.

The data is held on the compute device once; shuffling is an on-device permutation per
worker and epoch (``data/pipeline.WorkerSampler``), no DataLoader and no per-image loop.

BatchNorm (a choice, stated in the README): the batch statistics of each worker's own
minibatch normalise its forward pass (training mode); the running statistics used at
evaluation are one set, updated by every worker's forward pass in worker order each round, as
if the server kept them; they travel in no message and cost no bits. The running statistics,
the sampler positions and the augmentation stream are the problem's data state
(:meth:`get_data_state`), which a checkpoint holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress_bench.data.pipeline import ImageData, WorkerSampler, shard
from compress_bench.layout import Layout
from compress_bench.problems.base import Problem, Reference
from compress_bench.rng import (
    STREAM_AUGMENT,
    STREAM_DATA_ORDER,
    STREAM_MODEL_INIT,
    STREAM_SPLIT,
    generator,
    seed_from,
)


class ImageClassification(Problem):
    """A model trained on sharded images; see the module docstring."""

    stochastic = True

    def __init__(
        self,
        name: str,
        model: nn.Module,
        train: ImageData,
        test: ImageData,
        n_workers: int,
        split: str,
        batch_size: int,
        seed: int,
        eval_batch: int = 1000,
    ):
        self.name = name
        self.device = train.device
        self.dtype = torch.float32
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        layout = Layout.of(self.model)
        self.d = layout.d
        self.layout = layout
        self.n_workers = n_workers
        self.train, self.test = train, test
        self.batch_size = batch_size
        self.eval_batch = eval_batch
        shards = shard(
            train.labels, n_workers, split, generator(seed, STREAM_SPLIT, device=self.device)
        )
        self.sampler = WorkerSampler(
            shards, batch_size, generator(seed, STREAM_DATA_ORDER, device=self.device)
        )
        self.augment_stream = generator(seed, STREAM_AUGMENT, device=self.device)
        self._x0 = nn.utils.parameters_to_vector(self.params).detach().clone()
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- the gradient oracle -------------------------------------------------------------

    def _load(self, x: torch.Tensor) -> None:
        nn.utils.vector_to_parameters(x.detach(), self.params)

    def _forward_backward(self, images: torch.Tensor, labels: torch.Tensor):
        """One worker's minibatch loss and its gradient, tensor by tensor."""
        loss = F.cross_entropy(self.model(images), labels)
        return loss.detach(), torch.autograd.grad(loss, self.params)

    def next_batches(self) -> None:
        """Every worker's next minibatch (the round's data), augmented on the device."""
        indices = self.sampler.next()
        self._batch = self.train.batch(indices, self.augment_stream)

    def stochastic_grads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the round's minibatches; every worker's loss (n,) and gradient (n, d) at x."""
        self.next_batches()
        return self.loss_and_grad(x.expand(self.n_workers, -1))

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Worker i's minibatch loss and gradient at row i of X (the current minibatches)."""
        if self._batch is None:
            self.next_batches()
        images, labels = self._batch
        self.model.train()
        losses = torch.empty(self.n_workers, device=self.device)
        grads = torch.empty(self.n_workers, self.d, device=self.device)
        same = X.stride(0) == 0  # one point for every worker (x.expand): load it once
        if same:
            self._load(X[0])
        for i in range(self.n_workers):
            if not same:
                self._load(X[i])
            losses[i], tensors = self._forward_backward(images[i], labels[i])
            torch.cat([g.reshape(-1) for g in tensors], out=grads[i])  # no flat temporary
        self.evaluations += 1
        return losses, grads

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        """Gradients at other points on the current minibatches (the importance solver's
        trial points): the running BatchNorm statistics are left as they were."""
        buffers = [b.clone() for b in self.model.buffers()]
        try:
            return self.loss_and_grad(X)[1]
        finally:
            for b, saved in zip(self.model.buffers(), buffers, strict=True):
                b.copy_(saved)

    # --- evaluation on logged rounds ------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> dict[str, float]:
        """Test loss and accuracy at x (running BatchNorm statistics, no augmentation)."""
        self._load(x)
        self.model.eval()
        total, correct, n = 0.0, 0, len(self.test)
        for start in range(0, n, self.eval_batch):
            idx = torch.arange(start, min(start + self.eval_batch, n), device=self.device)
            images, labels = self.test.batch(idx, augment=False)
            logits = self.model(images)
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
        self.model.train()
        return {"test_loss": total / n, "test_accuracy": correct / n}

    @property
    def epoch(self) -> float:
        return self.sampler.epoch

    @property
    def images_seen(self) -> int:
        """Training images given to all workers so far."""
        return self.sampler.images_seen * self.n_workers

    # --- state ---------------------------------------------------------------------------

    def get_data_state(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.get_state(),
            "augment": self.augment_stream.get_state(),
            "order": self.sampler.generator.get_state(),
            "buffers": [b.detach().cpu().clone() for b in self.model.buffers()],
        }

    def set_data_state(self, state: dict[str, Any]) -> None:
        self.sampler.set_state(state["sampler"])
        self.augment_stream.set_state(state["augment"])
        self.sampler.generator.set_state(state["order"])
        for b, saved in zip(self.model.buffers(), state["buffers"], strict=True):
            b.copy_(saved.to(b.device))
        self._batch = None

    # --- no constants ----------------------------------------------------------------------

    def initial_point(self) -> torch.Tensor:
        return self._x0.clone()

    def constants(self) -> None:
        return None

    @property
    def smoothness(self) -> float:
        return math.nan

    @property
    def worker_smoothness(self) -> torch.Tensor:
        return torch.full((self.n_workers,), math.nan)

    def reference(self) -> Reference:
        return Reference(math.nan, [], math.nan)


def seeded_model(build, seed: int) -> nn.Module:
    """A model whose initial weights come from the run's seed only (torch's global
    generator is forked, so nothing else in the process moves it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_from(seed, STREAM_MODEL_INIT))
        return build()
