"""Problems: objectives split across workers, with a batched gradient oracle."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from compress_bench.errors import ConfigError
from compress_bench.layout import Layout
from compress_bench.problems.base import Problem, Reference
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.splits import split_indices
from compress_bench.rng import STREAM_DATA_ORDER, STREAM_INIT, generator

__all__ = [
    "PROBLEMS",
    "LogisticRegression",
    "Problem",
    "Reference",
    "build_problem",
    "register_problem",
]

#: name -> builder(cfg, n_workers, seed, device, dtype, data_dir) of every selectable problem
PROBLEMS: dict[str, Callable[..., Problem]] = {}


def register_problem(name: str):
    """Make ``problem=<name>`` selectable: the decorated function builds it from its config."""

    def register(builder: Callable[..., Problem]) -> Callable[..., Problem]:
        if name in PROBLEMS:
            raise RuntimeError(f"problem {name!r} registered twice")
        PROBLEMS[name] = builder
        return builder

    return register


THESIS_INIT_SEED = 18  # fixed in the thesis code, independent of the run's seed


# The generated features exist as NumPy float64, as the problem's tensor and as its float64
# twin (the f* solver): three (m, d) copies at least; the smoothness constants (one d x d
# matrix per worker and one for f) and the Newton steps of the f* solve add (n + 1) d^2.
SYNTHETIC_COPIES = 3


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable; None if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(needed: int, what: str) -> None:
    """Refuse, before allocating, a problem that cannot fit in memory (rather than failing
    deep inside NumPy, or swapping the machine to a halt)."""
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs about {needed / 2**30:.3g} GiB, more than the "
            f"{available / 2**30:.3g} GiB of memory available; choose a smaller problem"
        )


def _initial_point(init: str, d: int, seed: int) -> np.ndarray:
    if init == "zeros":
        return np.zeros(d)
    if init == "random":  # N(0, I), as the EF21 code starts
        gen = generator(seed, STREAM_INIT)
        return torch.randn(d, generator=gen, dtype=torch.float64).numpy()
    if init == "thesis":  # the thesis code's start: legacy RandomState(18), norm 0.5
        u = np.random.RandomState(THESIS_INIT_SEED).random_sample(d)
        return 0.5 * u / np.linalg.norm(u)
    raise ConfigError(f"unknown init {init!r} (available: zeros, random, thesis)")


def build_problem(
    cfg, n_workers: int, seed: int, device: torch.device, dtype: torch.dtype, data_dir=None
) -> Problem:
    """The problem named by ``cfg.name``, split between ``n_workers``."""
    name = str(cfg.name)
    if name not in PROBLEMS:
        raise ConfigError(f"unknown problem {name!r} (available: {', '.join(sorted(PROBLEMS))})")
    return PROBLEMS[name](cfg, n_workers, seed, device, dtype, data_dir)


@register_problem("mushrooms")
def _mushrooms(cfg, n_workers, seed, device, dtype, data_dir) -> Problem:
    from compress_bench.data import load_mushrooms, offline_requested, resolve_data_dir

    # f* is cached in the user's cache folder (keyed by a hash of the problem), never in
    # the data folder: that may be shared, read-only, or a checksummed download
    features, labels = load_mushrooms(resolve_data_dir(data_dir), download=not offline_requested())
    return _logreg(cfg, features, labels, n_workers, seed, device, dtype)


@register_problem("synthetic_logreg")
def _synthetic(cfg, n_workers, seed, device, dtype, data_dir) -> Problem:
    if cfg.n_samples < 1 or cfg.dim < 1:
        raise ConfigError("synthetic_logreg needs n_samples >= 1 and dim >= 1")
    _check_memory(
        8 * (SYNTHETIC_COPIES * cfg.n_samples * cfg.dim + (n_workers + 1) * cfg.dim**2),
        f"synthetic_logreg with n_samples={cfg.n_samples}, dim={cfg.dim}",
    )
    features, labels = synthetic_logreg_data(cfg.n_samples, cfg.dim, cfg.data_seed, cfg.label_noise)
    return _logreg(cfg, features, labels, n_workers, seed, device, dtype)


def _logreg(cfg, features, labels, n_workers, seed, device, dtype) -> LogisticRegression:
    from compress_bench.data import cache_dir

    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    shards = split_indices(labels, n_workers, str(cfg.split), split_seed)
    x0 = _initial_point(str(cfg.init), features.shape[1], seed)
    problem = LogisticRegression(
        features,
        labels,
        shards,
        cfg.l2,
        x0,
        str(cfg.name),
        device,
        dtype,
        cache_dir() / "reference",
        storage=str(cfg.get("storage", "auto")),
    )
    batch_size = cfg.get("batch_size")
    if batch_size is not None:
        try:
            problem.use_minibatches(
                int(batch_size), generator(seed, STREAM_DATA_ORDER, device=problem.device)
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
    blocks = cfg.get("layout")
    if blocks is not None:
        try:
            problem.layout = Layout.blocks(list(blocks), problem.d)
        except ValueError as err:
            raise ConfigError(f"problem.layout: {err}") from err
    matrix_shape = cfg.get("matrix_shape")
    if matrix_shape is not None:
        shape = tuple(int(s) for s in matrix_shape)
        if blocks is not None:
            raise ConfigError("problem.matrix_shape and problem.layout cannot both be set")
        if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != problem.d:
            raise ConfigError(
                f"problem.matrix_shape={list(shape)} must be two positive sizes whose product "
                f"is d = {problem.d}"
            )
        problem.layout = Layout(problem.layout.names, (shape,))
    return problem


def _image_problem(cfg, n_workers, seed, device, train_test, build_model, wrap) -> Problem:
    from compress_bench.problems.neural import ImageClassification, seeded_model

    # the limits cut on the host, before anything is copied to the device
    train_limit, test_limit = cfg.get("train_limit"), cfg.get("test_limit")
    train_images, train_labels = (
        train_test.train_images[:train_limit],
        train_test.train_labels[:train_limit],
    )
    test_images, test_labels = (
        train_test.test_images[:test_limit],
        train_test.test_labels[:test_limit],
    )
    batch_size, shard_size = int(cfg.batch_size), len(train_labels) // n_workers
    if 0 < shard_size < batch_size:  # (no shard at all: shard() says n_workers > images)
        # the sampler would wrap into the next epoch inside one minibatch: an image twice
        raise ConfigError(
            f"problem.batch_size={batch_size} is more than a worker's shard ({shard_size} "
            f"images: {len(train_labels)} training images / {n_workers} workers); a minibatch "
            "would hold an image twice; lower problem.batch_size or n_workers"
            + (", or raise problem.train_limit" if train_limit is not None else "")
        )
    train = wrap(train_images, train_labels, device, True)
    test = wrap(test_images, test_labels, device, False)
    model = seeded_model(build_model, seed)
    return ImageClassification(
        str(cfg.name), model, train, test, n_workers, str(cfg.split), batch_size, seed
    )


@register_problem("mnist")
def _mnist(cfg, n_workers, seed, device, dtype, data_dir) -> Problem:
    from compress_bench.data import resolve_data_dir
    from compress_bench.data.mnist import load_mnist
    from compress_bench.data.pipeline import ImageData
    from compress_bench.models import build_model

    data = load_mnist(resolve_data_dir(data_dir))
    return _image_problem(
        cfg,
        n_workers,
        seed,
        device,
        data,
        lambda: build_model(str(cfg.get("model", "mnist_cnn"))),
        lambda images, labels, dev, train: ImageData.mnist(images, labels, dev),
    )


@register_problem("cifar10_resnet18")
def _cifar10(cfg, n_workers, seed, device, dtype, data_dir) -> Problem:
    from compress_bench.data import resolve_data_dir
    from compress_bench.data.cifar10 import load_cifar10
    from compress_bench.data.pipeline import ImageData
    from compress_bench.models import build_model

    if not cfg.train_batches:  # checked before any file is looked for (or downloaded)
        raise ConfigError(
            "problem.train_batches is empty: training needs at least one of the batches 1-5 "
            "(e.g. problem.train_batches=[1])"
        )
    data = load_cifar10(resolve_data_dir(data_dir), tuple(cfg.train_batches), cfg.get("test_file"))
    return _image_problem(
        cfg,
        n_workers,
        seed,
        device,
        data,
        lambda: build_model("resnet18"),
        lambda images, labels, dev, train: ImageData.cifar10(
            images, labels, dev, augment=train and bool(cfg.get("augment", True))
        ),
    )
