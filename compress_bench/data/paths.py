"""Where datasets and derived caches live on disk, and whether downloads are allowed.

Datasets: the configured ``data_dir`` if given, else ``$COMPRESS_BENCH_DATA``, else
``<user cache dir>/compress-bench/datasets``. Derived caches: ``$COMPRESS_BENCH_CACHE`` or
``<user cache dir>/compress-bench``. Empty strings count as "not set".
``$COMPRESS_BENCH_OFFLINE`` forbids downloads (see :func:`offline_requested`).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from compress_bench.errors import DataError

APP_NAME = "compress-bench"
DATA_ENV = "COMPRESS_BENCH_DATA"
CACHE_ENV = "COMPRESS_BENCH_CACHE"
OFFLINE_ENV = "COMPRESS_BENCH_OFFLINE"

# Spellings of a boolean environment variable, compared after strip() and lower().
_FALSE = ("", "0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def offline_requested() -> bool:
    """Whether ``$COMPRESS_BENCH_OFFLINE`` forbids downloads.

    Unset, empty, ``0``, ``false``, ``no`` and ``off`` (any case) mean online; ``1``, ``true``,
    ``yes`` and ``on`` mean offline. Anything else is refused with a :class:`DataError` rather
    than guessed: a typo must neither start an unwanted download nor silently block one.
    """
    raw = os.environ.get(OFFLINE_ENV, "")
    value = raw.strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise DataError(
        f"{OFFLINE_ENV} must be 0/1/true/false/yes/no/on/off (or empty), got {raw!r}; "
        f"set it to 1 to forbid downloads or unset it"
    )


def _absolute(value: str | os.PathLike[str], source: str) -> Path:
    """Expand ``~`` and anchor a relative path at the current working directory.

    ``source`` names where the path came from, for the message when it cannot be used.
    """
    try:
        return Path(value).expanduser().absolute()
    except RuntimeError as exc:  # "~someone" for an unknown user, or no home folder at all
        raise DataError(f"{source} {str(value)!r}: cannot expand '~' ({exc})") from exc
    except OSError as exc:  # a relative path when the current folder has been deleted
        raise DataError(
            f"{source} {str(value)!r} is relative and the current folder cannot be found "
            f"({exc.strerror or type(exc).__name__}); give an absolute path"
        ) from exc


def resolve_data_dir(configured: str | os.PathLike[str] | None) -> Path:
    """Return the folder that holds the datasets (``<dir>/<dataset>/<file>``).

    Precedence: ``configured`` (e.g. the ``data_dir`` config value), then the environment
    variable ``COMPRESS_BENCH_DATA``, then
    ``platformdirs.user_cache_dir("compress-bench")/datasets``.
    ``~`` is expanded and relative paths are resolved against the current working directory.
    Raises :class:`DataError` when the path cannot be expanded or anchored.
    """
    if configured is not None and str(configured) != "":
        return _absolute(configured, "data_dir")
    env = os.environ.get(DATA_ENV, "")
    if env:
        return _absolute(env, DATA_ENV)
    return _absolute(platformdirs.user_cache_dir(APP_NAME), "the user cache dir") / "datasets"


def cache_dir() -> Path:
    """Return the folder for derived caches (``$COMPRESS_BENCH_CACHE`` or the user cache dir)."""
    env = os.environ.get(CACHE_ENV, "")
    if env:
        return _absolute(env, CACHE_ENV)
    return _absolute(platformdirs.user_cache_dir(APP_NAME), "the user cache dir")
