"""Datasets: where they live on disk, how they are downloaded, verified and loaded."""

from compress_bench.data.mushrooms import MUSHROOMS, DatasetSpec, load_libsvm, load_mushrooms
from compress_bench.data.paths import cache_dir, resolve_data_dir

__all__ = [
    "MUSHROOMS",
    "DatasetSpec",
    "cache_dir",
    "load_libsvm",
    "load_mushrooms",
    "resolve_data_dir",
]
