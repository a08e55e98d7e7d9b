"""CIFAR-10, binary version (no pickle).

Origin: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009,
https://www.cs.toronto.edu/~kriz/cifar.html. 60000 colour images 32x32 in 10 classes
(airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck); 5 training batches of
10000 images and one test batch of 10000.

On disk the official members live at ``<data_dir>/cifar10/cifar-10-batches-bin/`` as
``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``. Each is a sequence of
3073-byte records: 1 label byte (0-9), then the 1024 red, 1024 green and 1024 blue bytes of
the image (32x32 row-major planes). Every official file is checked against its official
sha256 before it is used; a missing one is downloaded (unless offline) from the official
archive, whose sha256 is checked by pooch, then each extracted member's sha256 as well, and
only then moved into place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
import warnings
from collections.abc import Sequence
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
from compress_bench.errors import ConfigError, DataError

_log = logging.getLogger(__name__)

LABEL = "CIFAR-10"
RECORD_BYTES = 3073  # 1 label byte + 3 * 32 * 32 pixel bytes
IMAGE_SHAPE = (3, 32, 32)
N_CLASSES = 10
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TEST_FILE = "test_batch.bin"


class UnverifiedDataWarning(UserWarning):
    """A data file was used that no official checksum covers (only its format was checked)."""


@dataclasses.dataclass(frozen=True)
class Cifar10Spec:
    """Where the official archive is and what its members hash to."""

    url: str
    archive_sha256: str
    members: tuple[tuple[str, str], ...]  # (file name, sha256) of every official member
    records_per_file: int = 10_000
    folder: str = "cifar-10-batches-bin"  # inside the archive and inside <data_dir>/cifar10/

    def sha256(self, name: str) -> str:
        return dict(self.members)[name]

    def final_folder(self, data_dir: str | os.PathLike[str]) -> Path:
        return Path(data_dir) / "cifar10" / self.folder


CIFAR10 = Cifar10Spec(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    archive_sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    members=(
        ("data_batch_1.bin", "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5"),
        ("data_batch_2.bin", "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed"),
        ("data_batch_3.bin", "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67"),
        ("data_batch_4.bin", "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48"),
        ("data_batch_5.bin", "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add"),
        (TEST_FILE, "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b"),
    ),
)


def load_cifar10(
    data_dir: str | os.PathLike[str],
    train_batches: Sequence[int] = (1,),
    test_file: str | os.PathLike[str] | None = None,
    download: bool | None = None,
) -> TrainTest:
    """Load CIFAR-10 training batches and a test file as uint8 images and int64 labels.

    Returns ``(train_images, train_labels, test_images, test_labels)`` (a :class:`TrainTest`)
    with images of shape ``(N, 3, 32, 32)``, in file order, training batches concatenated in
    the order given (``train_batches=()`` gives empty training tensors).

    ``test_file`` is None for the official ``test_batch.bin``, or the path (absolute, or
    relative to ``<data_dir>/cifar10/``) of another file in the same format, e.g.
    ``test_subset/test_batch_first1000.bin``. Unless its sha256 is that of an official member
    it is unverified: it is accepted if its size is a positive multiple of 3073 bytes and its
    labels are 0-9, with an :class:`UnverifiedDataWarning`. It is never downloaded.

    ``download``: whether a missing official file may be downloaded; None (the default) means
    "unless ``$COMPRESS_BENCH_OFFLINE`` forbids it". Raises :class:`DataError` (one line) when
    a file is missing and cannot be downloaded, or fails verification.
    """
    spec = CIFAR10  # looked up at call time so tests can substitute the URL and hashes
    names = [f"data_batch_{b}.bin" for b in _batch_numbers(spec, train_batches)]
    if test_file is None:
        names.append(TEST_FILE)
    folder = spec.final_folder(data_dir)
    missing = [name for name in names if not exists(LABEL, folder / name)]
    if missing:
        if not download_allowed(download):
            raise _missing_offline(spec, folder, missing, download)
        _download(spec, folder)
    parsed = {name: _load_official(spec, folder / name) for name in names}

    train = [parsed[name] for name in names if name != TEST_FILE]
    if train:
        train_images = torch.cat([images for images, _ in train])
        train_labels = torch.cat([labels for _, labels in train])
    else:
        train_images = torch.empty((0, *IMAGE_SHAPE), dtype=torch.uint8)
        train_labels = torch.empty((0,), dtype=torch.int64)
    if test_file is None:
        test_images, test_labels = parsed[TEST_FILE]
    else:
        test_images, test_labels = _load_other(spec, _resolve(data_dir, test_file))
    return TrainTest(train_images, train_labels, test_images, test_labels)


def _batch_numbers(spec: Cifar10Spec, train_batches: Sequence[int]) -> list[int]:
    available = [
        int(name[len("data_batch_") : -len(".bin")])
        for name, _ in spec.members
        if name.startswith("data_batch_")
    ]
    batches = list(train_batches)
    bad = [b for b in batches if isinstance(b, bool) or b not in available]
    if bad or len(set(batches)) != len(batches):
        raise ConfigError(
            f"train_batches must be distinct batch numbers among {available}, got {batches}"
        )
    return [int(b) for b in batches]


def _resolve(data_dir: str | os.PathLike[str], test_file: str | os.PathLike[str]) -> Path:
    path = Path(test_file).expanduser()
    return path if path.is_absolute() else Path(data_dir) / "cifar10" / path


# --- reading and verifying ------------------------------------------------------------------


def _load_official(spec: Cifar10Spec, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    raw = read_regular_file(LABEL, path)
    expected = spec.sha256(path.name)
    digest = sha256_bytes(raw)
    size = spec.records_per_file * RECORD_BYTES
    if digest != expected:
        sized = "" if len(raw) == size else f"; {len(raw)} bytes, expected {size}"
        raise DataError(
            f"{LABEL} file {path} is corrupted (sha256 {digest}, expected {expected}{sized}); "
            f"nothing was used; delete it to re-download it from {spec.url} or replace it with "
            f"the official file"
        )
    return _parse(raw)


def _load_other(spec: Cifar10Spec, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An alternative test file: verified if it is an official member, else format-checked."""
    if not exists(LABEL, path):
        raise DataError(
            f"{LABEL} test file {path} not found (an alternative test file is never "
            f"downloaded); fix test_file or put the file there"
        )
    raw = read_regular_file(LABEL, path)
    digest = sha256_bytes(raw)
    if digest in {sha for _, sha in spec.members}:
        return _parse(raw)
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{LABEL} test file {path} is not in the CIFAR-10 binary format ({len(raw)} bytes, "
            f"not a positive multiple of {RECORD_BYTES}); nothing was used"
        )
    images, labels = _parse(raw)
    if int(labels.max()) >= N_CLASSES:
        first = int(torch.nonzero(labels >= N_CLASSES)[0, 0])
        raise DataError(
            f"{LABEL} test file {path} is not in the CIFAR-10 binary format (record {first} "
            f"has label {int(labels[first])}, not 0-9); nothing was used"
        )
    warnings.warn(
        f"{LABEL} test file {path} is unverified: no official sha256 exists for it (its "
        f"sha256 is {digest}); only its size ({len(labels)} records) and labels were checked",
        UnverifiedDataWarning,
        stacklevel=3,
    )
    return images, labels


