"""Run a check as a user whom file permissions apply to (root's override would hide them).

As root (the usual container) the check runs in a forked child that switches to ``nobody``
first; as any other user it runs in the test process itself. The child only touches the file
system and formats exceptions: modules it needs must be imported before (as nobody it may not
be able to read the interpreter's own files), and it must not start torch's thread pool.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NOBODY = 65534
TIMEOUT_S = 30


def outcome(check: Callable[[], object]) -> tuple[str, str]:
    """``("ok", repr(result))`` or ``(exception type name, message)``."""
    try:
        return "ok", repr(check())
    except Exception as exc:  # the test asserts on what came back
        return type(exc).__name__, str(exc)


def run_unprivileged(*checks: Callable[[], object]) -> list[tuple[str, str]]:
    """The :func:`outcome` of each check, run without root's permission override."""
    if os.geteuid() != 0:
        return [outcome(check) for check in checks]
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork to drop root")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(_as_nobody(checks)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        return _collect(read_end, pid)
    finally:
        os.close(read_end)


def _as_nobody(checks: tuple[Callable[[], object], ...]) -> list[tuple[str, str]] | str:
    """In the child: drop root for good, then run the checks (a string: why it could not)."""
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError as exc:
        return f"cannot switch to uid {NOBODY}: {exc}"
    return [outcome(check) for check in checks]


def _collect(read_end: int, pid: int) -> list[tuple[str, str]]:
    chunks = []
    while select.select([read_end], [], [], TIMEOUT_S)[0]:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    else:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    if not chunks:
        pytest.fail("the unprivileged check did not report (timed out or crashed)")
    result = json.loads(b"".join(chunks))
    if isinstance(result, str):
        pytest.skip(result)
    return [tuple(item) for item in result]


@contextmanager
def shared_tmp() -> Iterator[Path]:
    """A temporary folder that ``nobody`` can enter (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="compress-bench-perm-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        _restore_permissions(root)
        shutil.rmtree(root, ignore_errors=True)


def _restore_permissions(root: Path) -> None:
    """Give back, top down, the folder permissions a test took away, so it can be deleted."""
    root.chmod(stat.S_IRWXU)
    for folder, children, _ in os.walk(root):
        for child in children:
            path = os.path.join(folder, child)
            if not os.path.islink(path):  # chmod would follow a link out of the folder
                os.chmod(path, stat.S_IRWXU)
