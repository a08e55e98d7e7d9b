"""Dataset location, download and verification (compress_bench.data)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from compress_bench.cli import main
from compress_bench.data import cache_dir, load_mushrooms, offline_requested, resolve_data_dir
from compress_bench.data import mushrooms as mushrooms_mod
from compress_bench.errors import DataError, UserError
from tests._loopback import LoopbackServer, bypass_proxies
from tests._unprivileged import run_unprivileged, shared_tmp
from tests.conftest import DATASETS, REPO, dataset_path, datasets_dir

EXPECTED_SHA256 = "f39a4eb628dc61a7d43760815b061c9e497aa728ce1ad8bde57a09ef6043b538"


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return dataset_path("mushrooms", "mushrooms").read_bytes()


@pytest.fixture(scope="module")
def real_arrays(real_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    return load_mushrooms(DATASETS, download=False)


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
    bypass_proxies(monkeypatch)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackServer]:
    srv = LoopbackServer("mushrooms")
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
    with pytest.raises(DataError, match=r"corrupted \(a folder, not a file\)"):
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
    assert list(tmp_path.iterdir()) == []  # nor the empty mushrooms/ folder made for it


def test_download_over_loopback(
    tmp_path: Path, server: LoopbackServer, real_bytes: bytes, real_arrays
):
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


def test_download_of_corrupted_file(
    tmp_path: Path, server: LoopbackServer, real_bytes: bytes
) -> None:
    server.content = _flip_middle(real_bytes)
    with pytest.raises(DataError, match="corrupted") as info:
        load_mushrooms(tmp_path)
    assert server.requests == 1
    final = tmp_path / "mushrooms" / "mushrooms"
    assert str(final) in str(info.value) and server.url in str(info.value)
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_download_http_error(tmp_path: Path, server: LoopbackServer) -> None:
    server.status, server.content = 404, b"not here"
    with pytest.raises(DataError, match="HTTP 404") as info:
        load_mushrooms(tmp_path)
    assert str(tmp_path / "mushrooms" / "mushrooms") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_disabled_does_not_touch_network(tmp_path: Path, server: LoopbackServer) -> None:
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
    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(DATASETS))
    X, _ = load_mushrooms(resolve_data_dir(None), download=False)
    np.testing.assert_array_equal(X, real_arrays[0])


def test_tests_find_the_datasets_through_compress_bench_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The tests' datasets folder is $COMPRESS_BENCH_DATA when set, else the copy beside the
    repository: a checkout in another layout runs the data tests instead of skipping them."""
    monkeypatch.setenv("COMPRESS_BENCH_DATA", str(tmp_path / "elsewhere"))
    assert datasets_dir() == tmp_path / "elsewhere"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESS_BENCH_DATA", "relative")
    assert datasets_dir() == tmp_path / "relative"
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("COMPRESS_BENCH_DATA")
        else:
            monkeypatch.setenv("COMPRESS_BENCH_DATA", unset)
        assert datasets_dir() == REPO.parent.joinpath("shared", "datasets")


def test_a_missing_dataset_skips_and_says_where_it_looked() -> None:
    with pytest.raises(pytest.skip.Exception, match="COMPRESS_BENCH_DATA") as exc:
        dataset_path("no_such_dataset", "file")
    assert str(DATASETS / "no_such_dataset" / "file") in str(exc.value)


def test_no_test_module_has_a_datasets_path_of_its_own() -> None:
    """Only tests/conftest.py knows the default place of the offline copies; a module with
    its own path skips its tests in any other layout, whatever COMPRESS_BENCH_DATA says."""
    word = "shared"  # spelled apart, so that this test does not find itself
    own_path = re.compile(rf"""{word}["']?\s*/\s*["']?datasets|parents\[\d+\]\.parent""")
    offenders = [
        path.name
        for path in sorted((REPO / "tests").glob("*.py"))
        if path.name != "conftest.py" and own_path.search(path.read_text())
    ]
    assert offenders == [], "find datasets through tests.conftest.datasets_dir / dataset_path"


def test_offline_copy_still_intact(tmp_path: Path, real_bytes: bytes) -> None:
    """The loader only reads: a copy round-trips byte-for-byte and nothing else appears."""
    copy = _install(tmp_path, real_bytes)
    load_mushrooms(tmp_path, download=False)
    assert _files_under(tmp_path) == [Path("mushrooms/mushrooms")]
    assert copy.read_bytes() == real_bytes


# --- failed downloads leave nothing behind ----------------------------------------------------


