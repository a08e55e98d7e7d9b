"""The LIBSVM ``mushrooms`` data set (logistic regression, METHODS.md section 25).

Origin: UCI Machine Learning Repository, "Mushroom" (1987), doi:10.24432/C5959T, licensed
CC BY 4.0 (attribution required when redistributing). 8124 hypothetical gilled mushrooms,
22 categorical attributes, label edible / poisonous. The LIBSVM binary version used here
(categorical attributes one-hot encoded into 112 binary features, 21 ones per row, labels
``{1, 2}``) was prepared by Chih-Chung Chang and Chih-Jen Lin for the LIBSVM data-set
collection: https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary.html

No official checksum is published and mirrors differ in line endings, so the sha256 below is
of the file after CRLF -> LF normalisation; the parsed shape, non-zero count and label counts
are checked as well. On disk the file lives at ``<data_dir>/mushrooms/mushrooms``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import ssl
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from compress_bench.data.paths import DATA_ENV
from compress_bench.errors import DataError

_log = logging.getLogger(__name__)

#: Seconds pooch/requests waits for the server before giving up on a download.
DOWNLOAD_TIMEOUT = 60


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to fetch and verify one single-file LIBSVM data set."""

    name: str  # folder under data_dir, and the name used in messages
    filename: str  # file inside that folder
    url: str  # canonical download location
    sha256: str  # of the file after CRLF -> LF normalisation
    n_samples: int
    n_features: int
    nnz: int
    label_counts: tuple[tuple[float, int], ...]  # (label, count), sorted by label

    def path(self, data_dir: str | os.PathLike[str]) -> Path:
        """Final location of the file under ``data_dir``."""
        return Path(data_dir) / self.name / self.filename


MUSHROOMS = DatasetSpec(
    name="mushrooms",
    filename="mushrooms",
    url="https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/binary/mushrooms",
    sha256="f39a4eb628dc61a7d43760815b061c9e497aa728ce1ad8bde57a09ef6043b538",
    n_samples=8124,
    n_features=112,
    nnz=170_604,
    label_counts=((1.0, 3916), (2.0, 4208)),
)


def load_mushrooms(
    data_dir: str | os.PathLike[str], download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load mushrooms as a dense ``(8124, 112)`` float64 matrix and float64 labels in ``{-1, +1}``.

    The smaller LIBSVM label (1) maps to -1 and the larger (2) to +1 (METHODS.md section 25).
    If the file is missing and ``download`` is true it is downloaded from the canonical URL,
    verified and only then moved into place. Raises :class:`DataError` when the file is
    missing and cannot be downloaded, or when it fails verification.
    """
    spec = MUSHROOMS  # looked up at call time so tests can substitute the URL
    matrix, labels = load_libsvm(spec, data_dir, download=download)
    return matrix.toarray(), signed_labels(spec, labels)


def signed_labels(spec: DatasetSpec, labels: np.ndarray) -> np.ndarray:
    """Map a two-class label vector to float64 ``{-1, +1}`` (smaller label -> -1)."""
    if len(spec.label_counts) != 2:
        raise ValueError(f"{spec.name} is not a binary data set")
    smaller = spec.label_counts[0][0]
    return np.where(labels == smaller, -1.0, 1.0)


def load_libsvm(
    spec: DatasetSpec, data_dir: str | os.PathLike[str], download: bool = True
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Return the verified ``(csr matrix, raw labels)`` of ``spec`` under ``data_dir``.

    Every way the file or its folders can be unusable (missing, unreadable, a folder, a broken
    link, under a file, in a folder that cannot be searched) raises :class:`DataError`.
    """
    path = spec.path(data_dir)
    status = _stat(spec, path)
    if status is None:
        if not download:
            raise DataError(
                f"{spec.name} not found at {path} (download disabled); put the LIBSVM file "
                f"from {spec.url} there or set {DATA_ENV}/data_dir"
            )
        _download(spec, path)
        status = _stat(spec, path)
    if status is None or not stat.S_ISREG(status.st_mode):
        raise _corrupted(spec, path, [_not_a_file(status)])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{spec.name} at {path} cannot be read ({_short_reason(exc)}); fix its permissions "
            f"or set {DATA_ENV}/data_dir to another folder"
        ) from exc
    return _verify(spec, path, _normalise(raw))


