"""MNIST idx loader (compress_bench.data.mnist): verification, parsing, download."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from compress_bench.data import mnist as mnist_mod
from compress_bench.data.mnist import MNIST, IdxFile, load_mnist
from compress_bench.errors import DataError
from tests._loopback import LoopbackServer, bypass_proxies
from tests.conftest import DATASETS, dataset_path, files_under, one_line

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The offline copy (read-only; tests.conftest.datasets_dir)."""
    for entry in MNIST.files:
        dataset_path("mnist", entry.name)
    return DATASETS


@pytest.fixture(scope="module")
def mnist(data_dir: Path):
    return load_mnist(data_dir, download=False)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")


def test_shapes_and_dtypes(mnist) -> None:
    assert mnist.train_images.shape == (60_000, 1, 28, 28)
    assert mnist.test_images.shape == (10_000, 1, 28, 28)
    assert mnist.train_images.dtype == mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.shape == (60_000,) and mnist.test_labels.shape == (10_000,)
    assert mnist.train_labels.dtype == mnist.test_labels.dtype == torch.int64


def test_label_counts(mnist) -> None:
    assert torch.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_pixel_statistics(mnist) -> None:
    histogram = torch.bincount(mnist.train_images.reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64)
    count = float(histogram.sum())
    mean = float((histogram * values).sum()) / count
    var = float((histogram * (values - mean) ** 2).sum()) / (count - 1)
    assert mean / 255 == pytest.approx(0.1307, abs=1e-4)  # 0.130660
    assert var**0.5 / 255 == pytest.approx(0.3081, abs=1e-4)  # 0.308108


def _linked_copy(data_dir: Path, tmp_path: Path, replaced: str, content: bytes) -> Path:
    """``tmp_path/mnist`` with links to the shared files, except ``replaced``."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for entry in MNIST.files:
        if entry.name != replaced:
            os.symlink(data_dir / "mnist" / entry.name, folder / entry.name)
    (folder / replaced).write_bytes(content)
    return folder / replaced


def test_flipped_byte_in_the_gzip_stream(data_dir: Path, tmp_path: Path) -> None:
    name = MNIST.test_labels.name
    data = bytearray((data_dir / "mnist" / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    path = _linked_copy(data_dir, tmp_path, name, bytes(data))
    before = files_under(tmp_path)
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    message = one_line(exc)
    assert str(path) in message and "corrupted" in message and "nothing was used" in message
    assert files_under(tmp_path) == before


def test_valid_gzip_of_other_content(data_dir: Path, tmp_path: Path) -> None:
    content = bytearray(gzip.decompress((data_dir / "mnist" / MNIST.test_labels.name).read_bytes()))
    content[100] = (content[100] + 1) % 10  # one label changed, then re-compressed
    path = _linked_copy(data_dir, tmp_path, MNIST.test_labels.name, gzip.compress(bytes(content)))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    message = one_line(exc)
    assert str(path) in message
    assert hashlib.sha256(content).hexdigest() in message and MNIST.test_labels.sha256 in message


def test_missing_files_while_offline(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    message = one_line(exc)
    assert "train-images-idx3-ubyte.gz not found (and 3 more)" in message
    assert "COMPRESS_BENCH_OFFLINE" in message and MNIST.mirrors[0] in message
    assert files_under(tmp_path) == []


# --- download over loopback, from the second mirror -----------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fake_mirrors(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LoopbackServer, dict]]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (3, 28, 28)),
        "train_labels": rng.integers(0, 10, 3),
        "test_images": rng.integers(0, 256, (2, 28, 28)),
        "test_labels": rng.integers(0, 10, 2),
    }
    entries, files = {}, {}
    for field, array in arrays.items():
        name = getattr(MNIST, field).name
        content = _idx(array)
        entries[field] = IdxFile(name, hashlib.sha256(content).hexdigest(), array.shape)
        files[name] = gzip.compress(content)
    # /bad/... answers 404, /good/<name> serves the file
    server = LoopbackServer(routes={f"/good/{name}": body for name, body in files.items()})
    spec = dataclasses.replace(
        MNIST, mirrors=(f"{server.base}/bad/", f"{server.base}/good/"), **entries
    )
    monkeypatch.setattr(mnist_mod, "MNIST", spec)
    bypass_proxies(monkeypatch)
    yield server, arrays
    server.close()


def test_download_falls_back_to_the_next_mirror(tmp_path: Path, fake_mirrors) -> None:
    server, arrays = fake_mirrors
    data = load_mnist(tmp_path, download=True)
    assert torch.equal(data.train_images[:, 0], torch.from_numpy(arrays["train_images"]).byte())
    assert data.test_labels.tolist() == arrays["test_labels"].tolist()
    assert server.requests == 8  # each file: first mirror 404, second mirror 200
    assert files_under(tmp_path) == ["mnist"] + sorted(f"mnist/{f.name}" for f in MNIST.files)
    load_mnist(tmp_path)  # offline now: all present
    assert server.requests == 8


def test_download_only_the_missing_file(tmp_path: Path, fake_mirrors) -> None:
    server, _ = fake_mirrors
    load_mnist(tmp_path, download=True)
    name = MNIST.test_labels.name
    (tmp_path / "mnist" / name).unlink()
    server.paths.clear()
    load_mnist(tmp_path, download=True)
    assert server.paths == [f"/bad/{name}", f"/good/{name}"]


def test_download_from_no_mirror(tmp_path: Path, fake_mirrors, monkeypatch) -> None:
    server, _ = fake_mirrors
    spec = dataclasses.replace(mnist_mod.MNIST, mirrors=(f"{server.base}/bad/",))
    monkeypatch.setattr(mnist_mod, "MNIST", spec)
    with pytest.raises(DataError, match="HTTP 404") as exc:
        load_mnist(tmp_path / "data", download=True)
    one_line(exc)
    assert files_under(tmp_path) == []


def test_corrupted_download_is_not_installed(tmp_path: Path, fake_mirrors, monkeypatch) -> None:
    load_mnist(tmp_path, download=True)
    folder = tmp_path / "mnist"
    name = mnist_mod.MNIST.test_labels.name
    (folder / name).unlink()
    wrong = dataclasses.replace(mnist_mod.MNIST.test_labels, sha256="0" * 64)
    monkeypatch.setattr(mnist_mod, "MNIST", dataclasses.replace(mnist_mod.MNIST, test_labels=wrong))
    with pytest.raises(DataError, match="corrupted") as exc:
        load_mnist(tmp_path, download=True)
    assert "0" * 64 in one_line(exc)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f.name for f in MNIST.files if f.name != name
    )  # not installed, no staging folder left
