"""SIGTERM, SIGINT and SIGHUP as an exception raised at a safe point.

A signal that arrives while the runner is inside a round (between writing a metrics row and
the next) is held until the round ends, so a row is never cut in half and summary.json records
``interrupted`` with the signal's name; outside the rounds it is raised at once. A second
SIGINT while one is held is raised at once (the user insists).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from compress_bench.errors import Interrupted

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_deferring = 0
_pending: signal.Signals | None = None


def _handler(signum: int, frame: object) -> None:
    global _pending
    sig = signal.Signals(signum)
    if _deferring and not (_pending == sig == signal.SIGINT):
        _pending = sig
        return
    raise Interrupted(sig)


def install() -> None:
    """Route the handled signals through :func:`_handler` (main thread only; elsewhere a
    no-op, as Python allows handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals until :func:`check` (or the end of the block) raises them."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    check()


def check() -> None:
    """Raise the held signal, if any, as :class:`Interrupted`."""
    global _pending
    if _pending is not None:
        sig, _pending = _pending, None
        raise Interrupted(sig)
