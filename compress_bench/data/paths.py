"""Where datasets and derived caches live on disk.

Datasets: the configured ``data_dir`` if given, else ``$COMPRESS_BENCH_DATA``, else
``<user cache dir>/compress-bench/datasets``. Derived caches: ``$COMPRESS_BENCH_CACHE`` or
``<user cache dir>/compress-bench``. Empty strings count as "not set".
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "compress-bench"
DATA_ENV = "COMPRESS_BENCH_DATA"
CACHE_ENV = "COMPRESS_BENCH_CACHE"


def _absolute(value: str | os.PathLike[str]) -> Path:
    """Expand ``~`` and anchor a relative path at the current working directory."""
    return Path(value).expanduser().absolute()


def resolve_data_dir(configured: str | os.PathLike[str] | None) -> Path:
    """Return the folder that holds the datasets (``<dir>/<dataset>/<file>``).

    Precedence: ``configured`` (e.g. the ``data_dir`` config value), then the environment
    variable ``COMPRESS_BENCH_DATA``, then
    ``platformdirs.user_cache_dir("compress-bench")/datasets``.
    ``~`` is expanded and relative paths are resolved against the current working directory.
    """
    if configured is not None and str(configured) != "":
        return _absolute(configured)
    env = os.environ.get(DATA_ENV, "")
    if env:
        return _absolute(env)
    return _absolute(platformdirs.user_cache_dir(APP_NAME)) / "datasets"


def cache_dir() -> Path:
    """Return the folder for derived caches (``$COMPRESS_BENCH_CACHE`` or the user cache dir)."""
    env = os.environ.get(CACHE_ENV, "")
    if env:
        return _absolute(env)
    return _absolute(platformdirs.user_cache_dir(APP_NAME))