def test_failed_download_removes_only_the_folders_it_created(tmp_path: Path, monkeypatch) -> None:
    _use_url(monkeypatch, f"http://127.0.0.1:{_closed_port()}/mushrooms")
    with pytest.raises(DataError, match="could not be downloaded"):
        load_mushrooms(tmp_path / "new" / "data")
    assert list(tmp_path.iterdir()) == []  # new/, new/data/ and new/data/mushrooms/ are gone

    kept = tmp_path / "kept" / "mushrooms"
    kept.mkdir(parents=True)  # the user's empty folder: not the download's to remove
    with pytest.raises(DataError, match="could not be downloaded"):
        load_mushrooms(tmp_path / "kept")
    assert kept.is_dir() and list(kept.iterdir()) == []


# --- folders that cannot be searched or written ----------------------------------------------


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_url(monkeypatch, f"http://127.0.0.1:{_closed_port()}/mushrooms")


def test_permissions_as_an_unprivileged_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real permissions, as a user without root's override (see tests/_unprivileged.py)."""
    import pooch  # noqa: F401  (the checks import them lazily; as nobody they may be unreadable)
    import requests  # noqa: F401

    _unreachable(monkeypatch)
    with shared_tmp() as root:
        (root / "hidden" / "mushrooms").mkdir(parents=True)
        (root / "hidden" / "mushrooms" / "mushrooms").write_bytes(b"1 1:1\n")
        (root / "hidden" / "mushrooms").chmod(0)
        (root / "locked").mkdir(mode=0o555)
        (root / "empty" / "mushrooms").mkdir(parents=True, mode=0o555)
        (root / "unreadable" / "mushrooms").mkdir(parents=True)
        (root / "unreadable" / "mushrooms" / "mushrooms").write_bytes(b"1 1:1\n")
        (root / "unreadable" / "mushrooms" / "mushrooms").chmod(0)
        results = run_unprivileged(
            lambda: load_mushrooms(root / "hidden", download=False),
            lambda: load_mushrooms(root / "hidden", download=True),
            lambda: load_mushrooms(root / "locked" / "data", download=True),
            lambda: load_mushrooms(root / "empty", download=True),
            lambda: load_mushrooms(root / "unreadable", download=True),
        )
        assert list((root / "locked").iterdir()) == []
        assert list((root / "empty" / "mushrooms").iterdir()) == []
    searched = f"(Permission denied: the folder {root / 'hidden' / 'mushrooms'} cannot be searched)"
    for kind, message in results[:2]:
        assert kind == "DataError" and searched in message and "\n" not in message
    assert results[2][0] == "DataError"
    assert (
        f"the folder {root / 'locked' / 'data'} cannot be created (Permission denied)"
        in (results[2][1])
    )
    assert results[3][0] == "DataError"
    assert f"nothing can be written in {root / 'empty' / 'mushrooms'}" in results[3][1]
    assert results[4][0] == "DataError" and "cannot be read (Permission denied)" in results[4][1]


