"""One thread that calls functions at their deadlines, for every channel of a server.

The hang watchdog re-arms on every status report of every channel (several a generation).
With a ``threading.Timer`` each, a server of hundreds of channels started and cancelled
hundreds of threads a second; here arming is a heap push and the thread sleeps until the
earliest deadline.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from decisionengine.framework.util.logger import get_logger


class Deadlines:
    """Call ``callback`` once ``delay`` seconds from now, unless re-armed or cancelled.

    Each key has at most one deadline: arming a key replaces its previous deadline.  The
    callbacks run on this object's thread, one at a time; one that raises is logged and the
    others still run."""

    def __init__(self, name: str = "deadlines") -> None:
        self._name = name
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        #: key -> (the sequence number of its live deadline, when, what to call)
        self._armed: dict[Hashable, tuple[int, float, Callable[[], Any]]] = {}
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, key: Hashable, delay: float, callback: Callable[[], Any]) -> None:
        with self._condition:
            number, due = next(self._sequence), time.monotonic() + max(0.0, delay)
            self._armed[key] = (number, due, callback)
            heapq.heappush(self._heap, (due, number, key))
            if len(self._heap) > 4 * len(self._armed) + 64:
                # replaced deadlines leave their entries behind until they come up: drop them
                self._heap = [(when, n, k) for k, (n, when, _) in self._armed.items()]
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._condition.notify()

    def cancel(self, key: Hashable) -> None:
        with self._condition:
            self._armed.pop(key, None)  # its heap entry is dropped when it comes up

    def pending(self) -> int:
        """How many keys have a deadline to come."""
        with self._condition:
            return len(self._armed)

    def _run(self) -> None:
        while True:
            with self._condition:
                callback = self._next_due()
            try:
                callback()
            except Exception:
                get_logger().bind(module="deadlines").exception("a deadline's callback failed", timer=self._name)

    def _next_due(self) -> Callable[[], Any]:
        """Wait (holding the condition) for the earliest live deadline to pass; its callback."""
        while True:
            if not self._heap:
                self._condition.wait()
                continue
            due, number, key = self._heap[0]
            live = self._armed.get(key)
            if live is None or live[0] != number:
                heapq.heappop(self._heap)  # cancelled or replaced
                continue
            wait = due - time.monotonic()
            if wait > 0:
                self._condition.wait(wait)
                continue
            heapq.heappop(self._heap)
            del self._armed[key]
            return live[2]
