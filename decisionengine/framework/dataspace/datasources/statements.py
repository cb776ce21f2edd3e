"""The statements of the SQL data source's hot paths (reading and writing generations),
built once.

Reading or writing a small generation costs about as much in Python as in the database:
building a ``select()`` or an upsert (columns, joins, aliases, ``ON CONFLICT`` clauses)
and its cache key each time costs as much as decoding a 1k-row product.  These
statements take their values as bound parameters (lists as an expanding ``IN``), so each
is built once per process and SQLAlchemy's compiled cache serves every later use.

SQLite's generation write goes one step further (:class:`DriverStatement`): its
statements are rendered to SQL text once and handed to the ``sqlite3`` driver as they
are.  A 1k-row product pickles and compresses in a few milliseconds, and on that scale
SQLAlchemy's per-execute work (execution context, parameter processing, result setup)
for the four statements of a write was a sizeable share of what a write costs beyond
the bare insert.  The text is still rendered from the tables below, so it cannot drift
from the schema.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from decisionengine.framework.dataspace.datasources import schema

tm_t = schema.taskmanager
gen_t = schema.generation
payload_t = schema.payload
dp_t = schema.dataproduct

HEADER = tuple(dp_t.c[c] for c in schema.HEADER_COLUMNS)
METADATA = tuple(dp_t.c[c] for c in schema.METADATA_COLUMNS)


@functools.cache
def product(part: str) -> sa.Select:
    """One product's ``data`` (payload), ``header`` or ``metadata`` columns, by
    :``seq``, :``generation``, :``key``."""
    columns = {"data": (payload_t.c.data,), "header": HEADER, "metadata": METADATA}[part]
    query = sa.select(*columns).where(
        dp_t.c.taskmanager_seq == sa.bindparam("seq"),
        dp_t.c.generation_id == sa.bindparam("generation"),
        dp_t.c.key == sa.bindparam("key"),
    )
    if part == "data":
        query = query.join_from(dp_t, payload_t, dp_t.c.payload_hash == payload_t.c.hash)
    return query


@functools.cache
def generation(by_id: bool, subset: bool) -> sa.Select:
    """The products of generation :``generation`` of the task manager :``tm`` (its id
    string when ``by_id``, else its sequence number), with their registration and header
    columns; only those named in :``keys`` when ``subset``."""
    registration = tm_t.c.taskmanager_id if by_id else tm_t.c.sequence_id
    query = (
        sa.select(tm_t.c.sequence_id, tm_t.c.name, tm_t.c.taskmanager_id, dp_t.c.key, payload_t.c.data, *HEADER)
        .join_from(dp_t, payload_t, dp_t.c.payload_hash == payload_t.c.hash)
        .join(tm_t, tm_t.c.sequence_id == dp_t.c.taskmanager_seq)
        .where(registration == sa.bindparam("tm"), dp_t.c.generation_id == sa.bindparam("generation"))
        .order_by(dp_t.c.key)
    )
    if subset:
        query = query.where(dp_t.c.key.in_(sa.bindparam("keys", expanding=True)))
    return query


@functools.cache
def latest(products: str) -> sa.Select:
    """The newest generation of the newest registration of channel :``name``, with its
    products: ``all``, a ``subset`` (:``keys``, left-joined so that the generation is
    found also when it holds none of them) or ``none``."""
    registrations = tm_t.alias("registrations")
    newest_registration = (
        sa.select(sa.func.max(registrations.c.sequence_id))
        .where(registrations.c.name == sa.bindparam("name"))
        .scalar_subquery()
    )
    generations = gen_t.alias("generations")
    latest_id = (
        sa.select(sa.func.max(generations.c.generation_id))
        .where(generations.c.taskmanager_seq == tm_t.c.sequence_id)
        .scalar_subquery()
    )
    found = tm_t.join(gen_t, sa.and_(gen_t.c.taskmanager_seq == tm_t.c.sequence_id, gen_t.c.generation_id == latest_id))
    columns = [tm_t.c.sequence_id, tm_t.c.taskmanager_id, gen_t.c.generation_id, gen_t.c.generation_time]
    if products != "none":
        on = [dp_t.c.taskmanager_seq == gen_t.c.taskmanager_seq, dp_t.c.generation_id == gen_t.c.generation_id]
        if products == "subset":
            on.append(dp_t.c.key.in_(sa.bindparam("keys", expanding=True)))
        found = found.outerjoin(dp_t, sa.and_(*on)).outerjoin(payload_t, dp_t.c.payload_hash == payload_t.c.hash)
        columns += [dp_t.c.key, payload_t.c.data, *HEADER]
    query = sa.select(*columns).select_from(found).where(tm_t.c.sequence_id == newest_registration)
    if products != "none":
        query = query.order_by(dp_t.c.key)
    return query


@dataclass(frozen=True)
class DriverStatement:
    """A statement rendered once to the driver's SQL text, the names of its positional
    parameters in order (SQLite's ``qmark`` style), and the conversion SQLAlchemy would
    apply to each (its column type's bind processor, e.g. ``float()`` for a ``Double``
    column, so that a NumPy integer is stored as a number, not as its bytes)."""

    sql: str
    names: tuple[str, ...]
    #: (position, conversion) of the parameters that have one
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """``values`` (by name) as the positional parameters of this statement."""
        row = [values[name] for name in self.names]
        for position, convert in self.conversions:
            row[position] = convert(row[position])
        return tuple(row)


def _render_sqlite(statement: sa.Executable, column_keys: list[str] | None = None) -> DriverStatement:
    dialect = sqlite.dialect()
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    names = tuple(compiled.positiontup or ())
    processors = [compiled.binds[name].type.bind_processor(dialect) for name in names]
    conversions = tuple((position, p) for position, p in enumerate(processors) if p is not None)
    return DriverStatement(compiled.string, names, conversions)


@functools.cache
def sqlite_stored_payloads(count: int) -> DriverStatement:
    """SQLite: which of ``count`` payload hashes (parameters ``h0`` ... in order) are stored."""
    hashes = [sa.bindparam(f"h{i}", type_=payload_t.c.hash.type) for i in range(count)]
    return _render_sqlite(sa.select(payload_t.c.hash).where(payload_t.c.hash.in_(hashes)))


@functools.cache
def sqlite_channel_epoch() -> DriverStatement:
    """SQLite: the epoch and owner of channel :``channel`` (the fence of a write)."""
    owner_t = schema.channel_owner
    return _render_sqlite(sa.select(owner_t.c.epoch, owner_t.c.owner).where(owner_t.c.name == sa.bindparam("channel")))


@functools.cache
def sqlite_write(table: str) -> DriverStatement:
    """SQLite: the generation write's :func:`insert_generation`, :func:`insert_payloads`
    or :func:`upsert_products` (``table``), one row of parameters per execution."""
    statement, columns = {
        "generation": (insert_generation, gen_t.c),
        "payload": (insert_payloads, payload_t.c),
        "dataproduct": (upsert_products, dp_t.c),
    }[table]
    return _render_sqlite(statement("sqlite"), [c.name for c in columns])


def _insert(dialect: str) -> type:
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]


@functools.cache
def stored_payloads() -> sa.Select:
    """Which of the payloads :``hashes`` are stored."""
    return sa.select(payload_t.c.hash).where(payload_t.c.hash.in_(sa.bindparam("hashes", expanding=True)))


@functools.cache
def insert_generation(dialect: str) -> sa.Insert:
    """A generation row, unless it exists (values as parameters)."""
    return _insert(dialect)(gen_t).on_conflict_do_nothing()


@functools.cache
def insert_payloads(dialect: str) -> sa.Insert:
    """Payload rows, those already stored left as they are (values as parameters)."""
    return _insert(dialect)(payload_t).on_conflict_do_nothing()


@functools.cache
def upsert_products(dialect: str) -> sa.Insert:
    """Product rows, replacing a product of the same generation and key (values as parameters)."""
    upsert = _insert(dialect)(dp_t)
    return upsert.on_conflict_do_update(
        index_elements=[dp_t.c.taskmanager_seq, dp_t.c.generation_id, dp_t.c.key],
        set_={
            name: upsert.excluded[name] for name in ("payload_hash", *schema.HEADER_COLUMNS, *schema.METADATA_COLUMNS)
        },
    )


@functools.cache
def write_generation_postgresql() -> sa.TextClause:
    """PostgreSQL: a generation's row, its new payloads and its product rows (replacing
    those of the same keys) in one statement, so one round trip: data-modifying CTEs, the
    rows passed as arrays (``unnest``), so the statement text is the same for any number
    of products.  The foreign keys of the product rows are checked at the statement's end,
    where the generation and payload rows of the CTEs are visible."""
    product_columns = ("key", "payload_hash", *schema.HEADER_COLUMNS, *schema.METADATA_COLUMNS)
    types = {
        "key": "text",
        "payload_hash": "bytea",
        "create_time": "double precision",
        "expiration_time": "double precision",
        "scheduled_create_time": "double precision",
        "creator": "text",
        "schema_id": "bigint",
        "state": "text",
        "generation_time": "double precision",
        "missed_update_count": "integer",
    }
    arrays = ", ".join(f"CAST(:{c}s AS {types[c]}[])" for c in product_columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in product_columns if c != "key")
    return sa.text(
        "WITH generation_row AS ("
        " INSERT INTO generation (taskmanager_seq, generation_id, generation_time)"
        " VALUES (:seq, :generation, :generation_time) ON CONFLICT DO NOTHING"
        "), payload_rows AS ("
        " INSERT INTO payload (hash, size, raw_size, data)"
        " SELECT * FROM unnest(CAST(:hashes AS bytea[]), CAST(:sizes AS bigint[]),"
        " CAST(:raw_sizes AS bigint[]), CAST(:datas AS bytea[]))"
        " ON CONFLICT DO NOTHING"
        ")"
        f" INSERT INTO dataproduct (taskmanager_seq, generation_id, {', '.join(product_columns)})"
        f" SELECT CAST(:seq AS bigint), CAST(:generation AS bigint), * FROM unnest({arrays})"
        f" ON CONFLICT (taskmanager_seq, generation_id, key) DO UPDATE SET {updates}"
    )
