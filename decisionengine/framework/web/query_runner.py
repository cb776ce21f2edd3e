"""Client queries run in a small pool of worker processes, each stoppable at any moment.

The server answers requests in threads of one process.  An allowed query can still be
slow on a big product, and some pandas and Python operations hold the GIL for their whole
duration: run in a request thread, such a query would freeze every other request.  So
:class:`QueryRunner` sends the query and the columns it reads to a worker process
(:mod:`.query_worker`) and waits on a pipe, which lets the GIL go:

* workers are started lazily (the first query starts one), at most ``workers`` of them,
  from the server's fork server (a clean single-threaded process with pandas already
  imported: a worker starts in tens of milliseconds, and nothing of the server's threads
  or sockets leaks into it);
* each evaluation gets ``timeout`` seconds; a worker that overruns is killed (SIGKILL)
  and replaced by the next query that needs one, and the client gets
  ``query '...' took longer than 5 s and was stopped``;
* a worker's address space is capped (``memory_mb`` beyond what it holds at start); a
  query that needs more gets ``... needed more than 1024 MiB of memory and was stopped``;
* :meth:`QueryRunner.close` (the server stopping) ends every worker.

Transport: the columns a query reads are pickled to the worker (measured for a 10k-row
frame of three columns: well under a millisecond each way; see README); the worker
answers with raw bytes (one per row), never a pickle, so the server unpickles nothing a
query could have influenced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from decisionengine.framework.engine import supervision
from decisionengine.framework.web import query_worker
from decisionengine.framework.web.query_language import QueryError

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 1024
DEFAULT_WORKERS = 2
#: how long a new worker may take to start before the query is refused
START_TIMEOUT = 30.0


class QueryStopped(QueryError):
    """A query ran over its time or memory, or its worker died; the worker was replaced."""


class QueryUnavailable(RuntimeError):
    """No worker can take the query now (all busy, or the server is stopping)."""


@dataclass(frozen=True)
class QueryLimits:
    """Per-evaluation limits (``webserver.query_timeout`` / ``query_memory_mb`` / ``query_workers``)."""

    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    workers: int = DEFAULT_WORKERS

    @classmethod
    def from_config(cls, webserver: Mapping[str, Any] | None) -> QueryLimits:
        settings = webserver or {}
        return cls(
            timeout=float(settings.get("query_timeout", DEFAULT_TIMEOUT)),
            memory_mb=int(settings.get("query_memory_mb", DEFAULT_MEMORY_MB)),
            workers=int(settings.get("query_workers", DEFAULT_WORKERS)),
        )


def _shown(query: str) -> str:
    return repr(query if len(query) <= 120 else query[:117] + "...")


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, process: Any, connection: Any) -> None:
        self.process = process
        self.connection = connection

    @classmethod
    def start(cls, context: Any, limits: QueryLimits) -> _Worker:
        if context.get_start_method() == "forkserver":
            supervision.ensure_fork_server()  # never from this request thread (see supervision)
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=query_worker.serve,
            args=(theirs, limits.memory_mb * MIB, limits.timeout),
            name="de-query-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = cls(process, ours)
        try:
            if not ours.poll(START_TIMEOUT):
                raise QueryUnavailable(f"the query worker did not start within {START_TIMEOUT:g} s")
            greeting = ours.recv_bytes(4096)
        except (EOFError, OSError) as exc:
            worker.kill()
            raise QueryUnavailable(f"the query worker did not start: {exc or 'it exited'}") from None
        except QueryUnavailable:
            worker.kill()
            raise
        if greeting != query_worker.READY:
            worker.kill()
            raise QueryUnavailable(f"the query worker did not start: {greeting[1:].decode(errors='replace')}")
        return worker

    def ask(self, query: str, frame: pd.DataFrame, timeout: float) -> bytes | None:
        """The worker's reply, None when it did not come within ``timeout`` seconds.

        Raises EOFError/OSError when the worker died.
        """
        self.connection.send((query, frame))
        if not self.connection.poll(timeout):
            return None
        return self.connection.recv_bytes(len(frame) + 65536)

    def stop(self, grace: float = 1.0) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)
        self.process.join(grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL (if still running) and reap; safe to call more than once."""
        if self.process.exitcode is None:
            with contextlib.suppress(OSError):
                self.process.kill()
            self.process.join(5)
        with contextlib.suppress(OSError):
            self.connection.close()

    @property
    def exit_description(self) -> str:
        self.process.join(1)
        code = self.process.exitcode
        if code is None:
            return "it stopped answering"
        return f"it was killed by signal {-code}" if code < 0 else f"it exited with status {code}"


