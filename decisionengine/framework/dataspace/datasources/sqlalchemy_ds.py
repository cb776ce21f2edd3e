"""The SQL data source: SQLite (embedded default) and PostgreSQL through SQLAlchemy Core.

Selected in a global config as::

    "datasource": {
        "module": "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
        "name": "SQLAlchemyDS",
        "config": {"url": "postgresql://user:password@host/db", "pool_size": 5, ...},
    }

How it keeps its promises:

* **one transaction per generation write**: :meth:`SQLAlchemyDS.write_generation` writes
  the generation row, the new payloads and every product row in one transaction;
* **payloads stored once**: a product row references its payload by the digest of the
  pickled value (:func:`codecs.content_digest`); a payload already stored is neither compressed nor written again, and
  :meth:`duplicate_datablock` copies product rows only (``INSERT ... SELECT``);
* **writers and the Reaper do not trample each other**: the Reaper deletes a payload
  only when no product references it, and on PostgreSQL only when it can lock it without
  waiting (``FOR UPDATE SKIP LOCKED``; a writer's foreign-key check holds a share lock on
  the payload it references).  A writer that decided to reuse a payload the Reaper then
  removed gets a foreign-key violation and retries with a fresh look, so no generation
  is ever lost; on SQLite both take the database write lock (``BEGIN IMMEDIATE``), and
  the Reaper holds it for one short batch at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import numbers
import select
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from decisionengine.framework.dataspace import codecs, migrations, ownership
from decisionengine.framework.dataspace.datablock import (
    Header,
    HeaderRow,
    Metadata,
    MetadataRow,
    taskmanager_name_argument,
)
from decisionengine.framework.dataspace.datasource import (
    ALL_PRODUCTS,
    DataSource,
    Fence,
    LatestGeneration,
    ReapReport,
    TaskManagerRef,
)
from decisionengine.framework.dataspace.datasources import schema, statements
from decisionengine.framework.dataspace.datasources.sql_engine import (
    SINGLE_READ,
    WRITE,
    create_engine,
    is_postgresql,
    is_sqlite,
    mask_url,
    translate_errors,
)
from decisionengine.framework.dataspace.errors import (
    CorruptPayloadError,
    DataSpaceConfigurationError,
    DataSpaceConnectionError,
    DataSpaceError,
    DataSpaceExistsError,
    OwnershipLost,
    UntrustedPayloadError,
)
from decisionengine.framework.dataspace.ownership import ChannelLock
from decisionengine.framework.util.logger import get_logger

tm_t = schema.taskmanager
gen_t = schema.generation
payload_t = schema.payload
dp_t = schema.dataproduct
owner_t = schema.channel_owner
member_t = schema.server_member

_T = TypeVar("_T")

# Keep statements well under SQLite's bound-parameter limit.
IN_CHUNK = 500
# PostgreSQL advisory lock key that serializes schema migrations between processes.
MIGRATION_LOCK_KEY = 0x0DEC_15E0
#: PostgreSQL NOTIFY channel announcing committed generations (see write_generation)
GENERATIONS_CHANNEL = "decisionengine_generations"
#: PostgreSQL: a process holding a channel's ownership row locked (a claim, or a fenced write)
#: that says nothing for this long is taken for hung (a frozen host, SIGSTOP): the database
#: ends its session, so the row is free for the next owner instead of blocked for ever
HUNG_TRANSACTION_MS = 5000
#: products per page when reading a history (``iter_products``): what memory holds of it
HISTORY_PAGE_ROWS = 200
#: and at most this many stored (compressed) payload bytes per page (at least one product)
HISTORY_PAGE_BYTES = 32 << 20
# New payloads up to this many pickled bytes are compressed inside a SQLite write transaction.
INLINE_COMPRESS_BYTES = 4 << 20
# A reaping batch should hold the SQLite write lock for about this long.
REAP_BATCH_TARGET_SECONDS = 0.05


class _CompressFirst(Exception):
    """Leave the write transaction to compress these payloads without holding the lock."""

    def __init__(self, payloads: dict[bytes, bytes]) -> None:
        super().__init__(f"{len(payloads)} payloads to compress first")
        self.payloads = payloads


@dataclass(frozen=True)
class _Prepared:
    """One product ready to be written: pickled, hashed, with its row fields."""

    key: str
    digest: bytes
    raw: bytes
    row: dict[str, Any]
    generation_time: float


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def _sqlite_driver(conn: sa.Connection, sql: str) -> Iterator[Any]:
    """The ``sqlite3`` connection under ``conn`` (in ``conn``'s transaction), for the
    statements of :mod:`statements` rendered for the driver; its errors are raised as
    SQLAlchemy raises them from ``conn.execute`` (``sa.exc.IntegrityError`` and so on,
    parameters left out of the message), so that they are translated and retried alike."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield conn.connection.driver_connection
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, dbapi.Error, hide_parameters=True, dialect=conn.dialect
        ) from exc


