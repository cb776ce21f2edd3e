"""Which module of a channel the current thread is running, for per-module log levels.

The task manager calls into a module (its construction, a source's ``acquire``, a
transform's ``transform``...) through one function, which marks the call with the
module's key here.  The channel process's logging (``engine.logs``) reads the mark to
apply that module's own log level to every line emitted during the call: the module's
own logger, the framework's, and any library it calls, since all of them log from the
calling thread.

A context variable rather than a thread-local: APScheduler runs each source's job in a
pool thread, and a context variable set for the duration of a call is undone exactly,
even when calls nest (a module constructed while another one runs).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_running: contextvars.ContextVar[str | None] = contextvars.ContextVar("decisionengine_running_module", default=None)


def current() -> str | None:
    """The key of the module the current thread is running (None outside any module)."""
    return _running.get()


@contextlib.contextmanager
def running(key: str) -> Iterator[None]:
    """Mark the calls made inside the block as module ``key``'s."""
    token = _running.set(key)
    try:
        yield
    finally:
        _running.reset(token)
