"""metrics.csv (written row by row, so a killed run keeps its rows) and atomic JSON files."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

METRIC_COLUMNS = (
    "round",  # k; row 0 is the initial point x^0
    "loss",  # f(x^k)
    "loss_gap",  # f(x^k) - f*
    "grad_norm",  # ||grad f(x^k)||
    "grad_norm_rel",  # ||grad f(x^k)|| / ||grad f(x^0)||
    "bits",  # cumulative uplink bits per worker spent to reach x^k
    "bits_total",  # cumulative uplink bits of all workers
    "grad_evals",  # local gradient evaluations per worker spent to reach x^k
    "compression_error",  # of the round that produced x^k: mean_i ||C(v_i)-v_i||^2/||v_i||^2
    "bits_per_coordinate",  # of the round that produced x^k: its bits per worker / d
    "wall_time",  # seconds since the first round started
)
THESIS_BITS_COLUMN = "bits_thesis"  # bits per worker under bits_convention=thesis


class MetricsWriter:
    """Appends rows to a CSV file, each row written whole and at once.

    Rules, and why:
      - a row goes to the file with one unbuffered write as soon as it is made, so a killed run
        keeps every row it wrote (nothing waits in a buffer);
      - a write that fails (a full disk, a quota) is cut off again (the file is truncated back
        to the rows before it, which needs no free space), so the file never ends in half a row
        that a reader or a resume would trip on, and the error names the file;
      - a resumed run keeps the header and the first ``keep_rows`` rows byte for byte and
        drops the rest (rows written after the checkpoint, which the resumed run writes again),
        by truncating the file in place: no temporary copy, so it works on a full disk.
    """

    def __init__(
        self, path: Path, columns: tuple[str, ...] = METRIC_COLUMNS, keep_rows: int | None = None
    ):
        """A new file, or with ``keep_rows`` (a resumed run) the existing file cut to its
        header and first ``keep_rows`` rows, appended to from there."""
        self.path = Path(path)
        self.columns = columns
        self.rows = 0
        self.last_round: Any = None  # the round of the last row written or kept
        self._buffer = io.StringIO()
        self._writer = csv.DictWriter(self._buffer, fieldnames=columns)
        if keep_rows is not None:
            size, last = self.resume_point(self.path, columns, keep_rows)
            self._fd = self._open(os.O_APPEND)
            try:
                os.ftruncate(self._fd, size)
            except OSError as err:
                os.close(self._fd)
                raise _naming(err, self.path) from err
            self._size, self.rows = size, keep_rows
            self.last_round = last.get("round")
            return
        self._fd = self._open(os.O_APPEND | os.O_TRUNC)
        self._size = 0
        self._writer.writeheader()
        try:
            self._append(self._take())
        except OSError:
            self.close()
            self.path.unlink(missing_ok=True)  # made just now, and not even its header fits
            raise

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | flags, 0o666)
        except OSError as err:
            raise _naming(err, self.path) from err

    @staticmethod
    def resume_point(
        path: Path, columns: tuple[str, ...], keep_rows: int
    ) -> tuple[int, dict[str, Any]]:
        """(bytes of the header and the first ``keep_rows`` rows, the last of those rows as
        {column: the number written}, {} for none). ValueError, one line, when the file has
        not got this run's columns or has fewer whole rows: a resume checks this before it
        writes anything."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"{path} is missing") from None
        except OSError as err:
            raise ValueError(f"{path} cannot be read ({err.strerror})") from None
        ends: list[int] = []
        while len(ends) < keep_rows + 1:
            newline = data.find(b"\n", ends[-1] if ends else 0)
            if newline < 0:
                break
            ends.append(newline + 1)
        header = data[: ends[0]] if ends else data
        if header.decode("utf-8", "replace").strip() != ",".join(columns):
            raise ValueError(f"{path} does not have the columns of this run")
        if len(ends) - 1 < keep_rows:
            raise ValueError(f"{path} has {len(ends) - 1} whole rows, the checkpoint {keep_rows}")
        if keep_rows == 0:
            return ends[0], {}
        line = data[ends[-2] : ends[-1]].decode("utf-8", "replace")
        values = next(csv.reader([line]), [])
        return ends[-1], {key: _cell(v) for key, v in zip(columns, values, strict=False)}

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({key: _fmt(row.get(key, "")) for key in self.columns})
        self._append(self._take())
        self.rows += 1
        self.last_round = row.get("round")

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")

    def _append(self, data: bytes) -> None:
        """Write ``data`` whole, or cut the file back to where it was and raise."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # no half row left behind
            raise _naming(err, self.path) from err
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cell(text: str | None) -> Any:
    """A CSV cell as the number it was written from (int, float; None when empty)."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` with ``path`` as its file name (a write on an open file names none), so the
    one line the command prints says which file could not be written."""
    return type(err)(err.errno, err.strerror or str(err), str(path))


def _fmt(value: Any) -> Any:
    # repr keeps every digit of a float, so metrics.csv is an exact record of the run
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename: a reader never sees half a file.

    Non-finite floats (NaN, +-inf: a diverged run's loss, a network's f*) are written as
    null: JSON has no NaN (``json.dumps`` would write the bare word NaN, which strict readers
    such as ``jq`` or JavaScript reject), so every summary.json is valid JSON."""
    text = json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False) + "\n"
    _replace(Path(path), text.encode("utf-8"), sync=False)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temporary file in the same folder, fsync,
    rename)."""
    _replace(Path(path), text.encode("utf-8"), sync=True)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (containers copied)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _replace(path: Path, data: bytes, sync: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``. On any
    failure (a full disk, a read-only folder) the temporary file is removed, ``path`` is left
    as it was, and the OSError names ``path``."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o644)  # mkstemp creates 0600; outputs are for sharing
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise
