"""Waiting for a condition in tests, instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    condition: Callable[[], T],
    timeout: float = 30.0,
    *,
    what: str | Callable[[], str] | None = None,
    interval: float = 0.01,
    max_interval: float = 0.25,
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    Checks often at first and less often later (``interval`` doubling up to
    ``max_interval``), so a fast condition is seen at once and a slow one costs little.
    After ``timeout`` seconds it raises :class:`TimeoutError` saying ``what`` was awaited
    (a string, or a function giving one: the last state is usually what helps).  An
    exception raised by ``condition`` is not swallowed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        now = time.monotonic()
        if now >= deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"not within {timeout:g} s: {described or getattr(condition, '__name__', 'condition')}")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, max_interval)
