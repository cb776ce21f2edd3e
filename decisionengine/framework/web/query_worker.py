"""The process that evaluates client queries (the child side of :mod:`.query_runner`).

Why a process: a query that is allowed can still be slow on a big product, and pandas or
Python may hold the GIL for the whole of one operation; in the server's own process that
would freeze every other request.  A process can be stopped from outside at any moment
(SIGKILL), and its memory can be capped, which no thread allows.

The worker:

* caps its address space (``RLIMIT_AS``) at what it holds when it starts plus the
  configured query memory, so a query that allocates too much gets a MemoryError (answered
  as such) instead of exhausting the machine (Arrow, which holds pandas' strings, is moved
  to the system allocator first, so its buffers count too);
* ends when the server goes away, even if the server is killed: it is killed with the
  fork server, which is killed with de-server, and it watches de-server's pipe
  (:mod:`decisionengine.framework.engine.supervision`); besides, an idle worker sees the
  end of its pipe at once, and a busy one is stopped by the CPU time limit
  (``RLIMIT_CPU``) it sets before each query, a little beyond the query timeout, so it
  stops by itself even if nobody kills it;
* ignores SIGINT (a Ctrl-C to the server's terminal is the server's to handle), and is
  named ``de-query-worker`` in ``ps``;
* answers each request ``(query, frame)`` with raw bytes, never a pickle, so that the
  server never unpickles anything a query could have influenced: ``b"R"`` when ready,
  :data:`OK` + one byte per row, :data:`REFUSED` or :data:`OUT_OF_MEMORY` + a UTF-8 message.

It checks and compiles the query itself (:func:`.query_language.compile_query`) before
evaluating it: it never evaluates text that its own allow-list has not accepted.
"""

from __future__ import annotations

import contextlib
import math
import resource
import signal
from typing import Any

import pandas as pd

from decisionengine.framework.engine import supervision
from decisionengine.framework.web.query_language import QueryError, compile_query, row_mask

READY = b"R"
OK = b"\x01"
REFUSED = b"\x02"
OUT_OF_MEMORY = b"\x03"
FAILED_TO_START = b"\x04"
#: CPU seconds a query may use beyond its timeout before the kernel stops the worker
CPU_GRACE_SECONDS = 5

#: the worker's process name (``ps``, ``/proc/<pid>/comm``), at most 15 bytes
PROCESS_NAME = "de-query-worker"


def _address_space() -> int:
    """Bytes of address space this process holds now (Linux), 0 when unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _settle_allocators() -> None:
    """Make the address space at start a fair baseline.

    pandas stores strings in Arrow arrays; Arrow's bundled allocator (mimalloc) reserves a
    1 GiB arena on its first allocation, whichever pool is the default.  Switch Arrow to the
    system allocator, so query buffers count against the cap like any other memory, and make
    one Arrow allocation now, so the arena's reservation is part of the baseline rather
    than taken out of the query's allowance.
    """
    try:
        import pyarrow  # noqa: PLC0415  (optional: pandas without Arrow strings)
    except ImportError:
        return
    with contextlib.suppress(Exception):
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
        text = pd.Series(["settle", "allocators", None])  # pandas' default string storage
        (text == "settle").sum()
        (text.str.lower().str.contains("a", regex=False) | text.isin(["x"])).to_numpy()


def _limit_memory(query_memory: int) -> None:
    _settle_allocators()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + query_memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _limit_cpu(timeout: float) -> None:
    """Let this query use at most ``timeout`` + grace seconds of CPU from now."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + timeout + CPU_GRACE_SECONDS)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def answer(query: str, frame: pd.DataFrame) -> bytes:
    """The reply to one request (see the module docstring)."""
    try:
        compiled = compile_query(query, list(frame.columns))
        return OK + row_mask(compiled, frame).tobytes()
    except QueryError as exc:
        return REFUSED + str(exc).encode()
    except MemoryError:
        return OUT_OF_MEMORY + b"out of memory"
    except Exception as exc:  # a bug of ours: still an answer, never a dead worker
        return REFUSED + f"query {query!r} failed: {type(exc).__name__}: {str(exc)[:300]}".encode()


def serve(connection: Any, query_memory: int, timeout: float) -> None:
    """The worker's main loop: one request at a time until the server closes the pipe."""
    supervision.guard_forked_child()  # before the memory cap: its watcher thread's stack is baseline
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervision.name_this_process(PROCESS_NAME)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker stopped by RLIMIT_CPU leaves no core
    try:
        _limit_memory(query_memory)
    except (ValueError, OSError) as exc:
        connection.send_bytes(FAILED_TO_START + f"cannot limit the worker's memory: {exc}".encode())
        return
    connection.send_bytes(READY)
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        query, frame = request
        _limit_cpu(timeout)
        reply = answer(query, frame)
        del request, frame
        try:
            connection.send_bytes(reply)
        except OSError:
            return
