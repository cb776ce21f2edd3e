"""Creating SQLAlchemy engines for the DataSpace, and translating their errors.

SQLite gets what it needs to be shared by several processes: WAL journal (readers
never block the writer), a busy timeout (a writer waits for the lock instead of
failing), foreign keys on, and explicit transaction control so that a write
transaction takes the write lock when it begins (``BEGIN IMMEDIATE``) rather than
failing half-way when it tries to upgrade a read lock.

PostgreSQL connections get a connect timeout, so that an unreachable server is
reported in seconds.  A connection is pinged (``SELECT 1``) when it leaves the pool only
if it sat there idle for more than :data:`PING_AFTER_IDLE_SECONDS`: one used a moment ago
is known good, and pinging it would add a round trip to every one-statement read (the
cost that matters at small sizes).  A connection the server dropped is then found by
the statement itself: SQLAlchemy invalidates the pool, and the data source retries a
read once (see ``SQLAlchemyDS._transaction``).  ``pool_pre_ping: false`` turns pinging off.

Readers that must not change anything (``de-query-tool``, ``de-reaper --dry-run``) set
``read_only``: SQLite opens the file read-only (a mistyped path is an error naming it,
not a new empty database), PostgreSQL sessions are read-only transactions.  ``create:
false`` keeps writing but refuses a database that does not exist yet.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from decisionengine.framework.dataspace.errors import (
    DataSpaceConfigurationError,
    DataSpaceConnectionError,
    DataSpaceError,
)
from decisionengine.framework.util.backoff import pauses

#: datasource ``config`` keys the data source itself uses; every other key goes to create_engine.
OWN_KEYS = {"url", "codec", "busy_timeout", "connect_timeout", "read_only", "create"}
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_PG_POOL_SIZE = 4
DEFAULT_PG_MAX_OVERFLOW = 4
#: a pooled connection idle for longer than this is pinged before use
PING_AFTER_IDLE_SECONDS = 2.0

WRITE = "de_write"  # execution option: this connection's transactions will write
#: execution option: this connection reads with one statement (SQLite: no BEGIN/COMMIT,
#: the statement is its own snapshot)
SINGLE_READ = "de_single_read"


def mask_url(url: str | sa.URL) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _password(url: sa.URL) -> str | None:
    return url.password if isinstance(url.password, str) and url.password else None


def create_engine(config: Mapping[str, Any]) -> sa.Engine:
    """An engine for the datasource ``config`` ({url, echo, pool options, ...})."""
    if not isinstance(config, Mapping):
        raise DataSpaceConfigurationError(
            f"dataspace datasource 'config' must be a dictionary, not {type(config).__name__}"
        )
    raw_url = config.get("url")
    if not raw_url:
        raise DataSpaceConfigurationError("dataspace datasource 'config' needs a 'url' (e.g. sqlite:///de.sqlite)")
    try:
        url = make_url(raw_url)
    except Exception as exc:
        raise DataSpaceConfigurationError(
            f"dataspace datasource 'url' {mask_url(raw_url)!r} is invalid: {exc}"
        ) from exc

    read_only = bool(config.get("read_only", False))
    must_exist = read_only or not config.get("create", True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = pathlib.Path(url.database)
        if must_exist and not database.is_file():
            what = "read-only readers create nothing" if read_only else "'create' is false"
            raise DataSpaceConnectionError(
                f"no SQLite dataspace database at {database.resolve()} ({what}): check the path"
            )
        if read_only:
            url = url.set(database=f"file:{database.resolve()}", query={**url.query, "mode": "ro", "uri": "true"})
    if url.drivername == "postgresql":
        # SQLAlchemy 2.1 defaults to psycopg 3; existing configs mean psycopg2, which we ship.
        url = url.set(drivername="postgresql+psycopg2")
    options = {k: v for k, v in config.items() if k not in OWN_KEYS}
    ping = bool(options.pop("pool_pre_ping", True))
    connect_args = dict(options.pop("connect_args", {}) or {})
    backend = url.get_backend_name()
    if backend == "sqlite":
        connect_args.setdefault("timeout", float(config.get("busy_timeout", DEFAULT_BUSY_TIMEOUT)))
        connect_args.setdefault("check_same_thread", False)
    elif backend == "postgresql":
        connect_args.setdefault("connect_timeout", int(config.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)))
        connect_args.setdefault("application_name", "decisionengine")
        if read_only:
            connect_args["options"] = (connect_args.get("options", "") + " -c default_transaction_read_only=on").strip()
        # Batch executemany of upserts into few round trips (plain inserts already are).
        options.setdefault("executemany_mode", "values_plus_batch")
        # A small pool: a server's connections must fit PostgreSQL's max_connections many
        # times over (README "Scaling out": the connection budget)
        if options.get("poolclass") is None:
            options.setdefault("pool_size", DEFAULT_PG_POOL_SIZE)
            options.setdefault("max_overflow", DEFAULT_PG_MAX_OVERFLOW)
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **options)
    except TypeError as exc:
        raise DataSpaceConfigurationError(
            f"dataspace datasource 'config' has an option the database engine does not accept: {exc}"
        ) from exc
    except (ImportError, sa.exc.ArgumentError) as exc:
        raise DataSpaceConfigurationError(f"dataspace datasource 'url' {mask_url(url)!r}: {exc}") from exc
    if backend == "sqlite":
        _configure_sqlite(engine, read_only, float(config.get("busy_timeout", DEFAULT_BUSY_TIMEOUT)))
    if ping:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: sa.Engine, idle: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection at checkout when it was idle for longer than ``idle``
    seconds (SQLAlchemy's "pessimistic disconnect handling", made lazy)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) <= idle:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # the pool drops this connection and checks out (or opens) another
            raise sa.exc.DisconnectionError(f"pooled connection is gone: {exc}") from exc
        if alive is False:
            raise sa.exc.DisconnectionError("pooled connection did not answer a ping")
        record.info[_LAST_USED] = time.monotonic()


_LAST_USED = "de_last_used"


def _use_wal(cursor: Any, busy_timeout: float) -> None:
    """Put the database in WAL mode (once per file: the mode is kept in the file).

    SQLite answers "database is locked" at once, without waiting the busy timeout, when
    another connection holds a lock while this one changes the journal mode: processes
    opening a new database together failed so (seen in a full test run).  So the mode is
    only changed when it is not WAL yet, and a locked database is tried again until the
    busy timeout has passed."""
    if _switched_to_wal(cursor):
        return
    for _ in pauses(0.005, 0.1, busy_timeout):
        if _switched_to_wal(cursor):
            return
    cursor.execute("PRAGMA journal_mode=WAL")  # still locked: raises the database's own error


def _switched_to_wal(cursor: Any) -> bool:
    """True once the database is in WAL mode; False while another connection's lock forbids
    the switch (any other error is raised)."""
    try:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    return True


def _configure_sqlite(engine: sa.Engine, read_only: bool = False, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if engine.url.database not in (None, "", ":memory:") and not read_only:
                # auto_vacuum can only be chosen before the first table exists.
                if cursor.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
                _use_wal(cursor, busy_timeout)
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        options = connection.get_execution_options()
        if options.get(SINGLE_READ, False):
            return  # sqlite3 runs the statement in its own implicit transaction
        write = options.get(WRITE, False) and not read_only
        statement = "BEGIN IMMEDIATE" if write else "BEGIN"
        # Straight to the driver: a small generation write is a handful of statements, and
        # SQLAlchemy's per-statement work for BEGIN alone was a visible share of it.
        # Errors (``database is locked`` once the busy timeout ran out) are raised as
        # SQLAlchemy raises them, so they are translated to DataSpace errors alike.
        dbapi = connection.dialect.loaded_dbapi
        try:
            connection.connection.driver_connection.execute(statement)
        except dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=connection.dialect) from exc


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgresql(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextlib.contextmanager
def translate_errors(
    engine: sa.Engine, action: str, where: str, passthrough: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Turn SQLAlchemy errors into DataSpace errors that name the database (``where``,
    the configured URL with its password masked); ``passthrough`` errors are left to
    the caller, who knows how to recover from them."""
    try:
        yield
    except passthrough:
        raise
    except sa.exc.DBAPIError as exc:
        raise _translate(engine, action, where, exc) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise DataSpaceError(f"{action} failed on {where}: {exc}") from exc


_SQLITE_UNUSABLE = re.compile(
    r"unable to open database|disk i/o error|not a database|readonly database|database disk image is malformed",
    re.IGNORECASE,
)
_PG_CONNECTION_CODES = ("08", "57P01", "57P02", "57P03")


def is_connection_problem(engine: sa.Engine, exc: sa.exc.DBAPIError) -> bool:
    """True when the database could not be reached or went away, as opposed to a failed statement."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    if is_sqlite(engine):
        return bool(_SQLITE_UNUSABLE.search(str(exc.orig)))
    pgcode = getattr(exc.orig, "pgcode", None)
    # psycopg2 reports a server it could not reach (or lost) without an SQLSTATE.
    return pgcode is None or pgcode.startswith(_PG_CONNECTION_CODES)


def _translate(engine: sa.Engine, action: str, where: str, exc: sa.exc.DBAPIError) -> DataSpaceError:
    reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
    password = _password(engine.url)
    if password:
        reason = reason.replace(password, "***")
    if is_connection_problem(engine, exc):
        return DataSpaceConnectionError(f"cannot reach the dataspace database {where} ({action}): {reason}")
    return DataSpaceError(f"{action} failed on {where}: {reason}")
