"""Channel ownership: at most one live process runs a given channel against one DataSpace.

Several de-server instances may share a PostgreSQL DataSpace (or, on one host, a SQLite
file) with the same channel files.  Each channel process takes a lock named after its
channel before it runs; the others wait in standby and take over when the owner stops or
dies.  No consensus of our own: the database (or the kernel) holds the lock, and drops it
when its holder's connection (or process) goes away.

* PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection kept
  for the lock alone; ``held()`` asks the server whether that session still holds it, so
  a lost connection is noticed.
* SQLite: ``flock`` on ``<database file>.<channel>.lock`` next to the database file.
  The kernel drops the ``flock`` of a process that dies, but the file stays:
  :func:`clear_stale_lock_files` removes those nobody holds (a server does at start).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import re
from typing import Any

import sqlalchemy as sa

from decisionengine.framework.dataspace.errors import DataSpaceConnectionError


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a channel name."""
    return int.from_bytes(hashlib.sha256(f"decisionengine-channel:{name}".encode()).digest()[:8], "big", signed=True)


class ChannelLock:
    """Held by nobody: the lock of a data source that cannot coordinate (always granted)."""

    def acquire(self) -> bool:
        """Try to take the lock without waiting; True if this process holds it now."""
        return True

    def held(self) -> bool:
        """Whether this process still holds the lock (it may have been lost with a connection)."""
        return True

    def release(self) -> None:
        """Give the lock up (and whatever held it)."""


class PostgresAdvisoryLock(ChannelLock):
    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        self.key = lock_key(name)
        self.conn: sa.Connection | None = None

    def _connection(self) -> sa.Connection:
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.conn

    def acquire(self) -> bool:
        """True when taken; False when another session holds it; DataSpaceConnectionError
        when the database cannot be reached (nobody can say who owns the channel then)."""
        try:
            conn = self._connection()
            return bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(self.key))).scalar())
        except sa.exc.DBAPIError as exc:
            self._drop()
            raise DataSpaceConnectionError(f"cannot reach the database to take the channel lock: {exc.orig}") from exc

    def held(self) -> bool:
        if self.conn is None:
            return False
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        query = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() "
            "AND classid = :high AND objid = :low AND objsubid = 1"
        )
        try:
            found = self.conn.execute(query, {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).scalar()
        except sa.exc.DBAPIError:
            self._drop()
            return False
        return bool(found)

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self.conn.execute(sa.select(sa.func.pg_advisory_unlock(self.key)))
        self._drop()

    def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


LOCK_FILE_INFIX = "."
LOCK_FILE_SUFFIX = ".lock"


class FileLock(ChannelLock):
    """``flock`` on a file next to the SQLite database, removed when released.

    Removing a lock file is only safe with a check after locking: a process that opened
    the file just before its owner removed it would otherwise lock a file nobody else can
    see.  So after ``flock`` succeeds, the path must still name the file that was locked;
    if not, try again with the new one.
    """

    def __init__(self, database: str, name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.path = f"{database}{LOCK_FILE_INFIX}{safe}{LOCK_FILE_SUFFIX}"
        self.fd: int | None = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:  # released and removed meanwhile: lock the new file
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return True

    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still locked: nobody can hold the file we remove
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
        self.fd = None


def clear_stale_lock_files(database: str) -> list[str]:
    """Remove the channel lock files next to ``database`` that no live process holds.

    What a killed channel process leaves: the kernel released its ``flock``, the file
    stayed.  A file this process can lock is held by nobody, so it is stale; one it cannot
    lock belongs to a live owner and is left alone.  A stale file is removed the way
    :meth:`FileLock.release` removes one, under the lock and after checking that the path
    still names the file locked (every remover holds the lock, so it cannot change before
    the unlink); a process that opened it meanwhile finds it gone after its own ``flock``
    and takes a new one (:meth:`FileLock.acquire`).  Returns the paths removed.
    """
    pattern = f"{glob.escape(database)}{LOCK_FILE_INFIX}*{LOCK_FILE_SUFFIX}"
    return [path for path in sorted(glob.glob(pattern)) if _remove_if_unheld(path)]


def _remove_if_unheld(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:  # gone already, a symlink, or not ours to lock
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a live process owns this channel
            return False
        try:
            named = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):  # replaced: not the file we locked
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)  # drops the lock


def clear_stale_locks(engine: sa.Engine) -> list[str]:
    """:func:`clear_stale_lock_files` for the SQLite database of ``engine`` (nothing for others:
    PostgreSQL's advisory locks end with their holder's connection)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return []
    return clear_stale_lock_files(database)


def channel_lock(engine: sa.Engine, name: str) -> Any:
    """The lock for channel ``name`` on the database of ``engine``."""
    if engine.dialect.name == "postgresql":
        return PostgresAdvisoryLock(engine, name)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        return FileLock(database, name)
    return ChannelLock()