# --- locating the file ---------------------------------------------------------------------


def _stat(spec: DatasetSpec, path: Path) -> os.stat_result | None:
    """``stat`` of the data file (following links), None if absent; DataError if unknowable.

    ``Path.exists`` is not enough: it raises PermissionError for a folder that cannot be
    searched, and says "absent" for a symlink loop or a path under a file, which would send
    a download to a place where it cannot be installed.
    """
    try:
        return path.stat()
    except FileNotFoundError:
        _refuse_broken_link(spec, path)
        return None
    except NotADirectoryError as exc:
        raise DataError(
            f"{spec.name} cannot be looked up at {path}: {_non_folder(path)} is a file, not a "
            f"folder; set {DATA_ENV}/data_dir to a folder"
        ) from exc
    except PermissionError as exc:
        folder = _unsearchable_folder(path)
        raise DataError(
            f"{spec.name} at {path} cannot be checked ({_short_reason(exc)}: the folder {folder} "
            f"cannot be searched); fix its permissions or set {DATA_ENV}/data_dir to another folder"
        ) from exc
    except (OSError, ValueError) as exc:  # ELOOP (a symlink loop), ENAMETOOLONG, a NUL byte
        raise DataError(
            f"{spec.name} at {path} cannot be checked ({_short_reason(exc)}); fix the path or set "
            f"{DATA_ENV}/data_dir to another folder"
        ) from exc


def _not_a_file(status: os.stat_result | None) -> str:
    """Why a path that should be the data file is not one, in a few words."""
    if status is None:  # installed, then removed by someone else before we read it
        return "gone right after the download"
    return "a folder, not a file" if stat.S_ISDIR(status.st_mode) else "not a regular file"


def _refuse_broken_link(spec: DatasetSpec, path: Path) -> None:
    """A dangling symlink on the way is the user's pointer to a copy that is gone: say so,
    instead of downloading over it (os.replace would silently replace the link)."""
    for candidate in (path, *path.parents):
        if os.path.islink(candidate) and not os.path.exists(candidate):
            raise DataError(
                f"{spec.name} not found at {path}: {candidate} is a broken symbolic link (to "
                f"{_link_target(candidate)}); fix or remove it, or set {DATA_ENV}/data_dir"
            )


def _link_target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:  # removed or replaced since it was seen
        return "?"


def _non_folder(path: Path) -> Path:
    """The first ancestor of ``path`` (from the root down) that exists but is not a folder."""
    for candidate in reversed(path.parents):
        if os.path.lexists(candidate) and not os.path.isdir(candidate):
            return candidate
    return path.parent


def _unsearchable_folder(path: Path) -> Path:
    """The folder whose permissions hide ``path``: the parent of the first ancestor that
    cannot be stat-ed (os.stat needs search permission on every folder above)."""
    for candidate in (*reversed(path.parents), path):
        try:
            os.stat(candidate)
        except PermissionError:
            return candidate.parent
        except OSError:
            break
    return path.parent


# --- verification --------------------------------------------------------------------------


