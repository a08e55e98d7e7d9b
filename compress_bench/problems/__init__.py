"""Problems: objectives split across workers, with a batched gradient oracle."""

from __future__ import annotations

import os

import numpy as np
import torch

from compress_bench.errors import ConfigError
from compress_bench.problems.base import Problem, Reference
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.splits import split_indices
from compress_bench.rng import STREAM_INIT, generator

__all__ = ["Problem", "Reference", "LogisticRegression", "build_problem", "PROBLEMS"]

PROBLEMS = ("mushrooms", "synthetic_logreg")
THESIS_INIT_SEED = 18  # fixed in the thesis code, independent of the run's seed
OFFLINE_ENV = "COMPRESS_BENCH_OFFLINE"  # set (non-empty) to never download datasets


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
    from compress_bench.data import cache_dir, load_mushrooms, resolve_data_dir

    name = str(cfg.name)
    reference_cache = cache_dir() / "reference"
    if name == "mushrooms":
        root = resolve_data_dir(data_dir)
        # f* is cached in the user's cache folder (keyed by a hash of the problem), never in
        # the data folder: that may be shared, read-only, or a checksummed download
        features, labels = load_mushrooms(root, download=not os.environ.get(OFFLINE_ENV))
    elif name == "synthetic_logreg":
        if cfg.n_samples < 1 or cfg.dim < 1:
            raise ConfigError("synthetic_logreg needs n_samples >= 1 and dim >= 1")
        features, labels = synthetic_logreg_data(
            cfg.n_samples, cfg.dim, cfg.data_seed, cfg.label_noise
        )
    else:
        raise ConfigError(f"unknown problem {name!r} (available: {', '.join(PROBLEMS)})")
    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    shards = split_indices(labels, n_workers, str(cfg.split), split_seed)
    x0 = _initial_point(str(cfg.init), features.shape[1], seed)
    return LogisticRegression(
        features,
        labels,
        shards,
        cfg.l2,
        x0,
        name,
        device,
        dtype,
        reference_cache,
        storage=str(cfg.get("storage", "auto")),
    )
