"""SIGTERM, SIGINT and SIGHUP as an exception raised at a safe point.

A signal that arrives while the runner is inside a round (between writing a metrics row and
the next) is held until the round ends, so a row is never cut in half and summary.json records
``interrupted`` with the signal's name; outside the rounds it is raised at once. A second
SIGINT while one is held is raised at once (the user insists).

Two more places hold a signal instead of raising it, because an exception raised there would
come out as a traceback, or as some other error, instead of one line:

- start-up: :func:`hold` is the first thing the command does (before its slow imports of
  Hydra and torch), and :func:`install`, at the top of ``main()``, ends the hold; the signal
  is then raised by :func:`check`, inside ``main()``'s error handling;
- imports: an exception raised in the middle of a module's import leaves it half imported
  (a later import of it fails with an unrelated error) and may be caught and replaced by
  library code; the import finishes, and the signal is raised at the next :func:`check`.

:func:`received` remembers the last signal raised, so that ``main()`` still reports it when
library code turned the exception into another one. A signal raised where Python itself
swallows every exception (a ``__del__``, a weakref or garbage-collector callback: "Exception
ignored in ...") is not lost either: :func:`check`, at the start of every round, raises it
again. Before that, a SIGTERM that landed in such a callback let the run go on to its last
round (CI, 2026-12-04: a start-up SIGTERM, then 10^7 rounds).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from compress_bench.errors import Interrupted

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_IMPORT_FRAMES = "<frozen importlib._bootstrap"  # both _bootstrap and _bootstrap_external

_deferring = 0
_pending: signal.Signals | None = None
_received: signal.Signals | None = None
_raised: signal.Signals | None = None  # raised by the handler; check() raises it again
_ready = False  # False while starting up: every signal is held until install()


def _handler(signum: int, frame: object) -> None:
    global _pending, _received, _raised
    sig = signal.Signals(signum)
    _received = sig
    insisting = _pending == sig == signal.SIGINT
    if not _ready or (not insisting and (_deferring or _importing(frame))):
        _pending = sig
        return
    _pending = None
    _raised = sig  # in case the code it lands in swallows it
    raise Interrupted(sig)


def _importing(frame) -> bool:
    """True when the interrupted code runs inside an import statement."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_IMPORT_FRAMES):
            return True
        frame = frame.f_back
    return False


def _set_handlers() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False  # Python allows handlers in the main thread only
    for sig in HANDLED:
        signal.signal(sig, _handler)
    return True


def hold() -> None:
    """Start-up: hold every handled signal until :func:`install` (instead of Python's default
    for SIGTERM, a silent death, or a KeyboardInterrupt traceback for SIGINT)."""
    global _ready
    if _set_handlers():
        _ready = False


def install() -> None:
    """Route the handled signals through :func:`_handler` (main thread only; elsewhere a
    no-op). A signal held since :func:`hold` stays pending for the next :func:`check`."""
    global _ready, _received, _raised
    if _set_handlers():
        _ready = True
        _received = _pending  # forget a signal an earlier main() in this process reported
        _raised = None


def received() -> signal.Signals | None:
    """The last signal received since :func:`install`, raised or still held; None if none."""
    return _received


def held() -> signal.Signals | None:
    """The signal :func:`check` would raise now, left held; None if none. A torch.distributed
    rank reads it so that every rank stops at the same round (run/session.py's Checkpoints)."""
    return _pending or _raised


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals until :func:`check` (or the end of the block) raises them. A block left
    by an exception lets it go on (a signal held meanwhile waits for the next check)."""
    global _deferring
    _deferring += 1
    try:
        yield
    except BaseException:
        _deferring -= 1
        raise
    _deferring -= 1
    check()


def check() -> None:
    """Raise as :class:`Interrupted` the held signal, if any, or one the handler raised that
    never reached the caller (swallowed where Python ignores exceptions)."""
    global _pending, _raised
    sig = _pending or _raised
    if sig is not None:
        _pending = _raised = None
        raise Interrupted(sig)


_worker_handlers: dict[signal.Signals, object] | None = None


def enter_worker_job() -> None:
    """A job that a launcher runs in a worker process of its own (joblib's loky workers,
    submitit's jobs), where ``main()`` and its :func:`install` never ran: route the handled
    signals through :func:`_handler` for the job's time, so a SIGTERM (scancel, a time limit)
    or SIGINT records ``interrupted`` as in the command's own process. A no-op where
    :func:`install` already did it (the basic launcher), and outside the main thread."""
    global _worker_handlers
    if _ready or _worker_handlers is not None:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    install()
    _worker_handlers = previous


def leave_worker_job() -> None:
    """After :func:`enter_worker_job`'s job: the worker's own handlers again (the worker waits
    for its next job, or is stopped, as the launcher expects)."""
    global _worker_handlers, _ready
    if _worker_handlers is None:
        return
    if threading.current_thread() is threading.main_thread():
        for sig, handler in _worker_handlers.items():
            signal.signal(sig, handler)
    _worker_handlers = None
    _ready = False
