"""At most N database connections open at once across all the channel processes of a server.

PostgreSQL serves a fixed number of connections (``max_connections``, 100 by default), and
a server may run hundreds of channels.  So a channel process under de-server opens a
connection only for the transaction at hand (no pool kept between them: SQLAlchemy's
``NullPool``), and only after taking one of the server's N *connection slots*; the slot
is given back when the connection closes.  The server's connections then number at most
N, however many channels it runs: they scale with the work done at once, not with the
channels.

A slot is a ``flock`` on one of N files in a directory private to the server.  The
kernel releases the ``flock`` of a process that dies, so a channel killed while holding
a slot (``kill -9``, the hang watchdog) cannot leak it, which a semaphore could.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from decisionengine.framework.dataspace.errors import DataSpaceConnectionError

SLOT_FILE = "slot-{}.lock"
#: how long a connection waits for a free slot before the attempt fails like a lost database
DEFAULT_WAIT = 30.0


def create_slots(directory: str, slots: int) -> str:
    """Make the slot files of a server (once, at its start); the directory."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for number in range(slots):
        path = os.path.join(directory, SLOT_FILE.format(number))
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    return directory


class ConnectionGate:
    """Take a slot before connecting, give it back when the connection closes."""

    def __init__(self, directory: str, slots: int, wait: float = DEFAULT_WAIT) -> None:
        self.paths = [os.path.join(directory, SLOT_FILE.format(number)) for number in range(slots)]
        self.wait = wait
        self._held: dict[int, int] = {}  # id(DBAPI connection) -> fd of its slot
        self._lock = threading.Lock()

    def take(self) -> int:
        """A slot's file descriptor, holding its lock; waits up to ``wait`` seconds."""
        deadline = time.monotonic() + self.wait
        pause = 0.002
        while True:
            for path in random.sample(self.paths, len(self.paths)):
                fd = os.open(path, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return fd
            if time.monotonic() >= deadline:
                raise DataSpaceConnectionError(
                    f"no database connection slot came free within {self.wait:g} s: all "
                    f"{len(self.paths)} (dataspace.channel_connections) are in use by this server's channels"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    @staticmethod
    def give_back(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)  # drops the flock

    def install(self, engine: sa.Engine) -> None:
        """Gate every new connection of ``engine`` (which should keep no idle ones: NullPool)."""

        @event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            fd = self.take()
            try:
                connection = dialect.connect(*cargs, **cparams)
            except BaseException:
                self.give_back(fd)
                raise
            with self._lock:
                self._held[id(connection)] = fd
            return connection

        def _closed(connection: Any, *_: Any) -> None:
            with self._lock:
                fd = self._held.pop(id(connection), None)
            if fd is not None:
                self.give_back(fd)

        event.listen(engine.pool, "close", _closed)
        event.listen(engine.pool, "close_detached", _closed)

    def in_use(self) -> int:
        """Slots this process holds now (for tests and status)."""
        with self._lock:
            return len(self._held)


def gated_config(datasource_config: dict[str, Any], channel: str) -> dict[str, Any]:
    """The datasource config of a gated channel process: no pool kept (so no idle connection
    holds a slot; the pool size options of the server's own pool do not apply), and
    connections named after the channel (``application_name`` in ``pg_stat_activity``)."""
    config = {
        key: value
        for key, value in datasource_config.items()
        if key not in ("pool_size", "max_overflow", "pool_timeout", "pool_use_lifo")
    }
    config["poolclass"] = sa.pool.NullPool
    config["connect_args"] = {"application_name": f"de-channel:{channel}"[:63], **(config.get("connect_args") or {})}
    return config