def _utc(value: Any) -> datetime.datetime | None:
    """A moment as an aware UTC datetime: a datetime, epoch seconds, or ISO-8601 text
    (``"2021-03-21 11:00:00"``, ``"2021-03-21T11:00:00+01:00"``, ``"...Z"``; the
    reference's scripts pass such strings).  Naive datetimes and text without a zone are UTC."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(float(value), tz=datetime.UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.datetime.fromtimestamp(float(text), tz=datetime.UTC)
        except ValueError:
            pass
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a time: use a datetime, epoch seconds or ISO-8601 text such as '2021-03-21 11:00:00'"
            ) from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)
    raise TypeError(f"expected a datetime, epoch seconds or ISO-8601 text, got {type(value).__name__}")


class SQLAlchemyDS(DataSource):
    """DataSpace storage in SQLite or PostgreSQL."""

    #: the configured database URL, password masked: what messages and logs show
    url: str
    #: a page of a product history (``iter_products``, ``iter_dataproducts``,
    #: ``get_dataproducts``): at most this many products ...
    history_page_rows: int = HISTORY_PAGE_ROWS
    #: ... and this many stored payload bytes (always at least one product)
    history_page_bytes: int = HISTORY_PAGE_BYTES

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.logger = get_logger().bind(module="sqlalchemy_ds", component="dataspace")
        codec_name = config.get("codec", codecs.DEFAULT_CODEC) if isinstance(config, Mapping) else None
        try:
            self.codec = codecs.get(codec_name)
        except ValueError as exc:
            raise DataSpaceConfigurationError(f"dataspace datasource 'codec': {exc}") from exc
        #: whether opening may create or upgrade the schema (not for read-only readers)
        settings = config if isinstance(config, Mapping) else {}
        self.creates = bool(settings.get("create", True)) and not bool(settings.get("read_only", False))
        self.engine = create_engine(config)
        self.url = mask_url(config["url"])
        if not (is_sqlite(self.engine) or is_postgresql(self.engine)):
            raise DataSpaceConfigurationError(
                f"dataspace datasource 'url' {self.url!r}: "
                f"unsupported database {self.engine.dialect.name!r} (use sqlite or postgresql)"
            )
        self._insert = pg_dialect.insert if is_postgresql(self.engine) else sqlite_dialect.insert
        self._taskmanagers: dict[int, tuple[str, str]] = {}
        #: the schema is known to be at the newest migration (created, upgraded or checked)
        self.schema_ready = False
        self.connect()
        # As the reference: a data source built on its own is ready to use.  Read-only
        # readers (``read_only``, or ``create: false``) only check the schema.
        self.create_tables()

    def __repr__(self) -> str:
        return f"SQLAlchemyDS({self.url})"

    # -- connections and schema ------------------------------------------------------------

    def connect(self) -> None:
        """Check that the database answers (the pool itself connects lazily)."""
        with translate_errors(self.engine, "connect", self.url), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def reset_connections(self) -> None:
        self.engine.dispose()

    def close(self) -> None:
        self.engine.dispose()

    def create_tables(self) -> None:
        """Create or upgrade the schema to the newest migration.

        Several processes may start at once: PostgreSQL serializes them with an advisory
        lock, SQLite with its write lock; the second finds the schema already current.
        """
        if not self.creates:
            self._check_schema()
            self.schema_ready = True
            return
        with self._transaction("migrate schema", write=True) as conn:
            if is_postgresql(self.engine):
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            current = migrations.current_revision(conn)
            if current != migrations.head_revision():
                self.logger.info("upgrading dataspace schema", url=self.url, current=current)
                migrations.upgrade(conn)
        self.schema_ready = True

    def _check_schema(self) -> None:
        """For readers that must not change the database: its schema must be current."""
        current = self.schema_revision()
        if current is None:
            raise DataSpaceError(f"{self.url} holds no DataSpace (no schema revision): check the database name")
        if current != migrations.head_revision():
            raise DataSpaceError(
                f"the DataSpace schema of {self.url} is at revision {current}, this version needs "
                f"{migrations.head_revision()}: start de-server (or open it read-write) once to upgrade it"
            )

    def schema_revision(self) -> str | None:
        with self._transaction("read schema revision") as conn:
            return migrations.current_revision(conn)

    def get_schema(self, table: str | None = None) -> dict[str, list[str]]:
        """Columns of each table ({table: [column, ...]}); ``header`` and ``metadata``
        name the columns of ``dataproduct`` that hold those records."""
        tables: dict[str, list[str]] = {t.name: [c.name for c in t.columns] for t in schema.metadata.sorted_tables}
        tables[self.header_table] = ["taskmanager_id", "generation_id", "key", *schema.HEADER_COLUMNS]
        tables[self.metadata_table] = ["taskmanager_id", "generation_id", "key", *schema.METADATA_COLUMNS]
        if table is None:
            return tables
        if table not in tables:
            raise KeyError(f"no table {table!r}; tables are {', '.join(sorted(tables))}")
        return {table: tables[table]}

    @contextlib.contextmanager
    def _transaction(
        self, action: str, write: bool = False, snapshot: bool = False, passthrough: tuple[type[Exception], ...] = ()
    ) -> Iterator[sa.Connection]:
        """A connection in a transaction, with errors translated to DataSpace errors.

        ``write``: the transaction will write (SQLite: take the write lock up front).
        ``snapshot``: several reads that must see one state (PostgreSQL: REPEATABLE READ).
        Otherwise a read is one statement, which is its own snapshot: PostgreSQL runs it in
        autocommit and SQLite without BEGIN/COMMIT, so it costs one round trip.

        On PostgreSQL the driver's session flags are set directly rather than through
        SQLAlchemy's ``isolation_level`` option, which sends a ``SET
        default_transaction_isolation`` when the connection leaves the pool and another
        when it goes back: two round trips on every read.
        """
        with translate_errors(self.engine, action, self.url, passthrough), self.engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            elif is_sqlite(self.engine):
                if not snapshot:
                    conn.execution_options(**{SINGLE_READ: True})
            else:
                with self._pg_session(conn, snapshot), conn.begin():
                    yield conn
                return
            with conn.begin():
                yield conn

    @staticmethod
    @contextlib.contextmanager
    def _pg_session(conn: sa.Connection, snapshot: bool) -> Iterator[None]:
        """psycopg2 flags for a read: autocommit (one statement) or a repeatable-read
        snapshot (sent with the transaction's BEGIN), restored before the connection goes back."""
        dbapi = conn.connection.dbapi_connection
        if snapshot:
            dbapi.isolation_level = "REPEATABLE READ"
        else:
            dbapi.autocommit = True
        try:
            yield
        finally:
            if not dbapi.closed:
                with contextlib.suppress(Exception):
                    if snapshot:
                        dbapi.isolation_level = None
                    else:
                        dbapi.autocommit = False

    def _read(self, action: str, work: Callable[[sa.Connection], _T], snapshot: bool = False) -> _T:
        """``work(conn)`` in a read transaction, tried a second time if the database
        dropped the pooled connection it ran on (pooled connections used recently are
        not pinged: see ``sql_engine``); not when no connection could be made."""
        for attempt in (1, 2):
            connected = False
            try:
                with self._transaction(action, snapshot=snapshot) as conn:
                    connected = True
                    return work(conn)
            except DataSpaceConnectionError:
                if attempt == 2 or not connected:
                    raise
                self.logger.info("dataspace connection dropped: reading again on a new one", action=action)
        raise AssertionError("unreachable")

    # -- task manager registry -------------------------------------------------------------

    @staticmethod
    def _tm_dict(row: Any) -> dict[str, Any]:
        return {
            "sequence_id": row.sequence_id,
            "name": row.name,
            "taskmanager_id": row.taskmanager_id,
            "datestamp": _utc(row.datestamp),
        }

    def _db_time(self, value: Any) -> datetime.datetime | None:
        moment = _utc(value)
        if moment is not None and is_sqlite(self.engine):
            return moment.replace(tzinfo=None)  # SQLite stores naive text: keep it UTC
        return moment

    def store_taskmanager(
        self,
        taskmanager_name: str | None = None,
        taskmanager_id: str | None = None,
        datestamp: Any = None,
        *,
        name: str | None = None,
    ) -> int:
        """Register a task manager; returns its sequence number.

        The name comes as ``taskmanager_name`` or ``name`` (the reference uses both);
        ``datestamp`` is a datetime, epoch seconds or ISO-8601 text (default: now).
        Registering the same id under the same name again returns the existing sequence
        number; the same id under another name is a :class:`DataSpaceExistsError`.
        """
        taskmanager_name = taskmanager_name_argument(taskmanager_name, name, "taskmanager_name", "name")
        if taskmanager_id is None:
            raise TypeError("store_taskmanager() needs the task manager's id (taskmanager_id)")
        taskmanager_id = str(taskmanager_id)
        stamp = self._db_time(datestamp if datestamp is not None else time.time())
        with self._transaction("register task manager", write=True) as conn:
            row = conn.execute(sa.select(tm_t).where(tm_t.c.taskmanager_id == taskmanager_id)).first()
            if row is None:
                return conn.execute(
                    sa.insert(tm_t)
                    .values(name=taskmanager_name, taskmanager_id=taskmanager_id, datestamp=stamp)
                    .returning(tm_t.c.sequence_id)
                ).scalar_one()
        if row.name != taskmanager_name:
            raise DataSpaceExistsError(
                f"task manager id {taskmanager_id} is already registered as {row.name!r}, not {taskmanager_name!r}"
            )
        return row.sequence_id

    def get_taskmanager(self, taskmanager_name: str, taskmanager_id: str | None = None) -> dict[str, Any]:
        query = sa.select(tm_t).where(tm_t.c.name == taskmanager_name)
        if taskmanager_id is not None:
            query = query.where(tm_t.c.taskmanager_id == str(taskmanager_id))
        with self._transaction("read task manager") as conn:
            row = conn.execute(query.order_by(tm_t.c.sequence_id.desc()).limit(1)).first()
        if row is None:
            which = f" with id {taskmanager_id}" if taskmanager_id is not None else ""
            raise KeyError(f"no task manager named {taskmanager_name!r}{which} in the dataspace")
        return self._tm_dict(row)

    def get_taskmanagers(
        self, taskmanager_name: str | None = None, start_time: Any = None, end_time: Any = None
    ) -> list[dict[str, Any]]:
        query = sa.select(tm_t)
        if taskmanager_name is not None:
            query = query.where(tm_t.c.name == taskmanager_name)
        if start_time is not None:
            query = query.where(tm_t.c.datestamp >= self._db_time(start_time))
        if end_time is not None:
            query = query.where(tm_t.c.datestamp <= self._db_time(end_time))
        with self._transaction("read task managers") as conn:
            return [self._tm_dict(row) for row in conn.execute(query.order_by(tm_t.c.sequence_id))]

    def _seq(self, conn: sa.Connection, ref: TaskManagerRef) -> int:
        """The registry sequence number of a task manager given by number or id string."""
        if isinstance(ref, numbers.Integral) and not isinstance(ref, bool):
            seq = int(ref)
            if seq not in self._taskmanagers:
                row = conn.execute(sa.select(tm_t).where(tm_t.c.sequence_id == seq)).first()
                if row is None:
                    raise KeyError(f"no task manager with sequence number {seq} in the dataspace")
                self._taskmanagers[seq] = (row.name, row.taskmanager_id)
            return seq
        if isinstance(ref, str):
            row = conn.execute(
                sa.select(tm_t).where(tm_t.c.taskmanager_id == ref).order_by(tm_t.c.sequence_id.desc()).limit(1)
            ).first()
            if row is None:
                raise KeyError(f"no task manager with id {ref!r} in the dataspace")
            self._taskmanagers[row.sequence_id] = (row.name, row.taskmanager_id)
            return row.sequence_id
        raise TypeError(f"a task manager is named by sequence number or id string, not {type(ref).__name__}")

    def _label(self, seq: int) -> str:
        name, tm_id = self._taskmanagers.get(seq, ("?", "?"))
        return f"task manager {name!r} ({tm_id})"

    def get_last_generation_id(self, taskmanager_name: str, taskmanager_id: str | None = None) -> int:
        """The newest generation of the task manager (0 if it has none yet).

        Unknown task managers raise :class:`KeyError`.  One statement: the newest
        registration of the name (and id) and its newest generation.
        """
        newest = sa.select(sa.func.max(gen_t.c.generation_id)).where(gen_t.c.taskmanager_seq == tm_t.c.sequence_id)
        query = sa.select(tm_t.c.sequence_id, newest.scalar_subquery()).where(tm_t.c.name == taskmanager_name)
        if taskmanager_id is not None:
            query = query.where(tm_t.c.taskmanager_id == str(taskmanager_id))
        with self._transaction("read last generation") as conn:
            row = conn.execute(query.order_by(tm_t.c.sequence_id.desc()).limit(1)).first()
        if row is None:
            which = f" with id {taskmanager_id}" if taskmanager_id is not None else ""
            raise KeyError(f"no task manager named {taskmanager_name!r}{which} in the dataspace")
        return int(row[1] or 0)

    @staticmethod
    def _last_generation(conn: sa.Connection, seq: int) -> int:
        last = conn.execute(sa.select(sa.func.max(gen_t.c.generation_id)).where(gen_t.c.taskmanager_seq == seq))
        return int(last.scalar() or 0)

    def last_generation(self, taskmanager_id: TaskManagerRef) -> int:
        """The newest generation of a task manager given by sequence number or id (0 if none)."""
        with self._transaction("read last generation") as conn:
            return self._last_generation(conn, self._seq(conn, taskmanager_id))

    def claim_channel(self, name: str, owner: str, server_id: str | None = None) -> int | None:
        """A new epoch for channel ``name``, owned by ``owner`` (see :meth:`DataSpace.claim_channel`).

        ``server_id``: claimed for that server, and only if no other *live* server (one in
        ``server_member``) holds the channel; None (nothing written) when one does.
        """
        with self._transaction("claim channel", write=True) as conn:
            query = sa.select(owner_t.c.epoch, owner_t.c.server_id, *_hung_guard(self.engine))
            row = conn.execute(query.where(owner_t.c.name == name).with_for_update()).first()
            if server_id is not None and row is not None and row.server_id not in (None, server_id):
                holder_alive = conn.execute(
                    sa.select(sa.func.count()).select_from(member_t).where(member_t.c.server_id == row.server_id)
                ).scalar()
                if holder_alive:
                    return None
            epoch = (row.epoch if row is not None else 0) + 1
            values = {"epoch": epoch, "owner": owner, "claimed_at": time.time(), "server_id": server_id}
            if row is None:
                conn.execute(sa.insert(owner_t).values(name=name, **values))
            else:
                conn.execute(sa.update(owner_t).where(owner_t.c.name == name).values(**values))
        self.logger.info("claimed channel", channel=name, epoch=epoch, owner=owner, server_id=server_id)
        return epoch

    def release_channel(self, name: str, epoch: int) -> bool:
        """Let channel ``name`` go (its server id cleared) if ``epoch`` is still the channel's:
        another server may claim it at once rather than wait for this one to leave.  True if
        released; False when another owner has claimed it since (nothing to release)."""
        with self._transaction("release channel", write=True) as conn:
            result = conn.execute(
                sa.update(owner_t).where(owner_t.c.name == name, owner_t.c.epoch == epoch).values(server_id=None)
            )
        return bool(result.rowcount)

    def release_server_claim(self, name: str, server_id: str) -> bool:
        """Let channel ``name`` go if server ``server_id`` still holds it, whatever the epoch.

        For the server, once the channel's process has ended: the process lets the channel
        go itself (:meth:`release_channel`), but one that could not (no connection slot
        came free, the database away for a moment) left the channel held by a live server,
        which no other server claims.  With the process gone there is no writer to fence."""
        with self._transaction("release channel", write=True) as conn:
            result = conn.execute(
                sa.update(owner_t)
                .where(owner_t.c.name == name, owner_t.c.server_id == server_id)
                .values(server_id=None)
            )
        return bool(result.rowcount)

    def _check_fence(self, conn: sa.Connection, fence: Fence) -> None:
        row: tuple[int, str] | None
        if is_sqlite(self.engine):
            statement = statements.sqlite_channel_epoch()
            with _sqlite_driver(conn, statement.sql) as driver:
                row = driver.execute(statement.sql, statement.parameters({"channel": fence.channel})).fetchone()
        else:
            query = sa.select(owner_t.c.epoch, owner_t.c.owner, *_hung_guard(self.engine))
            query = query.where(owner_t.c.name == fence.channel)
            found = conn.execute(query.with_for_update(read=True)).first()
            row = None if found is None else (found.epoch, found.owner)
        if row is None or row[0] != fence.epoch:
            holder = f"{row[1]} (epoch {row[0]})" if row is not None else "nobody"
            raise OwnershipLost(
                f"channel {fence.channel!r} is now owned by {holder}; this process's claim (epoch "
                f"{fence.epoch}) is stale, so it may not write the channel's generations"
            )

    def channel_lock(self, name: str) -> ChannelLock:
        """An advisory lock (PostgreSQL) or a lock file (SQLite) owning channel ``name``."""
        return ownership.channel_lock(self.engine, name)

    def clear_stale_channel_locks(self) -> list[str]:
        """The lock files next to the SQLite database that no live process holds, removed."""
        return ownership.clear_stale_locks(self.engine)

    # -- writing -------------------------------------------------------------------------------

    def _prepare(self, products: Mapping[str, tuple[Any, Any, Any]]) -> list[_Prepared]:
        """Pickle and hash every product before any database work, so a product that
        cannot be stored fails the whole write before anything is written."""
        prepared = []
        for key, (value, header, metadata) in products.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"product keys must be non-empty strings, got {key!r}")
            try:
                raw = codecs.pickle_bytes(value)
            except Exception as exc:
                raise DataSpaceError(f"product {key!r} cannot be stored: it does not pickle ({exc})") from exc
            row = self._record_fields(key, header, metadata)
            prepared.append(_Prepared(key, codecs.content_digest(raw), raw, row, row["generation_time"]))
        return prepared

    @staticmethod
    def _record_fields(key: str, header: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for source, name, columns in (
            (header, "header", schema.HEADER_COLUMNS),
            (metadata, "metadata", schema.METADATA_COLUMNS),
        ):
            if not isinstance(source, Mapping):
                raise TypeError(f"{name} of product {key!r} must be a mapping, not {type(source).__name__}")
            for column in columns:
                value = source.get(column)
                if value is None and column != "schema_id":
                    raise ValueError(f"{name} of product {key!r} has no {column!r}")
                row[column] = value
        if row["state"] not in Metadata.valid_states:
            raise ValueError(f"metadata of product {key!r} has invalid state {row['state']!r}")
        return row

    @staticmethod
    def _existing_payloads(conn: sa.Connection, digests: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        chunks = _chunks(sorted(set(digests)))
        if conn.dialect.name == "sqlite":
            for chunk in chunks:
                statement = statements.sqlite_stored_payloads(len(chunk))
                hashes = statement.parameters({f"h{i}": digest for i, digest in enumerate(chunk)})
                with _sqlite_driver(conn, statement.sql) as driver:
                    found.update(bytes(h) for (h,) in driver.execute(statement.sql, hashes))
            return found
        for chunk in chunks:
            found.update(bytes(h) for (h,) in conn.execute(statements.stored_payloads(), {"hashes": list(chunk)}))
        return found

    def write_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        products: Mapping[str, tuple[Any, Any, Any]],
        mode: str = "upsert",
        announce: Mapping[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Write several products of one generation in one transaction.

        ``mode`` is ``upsert`` (insert or replace), ``insert`` (each key must be new:
        :class:`DataSpaceExistsError` otherwise) or ``update`` (each key must exist:
        :class:`KeyError` otherwise).  On any error nothing is written.

        ``announce``: on PostgreSQL, sent as a ``NOTIFY`` on :data:`GENERATIONS_CHANNEL`
        (JSON) from inside the transaction, so listeners hear of the generation exactly
        when it commits, and never of one that rolled back.

        ``fence``: the write commits only if the fence's epoch is still the channel's,
        read in this transaction (PostgreSQL: ``FOR SHARE``, so a new owner's claim waits
        for this commit and every write after the claim sees the new epoch; SQLite: the
        write lock serializes them).  Otherwise :class:`OwnershipLost` and nothing is written.
        """
        if not products:
            return
        prepared = self._prepare(products)
        digests = [p.digest for p in prepared]
        compressed: dict[bytes, bytes] = {}
        for attempt in range(4):
            try:
                with self._transaction("write generation", write=True, passthrough=(sa.exc.IntegrityError,)) as conn:
                    known = self._existing_payloads(conn, digests)
                    missing = {p.digest: p.raw for p in prepared if p.digest not in known | compressed.keys()}
                    if self._compress_outside(missing):
                        raise _CompressFirst(missing)
                    compressed.update((digest, self.codec.encode(raw)) for digest, raw in missing.items())
                    if fence is not None:
                        self._check_fence(conn, fence)
                    self._write_locked(conn, taskmanager_id, int(generation_id), prepared, known, compressed, mode)
                    if announce is not None and is_postgresql(self.engine):
                        payload = json.dumps(dict(announce), default=str)
                        conn.execute(sa.select(sa.func.pg_notify(GENERATIONS_CHANNEL, payload)))
                return
            except _CompressFirst as pending:
                compressed.update((digest, self.codec.encode(raw)) for digest, raw in pending.payloads.items())
            except sa.exc.IntegrityError as exc:
                # A payload seen as stored was reaped before this write referenced it: look again.
                if attempt < 3 and self._is_reaped_payload(exc):
                    continue
                raise DataSpaceError(f"writing generation {generation_id} failed on {self.url}: {exc.orig}") from exc

    def _compress_outside(self, payloads: Mapping[bytes, bytes]) -> bool:
        """Whether to compress new payloads before taking the write lock (and look again).

        SQLite has one write lock for the whole database: big payloads are compressed
        without holding it.  Small ones are compressed in the transaction, which saves a
        round of locking; PostgreSQL locks rows, not the database, so it always does that.
        """
        return is_sqlite(self.engine) and sum(len(raw) for raw in payloads.values()) > INLINE_COMPRESS_BYTES

    def _is_reaped_payload(self, exc: sa.exc.IntegrityError) -> bool:
        if is_postgresql(self.engine):
            diag = getattr(exc.orig, "diag", None)
            return getattr(diag, "constraint_name", None) == "fk_dataproduct_payload"
        # The only foreign key a product row can break here is its payload's.
        return "FOREIGN KEY constraint failed" in str(exc.orig)

    def _write_locked(
        self,
        conn: sa.Connection,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        prepared: list[_Prepared],
        known: set[bytes],
        compressed: dict[bytes, bytes],
        mode: str,
    ) -> None:
        seq = self._seq(conn, taskmanager_id)
        keys = [p.key for p in prepared]
        if mode != "upsert":
            present = {
                k
                for (k,) in conn.execute(
                    sa.select(dp_t.c.key).where(
                        dp_t.c.taskmanager_seq == seq,
                        dp_t.c.generation_id == generation_id,
                        dp_t.c.key.in_(keys),
                    )
                )
            }
            if mode == "insert" and present:
                raise DataSpaceExistsError(
                    f"{self._label(seq)} already has {sorted(present)} in generation {generation_id}"
                )
            if mode == "update" and len(present) != len(set(keys)):
                missing = sorted(set(keys) - present)
                raise KeyError(f"{self._label(seq)} has no {missing} in generation {generation_id} to update")

        generation_time = min(p.generation_time for p in prepared)
        new_payloads: dict[bytes, dict[str, Any]] = {}
        for p in prepared:
            if p.digest in known or p.digest in new_payloads:
                continue
            data = compressed[p.digest]
            new_payloads[p.digest] = {"hash": p.digest, "size": len(data), "raw_size": len(p.raw), "data": data}
        if is_postgresql(self.engine):
            self._write_postgresql(conn, seq, generation_id, generation_time, prepared, list(new_payloads.values()))
            return
        self._write_sqlite(conn, seq, generation_id, generation_time, prepared, list(new_payloads.values()))

    @staticmethod
    def _write_sqlite(
        conn: sa.Connection,
        seq: int,
        generation_id: int,
        generation_time: float,
        prepared: list[_Prepared],
        payloads: list[dict[str, Any]],
    ) -> None:
        """The generation row, new payloads and product rows: three statements rendered
        once, executed by the driver (one ``executemany`` per table)."""
        generation = statements.sqlite_write("generation")
        with _sqlite_driver(conn, generation.sql) as driver:
            driver.execute(
                generation.sql,
                generation.parameters(
                    {"taskmanager_seq": seq, "generation_id": generation_id, "generation_time": generation_time}
                ),
            )
        if payloads:
            insert = statements.sqlite_write("payload")
            with _sqlite_driver(conn, insert.sql) as driver:
                driver.executemany(insert.sql, [insert.parameters(p) for p in payloads])
        upsert = statements.sqlite_write("dataproduct")
        same = {"taskmanager_seq": seq, "generation_id": generation_id}
        rows = [upsert.parameters({**same, "key": p.key, "payload_hash": p.digest, **p.row}) for p in prepared]
        with _sqlite_driver(conn, upsert.sql) as driver:
            driver.executemany(upsert.sql, rows)

    @staticmethod
    def _write_postgresql(
        conn: sa.Connection,
        seq: int,
        generation_id: int,
        generation_time: float,
        prepared: list[_Prepared],
        payloads: list[dict[str, Any]],
    ) -> None:
        """The generation row, new payloads and product rows in one statement (one round trip)."""
        params: dict[str, Any] = {
            "seq": seq,
            "generation": generation_id,
            "generation_time": generation_time,
            "hashes": [p["hash"] for p in payloads],
            "sizes": [p["size"] for p in payloads],
            "raw_sizes": [p["raw_size"] for p in payloads],
            "datas": [p["data"] for p in payloads],
            "keys": [p.key for p in prepared],
            "payload_hashs": [p.digest for p in prepared],
        }
        for column in (*schema.HEADER_COLUMNS, *schema.METADATA_COLUMNS):
            params[f"{column}s"] = [p.row[column] for p in prepared]
        conn.execute(statements.write_generation_postgresql(), params)

    def write_generations(
        self,
        taskmanager_id: TaskManagerRef,
        generations: Sequence[tuple[int, Mapping[str, tuple[Any, Any, Any]]]],
    ) -> None:
        """Write the products of several generations of one task manager in one transaction
        (insert or replace); on any error nothing is written.

        For bulk copies: one commit per call instead of one per generation, one look for
        stored payloads, and a value object passed for several products (a decoded value
        the source repeated) pickled once.  New payloads are compressed before the write
        transaction begins, so SQLite's write lock is held for the inserts only.  No fence
        and no announcement: this is not how a channel writes its generations.
        """
        pickled: dict[int, bytes] = {}
        prepared: list[tuple[int, list[_Prepared]]] = []
        for generation_id, products in generations:
            batch = []
            for key, (value, header, metadata) in products.items():
                if not isinstance(key, str) or not key:
                    raise ValueError(f"product keys must be non-empty strings, got {key!r}")
                raw = pickled.get(id(value))
                if raw is None:
                    try:
                        raw = pickled[id(value)] = codecs.pickle_bytes(value)
                    except Exception as exc:
                        raise DataSpaceError(f"product {key!r} cannot be stored: it does not pickle ({exc})") from exc
                row = self._record_fields(key, header, metadata)
                batch.append(_Prepared(key, codecs.content_digest(raw), raw, row, row["generation_time"]))
            if batch:
                prepared.append((int(generation_id), batch))
        if not prepared:
            return
        raws = {p.digest: p.raw for _g, batch in prepared for p in batch}
        with self._transaction("look for stored payloads") as conn:
            known = self._existing_payloads(conn, list(raws))
        compressed = {digest: self.codec.encode(raw) for digest, raw in raws.items() if digest not in known}
        for attempt in range(4):
            try:
                with self._transaction("write generations", write=True, passthrough=(sa.exc.IntegrityError,)) as conn:
                    self._write_many_locked(conn, taskmanager_id, prepared, compressed)
                return
            except sa.exc.IntegrityError as exc:
                # A payload seen as stored was reaped in between: store every payload this time.
                if attempt < 3 and self._is_reaped_payload(exc):
                    compressed.update((d, self.codec.encode(raw)) for d, raw in raws.items() if d not in compressed)
                    continue
                raise DataSpaceError(f"writing generations failed on {self.url}: {exc.orig}") from exc

    def _write_many_locked(
        self,
        conn: sa.Connection,
        taskmanager_id: TaskManagerRef,
        generations: list[tuple[int, list[_Prepared]]],
        compressed: Mapping[bytes, bytes],
    ) -> None:
        seq = self._seq(conn, taskmanager_id)
        conn.execute(
            self._insert(gen_t).on_conflict_do_nothing(),
            [
                {
                    "taskmanager_seq": seq,
                    "generation_id": generation_id,
                    "generation_time": min(p.generation_time for p in batch),
                }
                for generation_id, batch in generations
            ],
        )
        payloads = {}
        raw_sizes = {p.digest: len(p.raw) for _g, batch in generations for p in batch}
        for digest, data in compressed.items():
            payloads[digest] = {"hash": digest, "size": len(data), "raw_size": raw_sizes[digest], "data": data}
        if payloads:
            conn.execute(self._insert(payload_t).on_conflict_do_nothing(), list(payloads.values()))
        rows = [
            {"taskmanager_seq": seq, "generation_id": generation_id, "key": p.key, "payload_hash": p.digest, **p.row}
            for generation_id, batch in generations
            for p in batch
        ]
        upsert = self._insert(dp_t)
        upsert = upsert.on_conflict_do_update(
            index_elements=[dp_t.c.taskmanager_seq, dp_t.c.generation_id, dp_t.c.key],
            set_={
                name: upsert.excluded[name]
                for name in ("payload_hash", *schema.HEADER_COLUMNS, *schema.METADATA_COLUMNS)
            },
        )
        for chunk in _chunks(rows, IN_CHUNK):
            conn.execute(upsert, list(chunk))

    def insert(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        self.write_generation(taskmanager_id, generation_id, {key: (value, header, metadata)}, mode="insert")

    def update(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        self.write_generation(taskmanager_id, generation_id, {key: (value, header, metadata)}, mode="update")

    def duplicate_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int, new_generation_id: int) -> None:
        """Copy every product row of a generation into a new generation (no payload bytes)."""
        columns = [c.name for c in dp_t.columns]
        with self._transaction("duplicate generation", write=True) as conn:
            seq = self._seq(conn, taskmanager_id)
            source = sa.select(gen_t.c.generation_id).where(
                gen_t.c.taskmanager_seq == seq, gen_t.c.generation_id.in_([generation_id, new_generation_id])
            )
            present = {g for (g,) in conn.execute(source)}
            if generation_id not in present:
                raise KeyError(f"{self._label(seq)} has no generation {generation_id} to duplicate")
            if new_generation_id in present:
                raise DataSpaceExistsError(f"{self._label(seq)} already has a generation {new_generation_id}")
            conn.execute(
                sa.insert(gen_t).values(
                    taskmanager_seq=seq, generation_id=new_generation_id, generation_time=time.time()
                )
            )
            copy = sa.select(
                *[
                    sa.literal(new_generation_id, sa.BigInteger()) if c == "generation_id" else dp_t.c[c]
                    for c in columns
                ]
            ).where(dp_t.c.taskmanager_seq == seq, dp_t.c.generation_id == generation_id)
            conn.execute(sa.insert(dp_t).from_select(columns, copy))

    def mark_expired(
        self, taskmanager_id: TaskManagerRef, generation_id: int, key: str | None, expiry_time: float
    ) -> None:
        """Set the expiration time of one product, or of every product of the generation."""
        with self._transaction("mark expired", write=True) as conn:
            seq = self._seq(conn, taskmanager_id)
            where = [dp_t.c.taskmanager_seq == seq, dp_t.c.generation_id == generation_id]
            if key is not None:
                where.append(dp_t.c.key == key)
            result = conn.execute(sa.update(dp_t).where(*where).values(expiration_time=float(expiry_time)))
            if result.rowcount == 0:
                what = f"product {key!r}" if key is not None else "products"
                raise KeyError(f"{self._label(seq)} has no {what} in generation {generation_id}")

    # -- reading -------------------------------------------------------------------------------

    def _decode(self, seq: int, generation_id: int, key: str, data: bytes) -> Any:
        try:
            return codecs.decode(data, self.payload_policy)
        except UntrustedPayloadError as exc:
            # not damaged: refused (nothing of it ran); the operator needs to know which product
            name, tm_id = self._taskmanagers.get(seq, ("?", "?"))
            where = f"product {key!r} of generation {generation_id} of channel {name!r} (task manager {tm_id})"
            raise UntrustedPayloadError(exc.refused, where) from None
        except Exception as exc:
            raise CorruptPayloadError(
                f"product {key!r} of generation {generation_id} of {self._label(seq)} "
                f"cannot be decoded: {type(exc).__name__}: {exc}"
            ) from exc

    def _missing(self, seq: int, generation_id: int, key: str) -> KeyError:
        return KeyError(f"{self._label(seq)} has no product {key!r} in generation {generation_id}")

    def _product_row(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str, part: str) -> tuple:
        """One product's ``data``, ``header`` or ``metadata`` columns (one statement)."""

        def read(conn: sa.Connection) -> tuple[int, Any]:
            seq = self._seq(conn, taskmanager_id)
            params = {"seq": seq, "generation": int(generation_id), "key": key}
            return seq, conn.execute(statements.product(part), params).first()

        seq, row = self._read("read product", read)
        if row is None:
            raise self._missing(seq, generation_id, key)
        return (seq, *row)

    def get_dataproduct(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        seq, data = self._product_row(taskmanager_id, generation_id, key, "data")
        return self._decode(seq, generation_id, key, data)

    def get_header(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> HeaderRow:
        """The reference's header row: (task manager UUID, sequence id, generation id, key,
        create_time, expiration_time, scheduled_create_time, creator, schema_id)."""
        seq, *values = self._product_row(taskmanager_id, generation_id, key, "header")
        return HeaderRow(self._taskmanagers[seq][1], seq, generation_id, key, *values)

    def get_metadata(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> MetadataRow:
        """The reference's metadata row: (task manager UUID, sequence id, generation id, key,
        state, generation_time, missed_update_count)."""
        seq, *values = self._product_row(taskmanager_id, generation_id, key, "metadata")
        return MetadataRow(self._taskmanagers[seq][1], seq, generation_id, key, *values)

    def get_keys(self, taskmanager_id: TaskManagerRef, generation_id: int) -> list[str]:
        def read(conn: sa.Connection) -> list[str]:
            seq = self._seq(conn, taskmanager_id)
            query = (
                sa.select(dp_t.c.key)
                .where(dp_t.c.taskmanager_seq == seq, dp_t.c.generation_id == generation_id)
                .order_by(dp_t.c.key)
            )
            return list(conn.execute(query).scalars())

        return self._read("read keys", read)

    def read_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        keys: Collection[str] | None = ALL_PRODUCTS,
        headers: bool = False,
    ) -> dict[str, Any]:
        """The products of one generation, all of them or the ``keys`` given (keys it does
        not hold are left out), in one statement: {key: value}, or with ``headers``
        {key: (value, Header)}.  KeyError for an unknown task manager."""
        if isinstance(taskmanager_id, bool) or not isinstance(taskmanager_id, numbers.Integral | str):
            raise TypeError(
                f"a task manager is named by sequence number or id string, not {type(taskmanager_id).__name__}"
            )
        by_id = isinstance(taskmanager_id, str)
        params: dict[str, Any] = {
            "tm": taskmanager_id if by_id else int(taskmanager_id),
            "generation": int(generation_id),
        }
        if keys is not ALL_PRODUCTS:
            params["keys"] = list(keys)
            if not params["keys"]:
                self._read("read task manager", lambda conn: self._seq(conn, taskmanager_id))
                return {}
        query = statements.generation(by_id, keys is not ALL_PRODUCTS)

        def read(conn: sa.Connection) -> list[Any]:
            rows = conn.execute(query, params).all()
            if not rows:
                self._seq(conn, taskmanager_id)  # KeyError for an unknown task manager
            return rows

        rows = self._read("read generation", read)
        if rows:
            self._taskmanagers[rows[0].sequence_id] = (rows[0].name, rows[0].taskmanager_id)
        return {row.key: self._product_of(row, generation_id, headers) for row in rows}

    def _product_of(self, row: Any, generation_id: int, headers: bool) -> Any:
        value = self._decode(row.sequence_id, generation_id, row.key, row.data)
        if not headers:
            return value
        return value, Header(row.taskmanager_id, **{c: getattr(row, c) for c in schema.HEADER_COLUMNS})

    def get_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int) -> dict[str, Any]:
        """Every product of one generation, {key: value} (one statement)."""
        return self.read_generation(taskmanager_id, generation_id)

    def get_latest_generation(
        self, taskmanager_name: str, keys: Collection[str] | None = ALL_PRODUCTS
    ) -> LatestGeneration | None:
        """The newest generation of a channel with its products and their headers, in one
        statement (so one snapshot, and one round trip): the newest registration of the
        name, its newest generation, and that generation's products (left-joined, so a
        generation is found also when none of ``keys`` is in it)."""
        params: dict[str, Any] = {"name": taskmanager_name}
        if keys is ALL_PRODUCTS:
            query = statements.latest("all")
        elif keys:
            query, params["keys"] = statements.latest("subset"), list(keys)
        else:
            query = statements.latest("none")
        rows = self._read("read latest generation", lambda conn: conn.execute(query, params).all())
        if not rows:
            return None
        first = rows[0]
        seq, generation_id = first.sequence_id, first.generation_id
        self._taskmanagers[seq] = (taskmanager_name, first.taskmanager_id)
        products: dict[str, Any] = {}
        headers: dict[str, Header] = {}
        for row in rows:
            if getattr(row, "key", None) is None:
                continue  # the generation row alone: none of the keys asked for is in it
            products[row.key] = self._decode(seq, generation_id, row.key, row.data)
            headers[row.key] = Header(first.taskmanager_id, **{c: getattr(row, c) for c in schema.HEADER_COLUMNS})
        return LatestGeneration(
            channel=taskmanager_name,
            taskmanager_id=first.taskmanager_id,
            sequence_id=seq,
            generation_id=generation_id,
            generation_time=first.generation_time,
            products=products,
            headers=headers,
        )

    def get_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> list[dict[str, Any]]:
        """Every product (of one key, if given) of every generation of a task manager, as the
        reference's rows: ``taskmanager_id`` (the *sequence id*, as in the reference), ``generation_id``,
        ``key``, ``value``; also ``taskmanager_uuid``, ``sequence_id``, ``generation_time``
        and ``header``.  Oldest generation first and, within one, in the order the products
        were created (header ``create_time``, then key).  ``[]`` for an unknown task manager.

        The list is the answer the reference's API gives; it is filled from
        :meth:`iter_dataproducts`, which reads one page at a time.
        """
        try:
            return list(self.iter_dataproducts(taskmanager_id, key))
        except KeyError:
            return []

    def iter_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`get_dataproducts` as a stream: memory holds one page of
        :meth:`iter_products` and one generation's products (to order them by creation)."""
        generation: list[dict[str, Any]] = []
        for item in self.iter_products(taskmanager_id, key):
            if generation and item["generation_id"] != generation[0]["generation_id"]:
                yield from self._reference_rows(generation)
                generation = []
            generation.append(item)
        yield from self._reference_rows(generation)

    @staticmethod
    def _reference_rows(generation: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        generation.sort(key=lambda item: (item["header"]["create_time"], item["key"]))
        for item in generation:
            yield {
                "taskmanager_id": item["sequence_id"],
                "generation_id": item["generation_id"],
                "key": item["key"],
                "value": item["value"],
                "taskmanager_uuid": item["taskmanager_id"],
                "sequence_id": item["sequence_id"],
                "generation_time": item["generation_time"],
                "header": item["header"],
            }

    def iter_products(
        self,
        taskmanager_id: TaskManagerRef,
        key: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page_size: int | None = None,
        page_bytes: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Products across generations, ordered by generation then key, optionally between
        two generation times (epoch seconds), read one page at a time.

        A page is at most ``page_size`` products (default :attr:`history_page_rows`) whose
        stored payloads add up to at most ``page_bytes`` (default
        :attr:`history_page_bytes`; always at least one product), read in one short snapshot with
        keyset pagination on the primary key (a page costs the same however deep into the
        history it starts): its product rows, then the payloads it needs.  So memory holds
        one page of compressed payloads and the decoded values of two generations, however
        long the history, and no transaction stays open while the caller works.  A payload
        the previous generation used too (a duplicated generation) is neither fetched nor
        decoded again.  A generation the Reaper removes while this reads is left out.
        """
        page_size = self.history_page_rows if page_size is None else page_size
        page_bytes = self.history_page_bytes if page_bytes is None else page_bytes
        if page_size < 1 or page_bytes < 1:
            raise ValueError(f"page_size and page_bytes must be at least 1, got {page_size!r}, {page_bytes!r}")
        seq = self._read("read task manager", lambda conn: self._seq(conn, taskmanager_id))
        tm_id = self._taskmanagers[seq][1]
        after: tuple[int, str] | None = None
        generation_id = None
        current: dict[bytes, Any] = {}  # digest -> value, this generation's
        previous: dict[bytes, Any] = {}  # and the one before's
        while True:
            page = functools.partial(
                self._history_page,
                seq=seq,
                key=key,
                since=since,
                until=until,
                after=after,
                page_size=page_size,
                page_bytes=page_bytes,
                known=current.keys() | previous.keys(),
            )
            rows, more, blobs = self._read("read product history", page, snapshot=True)
            for row in rows:
                if row.generation_id != generation_id:
                    generation_id, previous, current = row.generation_id, current, {}
                digest = bytes(row.payload_hash)
                if digest in current:
                    value = current[digest]
                elif digest in previous:
                    value = current[digest] = previous[digest]
                else:
                    blob = blobs.pop(digest, None)
                    if blob is None:  # known at the page's start, dropped since (two generations back)
                        blob = self._read("read payload", lambda conn, d=digest: self._payload(conn, d))
                        if blob is None:
                            continue  # reaped meanwhile with its generation
                    value = current[digest] = self._decode(seq, row.generation_id, row.key, blob)
                yield {
                    "taskmanager_id": tm_id,
                    "sequence_id": seq,
                    "generation_id": row.generation_id,
                    "generation_time": row.generation_time,
                    "key": row.key,
                    "value": value,
                    "header": Header(tm_id, **{c: getattr(row, c) for c in schema.HEADER_COLUMNS}),
                }
            if not more:
                return
            after = (rows[-1].generation_id, rows[-1].key)

    @staticmethod
    def _payload(conn: sa.Connection, digest: bytes) -> bytes | None:
        data = conn.execute(sa.select(payload_t.c.data).where(payload_t.c.hash == digest)).scalar_one_or_none()
        return None if data is None else bytes(data)

    @staticmethod
    def _history_page(
        conn: sa.Connection,
        seq: int,
        key: str | None,
        since: float | None,
        until: float | None,
        after: tuple[int, str] | None,
        page_size: int,
        page_bytes: int,
        known: Collection[bytes],
    ) -> tuple[list[Any], bool, dict[bytes, bytes]]:
        """One page of :meth:`iter_products`: the product rows after ``after`` (generation,
        key) that fit the page, whether more follow, and the payloads among them not ``known``."""
        query = (
            sa.select(
                dp_t.c.generation_id,
                dp_t.c.key,
                dp_t.c.payload_hash,
                payload_t.c.size,
                gen_t.c.generation_time,
                *(dp_t.c[c] for c in schema.HEADER_COLUMNS),
            )
            .join_from(
                dp_t,
                gen_t,
                sa.and_(
                    dp_t.c.taskmanager_seq == gen_t.c.taskmanager_seq,
                    dp_t.c.generation_id == gen_t.c.generation_id,
                ),
            )
            .join(payload_t, payload_t.c.hash == dp_t.c.payload_hash)
            .where(dp_t.c.taskmanager_seq == seq)
            .order_by(dp_t.c.generation_id, dp_t.c.key)
            .limit(page_size)
        )
        if key is not None:
            query = query.where(dp_t.c.key == key)  # walks ix_dataproduct_key_history
            if after is not None:
                query = query.where(dp_t.c.generation_id > after[0])
        elif after is not None:
            query = query.where(sa.tuple_(dp_t.c.generation_id, dp_t.c.key) > sa.tuple_(*after))
        if since is not None:
            query = query.where(gen_t.c.generation_time >= since)
        if until is not None:
            query = query.where(gen_t.c.generation_time <= until)
        rows = conn.execute(query).all()
        more = len(rows) == page_size
        needed: set[bytes] = set()
        held = 0
        for count, row in enumerate(rows):
            digest = bytes(row.payload_hash)
            if digest in known or digest in needed:
                continue
            if held and held + row.size > page_bytes:
                rows, more = rows[:count], True  # the rest starts the next page
                break
            needed.add(digest)
            held += row.size
        blobs: dict[bytes, bytes] = {}
        for chunk in _chunks(sorted(needed)):
            found = conn.execute(sa.select(payload_t.c.hash, payload_t.c.data).where(payload_t.c.hash.in_(chunk)))
            blobs.update((bytes(h), bytes(d)) for h, d in found)
        return rows, more, blobs

    def get_generations(self, taskmanager_id: TaskManagerRef, since: float | None = None) -> list[dict[str, Any]]:
        """Generations of a task manager with their time and product count, oldest first."""
        with self._transaction("read generations") as conn:
            seq = self._seq(conn, taskmanager_id)
            query = (
                sa.select(
                    gen_t.c.generation_id,
                    gen_t.c.generation_time,
                    sa.func.count(dp_t.c.key).label("products"),
                )
                .join_from(
                    gen_t,
                    dp_t,
                    sa.and_(
                        dp_t.c.taskmanager_seq == gen_t.c.taskmanager_seq,
                        dp_t.c.generation_id == gen_t.c.generation_id,
                    ),
                    isouter=True,
                )
                .where(gen_t.c.taskmanager_seq == seq)
                .group_by(gen_t.c.generation_id, gen_t.c.generation_time)
                .order_by(gen_t.c.generation_id)
            )
            if since is not None:
                query = query.where(gen_t.c.generation_time >= since)
            return [dict(row._mapping) for row in conn.execute(query)]

    def announce(self, message: Mapping[str, Any]) -> bool:
        """PostgreSQL: ``NOTIFY`` ``message`` on :data:`GENERATIONS_CHANNEL` (its own
        transaction); SQLite cannot notify: False."""
        if not is_postgresql(self.engine):
            return False
        payload = json.dumps(dict(message), default=str)
        with self._transaction("announce", write=True) as conn:
            conn.execute(sa.select(sa.func.pg_notify(GENERATIONS_CHANNEL, payload)))
        return True

    def watch_generations(
        self,
        on_generation: Callable[[dict[str, Any]], None],
        stop: threading.Event,
        on_listening: Callable[[], None] | None = None,
    ) -> bool:
        """PostgreSQL: ``LISTEN`` on :data:`GENERATIONS_CHANNEL` on a connection of its own and
        pass on every announcement (sent by :meth:`write_generation` inside the commit, so
        it arrives exactly when the generation is visible).  SQLite cannot notify."""
        if not is_postgresql(self.engine):
            return False
        connection = self.engine.raw_connection()
        try:
            dbapi = connection.dbapi_connection
            dbapi.autocommit = True
            with dbapi.cursor() as cursor:
                cursor.execute(f"LISTEN {GENERATIONS_CHANNEL}")
            self.logger.info("listening for generations", notify_channel=GENERATIONS_CHANNEL)
            if on_listening is not None:
                on_listening()
            while not stop.is_set():
                # Wait on the socket, not the database: wakes at once on a NOTIFY.
                readable, _, _ = select.select([dbapi], [], [], 1.0)
                if not readable:
                    continue
                dbapi.poll()
                while dbapi.notifies:
                    notice = dbapi.notifies.pop(0)
                    try:
                        announcement = json.loads(notice.payload)
                    except ValueError:
                        continue
                    if isinstance(announcement, dict):
                        on_generation(announcement)
            return True
        finally:
            with contextlib.suppress(Exception):
                connection.invalidate()

    def storage_stats(self) -> dict[str, int]:
        """Row counts and payload bytes: what the Reaper and the benchmarks report."""
        with self._transaction("read storage statistics", snapshot=True) as conn:
            stats = {
                "taskmanagers": conn.execute(sa.select(sa.func.count()).select_from(tm_t)).scalar_one(),
                "generations": conn.execute(sa.select(sa.func.count()).select_from(gen_t)).scalar_one(),
                "products": conn.execute(sa.select(sa.func.count()).select_from(dp_t)).scalar_one(),
                "payloads": conn.execute(sa.select(sa.func.count()).select_from(payload_t)).scalar_one(),
                "payload_bytes": conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(payload_t.c.size), 0))
                ).scalar_one(),
            }
            stats["database_bytes"] = self._database_bytes(conn)
        return {k: int(v) for k, v in stats.items()}

    def database_bytes(self) -> int | None:
        """Pages in use (SQLite) or ``pg_database_size`` (PostgreSQL): one short statement."""
        with self._transaction("read the database size") as conn:
            return self._database_bytes(conn)

    def _database_bytes(self, conn: sa.Connection) -> int:
        if is_sqlite(self.engine):
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int((pages - free) * page_size)
        return int(conn.execute(sa.select(sa.func.pg_database_size(sa.func.current_database()))).scalar_one())

    # -- deleting --------------------------------------------------------------------------------

    def delete(self, taskmanager_id: TaskManagerRef, all_generations: bool = False) -> int:
        """Remove the latest generation of a task manager, or all of its generations.

        The registration stays; payloads no other product references are removed too.
        """
        with self._transaction("delete generations", write=True) as conn:
            seq = self._seq(conn, taskmanager_id)
            if all_generations:
                pairs = [
                    (seq, g)
                    for (g,) in conn.execute(sa.select(gen_t.c.generation_id).where(gen_t.c.taskmanager_seq == seq))
                ]
            else:
                last = self._last_generation(conn, seq)
                pairs = [(seq, last)] if last else []
            self._delete_generations(conn, pairs)
        return len(pairs)

    def _delete_generations(self, conn: sa.Connection, pairs: Sequence[tuple[int, int]]) -> ReapReport:
        """Delete the given generations, their products and the payloads only they used."""
        report = ReapReport(generations=len(pairs))
        hashes: set[bytes] = set()
        for chunk in _chunks(list(pairs)):
            in_chunk = sa.tuple_(dp_t.c.taskmanager_seq, dp_t.c.generation_id).in_(chunk)
            deleted = conn.execute(sa.delete(dp_t).where(in_chunk).returning(dp_t.c.payload_hash)).all()
            report.products += len(deleted)
            hashes.update(bytes(h) for (h,) in deleted)
            conn.execute(sa.delete(gen_t).where(sa.tuple_(gen_t.c.taskmanager_seq, gen_t.c.generation_id).in_(chunk)))
        for chunk in _chunks(sorted(hashes)):
            freed = self._delete_orphans(conn, payload_t.c.hash.in_(chunk))
            report.payloads += len(freed)
            report.payload_bytes += sum(freed)
        return report

    def _delete_orphans(self, conn: sa.Connection, condition: Any, limit: int | None = None) -> list[int]:
        """Delete payloads matching ``condition`` that no product references; their sizes.

        On PostgreSQL a payload a writer has just locked for reuse is skipped (a later
        pass finds it if it is still unreferenced)."""
        referenced = sa.exists().where(dp_t.c.payload_hash == payload_t.c.hash)
        candidates = sa.select(payload_t.c.hash).where(condition, ~referenced)
        if limit is not None:
            candidates = candidates.limit(limit)
        if is_postgresql(self.engine):
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (
            sa.delete(payload_t).where(payload_t.c.hash.in_(candidates.scalar_subquery())).returning(payload_t.c.size)
        )
        if not is_postgresql(self.engine):  # SQLite: the Reaper holds the write lock
            return [int(size) for (size,) in conn.execute(statement)]
        # A writer may commit a new reference to a candidate after this statement's snapshot
        # but before its row lock (read committed re-checks the row, not the NOT EXISTS): the
        # delete then violates the foreign key.  The payload is in use again, so keep it: the
        # batch's payload deletion is undone (a savepoint), its product deletion stands, and
        # a later pass looks again.
        try:
            with conn.begin_nested():
                return [int(size) for (size,) in conn.execute(statement)]
        except sa.exc.IntegrityError:
            self.logger.info("payloads referenced again while being reaped: kept for a later pass")
            return []

    def _doomed_generations(self, cutoff: float) -> Any:
        """Generations older than ``cutoff`` that are not their task manager's newest."""
        newer = gen_t.alias("newer")
        return sa.and_(
            gen_t.c.generation_time < cutoff,
            sa.exists().where(
                newer.c.taskmanager_seq == gen_t.c.taskmanager_seq,
                newer.c.generation_id > gen_t.c.generation_id,
            ),
        )

    def delete_data_older_than(self, days: float) -> ReapReport:
        """Delete data older that interval (``days``), keeping each task manager's newest generation.

        ``days`` must be more than 0: 0 would delete every generation but the newest, which
        is never what a retention interval means (``ValueError``, as in the reference).
        """
        if isinstance(days, bool) or not isinstance(days, numbers.Real) or not days > 0:
            raise ValueError(f"delete_data_older_than: days must be a number greater than 0, got {days!r}")
        return self.reap(time.time() - float(days) * 86400, batch_size=100)

    def reap(
        self,
        cutoff: float,
        batch_size: int = 100,
        dry_run: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[ReapReport], None] | None = None,
    ) -> ReapReport:
        """Remove generations whose generation time is before ``cutoff`` (epoch seconds),
        except each task manager's newest, then payloads nothing references.

        Works in batches of at most ``batch_size`` generations, each its own short
        transaction; the batch shrinks when a batch holds the database for longer than
        about 50 ms and grows back when it is quick.  ``should_stop`` is asked before
        every batch.  With ``dry_run`` nothing is removed and the report says what would be.
        """
        if dry_run:
            return self._reap_preview(cutoff)
        report = ReapReport()
        limit = max(1, int(batch_size))
        size = limit
        while True:
            if should_stop():
                report.stopped = True
                break
            started = time.monotonic()
            with self._transaction("reap generations", write=True) as conn:
                pairs = [
                    (seq, gen)
                    for seq, gen in conn.execute(
                        sa.select(gen_t.c.taskmanager_seq, gen_t.c.generation_id)
                        .where(self._doomed_generations(cutoff))
                        .order_by(gen_t.c.generation_time)
                        .limit(size)
                    )
                ]
                if not pairs:
                    break
                batch = self._delete_generations(conn, pairs)
                names = dict(
                    conn.execute(
                        sa.select(tm_t.c.sequence_id, tm_t.c.name).where(tm_t.c.sequence_id.in_({s for s, _ in pairs}))
                    ).all()
                )
            for seq, _gen in pairs:
                name = names.get(seq, str(seq))
                batch.per_taskmanager[name] = batch.per_taskmanager.get(name, 0) + 1
            batch.batches = 1
            report.add(batch)
            if progress is not None:
                progress(report)
            elapsed = time.monotonic() - started
            size = self._next_batch_size(size, limit, elapsed)
            self._yield_to_writers(elapsed)
        if not report.stopped:
            report.stopped = self._sweep_orphans(report, limit * 10, should_stop)
        if not report.stopped and is_sqlite(self.engine):
            report.stopped = self._release_free_pages(should_stop)
        return report

    @staticmethod
    def _next_batch_size(size: int, limit: int, elapsed: float) -> int:
        if elapsed > REAP_BATCH_TARGET_SECONDS:
            return max(1, size // 2)
        if elapsed < REAP_BATCH_TARGET_SECONDS / 2:
            return min(limit, size * 2)
        return size

    def _yield_to_writers(self, elapsed: float) -> None:
        """Leave the database to writers between batches.

        A SQLite writer waiting on the lock sleeps between retries (up to 100 ms), so the
        Reaper pauses at least as long as it held the lock to let that writer in."""
        if is_sqlite(self.engine):
            time.sleep(max(REAP_BATCH_TARGET_SECONDS, elapsed))

    def _sweep_orphans(self, report: ReapReport, batch: int, should_stop: Callable[[], bool]) -> bool:
        """Remove payloads no product references (left by replaced products or skipped
        by a batch because a writer held them); returns True if stopped early."""
        while True:
            if should_stop():
                return True
            started = time.monotonic()
            with self._transaction("reap unreferenced payloads", write=True) as conn:
                freed = self._delete_orphans(conn, sa.true(), limit=batch)
            report.payloads += len(freed)
            report.payload_bytes += sum(freed)
            if len(freed) < batch:
                return False
            self._yield_to_writers(time.monotonic() - started)

    def _release_free_pages(self, should_stop: Callable[[], bool], pages_per_batch: int = 2048) -> bool:
        """Give the pages the Reaper freed back to the file system (SQLite incremental vacuum)."""
        while True:
            if should_stop():
                return True
            started = time.monotonic()
            with self._transaction("release free pages", write=True) as conn:
                if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() != 2:
                    return False
                if conn.exec_driver_sql("PRAGMA freelist_count").scalar_one() == 0:
                    return False
                conn.exec_driver_sql(f"PRAGMA incremental_vacuum({int(pages_per_batch)})")
            self._yield_to_writers(time.monotonic() - started)

    def _reap_preview(self, cutoff: float) -> ReapReport:
        """What :meth:`reap` with the same cutoff would remove, read in one snapshot."""
        doomed = self._doomed_generations(cutoff)
        survivor = sa.exists().where(
            dp_t.c.payload_hash == payload_t.c.hash,
            ~sa.exists().where(
                gen_t.c.taskmanager_seq == dp_t.c.taskmanager_seq,
                gen_t.c.generation_id == dp_t.c.generation_id,
                doomed,
            ),
        )
        with self._transaction("preview reaping", snapshot=True) as conn:
            per_tm = conn.execute(
                sa.select(tm_t.c.name, sa.func.count())
                .join_from(gen_t, tm_t, gen_t.c.taskmanager_seq == tm_t.c.sequence_id)
                .where(doomed)
                .group_by(tm_t.c.name)
            ).all()
            products = conn.execute(
                sa.select(sa.func.count())
                .select_from(dp_t)
                .join(
                    gen_t,
                    sa.and_(
                        dp_t.c.taskmanager_seq == gen_t.c.taskmanager_seq,
                        dp_t.c.generation_id == gen_t.c.generation_id,
                    ),
                )
                .where(doomed)
            ).scalar_one()
            count, size = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(payload_t.c.size), 0)).where(~survivor)
            ).one()
        return ReapReport(
            generations=sum(n for _, n in per_tm),
            products=int(products),
            payloads=int(count),
            payload_bytes=int(size),
            dry_run=True,
            per_taskmanager={name: int(n) for name, n in per_tm},
        )


def _hung_guard(engine: sa.Engine) -> list[Any]:
    """PostgreSQL: a column that sets, for the rest of the transaction (``set_config`` with
    ``is_local``: no session state, so transaction pooling is fine), how long the session may
    stay idle inside it (:data:`HUNG_TRANSACTION_MS`).  Selected with the ownership row it
    locks, in the same round trip: a process frozen while it holds the row loses its
    session, and the row, after that long."""
    if not is_postgresql(engine):
        return []
    return [
        sa.func.set_config("idle_in_transaction_session_timeout", str(HUNG_TRANSACTION_MS), True).label("hung_guard")
    ]