def _normalise(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(spec: DatasetSpec, path: Path, data: bytes) -> tuple[sp.csr_matrix, np.ndarray]:
    """Check hash, parse and parsed statistics of the LF-normalised ``data``."""
    problems: list[str] = []
    digest = _sha256(data)
    if digest != spec.sha256:
        problems.append(f"sha256 {digest[:16]}... != expected {spec.sha256[:16]}...")
    try:
        matrix, labels = _parse(spec, data)
    except Exception as exc:  # any parser failure means the file is not the data set
        problems.append(f"not a valid LIBSVM file: {_one_line(str(exc)) or type(exc).__name__}")
        raise _corrupted(spec, path, problems) from exc
    problems.extend(_statistics_mismatch(spec, matrix, labels))
    if problems:
        raise _corrupted(spec, path, problems)
    return matrix, labels


def _parse(spec: DatasetSpec, data: bytes) -> tuple[sp.csr_matrix, np.ndarray]:
    from sklearn.datasets import load_svmlight_file

    matrix, labels = load_svmlight_file(
        io.BytesIO(data), n_features=spec.n_features, dtype=np.float64, zero_based=False
    )
    return sp.csr_matrix(matrix), np.asarray(labels, dtype=np.float64)


def _statistics_mismatch(spec: DatasetSpec, matrix: sp.csr_matrix, labels: np.ndarray) -> list[str]:
    problems = []
    expected_shape = (spec.n_samples, spec.n_features)
    if matrix.shape != expected_shape:
        problems.append(f"shape {matrix.shape} != expected {expected_shape}")
    if matrix.nnz != spec.nnz:
        problems.append(f"{matrix.nnz} non-zeros != expected {spec.nnz}")
    values, counts = np.unique(labels, return_counts=True)
    found = tuple((float(v), int(c)) for v, c in zip(values, counts, strict=True))
    if found != spec.label_counts:
        problems.append(
            f"label counts {_fmt_counts(found)} != expected {_fmt_counts(spec.label_counts)}"
        )
    return problems


def _fmt_counts(counts: tuple[tuple[float, int], ...]) -> str:
    return "{" + ", ".join(f"{label:g}: {count}" for label, count in counts) + "}"


def _corrupted(spec: DatasetSpec, path: Path, problems: list[str]) -> DataError:
    return DataError(
        f"{spec.name} at {path} is corrupted ({'; '.join(problems)}); delete it to re-download "
        f"or replace it with the LIBSVM file from {spec.url}"
    )


# --- download ------------------------------------------------------------------------------


class _VerifyAndInstall:
    """pooch processor: normalise CRLF -> LF, check sha256, then atomically install the file.

    The raw download stays in a private staging folder; the final path is only ever written by
    ``os.replace`` of a verified file, so a failed download never leaves a bad file there.
    """

    def __init__(self, spec: DatasetSpec, final: Path) -> None:
        self.spec = spec
        self.final = final

    def __call__(self, fname: str, action: str, pooch: object) -> str:
        downloaded = Path(fname)
        data = _normalise(downloaded.read_bytes())
        digest = _sha256(data)
        if digest != self.spec.sha256:
            raise DataError(
                f"{self.spec.name} downloaded from {self.spec.url} is corrupted (sha256 "
                f"{digest[:16]}... != expected {self.spec.sha256[:16]}...); nothing was written "
                f"to {self.final}; retry later or put the LIBSVM file there yourself"
            )
        staged = downloaded.with_name(downloaded.name + ".lf")
        with open(staged, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, self.final)
        return str(self.final)


def _download(spec: DatasetSpec, final: Path) -> None:
    """Download, verify and install ``spec`` at ``final``; DataError on any failure.

    On failure nothing is left behind: not the staging folder, and not the folders this call
    created for ``final`` (an empty ``<data_dir>/mushrooms/`` would look like a data set).
    """
    import pooch
    import requests

    _log.info("downloading %s from %s to %s", spec.name, spec.url, final)
    created, staging = _prepare(spec, final)
    installed = False
    try:
        with _quiet_pooch(pooch):
            pooch.retrieve(
                spec.url,
                known_hash=None,  # mirrors differ in line endings; the processor checks instead
                fname=spec.filename + ".raw",
                path=staging,
                processor=_VerifyAndInstall(spec, final),
                downloader=pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT),
            )
        installed = True
    except (requests.RequestException, OSError) as exc:
        raise DataError(
            f"{spec.name} not found at {final} and could not be downloaded from {spec.url} "
            f"({_short_reason(exc)}); put the LIBSVM file there or set {DATA_ENV}/data_dir"
        ) from exc
    finally:  # also on DataError (bad checksum) and on signals
        shutil.rmtree(staging, ignore_errors=True)
        if not installed:
            _remove_empty(created)