def _deny_under(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make Path.stat fail with EACCES below ``folder``, as it does for a non-root user when
    ``folder`` has mode 000 (root's override makes the real chmod ineffective)."""
    real_stat = Path.stat

    def stat(self: Path, *args: object, **kwargs: object):
        if folder in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)


@pytest.mark.parametrize("download", [False, True])
def test_unsearchable_folder_simulated(tmp_path: Path, monkeypatch, download: bool) -> None:
    """The same path on any machine (the test above skips where uid cannot change)."""
    _unreachable(monkeypatch)
    folder = tmp_path / "mushrooms"
    folder.mkdir()
    _deny_under(monkeypatch, folder)
    with pytest.raises(DataError, match="cannot be checked") as info:
        load_mushrooms(tmp_path, download=download)
    assert f"the folder {folder} cannot be searched" in str(info.value)
    assert "\n" not in str(info.value)


def test_uncreatable_folder_simulated(tmp_path: Path, monkeypatch) -> None:
    """mkdir refused (EACCES, as in a folder without write permission) on any machine."""
    _unreachable(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(DataError, match="cannot be downloaded there") as info:
        load_mushrooms(locked / "data")
    assert f"the folder {locked / 'data'} cannot be created (Permission denied)" in str(info.value)
    assert list(locked.iterdir()) == []


# --- paths that are not what they should be ---------------------------------------------------


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("blocker", ["data_dir", "dataset folder"])
def test_a_file_where_a_folder_should_be(tmp_path: Path, monkeypatch, download, blocker) -> None:
    _unreachable(monkeypatch)
    data_dir = tmp_path / "data"
    if blocker == "data_dir":
        data_dir.write_text("not a folder")
        the_file = data_dir
    else:
        data_dir.mkdir()
        the_file = data_dir / "mushrooms"
        the_file.write_text("not a folder")
    with pytest.raises(DataError, match=f"{the_file} is a file, not a folder"):
        load_mushrooms(data_dir, download=download)
    assert the_file.read_text() == "not a folder"


@pytest.mark.parametrize("download", [False, True])
def test_symlink_loop(tmp_path: Path, server: LoopbackServer, download: bool) -> None:
    final = tmp_path / "mushrooms" / "mushrooms"
    final.parent.mkdir()
    final.symlink_to(final)
    with pytest.raises(DataError, match="cannot be checked .*symbolic links"):
        load_mushrooms(tmp_path, download=download)
    assert final.is_symlink() and server.requests == 0


@pytest.mark.parametrize("link", ["file", "folder"])
def test_broken_symlink_is_not_downloaded_over(
    tmp_path: Path, server: LoopbackServer, link
) -> None:
    target = tmp_path / "elsewhere" / "gone"
    final = tmp_path / "mushrooms" / "mushrooms"
    if link == "file":
        final.parent.mkdir()
        final.symlink_to(target)
    else:
        final.parent.symlink_to(target, target_is_directory=True)
    broken = final if link == "file" else final.parent
    with pytest.raises(DataError, match=f"{broken} is a broken symbolic link \\(to {target}\\)"):
        load_mushrooms(tmp_path, download=True)
    assert broken.is_symlink() and server.requests == 0


def test_unknown_home_in_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = "~no_such_user_compress_bench/data"
    with pytest.raises(DataError, match="data_dir '~no_such_user_compress_bench/data'"):
        resolve_data_dir(unknown)
    monkeypatch.setenv("COMPRESS_BENCH_DATA", unknown)
    with pytest.raises(DataError, match="COMPRESS_BENCH_DATA .*cannot expand '~'"):
        resolve_data_dir(None)
    monkeypatch.setenv("COMPRESS_BENCH_CACHE", unknown)
    with pytest.raises(DataError, match="COMPRESS_BENCH_CACHE .*cannot expand '~'"):
        cache_dir()


def test_cli_reports_a_bad_data_path_in_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    """Through the command (in-process, as tests/test_cli.py does): one line, exit 2, where
    the old code reported the RuntimeError of expanduser as an internal error (exit 1)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", "1")
    monkeypatch.setenv("COMPRESS_BENCH_DATA", "~no_such_user_compress_bench/d")
    monkeypatch.setattr(sys, "argv", ["compress-bench", "rounds=1", "progress=false"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot expand '~'" in err, err


# --- COMPRESS_BENCH_OFFLINE --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "offline"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("1", True),
        ("true", True),
        (" Yes ", True),
        ("on", True),
    ],
)
def test_offline_requested(monkeypatch: pytest.MonkeyPatch, value, offline: bool) -> None:
    if value is None:
        monkeypatch.delenv("COMPRESS_BENCH_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", value)
    assert offline_requested() is offline


@pytest.mark.parametrize("value", ["2", "maybe", "offline", "y"])
def test_offline_requested_refuses_other_values(monkeypatch, value: str) -> None:
    monkeypatch.setenv("COMPRESS_BENCH_OFFLINE", value)
    with pytest.raises(UserError, match="COMPRESS_BENCH_OFFLINE must be 0/1/true/false") as info:
        offline_requested()
    assert f"got '{value}'" in str(info.value) and "\n" not in str(info.value)


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made by the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch, self_signed) -> Iterator[LoopbackServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    srv = LoopbackServer("mushrooms", tls=context)
    _use_url(monkeypatch, srv.url)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    yield srv
    srv.close()


def test_tls_certificate_failure(tmp_path: Path, tls_server: LoopbackServer) -> None:
    with pytest.raises(DataError, match="could not be downloaded") as info:
        load_mushrooms(tmp_path)
    message = str(info.value)
    assert "TLS certificate verification failed (self-signed certificate)" in message
    assert "REQUESTS_CA_BUNDLE" in message and "\n" not in message
    assert tls_server.requests == 0 and list(tmp_path.iterdir()) == []


def test_tls_with_the_ca_bundle_the_message_names(
    tmp_path: Path, tls_server: LoopbackServer, self_signed, real_bytes: bytes, monkeypatch
) -> None:
    """The advice works: REQUESTS_CA_BUNDLE naming the CA makes the same download succeed."""
    tls_server.content = real_bytes
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self_signed[0]))
    X, _ = load_mushrooms(tmp_path)
    assert X.shape == (8124, 112) and tls_server.requests == 1


def test_tls_to_a_plain_http_server(tmp_path: Path, server: LoopbackServer, monkeypatch) -> None:
    _use_url(monkeypatch, server.url.replace("http://", "https://"))
    with pytest.raises(DataError, match=r"could not be downloaded .*\(TLS handshake failed \("):
        load_mushrooms(tmp_path)
    assert list(tmp_path.iterdir()) == []
