"""RunState: everything a run is at the start of a round, and its checkpoints.

One value holds the round index, x, the method's state (the operator's state, EF memories,
EF21's g_i, DIANA's shifts, the md_* weights, the server optimizer's), every random stream, the
data order (the problem's minibatch samplers), the bit ledger and the position in metrics.csv
(rows written, the pending diagnostics). The round loop is ``state -> next state``
(run/rounds.py's ``run_round``); a checkpoint is this value written with ``torch.save``
(tensors and plain data only, so ``torch.load(weights_only=True)`` reads it: no pickled
objects run on load).

Checkpoints are atomic: written to a temporary file in the run folder, flushed, fsync'ed, then
renamed over ``checkpoint.pt`` (and the folder fsync'ed), so a kill at any moment leaves the
previous checkpoint or the new one, never half of one. A checkpoint records a fingerprint of
the config that produced it (everything but the keys that may change on resume: ``rounds``,
``checkpoint_every``, ``resume``, ``progress``, ``threads``, ``data_dir``, ``diverge_factor``);
resuming under another config is refused with one line, as is a checkpoint torch cannot load
(called corrupt or unreadable: torch's advice to load it with ``weights_only=False``, i.e. to
run the file's pickled code, is not passed on) or one that is not a whole RunState. A failed
write (a full disk, a read-only folder) removes the temporary file, keeps the previous
checkpoint and raises the OSError of the write, naming checkpoint.pt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from compress_bench.errors import ConfigError

CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1
#: keys a resumed run may change without changing what its rounds compute (diverge_factor, like
#: rounds, only says when to stop; and a config that gains the key keeps its fingerprint)
RESUME_FREE_KEYS = (
    "rounds",
    "checkpoint_every",
    "resume",
    "progress",
    "threads",
    "kernels",
    "backend",
    "dist_timeout",
    "data_dir",
    "diverge_factor",
)


@dataclass
class RunState:
    """The run at the start of round ``round`` (see the module docstring). Between rounds the
    loop (run/rounds.py) carries round, x and the method state; the other fields, which
    advance in place (streams, data order, ledger, metrics position), are filled by its
    ``snapshot`` when a checkpoint is written."""

    round: int
    x: torch.Tensor
    method: Any  # the method's state: operator state, memories, server optimizer state
    streams: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # rows written, pending values


def config_fingerprint(cfg: dict[str, Any]) -> str:
    """sha256 of the config without the keys a resume may change."""
    kept = {k: v for k, v in cfg.items() if k not in RESUME_FREE_KEYS and k != "hydra"}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_checkpoint(folder: Path, state: RunState, fingerprint: str) -> Path:
    """Write ``folder/checkpoint.pt`` atomically (write, flush, fsync, rename). On a failure
    (a full disk, a read-only folder) the temporary file is removed, the previous checkpoint
    is left as it was, and the error is the OSError of the write, naming checkpoint.pt
    (torch's own writer would turn it into a RuntimeError about zip positions)."""
    folder = Path(folder)
    final = folder / CHECKPOINT
    # fields as they are (dataclasses.asdict would deep-copy every tensor)
    values = {f.name: getattr(state, f.name) for f in fields(state)}
    payload = {"format": FORMAT_VERSION, "config": fingerprint, "state": values}
    try:
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise _naming(err, final) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh)
            try:
                torch.save(payload, sink)
            except RuntimeError:
                if sink.error is not None:  # the write failed: say so, not torch's zip error
                    raise sink.error from None
                raise
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, final) from err
        raise
    _fsync_folder(folder)
    return final


class _Sink:
    """The file torch.save writes to, keeping the OSError of a failed write (torch's C++
    writer reports it only as a RuntimeError)."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.fh.flush()


def _naming(err: OSError, path: Path) -> OSError:
    return type(err)(err.errno, err.strerror or str(err), str(path))


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(folder: Path, fingerprint: str) -> RunState:
    """The RunState of ``folder/checkpoint.pt``; ConfigError (one line) when there is none,
    it cannot be read, it is not a whole checkpoint of this version, or another config wrote
    it. A file torch cannot load is called corrupt or unreadable: torch's own message (which
    suggests ``weights_only=False``, i.e. running pickled code from the file) is not passed on."""
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"resume={folder}: no {CHECKPOINT} there (set checkpoint_every)")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as err:
        raise ConfigError(f"resume: cannot read {path} ({err.strerror or err})") from None
    except Exception:  # a truncated or foreign file: one line, not a traceback
        raise ConfigError(
            f"resume: {path} is corrupt or unreadable (not a checkpoint torch can load)"
        ) from None
    state = payload.get("state") if isinstance(payload, dict) else None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT_VERSION
        or not isinstance(state, dict)
        or set(state) != {f.name for f in fields(RunState)}
        or not isinstance(state["round"], int)
        or not isinstance(state["x"], torch.Tensor)
        or not all(isinstance(state[key], dict) for key in ("streams", "ledger", "metrics"))
    ):
        raise ConfigError(f"resume: {path} is not a compress-bench checkpoint of this version")
    if payload.get("config") != fingerprint:
        raise ConfigError(
            f"resume: {path} was written by another config; resume with the same overrides "
            f"(only {', '.join(RESUME_FREE_KEYS)} may change)"
        )
    return RunState(**state)


def to_device(value: Any, device: torch.device) -> Any:
    """Every tensor of a loaded method state on ``device``, the structure kept."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    return value
