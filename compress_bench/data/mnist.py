"""MNIST handwritten digits, from the original idx files.

Origin: Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/. 60000 training and 10000 test images, 28x28 grey levels,
labels 0-9.

On disk: ``<data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. Each file is
checked by the sha256 of its *decompressed* content (a re-compressed copy of the official
bytes is as good as the original), then its idx header (magic 2051 for images, 2049 for
labels, and the dimensions) is parsed. A missing file is downloaded (unless offline) from
the mirrors in order, verified in a staging folder and only then moved into place.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from compress_bench.data.download import (
    TrainTest,
    download_allowed,
    download_errors,
    exists,
    fetch,
    install,
    read_regular_file,
    sha256_bytes,
    short_reason,
    staging_folder,
)
from compress_bench.data.paths import DATA_ENV, OFFLINE_ENV
from compress_bench.errors import DataError

_log = logging.getLogger(__name__)

LABEL = "MNIST"
MAGIC_IMAGES = 2051  # 0x00000803: unsigned bytes, 3 dimensions
MAGIC_LABELS = 2049  # 0x00000801: unsigned bytes, 1 dimension


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """One ``.gz`` file: its name, the sha256 of its decompressed content, its idx shape."""

    name: str
    sha256: str
    shape: tuple[int, ...]

    @property
    def magic(self) -> int:
        return 0x800 + len(self.shape)  # type code 0x08 (unsigned byte), number of dimensions

    @property
    def size(self) -> int:
        """Bytes of the decompressed file: 4-byte magic, 4 bytes per dimension, the data."""
        return 4 + 4 * len(self.shape) + math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class MnistSpec:
    mirrors: tuple[str, ...]  # base URLs, tried in order; a file's URL is base + name
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


MNIST = MnistSpec(
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    train_images=IdxFile(
        "train-images-idx3-ubyte.gz",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        (60_000, 28, 28),
    ),
    train_labels=IdxFile(
        "train-labels-idx1-ubyte.gz",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        (60_000,),
    ),
    test_images=IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        (10_000, 28, 28),
    ),
    test_labels=IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        (10_000,),
    ),
)


def load_mnist(data_dir: str | os.PathLike[str], download: bool | None = None) -> TrainTest:
    """Load MNIST as uint8 images ``(N, 1, 28, 28)`` and int64 labels, train then test.

    ``download``: whether missing files may be downloaded; None (the default) means "unless
    ``$COMPRESS_BENCH_OFFLINE`` forbids it". Raises :class:`DataError` (one line) when a file
    is missing and cannot be downloaded, or fails verification.
    """
    spec = MNIST  # looked up at call time so tests can substitute the mirrors
    folder = Path(data_dir) / "mnist"
    missing = [f for f in spec.files if not exists(LABEL, folder / f.name)]
    if missing:
        if not download_allowed(download):
            others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            why = "download disabled" if download is False else f"{OFFLINE_ENV} forbids downloads"
            raise DataError(
                f"{LABEL} file {folder / missing[0].name} not found{others} ({why}); download the "
                f"files from {spec.mirrors[0]} or set {DATA_ENV}/data_dir"
            )
        _download(spec, folder, missing)
    arrays = [_load(spec, f, folder / f.name) for f in spec.files]
    train_images, train_labels, test_images, test_labels = (torch.from_numpy(a) for a in arrays)
    return TrainTest(train_images.unsqueeze(1), train_labels, test_images.unsqueeze(1), test_labels)


# --- reading and verifying ------------------------------------------------------------------


def _load(spec: MnistSpec, entry: IdxFile, path: Path) -> np.ndarray:
    content, problem = _check(entry, read_regular_file(LABEL, path))
    if problem:
        raise DataError(
            f"{LABEL} file {path} is corrupted ({problem}); nothing was used; delete it to "
            f"re-download it from {spec.mirrors[0]} or replace it with the official file"
        )
    return _parse(entry, content)


def _check(entry: IdxFile, raw: bytes) -> tuple[bytes, str]:
    """``(decompressed content, "")`` if ``raw`` is the file, else ``(b"", why not)``."""
    try:
        # At most one byte more than expected: a wrong file must not fill the memory.
        content = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(entry.size + 1)
    except (OSError, EOFError, zlib.error) as exc:
        return b"", f"not a valid gzip file: {' '.join(str(exc).split()) or type(exc).__name__}"
    digest = sha256_bytes(content)
    if digest != entry.sha256:
        more = "more than " if len(content) > entry.size else ""
        sized = "" if len(content) == entry.size else f", expected {entry.size}"
        return b"", (
            f"sha256 of the decompressed content {digest}, expected {entry.sha256}; "
            f"{more}{len(content)} bytes{sized}"
        )
    return content, ""


def _parse(entry: IdxFile, content: bytes) -> np.ndarray:
    """The idx array (uint8) after checking magic and dimensions against ``entry``."""
    header = np.frombuffer(content, dtype=">u4", count=1 + len(entry.shape))
    magic, dims = int(header[0]), tuple(int(d) for d in header[1:])
    if magic != entry.magic or dims != entry.shape:
        raise DataError(  # unreachable for the official hashes; kept for substituted specs
            f"{LABEL} file {entry.name} has idx header magic {magic} dims {dims}, expected "
            f"{entry.magic} {entry.shape}; nothing was used"
        )
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * len(dims))
    return data.reshape(dims).astype(np.int64 if len(dims) == 1 else np.uint8)


# --- download -------------------------------------------------------------------------------


def _download(spec: MnistSpec, folder: Path, missing: list[IdxFile]) -> None:
    """Download each missing file from the first mirror that serves a verified copy."""
    with staging_folder(LABEL, folder, spec.mirrors[0]) as staging:
        for entry in missing:
            failures = []
            for mirror in spec.mirrors:
                url = mirror + entry.name
                _log.info("downloading %s from %s to %s", LABEL, url, folder)
                try:
                    staged = fetch(url, staging, entry.name)
                except download_errors() as exc:
                    failures.append(f"{url}: {short_reason(exc)}")
                    continue
                _, problem = _check(entry, staged.read_bytes())
                if problem:
                    failures.append(f"{url}: corrupted ({problem})")
                    staged.unlink()
                    continue
                if not exists(LABEL, folder / entry.name):  # never replace someone's file
                    install(staged, folder / entry.name)
                break
            else:
                raise DataError(
                    f"{LABEL} file {folder / entry.name} not found and could not be downloaded "
                    f"({'; '.join(failures)}); nothing was written for it; retry later or put "
                    f"it there yourself"
                )