class QueryRunner:
    """A lazily started pool of query workers (see the module docstring); thread-safe."""

    def __init__(self, limits: QueryLimits | None = None, context: Any = None) -> None:
        self.limits = limits or QueryLimits()
        self._context = context or multiprocessing.get_context("forkserver")
        self._changed = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False

    # -- the pool ----------------------------------------------------------------------------------

    @property
    def worker_pids(self) -> list[int]:
        """Pids of the live workers (idle and busy)."""
        with self._changed:
            return [w.process.pid for w in (*self._idle, *self._busy)]

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + self.limits.timeout
        with self._changed:
            while True:
                if self._closed:
                    raise QueryUnavailable("the server is stopping")
                if self._idle:
                    idle = self._idle.pop()
                    self._busy.add(idle)
                    return idle
                if len(self._busy) + self._starting < self.limits.workers:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueryUnavailable(
                        f"all {self.limits.workers} query workers are busy; try again in a few seconds"
                    )
                self._changed.wait(remaining)
        worker: _Worker | None = None
        try:
            worker = _Worker.start(self._context, self.limits)
        finally:
            with self._changed:
                self._starting -= 1
                if worker is not None and not self._closed:
                    self._busy.add(worker)
                self._changed.notify_all()
        assert worker is not None  # _Worker.start raised otherwise
        if self._closed:
            worker.kill()
            raise QueryUnavailable("the server is stopping")
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._changed:
            self._busy.discard(worker)
            keep = healthy and not self._closed
            if keep:
                self._idle.append(worker)
            self._changed.notify_all()
        if not keep:
            worker.kill()

    # -- evaluation --------------------------------------------------------------------------------

    def mask(self, query: str, frame: pd.DataFrame) -> np.ndarray:
        """One bool per row of ``frame``: where ``query`` holds.

        ``frame`` should hold only the columns the query reads.  Raises
        :class:`~.query_language.QueryError` (refused, failed), :class:`QueryStopped`
        (over time or memory) or :class:`QueryUnavailable`.
        """
        worker = self._acquire()
        healthy = False
        try:
            try:
                reply = worker.ask(query, frame, self.limits.timeout)
            except (EOFError, OSError):
                raise QueryStopped(
                    f"query {_shown(query)} was stopped: its worker process ended ({worker.exit_description})"
                ) from None
            if reply is None:
                raise QueryStopped(f"query {_shown(query)} took longer than {self.limits.timeout:g} s and was stopped")
            code, payload = reply[:1], reply[1:]
            if code == query_worker.OUT_OF_MEMORY:
                raise QueryStopped(
                    f"query {_shown(query)} needed more than {self.limits.memory_mb} MiB of memory and was stopped"
                )
            healthy = True
            if code == query_worker.REFUSED:
                raise QueryError(payload.decode(errors="replace"))
            mask = np.frombuffer(payload, dtype=np.uint8).astype(bool)
            if code != query_worker.OK or len(mask) != len(frame):
                healthy = False
                raise QueryStopped(f"query {_shown(query)}: the worker's answer is malformed")
            return mask
        finally:
            self._release(worker, healthy)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        with self._changed:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._changed.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()
