"""metrics.csv (flushed row by row, so a killed run keeps its rows) and atomic JSON files."""

from __future__ import annotations

import csv
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
    """Appends rows to a CSV file and flushes each one."""

    def __init__(
        self, path: Path, columns: tuple[str, ...] = METRIC_COLUMNS, keep_rows: int | None = None
    ):
        """A new file, or with ``keep_rows`` (a resumed run) the existing file cut to its
        header and first ``keep_rows`` rows (rewritten atomically), appended to from there."""
        self.path = Path(path)
        self.columns = columns
        self.rows = 0
        if keep_rows is not None:
            self._truncate(keep_rows)
            self.rows = keep_rows
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=columns)
            return
        self._file = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns)
        self._writer.writeheader()
        self._file.flush()

    def _truncate(self, keep_rows: int) -> None:
        lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
        header = ",".join(self.columns) + "\n"
        if not lines or lines[0].strip() != header.strip():
            raise ValueError(f"{self.path} does not have the columns of this run")
        if len(lines) - 1 < keep_rows:
            raise ValueError(f"{self.path} has {len(lines) - 1} rows, the checkpoint {keep_rows}")
        write_text_atomic(self.path, "".join(lines[: keep_rows + 1]))

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({key: _fmt(row.get(key, "")) for key in self.columns})
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(value: Any) -> Any:
    # repr keeps every digit of a float, so metrics.csv is an exact record of the run
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename: a reader never sees half a file."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(payload, fh, indent=2, default=str, allow_nan=True)
        fh.write("\n")
    os.chmod(fh.name, 0o644)  # NamedTemporaryFile creates 0600; outputs are for sharing
    os.replace(fh.name, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temporary file in the same folder, rename)."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(fh.name, 0o644)
    os.replace(fh.name, path)
