"""compress_bench.signals in one process: a signal is never lost, whatever code it lands in."""

from __future__ import annotations

import contextlib
import gc
import os
import signal

import pytest

from compress_bench import signals
from compress_bench.errors import Interrupted


@pytest.fixture
def handlers():
    """The handlers installed for the test, Python's own restored after it."""
    saved = {sig: signal.getsignal(sig) for sig in signals.HANDLED}
    signals.install()
    yield
    with contextlib.suppress(Interrupted):
        signals.check()  # leave nothing held for the next test
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class _SignalsWhenCollected:
    """Sends SIGTERM to this process from ``__del__``: the handler raises there, and Python
    swallows the exception ("Exception ignored in ...")."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes, here
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_in_a_finalizer_is_raised_at_the_next_check(handlers):
    """Before: the handler cleared its state when it raised, the finalizer swallowed the
    exception, and the run went on to its last round (CI: a start-up SIGTERM, 10^7 rounds)."""
    obj = _SignalsWhenCollected()
    del obj
    gc.collect()
    with pytest.raises(Interrupted) as caught:
        signals.check()
    assert caught.value.signal == signal.SIGTERM
    signals.check()  # raised once: nothing left


def test_a_signal_in_a_deferred_block_waits_for_its_end(handlers):
    reached = False
    with pytest.raises(Interrupted) as caught, signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached = True
    assert reached
    assert caught.value.signal == signal.SIGTERM


def test_a_deferred_block_left_by_an_error_lets_the_error_go_on(handlers):
    with pytest.raises(ValueError), signals.deferred():
        raise ValueError("the block's own error")
    assert signals._deferring == 0