def _parse(raw: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Records -> (uint8 images (N, 3, 32, 32), int64 labels (N,)), without a per-image loop."""
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    pixels = records[:, 1:].copy()  # contiguous and writable, detached from ``raw``
    return torch.from_numpy(pixels.reshape(-1, *IMAGE_SHAPE)), labels


# --- download -------------------------------------------------------------------------------


def _missing_offline(
    spec: Cifar10Spec, folder: Path, missing: list[str], download: bool | None
) -> DataError:
    others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    why = "download disabled" if download is False else f"{OFFLINE_ENV} forbids downloads"
    return DataError(
        f"{LABEL} file {folder / missing[0]} not found{others} ({why}); download {spec.url} "
        f"and extract it in {folder.parent}, or set {DATA_ENV}/data_dir"
    )


def _download(spec: Cifar10Spec, folder: Path) -> None:
    """Fetch the archive, verify it and its members, install every absent official member."""
    _log.info("downloading %s from %s to %s", LABEL, spec.url, folder)
    with staging_folder(LABEL, folder, spec.url) as staging:
        try:
            archive = fetch(
                spec.url, staging, "archive.tar.gz", known_hash=f"sha256:{spec.archive_sha256}"
            )
        except download_errors() as exc:
            raise DataError(
                f"{LABEL} files missing in {folder} and the archive could not be downloaded "
                f"from {spec.url} ({short_reason(exc)}); nothing was written; retry later or "
                f"put the extracted files there yourself"
            ) from exc
        extracted = _extract(spec, archive, staging / "extracted")
        for name, path in extracted.items():
            digest = sha256_bytes(path.read_bytes())
            if digest != spec.sha256(name):
                raise DataError(
                    f"{LABEL} archive from {spec.url} has a corrupted member {name} (sha256 "
                    f"{digest}, expected {spec.sha256(name)}); nothing was written to {folder}"
                )
        for name, path in extracted.items():
            if not exists(LABEL, folder / name):  # never replace a file someone put there
                install(path, folder / name)


def _extract(spec: Cifar10Spec, archive: Path, into: Path) -> dict[str, Path]:
    """Extract the official members (``filter="data"``: no links out, no absolute paths)."""
    wanted = {f"{spec.folder}/{name}": name for name, _ in spec.members}
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one sequential pass over the gzip stream
                name = wanted.get(os.path.normpath(member.name))
                if name is None or not member.isfile():
                    continue
                tar.extract(member, path=into, filter="data")
                found[name] = into / member.name
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"{LABEL} archive from {spec.url} cannot be extracted ({short_reason(exc)}); "
            f"nothing was written; retry later"
        ) from exc
    absent = [name for name in wanted.values() if name not in found]
    if absent:
        raise DataError(
            f"{LABEL} archive from {spec.url} lacks {', '.join(absent)}; nothing was written"
        )
    return found
