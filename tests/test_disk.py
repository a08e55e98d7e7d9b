"""Full disks and read-only folders: one line and a non-zero exit, the rows written kept whole,
no temporary file left, and summary.json never left at `running` (or the line says so)."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from compress_bench.config import compose_config
from compress_bench.errors import UserError
from compress_bench.run.state import CHECKPOINT, load_checkpoint
from compress_bench.runner import build_run, execute
from tests.conftest import _cli_env

SYNTH = ("problem=synthetic_logreg", "progress=false", "threads=1")


def _build(*overrides):
    return build_run(compose_config(*SYNTH, *overrides))


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_full_disk_while_writing_metrics_keeps_whole_rows(tmp_path, monkeypatch):
    """The 6th row's write gets half through, then ENOSPC: the half row is cut off again, the
    run stops with one line naming metrics.csv, summary.json says failed."""
    metrics, real_write, rows = tmp_path / "metrics.csv", os.write, []

    def write(fd, data):
        if _same_file(fd, metrics):
            rows.append(data)
            if len(rows) > 6:  # the header and 5 rows went through
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(UserError) as exc:
        execute(_build("rounds=100", "log_every=1"), tmp_path)
    message = str(exc.value)
    assert "\n" not in message
    assert f"cannot write {metrics}: No space left on device" in message
    assert "summary.json says failed" in message
    data = metrics.read_bytes()
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == 6
    assert pd.read_csv(metrics)["round"].tolist() == [0, 1, 2, 3, 4]
    assert _summary(tmp_path)["status"] == "failed"
    assert _temporaries(tmp_path) == []


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes went through."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The second checkpoint's write fails: the run stops with one line naming checkpoint.pt
    (not torch's RuntimeError about zip positions), the first checkpoint is intact and no
    .checkpoint.*.tmp is left."""
    real_fdopen, opened = os.fdopen, []

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        if ".checkpoint." in os.readlink(f"/proc/self/fd/{fd}"):
            opened.append(fd)
            if len(opened) == 2:
                return _FullDisk(fh, room=100)
        return fh

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(os, "fdopen", fdopen)
    run = _build("rounds=100", "log_every=5", "checkpoint_every=10")
    with pytest.raises(UserError) as exc:
        execute(run, tmp_path)
    assert f"cannot write {tmp_path / CHECKPOINT}: No space left on device" in str(exc.value)
    assert _temporaries(tmp_path) == [] and _summary(tmp_path)["status"] == "failed"
    from compress_bench.run.session import Checkpoints

    assert load_checkpoint(tmp_path, Checkpoints(run, tmp_path).fingerprint).round == 10


def _failing_replace(monkeypatch, name: str, after: int) -> None:
    """os.replace onto ``name`` fails with ENOSPC after ``after`` calls succeeded."""
    real_replace, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            calls.append(dst)
            if len(calls) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_full_disk_at_the_end_still_records_the_status(tmp_path, monkeypatch):
    """summary.json's atomic rewrite needs a new file, which a full disk refuses: the summary
    that says running is overwritten in place (no new space), and no temporary is left."""
    _failing_replace(monkeypatch, "summary.json", after=1)  # `running` went through
    summary = execute(_build("rounds=20"), tmp_path)
    written = _summary(tmp_path)
    assert written["status"] == summary["status"] == "completed"
    assert written["rounds_done"] == 20 and written["final"] == summary["final"]
    assert _temporaries(tmp_path) == [] and not list(tmp_path.glob(".summary.json.*"))


def test_a_summary_that_cannot_be_written_at_all_is_said(tmp_path, monkeypatch):
    """Neither a new file nor the old one can be written (a read-only file system): the one
    line says summary.json could not be written and still says running."""
    _failing_replace(monkeypatch, "summary.json", after=1)
    real_open = Path.open

    def open_(self, mode="r", *args, **kwargs):
        if self.name == "summary.json" and "+" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(UserError) as exc:
        execute(_build("rounds=20"), tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "summary.json could not be written" in message
    assert "may still say running" in message
    assert _temporaries(tmp_path) == [] and not list(tmp_path.glob(".summary.json.*"))


def test_a_folder_that_refuses_new_files_is_one_line_and_nothing_written(tmp_path, monkeypatch):
    """A read-only output folder (as root chmod would not show it, so os.open refuses files
    in it): one line naming summary.json, and the folder stays empty."""
    real_open = os.open

    def os_open(path, flags, *args, **kwargs):
        if Path(path).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    with pytest.raises(UserError) as exc:
        execute(_build("rounds=5"), tmp_path)
    message = str(exc.value)
    assert f"cannot write {tmp_path / 'summary.json'}: Permission denied" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_folder_is_one_line(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            execute(_build("rounds=5"), tmp_path)
        assert list(tmp_path.iterdir()) == []
    finally:
        tmp_path.chmod(0o755)


def _file_size_limit(limit: int):
    """For the child: files may not grow past ``limit`` bytes (EFBIG, like a full disk)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_the_command_says_one_line_and_exits_2_when_files_cannot_grow(tmp_path):
    """A real write error from the kernel (RLIMIT_FSIZE: EFBIG once metrics.csv reaches 20 kB;
    the effect of a full disk on the one file that grows): exit 2, one line, whole rows,
    summary.json failed, no temporary file. Before: an "internal error (a bug)", exit 1."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "compress_bench", *SYNTH, "rounds=5000", "log_every=1"]
        + [f"hydra.run.dir={out}"],
        cwd=tmp_path,
        env=_cli_env(None),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_file_size_limit(20_000),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {out / 'metrics.csv'}: File too large" in lines[0]
    data = (out / "metrics.csv").read_bytes()
    assert data.endswith(b"\r\n") and len(data) <= 20_000
    rounds = pd.read_csv(out / "metrics.csv")["round"].tolist()
    assert rounds == list(range(len(rounds)))
    assert _summary(out)["status"] == "failed" and _temporaries(out) == []


def test_json_temporaries_are_removed_when_the_write_fails(tmp_path, monkeypatch):
    """write_json_atomic on a full disk: no temporary file left, the old file untouched."""
    from compress_bench.report import write_json_atomic

    target = tmp_path / "summary.json"
    write_json_atomic(target, {"status": "running"})
    _failing_replace(monkeypatch, "summary.json", after=0)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(target, {"status": "completed"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert json.loads(target.read_text()) == {"status": "running"}
