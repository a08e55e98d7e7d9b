"""CIFAR-10 binary loader (compress_bench.data.cifar10): verification, parsing, download."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from compress_bench.data import cifar10 as cifar10_mod
from compress_bench.data.cifar10 import (
    CIFAR10,
    RECORD_BYTES,
    UnverifiedDataWarning,
    load_cifar10,
)
from compress_bench.data.pipeline import CIFAR10_MEAN, CIFAR10_STD
from compress_bench.errors import ConfigError, DataError
from tests._loopback import LoopbackServer, bypass_proxies
from tests.conftest import DATASETS, dataset_path, files_under, one_line

SUBSET = "test_subset/test_batch_first1000.bin"
BATCH_1 = Path("cifar10") / "cifar-10-batches-bin" / "data_batch_1.bin"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The offline copy (read-only; tests.conftest.datasets_dir): data_batch_1.bin and the
    1000-image test subset."""
    dataset_path(*BATCH_1.parts)
    dataset_path("cifar10", SUBSET)
    return DATASETS


@pytest.fixture(scope="module")
def batch_1(data_dir: Path):
    with pytest.warns(UnverifiedDataWarning):
        return load_cifar10(data_dir, (1,), test_file=SUBSET, download=False)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the internet (the download test passes download=True)."""
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")


def test_data_batch_1(batch_1) -> None:
    images, labels = batch_1.train_images, batch_1.train_labels
    assert images.shape == (10_000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    counts = torch.bincount(labels, minlength=10).tolist()
    assert counts == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    assert labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


def test_channel_statistics_of_batch_1(batch_1) -> None:
    pixels = batch_1.train_images.double() / 255
    mean = pixels.mean(dim=(0, 2, 3))
    # Batch 1 alone, computed once with this loader (float64).
    expected = torch.tensor([0.4934578442861514, 0.4833751616115196, 0.4471791639859064])
    assert torch.allclose(mean, expected.double(), rtol=0, atol=1e-6)
    # One batch of 10000 is close to the statistics of all 50000 training images: the
    # observed gaps are 0.0021, 0.0012, 0.0006 (mean) and 0.0006, 0.0011, 0.0010 (std), well
    # inside 0.005.
    assert torch.allclose(mean, torch.tensor(CIFAR10_MEAN).double(), rtol=0, atol=5e-3)
    std = pixels.std(dim=(0, 2, 3))
    assert torch.allclose(std, torch.tensor(CIFAR10_STD).double(), rtol=0, atol=5e-3)


def test_unverified_test_subset(data_dir: Path) -> None:
    with pytest.warns(UnverifiedDataWarning, match="unverified") as record:
        data = load_cifar10(data_dir, (), test_file=SUBSET, download=False)
    assert len(record) == 1 and "test_batch_first1000.bin" in str(record[0].message)
    assert data.train_images.shape == (0, 3, 32, 32) and data.train_labels.shape == (0,)
    assert data.test_images.shape == (1000, 3, 32, 32)
    counts = torch.bincount(data.test_labels, minlength=10).tolist()
    assert counts == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_parsing_matches_the_record_layout(data_dir: Path, batch_1) -> None:
    raw = np.fromfile(data_dir / BATCH_1, dtype=np.uint8, count=3 * RECORD_BYTES)
    for k in range(3):
        record = raw[k * RECORD_BYTES : (k + 1) * RECORD_BYTES]
        assert int(batch_1.train_labels[k]) == record[0]
        red, green, blue = record[1:1025], record[1025:2049], record[2049:]
        image = batch_1.train_images[k].numpy()
        assert (image[0].reshape(-1) == red).all() and (image[1].reshape(-1) == green).all()
        assert (image[2] == blue.reshape(32, 32)).all()


def test_an_official_member_as_test_file_is_verified(data_dir: Path, recwarn) -> None:
    data = load_cifar10(data_dir, (), test_file=data_dir / BATCH_1, download=False)
    assert len(data.test_labels) == 10_000
    assert not [w for w in recwarn if issubclass(w.category, UnverifiedDataWarning)]


def _copy_batch_1(data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / BATCH_1
    target.parent.mkdir(parents=True)
    shutil.copy(data_dir / BATCH_1, target)
    return target


def test_corrupted_copy_is_rejected(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_batch_1(data_dir, tmp_path)
    data = bytearray(target.read_bytes())
    data[123_456] ^= 0x01
    target.write_bytes(data)
    before = files_under(tmp_path)
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, (1,), test_file=data_dir / "cifar10" / SUBSET)
    message = one_line(exc)
    assert str(target) in message and "nothing was used" in message
    assert hashlib.sha256(data).hexdigest() in message and CIFAR10.sha256(target.name) in message
    assert files_under(tmp_path) == before  # nothing written, nothing downloaded


def test_truncated_copy_names_the_size(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_batch_1(data_dir, tmp_path)
    with open(target, "r+b") as handle:
        handle.truncate(30_730_000 - 5)
    with pytest.raises(DataError, match="30729995 bytes, expected 30730000") as exc:
        load_cifar10(tmp_path, (1,), test_file=data_dir / "cifar10" / SUBSET)
    one_line(exc)


def test_missing_file_while_offline(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, (1, 2))
    message = one_line(exc)
    assert str(tmp_path / BATCH_1) in message and "(and 2 more)" in message
    assert CIFAR10.url in message and "COMPRESS_BENCH_OFFLINE" in message
    assert files_under(tmp_path) == []


def test_missing_alternative_test_file(data_dir: Path) -> None:
    with pytest.raises(DataError, match="never downloaded") as exc:
        load_cifar10(data_dir, (), test_file="test_subset/absent.bin")
    one_line(exc)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\x01" * 3000, "3000 bytes"), (b"", "0 bytes"), (b"\x0a" + bytes(3072), "label 10")],
)
def test_malformed_alternative_test_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as exc:
        load_cifar10(tmp_path, (), test_file=path)
    one_line(exc)


@pytest.mark.parametrize("batches", [(0,), (6,), (1, 1), (True,)])
def test_bad_batch_numbers(tmp_path: Path, batches) -> None:
    with pytest.raises(ConfigError):
        load_cifar10(tmp_path, batches)


# --- download from a fake archive over loopback ---------------------------------------------


def _fake_archive() -> tuple[bytes, dict[str, bytes]]:
    """A gzip tar laid out like the official one, 2 records a member."""
    rng = np.random.default_rng(0)
    members = {}
    for name, _ in CIFAR10.members:
        records = rng.integers(0, 256, (2, RECORD_BYTES), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, 2)
        members[name] = records.tobytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [*members.items(), ("batches.meta.txt", b"airplane\n")]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), members


@pytest.fixture
def fake_cifar(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[LoopbackServer, dict[str, bytes]]]:
    archive, members = _fake_archive()
    server = LoopbackServer("cifar-10-binary.tar.gz")
    server.content = archive
    spec = dataclasses.replace(
        CIFAR10,
        url=server.url,
        archive_sha256=hashlib.sha256(archive).hexdigest(),
        members=tuple((name, hashlib.sha256(data).hexdigest()) for name, data in members.items()),
        records_per_file=2,
    )
    monkeypatch.setattr(cifar10_mod, "CIFAR10", spec)
    bypass_proxies(monkeypatch)
    yield server, members
    server.close()


def test_download_installs_verified_members(tmp_path: Path, fake_cifar) -> None:
    server, members = fake_cifar
    data = load_cifar10(tmp_path, (2, 1), download=True)
    assert server.requests == 1
    expected = np.frombuffer(members["data_batch_2.bin"] + members["data_batch_1.bin"], np.uint8)
    expected = expected.reshape(4, RECORD_BYTES)
    assert data.train_labels.tolist() == expected[:, 0].tolist()
    assert torch.equal(data.train_images.reshape(4, -1), torch.from_numpy(expected[:, 1:].copy()))
    assert len(data.test_labels) == 2
    folder = "cifar10/cifar-10-batches-bin"
    assert files_under(tmp_path) == ["cifar10", folder] + sorted(
        f"{folder}/{name}" for name in members
    )  # every official member, no archive, no staging folder, no batches.meta.txt
    load_cifar10(tmp_path, (3, 4, 5))  # offline now: all present
    assert server.requests == 1


def test_download_of_a_corrupted_archive_leaves_nothing(tmp_path: Path, fake_cifar) -> None:
    server, _ = fake_cifar
    server.content = server.content[:-1] + bytes([server.content[-1] ^ 1])
    with pytest.raises(DataError, match="could not be downloaded") as exc:
        load_cifar10(tmp_path / "data", (1,), download=True)
    assert "checksum mismatch" in one_line(exc)
    assert files_under(tmp_path) == []  # the folders it created are gone too


def test_download_http_error(tmp_path: Path, fake_cifar) -> None:
    server, _ = fake_cifar
    server.status, server.content = 404, b"not here"
    with pytest.raises(DataError, match="HTTP 404") as exc:
        load_cifar10(tmp_path, (1,), download=True)
    one_line(exc)
    assert files_under(tmp_path) == []


def test_offline_does_not_touch_the_network(tmp_path: Path, fake_cifar) -> None:
    server, _ = fake_cifar
    with pytest.raises(DataError, match="COMPRESS_BENCH_OFFLINE"):
        load_cifar10(tmp_path, (1,))
    assert server.requests == 0
    assert os.listdir(tmp_path) == []
