"""On-device data handling for the neural problems: no DataLoader, no per-image Python loop.

* :class:`ImageData`: the uint8 images and int64 labels of a data set, kept on the device,
  with the per-channel mean/std used to normalise them;
* :func:`shard`: which images each of the n workers holds (``iid`` or ``label_sorted``);
* :class:`WorkerSampler`: every worker walks its shard in its own random order, reshuffled
  each epoch, and one call returns the next minibatch indices of all workers, ``(n, batch)``;
  its state (epoch, position, permutation) is explicit, so a run resumes bit for bit;
* :func:`random_crop_flip` and :func:`normalise`: batched augmentation and normalisation.

Every random draw comes from a ``torch.Generator`` that the caller owns and passes in (on the
device of the data); none is kept here, so a checkpoint must save the generator's state
together with :meth:`WorkerSampler.get_state`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from compress_bench.errors import ConfigError

# Per-channel statistics of the training sets, pixel values / 255.
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)  # all 50000 training images
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)

SHARD_SPLITS = ("iid", "label_sorted")


# --- the data on the device -----------------------------------------------------------------


@dataclasses.dataclass
class ImageData:
    """uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)`` on one device, with the
    per-channel ``mean``/``std`` (of pixel / 255) that :meth:`batch` normalises with.

    ``augment``: whether :meth:`batch` applies :func:`random_crop_flip` by default (CIFAR-10
    training data; MNIST is only normalised).
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self._describe()}")
        if self.labels.shape != self.images.shape[:1] or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 ({len(self.images)},), got {self._describe()}")
        if self.labels.device != self.images.device:
            raise ValueError("images and labels must be on the same device")
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values, one per channel")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)

    def _describe(self) -> str:
        return (
            f"images {self.images.dtype} {tuple(self.images.shape)}, "
            f"labels {self.labels.dtype} {tuple(self.labels.shape)}"
        )

    @classmethod
    def cifar10(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        device: torch.device | str = "cpu",
        augment: bool = True,
    ) -> ImageData:
        """CIFAR-10 images with the training-set statistics (crop + flip by default)."""
        return cls(images.to(device), labels.to(device), CIFAR10_MEAN, CIFAR10_STD, augment)

    @classmethod
    def mnist(
        cls, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str = "cpu"
    ) -> ImageData:
        """MNIST images with mean 0.1307 and std 0.3081 (normalisation only)."""
        return cls(images.to(device), labels.to(device), MNIST_MEAN, MNIST_STD, False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageData:
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )

    def batch(
        self,
        indices: torch.Tensor,
        generator: torch.Generator | None = None,
        augment: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 normalised images ``(*indices.shape, C, H, W)`` and their labels.

        ``indices`` of any shape, e.g. a sampler's ``(n_workers, batch)``. With augmentation
        (``augment``, default the data's own setting) the crops and flips are drawn from
        ``generator``, one batched draw for all the images.
        """
        flat = indices.reshape(-1)
        images = self.images[flat]
        if self.augment if augment is None else augment:
            if generator is None:
                raise ValueError("augmentation needs a generator")
            images = random_crop_flip(images, generator)
        x = normalise(images, self.mean, self.std)
        return x.reshape(*indices.shape, *x.shape[1:]), self.labels[flat].reshape(indices.shape)

    def normalised(self) -> torch.Tensor:
        """All images, normalised float32 (for evaluation on the test set)."""
        return normalise(self.images, self.mean, self.std)


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 ``(pixel / 255 - mean[c]) / std[c]``."""
    shape = (1, len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).reshape(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).reshape(shape)
    scale = 1.0 / (255.0 * std_t)
    shift = mean_t / std_t
    return images.to(torch.float32).mul_(scale).sub_(shift)


# --- augmentation ---------------------------------------------------------------------------


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crops of the zero-padded images and random horizontal flips, batched.

    ``images`` ``(B, C, H, W)`` (any dtype; zero padding is black for uint8 pixels, as in the
    usual CIFAR-10 recipe). The batch is padded once by ``padding`` pixels on every side; per
    image a top-left offset ``(dy, dx)`` uniform in ``0..2*padding`` and (if ``flip``) a coin
    for mirroring are drawn from ``generator``, in this order: ``dy`` (B values), ``dx``
    (B values), the coins (B values). Image b of the result is
    ``padded[b, :, dy:dy+H, dx:dx+W]``, flipped along the width when its coin is 1. The same
    generator state gives the same result.
    """
    b, _, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
    cols = torch.arange(w, device=device).expand(b, w)
    if flip:
        mirror = torch.randint(0, 2, (b,), generator=generator, device=device).bool()
        cols = torch.where(mirror[:, None], (w - 1) - cols, cols)
    rows = dy[:, None] + torch.arange(h, device=device)  # (B, H)
    cols = dx[:, None] + cols  # (B, W)
    # One gather from the flattened planes: pixel (y, x) of image b sits at
    # rows[b, y] * padded_width + cols[b, x] (faster than 4-tensor advanced indexing).
    c = images.shape[1]
    width = w + 2 * padding
    flat = (rows[:, :, None] * width + cols[:, None, :]).reshape(b, 1, h * w)
    picked = padded.reshape(b, c, -1).gather(2, flat.expand(b, c, h * w))
    return picked.reshape(b, c, h, w)


# --- sharding -------------------------------------------------------------------------------


def shard(
    labels: torch.Tensor,
    n_workers: int,
    split: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The image indices of each worker, an int64 tensor ``(n_workers, N // n_workers)``.

    ``iid``: a random permutation (from ``generator``, on the labels' device) cut into equal
    contiguous shards. ``label_sorted``: indices stable-sorted by label (file order within a
    class), cut into equal contiguous shards, so worker i holds about one class when n = 10.
    Both drop the last ``N mod n_workers`` images of the order (the generator is not used by
    ``label_sorted``).
    """
    m = len(labels)
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"n_workers must be a positive integer, got {n_workers!r}")
    if n_workers > m:
        raise ConfigError(f"n_workers={n_workers} is more than the {m} images of the data set")
    if split == "iid":
        if generator is None:
            raise ValueError("split 'iid' needs a generator")
        order = torch.randperm(m, generator=generator, device=labels.device)
    elif split == "label_sorted":
        order = torch.sort(labels, stable=True).indices
    else:
        raise ConfigError(f"unknown split {split!r} (available: {', '.join(SHARD_SPLITS)})")
    size = m // n_workers
    return order[: n_workers * size].reshape(n_workers, size)


# --- minibatches ----------------------------------------------------------------------------


class WorkerSampler:
    """Minibatch indices for all workers at once: ``next()`` -> int64 ``(n, batch_size)``.

    Worker i walks ``shards[i]`` in its own random order (a permutation of its m positions)
    and takes ``batch_size`` images a step; when a pass ends it draws a fresh order for every
    worker (a new epoch) and fills the batch from it, so each epoch shows every image of a
    shard exactly once. The orders are drawn from ``generator`` (on the shards' device), which
    the caller owns: the first at construction, one per epoch after that.

    State: ``epoch`` (completed passes), ``position`` (images taken from the current pass) and
    ``permutation`` (the current orders, ``(n, m)``); :meth:`get_state`/:meth:`set_state`
    capture it (save the generator's state alongside for a bit-exact resume).
    """

    def __init__(self, shards: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        if shards.dim() != 2 or shards.shape[1] == 0:
            raise ValueError(f"shards must be a non-empty (n, m) tensor, got {tuple(shards.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.shards = shards
        self.batch_size = batch_size
        self.generator = generator
        self._epoch = 0
        self._position = 0
        self._permutation = self._draw()

    @property
    def n_workers(self) -> int:
        return self.shards.shape[0]

    @property
    def shard_size(self) -> int:
        return self.shards.shape[1]

    @property
    def epoch(self) -> float:
        """Images each worker has seen / shard size (2.5 = halfway through the third pass)."""
        return self._epoch + self._position / self.shard_size

    @property
    def images_seen(self) -> int:
        """Images each worker has been given so far."""
        return self._epoch * self.shard_size + self._position

    def _draw(self) -> torch.Tensor:
        """Independent uniform orders of the m positions, one per row: argsort of float64
        uniforms (ties, which would bias the order, have probability ~ m^2 / 2^54)."""
        keys = torch.rand(
            self.shards.shape,
            generator=self.generator,
            device=self.shards.device,
            dtype=torch.float64,
        )
        return torch.argsort(keys, dim=1)

    def next(self) -> torch.Tensor:
        """The next ``(n, batch_size)`` global image indices (row i: worker i's batch)."""
        pieces = []
        needed = self.batch_size
        while needed:
            if self._position == self.shard_size:
                self._epoch += 1
                self._position = 0
                self._permutation = self._draw()
            take = min(needed, self.shard_size - self._position)
            pieces.append(self._permutation[:, self._position : self._position + take])
            self._position += take
            needed -= take
        positions = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return torch.gather(self.shards, 1, positions)

    __next__ = next

    def __iter__(self) -> WorkerSampler:
        return self

    def get_state(self) -> dict[str, Any]:
        """``{"epoch": int, "position": int, "permutation": CPU int64 tensor (n, m)}``
        (a copy: ``torch.save``-able, unaffected by later draws)."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "permutation": self._permutation.detach().to("cpu", copy=True),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` result (of a sampler with the same shards)."""
        permutation = torch.as_tensor(state["permutation"])
        epoch, position = int(state["epoch"]), int(state["position"])
        if tuple(permutation.shape) != tuple(self.shards.shape):
            raise ValueError(
                f"sampler state is for shards {tuple(permutation.shape)}, these are "
                f"{tuple(self.shards.shape)}"
            )
        if epoch < 0 or not 0 <= position <= self.shard_size:
            raise ValueError(f"sampler state has epoch {epoch}, position {position}")
        self._epoch = epoch
        self._position = position
        self._permutation = permutation.to(self.shards.device, torch.int64)
