"""Servers sharing one DataSpace know each other through it: the ``server_member`` table.

Each server keeps one row, rewritten every ``heartbeat_interval`` seconds with the channels
it offers to run and whether it is draining.  Whether a member is alive is decided by two
facts, both from the database (no protocol of our own):

* its heartbeat is younger than ``member_timeout`` (a server that hangs or is cut off);
* it still holds its *liveness lock*: on PostgreSQL a session advisory lock on the
  connection the server keeps for it, on SQLite a ``flock`` on ``<database>.server-<id>.lock``.
  The database or the kernel drops that lock the moment the server's process dies, so a
  ``kill -9`` is seen at the next look, not ``member_timeout`` later.

Any live server that sees a dead member deletes its row.  A channel whose holder
(``channel_owner.server_id``) is no longer a member may then be claimed by another server
(:meth:`SQLAlchemyDataSource.claim_channel`), and the fencing epoch keeps a server that
was wrongly thought dead from writing once more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from decisionengine.framework.dataspace import ownership
from decisionengine.framework.dataspace.datasources.schema import channel_owner, server_member
from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import GENERATIONS_CHANNEL
from decisionengine.framework.util.logger import get_logger

LIVENESS_PREFIX = "server-"


@dataclass(frozen=True)
class Member:
    """One server of the cluster, as its last heartbeat described it."""

    server_id: str
    name: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    draining: bool
    channels: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "draining": self.draining,
            "channels": list(self.channels),
        }


def new_server_id(name: str) -> str:
    """Unique for every start of a server: its name, host, pid and a random part."""
    return f"{name}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Membership:
    """This server's row in ``server_member`` and its liveness lock; what it sees of the others.

    ``datasource`` is the SQL data source (its engine and transactions are used).  Every
    method may raise the DataSpace's connection errors: the caller decides what to keep
    doing while the database is away (the channels go on; nothing is rebalanced).
    """

    def __init__(self, datasource: Any, name: str, member_timeout: float = 10.0) -> None:
        self.datasource = datasource
        self.engine: sa.Engine = datasource.engine
        self.name = name
        self.server_id = new_server_id(name)
        self.member_timeout = member_timeout
        self.started_at = time.time()
        self._lock = ownership.channel_lock(self.engine, LIVENESS_PREFIX + self.server_id)
        #: before this time (after an outage of ours) nobody is taken for dead: the others'
        #: heartbeats and liveness locks need a moment to come back too
        self._judge_from = 0.0
        self._failed = False
        #: when this server's last heartbeat was written, and the gap before it (monotonic s)
        self._beat_at: float | None = None
        self._beat_gap = 0.0

    # -- this server --------------------------------------------------------------------------

    def beat(self, channels: list[str], draining: bool) -> bool:
        """Write this server's heartbeat (joining first if needed); True when it (re)joined.

        A server whose row was deleted (the others took it for dead: it hung, or lost the
        database for longer than ``member_timeout``) simply joins again.
        """
        try:
            joined = self._beat(channels, draining)
        except Exception:
            self._failed = True
            raise
        if self._failed:  # back after an outage: give the others member_timeout to come back too
            self._failed = False
            self._judge_from = time.monotonic() + self.member_timeout
        now = time.monotonic()
        self._beat_gap = now - self._beat_at if self._beat_at is not None else 0.0
        self._beat_at = now
        return joined

    @property
    def lagging(self) -> bool:
        """Whether this server's own heartbeats came far apart (more than half member_timeout).

        Then the machine or the database is overloaded, and the others' late heartbeats may be
        the same overload, not their death: taking them for dead would move their channels
        and boot more processes, adding to the overload (the cluster thrashed that way)."""
        return self._beat_gap > self.member_timeout / 2

    def _beat(self, channels: list[str], draining: bool) -> bool:
        if not self._lock.held() and not self._lock.acquire():
            raise RuntimeError(f"another process holds the liveness lock of server {self.server_id}")
        values = {
            "heartbeat_at": self._clock(),
            "draining": bool(draining),
            "channels": json.dumps(sorted(channels)),
        }
        with self.datasource._transaction("server heartbeat", write=True) as conn:
            updated = conn.execute(
                sa.update(server_member).where(server_member.c.server_id == self.server_id).values(**values)
            ).rowcount
            if updated:
                return False
            conn.execute(
                sa.insert(server_member).values(
                    server_id=self.server_id,
                    name=self.name,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=self.started_at,
                    **values,
                )
            )
            self._announce(conn, "joined")
        return True

    def leave(self) -> None:
        """Delete this server's row and drop its liveness lock (a clean stop)."""
        with contextlib.suppress(Exception), self.datasource._transaction("server leaves", write=True) as conn:
            conn.execute(sa.delete(server_member).where(server_member.c.server_id == self.server_id))
            self._announce(conn, "left")
        self._lock.release()

    def _announce(self, conn: sa.Connection, event: str) -> None:
        """PostgreSQL: tell the other servers at once (they beat now rather than at their
        next interval), on the channel their generation listeners hear, sent at commit."""
        if self.engine.dialect.name == "postgresql":
            payload = json.dumps({"cluster": event, "server_id": self.server_id})
            conn.execute(sa.select(sa.func.pg_notify(GENERATIONS_CHANNEL, payload)))

    # -- the others -----------------------------------------------------------------------------

    def live_members(self) -> list[Member]:
        """Every live member (this one included once it has joined), dead ones removed."""
        return self.look()[0]

    def look(self) -> tuple[list[Member], dict[str, str | None]]:
        """The live members (dead ones removed) and the channel holders (see
        :meth:`channel_holders`), read in one transaction: what a beat needs, at once."""
        with self.datasource._transaction("look at the cluster") as conn:
            rows = conn.execute(sa.select(server_member)).all()
            now = self._now(conn)
            held = self._held_liveness_keys([row.server_id for row in rows], conn)
            holders = {
                row.name: row.server_id
                for row in conn.execute(sa.select(channel_owner.c.name, channel_owner.c.server_id))
            }
        live, dead = [], []
        judging = time.monotonic() >= self._judge_from
        lagging = self.lagging
        for row in rows:
            age = now - row.heartbeat_at
            # a lost liveness lock is always believed (the process or its session is gone); a
            # late heartbeat only while this server keeps its own beat (see ``lagging``)
            fresh = age <= self.member_timeout or lagging
            if row.server_id == self.server_id or not judging or (fresh and row.server_id in held):
                live.append(_member(row))
            else:
                dead.append(row.server_id)
                get_logger().bind(module="membership").warning(
                    "server taken for dead",
                    member=row.name,
                    member_id=row.server_id,
                    heartbeat_age=round(age, 3),
                    member_timeout=self.member_timeout,
                    liveness_lock_held=row.server_id in held,
                )
        if dead:
            with self.datasource._transaction("remove dead servers", write=True) as conn:
                conn.execute(sa.delete(server_member).where(server_member.c.server_id.in_(dead)))
        return sorted(live, key=lambda member: member.server_id), holders

    def channel_holders(self) -> dict[str, str | None]:
        """{channel: the server id whose channel process holds it, or None}."""
        with self.datasource._transaction("read channel owners") as conn:
            rows = conn.execute(sa.select(channel_owner.c.name, channel_owner.c.server_id)).all()
        return {row.name: row.server_id for row in rows}

    # -- clocks and locks ---------------------------------------------------------------------

    def _clock(self) -> Any:
        """The heartbeat's time as written: the database's clock on PostgreSQL (servers on
        different hosts compare heartbeats against one clock, read where it is written);
        this host's on SQLite (every server is on this host)."""
        if self.engine.dialect.name == "postgresql":
            return sa.literal_column("extract(epoch FROM clock_timestamp())")
        return time.time()

    def _now(self, conn: sa.Connection) -> float:
        """The clock heartbeats are judged by (see :meth:`_clock`)."""
        if self.engine.dialect.name == "postgresql":
            return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar())
        return time.time()

    def _held_liveness_keys(self, server_ids: list[str], conn: sa.Connection) -> set[str]:
        """The server ids among ``server_ids`` whose liveness lock somebody holds."""
        if self.engine.dialect.name == "postgresql":
            rows = conn.execute(
                sa.text(
                    "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
            taken = {(int(row.classid) << 32) | int(row.objid) for row in rows}
            return {
                server_id
                for server_id in server_ids
                if ownership.lock_key(LIVENESS_PREFIX + server_id) & 0xFFFFFFFFFFFFFFFF in taken
            }
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            return {
                server_id
                for server_id in server_ids
                if _file_lock_held(ownership.FileLock(database, LIVENESS_PREFIX + server_id).path)
            }
        return set(server_ids)  # nothing to ask: trust the heartbeats


def _member(row: Any) -> Member:
    return Member(
        server_id=row.server_id,
        name=row.name,
        host=row.host,
        pid=int(row.pid),
        started_at=float(row.started_at),
        heartbeat_at=float(row.heartbeat_at),
        draining=bool(row.draining),
        channels=tuple(json.loads(row.channels)),
    )


def _file_lock_held(path: str) -> bool:
    """Whether some process holds the ``flock`` of ``path`` (a missing file: nobody)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
