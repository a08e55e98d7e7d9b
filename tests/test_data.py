"""Dataset location, download and verification (compress_bench.data)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from compress_bench.data import cache_dir, load_mushrooms, resolve_data_dir
from compress_bench.data import mushrooms as mushrooms_mod
from compress_bench.errors import DataError, UserError

SHARED = Path(__file__).parents[1].parent / "shared" / "datasets"
REAL_FILE = SHARED / "mushrooms" / "mushrooms"
EXPECTED_SHA256 = "f39a4eb628dc61a7d43760815b061c9e497aa728ce1ad8bde57a09ef6043b538"


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    if not SHARED.is_dir():
        pytest.skip(f"offline dataset copies not found at {SHARED} (see shared/datasets/README.md)")
    return REAL_FILE.read_bytes()


@pytest.fixture(scope="module")
def real_arrays(real_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    return load_mushrooms(SHARED, download=False)


def _files_under(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _install(data_dir: Path, content: bytes) -> Path:
    target = data_dir / "mushrooms" / "mushrooms"
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return target


def _use_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    spec = dataclasses.replace(mushrooms_mod.MUSHROOMS, url=url)
    monkeypatch.setattr(mushrooms_mod, "MUSHROOMS", spec)
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class _Server:
    """A loopback HTTP server that serves ``content`` at every path and counts GETs."""

    def __init__(self) -> None:
        self.content = b""
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests += 1
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.content)))
                self.end_headers()
                self.wfile.write(outer.content)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mushrooms"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    srv = _Server()
    _use_url(monkeypatch, srv.url)
    yield srv
    srv.close()


# --- the real offline copy ------------------------------------------------------------------


def test_real_copy_loads(real_bytes: bytes, real_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    assert hashlib.sha256(real_bytes).hexdigest() == EXPECTED_SHA256
    X, y = real_arrays
    assert X.shape == (8124, 112) and X.dtype == np.float64
    assert y.shape == (8124,) and y.dtype == np.float64
    assert set(np.unique(X)) == {0.0, 1.0}
    assert np.count_nonzero(X) == 170_604
    assert np.all(X.sum(axis=1) == 21)
    assert np.all(X[:, 77] == X[0, 77])  # LIBSVM feature 78 is constant
    assert set(np.unique(y)) == {-1.0, 1.0}
    # LIBSVM label 1 (3916 samples, the smaller label) -> -1, label 2 (4208) -> +1
    assert int((y == -1).sum()) == 3916 and int((y == 1).sum()) == 4208


def test_first_label_matches_file(real_bytes: bytes, real_arrays) -> None:
    first_label = int(real_bytes.split(maxsplit=1)[0])
    assert real_arrays[1][0] == (-1.0 if first_label == 1 else 1.0)


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_flip_middle, id="flipped-byte"),
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(lambda d: b"", id="empty"),
        pytest.param(lambda d: d + d.splitlines(keepends=True)[0], id="extra-row"),
        pytest.param(lambda d: b"2" + d[1:] if d[:1] == b"1" else b"1" + d[1:], id="label-changed"),
        pytest.param(lambda d: b"\x00\xff garbage\n" * 100, id="not-libsvm"),
    ],
)
def test_corrupted_file_is_rejected(tmp_path: Path, real_bytes: bytes, corrupt) -> None:
    target = _install(tmp_path, corrupt(real_bytes))
    before = target.read_bytes()
    with pytest.raises(DataError, match="corrupted") as info:
        load_mushrooms(tmp_path, download=True)
    message = str(info.value)
    assert str(target) in message and "\n" not in message
    assert mushrooms_mod.MUSHROOMS.url in message
    assert target.read_bytes() == before  # never rewritten or deleted behind the user's back
    assert isinstance(info.value, UserError)


def test_directory_at_final_path_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "mushrooms" / "mushrooms").mkdir(parents=True)
    with pytest.raises(DataError, match="corrupted"):
        load_mushrooms(tmp_path)


def test_crlf_copy_is_accepted(tmp_path: Path, real_bytes: bytes, real_arrays) -> None:
    crlf = real_bytes.replace(b"\n", b"\r\n")
    target = _install(tmp_path, crlf)
    X, y = load_mushrooms(tmp_path, download=False)
    np.testing.assert_array_equal(X, real_arrays[0])
    np.testing.assert_array_equal(y, real_arrays[1])
    assert target.read_bytes() == crlf  # hashed in memory, the user's file is untouched


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        load_mushrooms(tmp_path, download=False)
    assert str(tmp_path / "mushrooms" / "mushrooms") in str(info.value)
    assert _files_under(tmp_path) == []


# --- downloading -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/mushrooms"
    _use_url(monkeypatch, url)
    with pytest.raises(DataError, match="could not be downloaded") as info:
        load_mushrooms(tmp_path)
    message = str(info.value)
    final = tmp_path / "mushrooms" / "mushrooms"
    assert str(final) in message and url in message and "\n" not in message
    assert "COMPRESS_BENCH_DATA" in message
    assert not final.exists()
    assert _files_under(tmp_path) == []  # no raw download or staging file left behind


def test_download_over_loopback(tmp_path: Path, server: _Server, real_bytes: bytes, real_arrays):
    server.content = real_bytes.replace(b"\n", b"\r\n")
    data_dir = tmp_path / "empty"
    X, y = load_mushrooms(data_dir)
    assert server.requests == 1
    final = data_dir / "mushrooms" / "mushrooms"
    stored = final.read_bytes()
    assert b"\r" not in stored
    assert hashlib.sha256(stored).hexdigest() == EXPECTED_SHA256
    assert _files_under(data_dir) == [Path("mushrooms/mushrooms")]
    np.testing.assert_array_equal(X, real_arrays[0])
    np.testing.assert_array_equal(y, real_arrays[1])

    X2, y2 = load_mushrooms(data_dir)  # cached: no second request
    assert server.requests == 1
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_download_of_corrupted_file(tmp_path: Path, server: _Server, real_bytes: bytes) -> None:
    server.content = _flip_middle(real_bytes)
    with pytest.raises(DataError, match="corrupted") as info:
        load_mushrooms(tmp_path)
    assert server.requests == 1
    final = tmp_path / "mushrooms" / "mushrooms"
    assert str(final) in str(info.value) and server.url in str(info.value)
    assert not final.exists()
    assert _files_under(tmp_path) == []


def test_download_http_error(tmp_path: Path, server: _Server) -> None:
    server.status, server.content = 404, b"not here"
    with pytest.raises(DataError, match="HTTP 404") as info:
        load_mushrooms(tmp_path)
    assert str(tmp_path / "mushrooms" / "mushrooms") in str(info.value)
    assert _files_under(tmp_path) == []


def test_download_disabled_does_not_touch_network(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(DataError, match="download disabled"):
        load_mushrooms(tmp_path, download=False)
    assert server.requests == 0


# --- paths -----------------------------------------------------------------------------------


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = Path(platformdirs.user_cache_dir("compress-bench")) / "datasets"
    monkeypatch.delenv("COMPRESS_BENCH_DATA", raising=False)
    assert resolve_data_dir(None) == default.absolute()
    assert resolve_data_dir("") == default.absolute()

    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(tmp_path / "from-env"))
    assert resolve_data_dir(None) == tmp_path / "from-env"
    assert resolve_data_dir(str(tmp_path / "from-config")) == tmp_path / "from-config"

    monkeypatch.setenv("COMPRESS_BENCH_DATA", "")
    assert resolve_data_dir(None) == default.absolute()


def test_resolve_data_dir_expands_and_anchors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir("~/data") == tmp_path / "home" / "data"
    monkeypatch.chdir(tmp_path)
    result = resolve_data_dir("rel/data")
    assert result.is_absolute() and result == tmp_path / "rel" / "data"
    monkeypatch.setenv("COMPRESS_BENCH_DATA", "env-rel")
    assert resolve_data_dir(None) == tmp_path / "env-rel"


def test_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPRESS_BENCH_CACHE", raising=False)
    assert cache_dir() == Path(platformdirs.user_cache_dir("compress-bench")).absolute()
    monkeypatch.setenv("COMPRESS_BENCH_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_loading_from_resolved_dir(monkeypatch: pytest.MonkeyPatch, real_arrays) -> None:
    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(SHARED))
    X, _ = load_mushrooms(resolve_data_dir(None), download=False)
    np.testing.assert_array_equal(X, real_arrays[0])


def test_offline_copy_still_intact(tmp_path: Path, real_bytes: bytes) -> None:
    """The loader only reads: a copy round-trips byte-for-byte and nothing else appears."""
    copy = _install(tmp_path, real_bytes)
    load_mushrooms(tmp_path, download=False)
    assert _files_under(tmp_path) == [Path("mushrooms/mushrooms")]
    assert copy.read_bytes() == real_bytes
