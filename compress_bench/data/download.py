"""Helpers shared by the image data sets (CIFAR-10, MNIST): hashing, locating a file, and
fetching files into a private staging folder before an atomic install.

The one-line error style, the staging-folder discipline and pooch's quieting come from
:mod:`compress_bench.data.mushrooms`, whose helpers are reused here unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import torch

from compress_bench.data.mushrooms import (
    DOWNLOAD_TIMEOUT,
    _make_folders,
    _quiet_pooch,
    _remove_empty,
    _short_reason,
    _stat,
)
from compress_bench.data.paths import DATA_ENV, offline_requested
from compress_bench.errors import DataError

__all__ = [
    "TrainTest",
    "download_allowed",
    "download_errors",
    "exists",
    "fetch",
    "install",
    "read_regular_file",
    "sha256_bytes",
    "short_reason",
    "staging_folder",
]


class TrainTest(NamedTuple):
    """Images (uint8, ``(N, C, H, W)``) and labels (int64, ``(N,)``) of both splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def download_allowed(download: bool | None) -> bool:
    """``download`` if given, else whether ``$COMPRESS_BENCH_OFFLINE`` allows it."""
    return (not offline_requested()) if download is None else bool(download)


def exists(label: str, path: Path) -> bool:
    """Whether the data file ``path`` exists (following links).

    An unknowable answer (a folder that cannot be searched, a path under a file, a symlink
    loop, a broken link the user left as a pointer) raises a one-line :class:`DataError`
    rather than counting as "absent", which would send a download to a place where it cannot
    be installed. ``label`` names the data set in messages.
    """
    status = _stat(SimpleNamespace(name=label), path)  # mushrooms' lookup needs only .name
    if status is None:
        return False
    if not stat.S_ISREG(status.st_mode):
        what = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file"
        raise DataError(
            f"{label} file {path} is {what}; nothing was used; remove it (it is re-downloaded "
            f"when missing) or set {DATA_ENV}/data_dir to another folder"
        )
    return True


def read_regular_file(label: str, path: Path) -> bytes:
    """The bytes of ``path``; a one-line :class:`DataError` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{label} file {path} cannot be read ({_short_reason(exc)}); fix its permissions "
            f"or set {DATA_ENV}/data_dir to another folder"
        ) from exc


@contextmanager
def staging_folder(label: str, folder: Path, source: str) -> Iterator[Path]:
    """Create ``folder`` (and missing parents) and a private staging folder inside it.

    Everything is downloaded and checked in the staging folder; the caller moves verified
    files into place with ``os.replace`` (atomic: same filesystem). On exit the staging folder
    is removed, and, if nothing was installed in them, so are the folders this call created
    (an empty ``<data_dir>/cifar10/`` would look like a data set).
    """
    try:
        created = _make_folders(folder)
    except OSError as exc:
        where = exc.filename or folder
        what = f"the folder {where} cannot be created"
        raise _unwritable(label, folder, source, what, exc) from exc
    try:
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    except OSError as exc:
        _remove_empty(created)
        what = f"nothing can be written in {folder}"
        raise _unwritable(label, folder, source, what, exc) from exc
    try:
        yield staging
    finally:  # also on DataError and on signals
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)  # rmdir only removes folders that stayed empty


def _unwritable(label: str, folder: Path, source: str, what: str, exc: OSError) -> DataError:
    return DataError(
        f"{label} is missing under {folder} and cannot be downloaded there: {what} "
        f"({_short_reason(exc)}); choose a writable data_dir or {DATA_ENV}, or put the files "
        f"from {source} there"
    )


def fetch(url: str, staging: Path, fname: str, known_hash: str | None = None) -> Path:
    """Download ``url`` to ``staging/fname`` with pooch (``known_hash``: ``"sha256:..."``).

    Network and filesystem failures are re-raised as ``OSError``/``requests`` exceptions for
    the caller to word; a hash mismatch raises ``ValueError`` (pooch's own)."""
    import pooch

    with _quiet_pooch(pooch):
        return Path(
            pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=fname,
                path=staging,
                downloader=pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT),
            )
        )


def install(staged: Path, final: Path) -> None:
    """Move the verified ``staged`` file to ``final`` (same folder tree) atomically."""
    with open(staged, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, final)


def short_reason(exc: BaseException) -> str:
    """A few words on why a download failed (mushrooms' wording)."""
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "checksum mismatch"
    return _short_reason(exc)


def download_errors() -> tuple[type[BaseException], ...]:
    """The exception types a failed download raises (network, filesystem, pooch's hash)."""
    import requests

    return (requests.RequestException, OSError, ValueError)