def _prepare(spec: DatasetSpec, final: Path) -> tuple[list[Path], Path]:
    """Create the folder of ``final`` and a staging folder in it, for an atomic install.

    Returns the folders created for ``final`` (deepest first) and the staging folder.
    """
    try:
        created = _make_folders(final.parent)
    except OSError as exc:
        where = exc.filename or final.parent
        raise _unwritable(spec, final, f"the folder {where} cannot be created", exc) from exc
    try:
        # Same filesystem as the final path, so the last os.replace is atomic.
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
    except OSError as exc:
        _remove_empty(created)
        raise _unwritable(spec, final, f"nothing can be written in {final.parent}", exc) from exc
    return created, staging


def _unwritable(spec: DatasetSpec, final: Path, what: str, exc: OSError) -> DataError:
    return DataError(
        f"{spec.name} not found at {final} and cannot be downloaded there: {what} "
        f"({_short_reason(exc)}); choose a writable data_dir or {DATA_ENV}, or put the LIBSVM "
        f"file from {spec.url} there"
    )


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``, returning only the folders this call created, deepest first."""
    missing = []
    candidate = folder
    while not os.path.lexists(candidate) and candidate != candidate.parent:
        missing.append(candidate)
        candidate = candidate.parent
    created: list[Path] = []
    try:
        for candidate in reversed(missing):
            try:
                os.mkdir(candidate)
            except FileExistsError:  # made meanwhile by a concurrent run: not ours to remove
                if not os.path.isdir(candidate):
                    raise
                continue
            created.insert(0, candidate)
    except OSError:
        _remove_empty(created)
        raise
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; never anything else.

    ``os.rmdir`` refuses a folder that is not empty, so a file put there meanwhile (by the
    user, or a concurrent download) is never lost; its parents are then kept as well.
    """
    for folder in folders:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:
            break


@contextlib.contextmanager
def _quiet_pooch(pooch_module: object) -> Iterator[None]:
    """Silence pooch's INFO lines (they suggest pinning ``known_hash``, which would be wrong)."""
    logger = pooch_module.get_logger()  # type: ignore[attr-defined]
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _short_reason(exc: BaseException) -> str:
    """A few words on why a download or read failed, for a one-line message."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):  # before ConnectionError, its base
        return _tls_reason(exc)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    if isinstance(exc, requests.Timeout):
        return f"no answer within {DOWNLOAD_TIMEOUT} s"
    if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and exc.strerror:
        return exc.strerror
    text = _one_line(str(exc))
    match = re.search(r"\[Errno -?\d+\] ([^'\"()\]]+)", text)
    if match:
        return match.group(1).strip(" :")
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def _tls_reason(exc: BaseException) -> str:
    """Why TLS failed, from the ssl error that requests and urllib3 wrap (twice)."""
    cause = next((e for e in _causes(exc) if isinstance(e, ssl.SSLError)), None)
    text = _one_line(str(exc))
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        detail = getattr(cause, "verify_message", None)
        if not detail:
            match = re.search(r"certificate verify failed: ([^(')]+)", text)
            detail = match.group(1) if match else "unknown reason"
        # requests trusts certifi's bundle, not the system store or SSL_CERT_FILE; a private CA
        # (a company proxy that inspects TLS) must be named through REQUESTS_CA_BUNDLE.
        return (
            f"TLS certificate verification failed ({detail.strip().rstrip('.')}); if a proxy "
            f"or private CA signs the server's certificate, set REQUESTS_CA_BUNDLE to its CA file"
        )
    reason = getattr(cause, "reason", None)  # OpenSSL's code, e.g. WRONG_VERSION_NUMBER
    detail = str(reason).replace("_", " ").lower() if reason else text[:120]
    return f"TLS handshake failed ({detail})"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: in args, ``reason``, ``__cause__``, ``__context__``."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (*current.args, getattr(current, "reason", None))
        linked += (current.__cause__, current.__context__)
        pending.extend(e for e in linked if isinstance(e, BaseException))


def _one_line(text: str) -> str:
    return " ".join(text.split())
