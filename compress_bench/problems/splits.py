"""How the m samples are divided between n workers (spec section 25)."""

from __future__ import annotations

import numpy as np

from compress_bench.errors import ConfigError

SPLITS = ("iid", "label_sorted", "contiguous", "file_order")


def split_indices(labels: np.ndarray, n_workers: int, split: str, seed: int) -> list[np.ndarray]:
    """Row indices of each worker's shard; together they partition range(m).

    iid:          shuffle with ``default_rng(seed).permutation(m)``, then ``array_split``
                  (the first m mod n shards get one extra row).
    label_sorted: the same shuffle, stable-sorted by label, then ``array_split``: workers hold
                  (almost) one class each.
    contiguous:   file order, ``array_split``.
    file_order:   file order, floor(m/n) rows each, the remainder to the last worker (EF21 code).
    """
    m = len(labels)
    if n_workers > m:
        raise ConfigError(f"n_workers={n_workers} is more than the {m} samples of the problem")
    if split == "iid":
        return np.array_split(np.random.default_rng(seed).permutation(m), n_workers)
    if split == "label_sorted":
        perm = np.random.default_rng(seed).permutation(m)
        return np.array_split(perm[np.argsort(labels[perm], kind="stable")], n_workers)
    if split == "contiguous":
        return np.array_split(np.arange(m), n_workers)
    if split == "file_order":
        size = m // n_workers
        bounds = [i * size for i in range(n_workers)] + [m]
        return [np.arange(bounds[i], bounds[i + 1]) for i in range(n_workers)]
    raise ConfigError(f"unknown split {split!r} (available: {', '.join(SPLITS)})")
