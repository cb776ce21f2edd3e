"""Acting on SIGTERM and SIGINT without taking a lock in the signal handler.

Python runs a signal handler in the main thread, between two bytecodes, whatever that
thread was doing: also just after it took a lock, such as the one inside
``threading.Event.wait``.  A handler that takes the same lock (``Event.set()`` does) then
waits for itself for ever: a de-server once ignored SIGTERM so, its main thread waiting on
the lock of the very event the handler was setting.  So the handler here only writes a
byte to a pipe (no lock), and a thread of its own, waiting on the pipe, does the work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_signals(action: Callable[[], None], signals: Iterable[int] = STOP_SIGNALS) -> threading.Thread:
    """Run ``action()`` in a relay thread each time one of ``signals`` arrives (from the main
    thread, which installs the handlers).  The thread is a daemon: it never keeps the
    process alive."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # a burst of signals never blocks the handler

    def handler(_signum: int, _frame: object) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending anyway
            os.write(write_end, b"!")

    def relay() -> None:
        while os.read(read_end, 512):
            action()

    thread = threading.Thread(target=relay, name="signal-relay", daemon=True)
    thread.start()
    for number in signals:
        signal.signal(number, handler)
    return thread
