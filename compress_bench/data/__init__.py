"""Datasets: where they live on disk, how they are downloaded, verified and loaded."""

from compress_bench.data.mushrooms import MUSHROOMS, DatasetSpec, load_libsvm, load_mushrooms
from compress_bench.data.paths import (
    OFFLINE_ENV,
    cache_dir,
    offline_requested,
    resolve_data_dir,
)

__all__ = [
    "MUSHROOMS",
    "OFFLINE_ENV",
    "DatasetSpec",
    "cache_dir",
    "load_libsvm",
    "load_mushrooms",
    "offline_requested",
    "resolve_data_dir",
]
