"""Pauses that grow: how a process waits for something another process holds.

Two places wait on a lock held by another process (a connection slot, an SQLite database
while its journal mode changes).  Both look again after a pause that starts short (the
holder is often done in milliseconds) and doubles up to a ceiling (so that many waiters on a
loaded machine do not spend the CPU the holder needs to finish), with jitter (so that
waiters released together do not all look again at the same moment)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator


def pauses(first: float, longest: float, within: float) -> Iterator[int]:
    """Sleep between attempts until ``within`` seconds have passed since the first call.

    Yields the attempt number (from 1) after each pause; the caller makes one attempt before
    iterating and one after each yield, and the iteration ends (the caller gives up) once
    the time is spent::

        for _ in pauses(0.005, 0.25, 30):
            if attempt():
                break
        else:
            raise TimedOut(...)
    """
    deadline = time.monotonic() + within
    pause = first
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, pause * random.uniform(0.5, 1.0)))
        pause = min(pause * 2, longest)
        attempt += 1
        yield attempt
