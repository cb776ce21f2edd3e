"""Bringing a reference Decision Engine's history into this DataSpace.

The reference (HEPCloud Decision Engine 1.7 and 2.0) keeps four tables: ``taskmanager``
(one row per registration: a channel restarted under a new UUID got a new row), and
``header``, ``metadata`` and ``dataproduct`` with one row per product per generation,
matched by (sequence id, generation, key).  A value is the ``repr()`` of
``{"pickled": ..., "value": ...}``, latin-1, zlib level 9; the product itself pickled
unless it is a dict.  ``../shared/reference/reference-dataspace-schema.md`` describes it.

How an import keeps its promises:

* **Faithful**: each registration that holds products becomes one of ours with the same
  UUID, name and datestamp, and keeps its generation numbers; each product keeps its
  header and metadata fields.  A registration without products is not copied (it would
  become the channel's newest and make ``de-server`` number from 1 again); one that appears
  twice in the reference under one UUID gets ``UUID#<sequence id>`` for its later rows.
* **Values are data**: every value goes through :func:`decode_reference_value`:
  ``ast.literal_eval`` (literals only) and the DataSpace's restricted unpickler, with the
  target's ``trusted_modules``.  A value that fails any step, or a product without its
  header or metadata row, is reported with (channel, generation, key) and skipped.
  Decompression is bounded (``max_value_bytes``): a zlib bomb is a bad value, not an
  out-of-memory.
* **De-duplicated**: products are written with :meth:`DataSpace.write_generations`, which
  stores a payload once per content hash.  The reference copied every payload into every
  generation; identical source values are decoded once (a bounded cache keyed by the
  digest of the source bytes), so a value repeated over many generations costs one
  decode and one stored payload.
* **Bounded memory**: task managers one at a time, generations in batches of at most
  ``batch_rows`` rows and ``batch_bytes`` source bytes (at least one generation); a batch
  is decoded, written and dropped before the next is read.  Decoded values are about twice
  their source bytes, so a batch holds at most a few times ``batch_bytes``.
* **Resumable**: a batch of generations is written in one transaction, in order, so what
  the target holds *is* the progress: a re-run continues after the last generation each
  registration has there, and never writes a product twice (the target's primary key is
  (task manager, generation, key)).  A re-run also looks for products missing from
  generations already copied and tries them again (e.g. after a module was added to
  ``trusted_modules``).
* **Checked**: the report compares, per registration, the source's rows and distinct
  products with what the target holds, and names every product not copied.

Why :meth:`DataSpace.write_generations` and not our tables directly: the data source is
the one place that knows how a product row, its payload and its generation are kept
consistent (hashing, codecs, foreign keys, retries against the Reaper).  The bulk method
was added for this import: one transaction per batch instead of one per generation, and a
value repeated across the batch pickled once, halved the time spent writing (a data source
without it writes generation by generation).  ``benchmarks/import_reference.py`` measures
the import against plain reading of the reference rows.
"""

from __future__ import annotations

import ast
import codecs as text_codecs
import collections
import datetime
import numbers
import pathlib
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from decisionengine.framework.dataspace import codecs, migrations, unpickling
from decisionengine.framework.dataspace.datablock import Header, InvalidMetadataError, Metadata
from decisionengine.framework.dataspace.datasources.sql_engine import create_engine, mask_url, translate_errors
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.errors import (
    DataSpaceConnectionError,
    DataSpaceError,
    UntrustedPayloadError,
)
from decisionengine.framework.dataspace.unpickling import DEFAULT_POLICY, UnpicklePolicy
from decisionengine.framework.util.logger import get_logger

__all__ = [
    "BadProduct",
    "ImportConflictError",
    "ImportProgress",
    "ImportReport",
    "ReferenceFormatError",
    "ReferenceImporter",
    "ReferenceSource",
    "TaskManagerReport",
    "decode_reference_value",
    "open_target",
]

#: a batch holds at most this many source rows (at least one generation) ...
DEFAULT_BATCH_ROWS = 1000
#: ... and at most this many bytes of source values
DEFAULT_BATCH_BYTES = 32 << 20
#: a value whose text (or inner pickle) decompresses to more is reported, not decoded
DEFAULT_MAX_VALUE_BYTES = 1 << 30
#: decoded values kept for repeats (measured by their pickled size)
DEFAULT_CACHE_BYTES = 128 << 20
#: how many bad and duplicate products a report lists (all are counted)
MAX_LISTED = 1000

REQUIRED_COLUMNS: dict[str, set[str]] = {
    "taskmanager": {"sequence_id", "taskmanager_id", "name", "datestamp"},
    "header": {
        "taskmanager_id",
        "generation_id",
        "key",
        "create_time",
        "expiration_time",
        "scheduled_create_time",
        "creator",
        "schema_id",
    },
    "metadata": {"taskmanager_id", "generation_id", "key", "state", "generation_time", "missed_update_count"},
    "dataproduct": {"taskmanager_id", "generation_id", "key", "value"},
}
#: tables only a DataSpace of ours has: a URL naming one is a mistake, not a reference
OUR_TABLES = {"payload", "generation"}
HEADER_FIELDS = ("create_time", "expiration_time", "scheduled_create_time")
SQL_DATASOURCE = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"

_PICKLED_PREFIX = "{'pickled': True, 'value': b"


class ReferenceFormatError(DataSpaceError):
    """The source database is not a reference Decision Engine database."""


class ImportConflictError(DataSpaceError):
    """The target holds history of a channel the import would make ambiguous."""


class BadValue(Exception):
    """A product that cannot be imported; the message says why."""


# -- decoding values ---------------------------------------------------------------------------


def _inflate(data: bytes, limit: int, what: str) -> bytes | None:
    """zlib-decompress ``data`` to at most ``limit`` bytes; None when it is not (complete)
    zlib data; :class:`BadValue` when it would grow past ``limit`` (a zlib bomb)."""
    decompressor = zlib.decompressobj()
    try:
        raw = decompressor.decompress(data, limit)
    except zlib.error:
        return None
    if decompressor.unconsumed_tail:
        raise BadValue(f"{what} decompresses to more than {limit:,} bytes")
    if not decompressor.eof:
        return None
    return raw


def _parse_wrapper(text: str) -> Any:
    """The wrapper dict from its ``repr()`` text, as ``ast.literal_eval`` reads it.

    Pickled products are one long bytes literal; parsing that with ``literal_eval`` costs
    several times the rest of the import, so it is decoded directly (a C codec) when the
    result's ``repr()`` is exactly the text: then ``literal_eval`` would have given the
    same bytes.  Anything else goes to ``literal_eval``, which accepts literals only.
    """
    if text.startswith(_PICKLED_PREFIX) and text.endswith("}"):
        literal = text[len(_PICKLED_PREFIX) - 1 : -1]
        if len(literal) >= 3 and literal[1] in "'\"" and literal[-1] == literal[1]:
            try:
                value = text_codecs.escape_decode(literal[2:-1].encode("latin-1"))[0]  # type: ignore[attr-defined]
            except (ValueError, UnicodeEncodeError):
                value = None
            if isinstance(value, bytes) and repr(value) == literal:
                return {"pickled": True, "value": value}
    return ast.literal_eval(text)


def decode_reference_value(
    blob: bytes, policy: UnpicklePolicy = DEFAULT_POLICY, max_bytes: int = DEFAULT_MAX_VALUE_BYTES
) -> Any:
    """A ``dataproduct.value`` of the reference as the product it holds.

    zlib-decompress, latin-1, ``ast.literal_eval`` (literals only), then, for a pickled
    product, the pickle (itself zlib-compressed by older writers: tried first) through the
    restricted unpickler of ``policy``.  Raises :class:`BadValue` saying which step failed.
    """
    if blob is None:
        raise BadValue("the value is NULL")
    raw = _inflate(bytes(blob), max_bytes, "the value")
    if raw is None:
        raise BadValue("the value is not zlib-compressed data")
    text = raw.decode("latin-1")
    try:
        wrapper = _parse_wrapper(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise BadValue(f"the value is not the reference's literal text ({type(exc).__name__}: {exc})") from None
    if not isinstance(wrapper, dict) or set(wrapper) != {"pickled", "value"}:
        raise BadValue("the value is not a {'pickled': ..., 'value': ...} record")
    if not wrapper["pickled"]:
        if not isinstance(wrapper["value"], dict):
            raise BadValue(f"an unpickled value must be a dict, not {type(wrapper['value']).__name__}")
        return wrapper["value"]
    inner = wrapper["value"]
    if not isinstance(inner, bytes):
        raise BadValue(f"a pickled value must be bytes, not {type(inner).__name__}")
    return _unpickle(inner, policy, max_bytes)


def _unpickle(inner: bytes, policy: UnpicklePolicy, max_bytes: int) -> Any:
    if codecs.ZlibCodec().recognizes(inner):
        # older writers compressed the pickle too; a plain pickle can look like a zlib
        # header, so one that does not inflate is read as it is (what zloads does)
        inflated = _inflate(inner, max_bytes, "the pickle")
        if inflated is not None:
            inner = inflated
    try:
        return unpickling.loads(inner, policy)
    except UntrustedPayloadError as exc:
        raise BadValue(
            f"it refers to {exc.refused}, which stored data may not use (list its module in "
            "dataspace.trusted_modules if you trust it)"
        ) from None
    except Exception as exc:
        raise BadValue(f"the pickle does not load ({type(exc).__name__}: {exc})") from None


class _DecodedValues:
    """Decoded values by the digest of their source bytes, least recently used first out.

    The reference stored a product's full value again in every generation, so the same
    bytes come back many times; decoding them once is most of what makes an import fast.
    Bad values are remembered too (their reason), so they cost one decode as well.
    """

    def __init__(self, policy: UnpicklePolicy, max_value_bytes: int, capacity: int) -> None:
        self.policy = policy
        self.max_value_bytes = max_value_bytes
        self.capacity = capacity
        self.size = 0
        self.hits = 0
        self.decoded = 0
        self._entries: collections.OrderedDict[bytes, tuple[Any, str | None, int]] = collections.OrderedDict()

    def get(self, blob: bytes | None) -> Any:
        if blob is None:
            raise BadValue("the value is NULL")
        digest = codecs.content_digest(blob)
        entry = self._entries.get(digest)
        if entry is not None:
            self.hits += 1
            self._entries.move_to_end(digest)
        else:
            self.decoded += 1
            try:
                value = decode_reference_value(blob, self.policy, self.max_value_bytes)
                entry = (value, None, len(blob) * 4 + 256)  # decoded objects outweigh their zlib bytes
            except BadValue as exc:
                entry = (None, str(exc), 256)
            self._remember(digest, entry)
        value, reason, _size = entry
        if reason is not None:
            raise BadValue(reason)
        return value

    def _remember(self, digest: bytes, entry: tuple[Any, str | None, int]) -> None:
        if entry[2] > self.capacity:
            return
        self._entries[digest] = entry
        self.size += entry[2]
        while self.size > self.capacity:
            _old, dropped = self._entries.popitem(last=False)
            self.size -= dropped[2]


# -- the source ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceTaskManager:
    """One row of the reference's ``taskmanager`` table."""

    sequence_id: int
    taskmanager_id: str | None
    name: str | None
    datestamp: datetime.datetime | None


@dataclass
class SourceCounts:
    """What the reference holds for one registration."""

    rows: int = 0
    products: int = 0
    generations: int = 0
    last_generation: int = 0
    value_bytes: int = 0
    header_rows: int = 0
    metadata_rows: int = 0


@dataclass(frozen=True)
class GenerationRange:
    first: int
    last: int
    rows: int
    value_bytes: int


@dataclass
class SourceProduct:
    """A product of one generation: its value and its header and metadata rows (None
    when the reference has none), and how many dataproduct rows it had."""

    value: bytes | None
    header: Any = None
    metadata: Any = None
    copies: int = 1
    identical: bool = True


@dataclass
class SourceGeneration:
    generation_id: int
    products: dict[str, SourceProduct] = field(default_factory=dict)
    rows: int = 0
    value_bytes: int = 0


class ReferenceSource:
    """A reference Decision Engine database, opened read-only (SQLite read-only mode,
    PostgreSQL read-only transactions): the import never changes it."""

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self.engine = create_engine({"url": url, "read_only": True})
        self.tables: dict[str, sa.Table] = {}
        with translate_errors(self.engine, "open the reference database", self.url):
            names = set(sa.inspect(self.engine).get_table_names())
            if names >= OUR_TABLES:
                raise ReferenceFormatError(
                    f"{self.url} is a DataSpace of this decision engine (it has tables "
                    f"{', '.join(sorted(OUR_TABLES))}), not a reference Decision Engine database"
                )
            missing = sorted(set(REQUIRED_COLUMNS) - names)
            if missing:
                raise ReferenceFormatError(
                    f"{self.url} is not a reference Decision Engine database: no table {', '.join(missing)}"
                )
            reflected = sa.MetaData()
            for name, columns in REQUIRED_COLUMNS.items():
                table = sa.Table(name, reflected, autoload_with=self.engine)
                lacking = sorted(columns - set(table.c.keys()))
                if lacking:
                    raise ReferenceFormatError(
                        f"{self.url} is not a reference Decision Engine database: table {name} has no "
                        f"column {', '.join(lacking)}"
                    )
                self.tables[name] = table
        self.version = "2.0" if "id" in self.tables["dataproduct"].c else "1.7"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ReferenceSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, action: str, statement: Any, stream: bool = False) -> Iterator[Any]:
        """The rows of ``statement``: fetched at once (bounded queries), or with
        ``stream`` from a server-side cursor a few thousand at a time."""
        with translate_errors(self.engine, action, self.url), self.engine.connect() as conn:
            if not stream:
                yield from conn.execute(statement).all()
                return
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(statement)
            for partition in result.partitions():
                yield from partition

    def taskmanagers(self) -> list[ReferenceTaskManager]:
        tm = self.tables["taskmanager"]
        query = sa.select(tm.c.sequence_id, tm.c.taskmanager_id, tm.c.name, tm.c.datestamp).order_by(tm.c.sequence_id)
        return [ReferenceTaskManager(*row) for row in self._read("read task managers", query)]

    def counts(self) -> dict[int | None, SourceCounts]:
        """Rows, distinct products, generations and value bytes per registration (sequence
        id; None for rows that name none)."""
        dp, header, meta = self.tables["dataproduct"], self.tables["header"], self.tables["metadata"]
        counts: dict[int | None, SourceCounts] = collections.defaultdict(SourceCounts)
        query = sa.select(
            dp.c.taskmanager_id,
            sa.func.count(),
            sa.func.count(sa.distinct(dp.c.generation_id)),
            sa.func.max(dp.c.generation_id),
            sa.func.coalesce(sa.func.sum(sa.func.length(dp.c.value)), 0),
        ).group_by(dp.c.taskmanager_id)
        for seq, rows, generations, last, size in self._read("count products", query):
            entry = counts[seq]
            entry.rows, entry.generations, entry.last_generation, entry.value_bytes = (
                int(rows),
                int(generations),
                int(last or 0),
                int(size),
            )
        distinct = sa.select(dp.c.taskmanager_id, dp.c.generation_id, dp.c.key).distinct().subquery()
        query = sa.select(distinct.c.taskmanager_id, sa.func.count()).group_by(distinct.c.taskmanager_id)
        for seq, products in self._read("count distinct products", query):
            counts[seq].products = int(products)
        for table, attribute in ((header, "header_rows"), (meta, "metadata_rows")):
            query = sa.select(table.c.taskmanager_id, sa.func.count()).group_by(table.c.taskmanager_id)
            for seq, rows in self._read(f"count {table.name} rows", query):
                setattr(counts[seq], attribute, int(rows))
        return dict(counts)

    def rows_after(self, seq: int, after: int) -> tuple[int, int]:
        """Rows (and their value bytes) of registration ``seq`` after generation ``after``."""
        dp = self.tables["dataproduct"]
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(dp.c.value)), 0)).where(
            dp.c.taskmanager_id == seq, dp.c.generation_id > after
        )
        rows, size = next(self._read("count rows to copy", query))
        return int(rows), int(size)

    def generation_ranges(self, seq: int, after: int, max_rows: int, max_bytes: int) -> list[GenerationRange]:
        """Consecutive generations of ``seq`` after ``after``, cut into batches of at most
        ``max_rows`` rows and ``max_bytes`` value bytes (or one generation).  Only the
        boundaries are kept: a few numbers per batch."""
        dp = self.tables["dataproduct"]
        query = (
            sa.select(
                dp.c.generation_id,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.func.length(dp.c.value)), 0),
            )
            .where(dp.c.taskmanager_id == seq, dp.c.generation_id > after)
            .group_by(dp.c.generation_id)
            .order_by(dp.c.generation_id)
        )
        ranges: list[GenerationRange] = []
        first = last = None
        rows = size = 0
        for generation, count, value_bytes in self._read("plan batches", query, stream=True):
            if first is not None and (rows + count > max_rows or size + value_bytes > max_bytes):
                ranges.append(GenerationRange(first, last, rows, size))  # type: ignore[arg-type]
                first, rows, size = None, 0, 0
            if first is None:
                first = generation
            last = generation
            rows += int(count)
            size += int(value_bytes)
        if first is not None:
            ranges.append(GenerationRange(first, last, rows, size))  # type: ignore[arg-type]
        return ranges

    def generations_before(self, seq: int, cutoff: float) -> int:
        """Generations of ``seq`` whose generation time (metadata) is before ``cutoff``."""
        meta = self.tables["metadata"]
        query = sa.select(sa.func.count(sa.distinct(meta.c.generation_id))).where(
            meta.c.taskmanager_id == seq, meta.c.generation_time < cutoff
        )
        return int(next(self._read("count old generations", query))[0])

    def products_per_generation(self, seq: int) -> Iterator[tuple[int, int]]:
        """(generation, distinct products) of registration ``seq``, in order (streamed)."""
        dp = self.tables["dataproduct"]
        distinct = (
            sa.select(dp.c.generation_id, dp.c.key)
            .where(dp.c.taskmanager_id == seq, dp.c.generation_id.is_not(None))
            .distinct()
            .subquery()
        )
        query = (
            sa.select(distinct.c.generation_id, sa.func.count())
            .group_by(distinct.c.generation_id)
            .order_by(distinct.c.generation_id)
        )
        for generation, count in self._read("count products per generation", query, stream=True):
            yield int(generation), int(count)

    def unnumbered_rows(self, seq: int, limit: int) -> list[tuple[int | None, str | None]]:
        """Rows of ``seq`` with no generation or no key: they cannot be imported."""
        dp = self.tables["dataproduct"]
        query = (
            sa.select(dp.c.generation_id, dp.c.key)
            .where(
                dp.c.taskmanager_id == seq,
                sa.or_(dp.c.generation_id.is_(None), dp.c.key.is_(None), dp.c.key == ""),
            )
            .limit(limit)
        )
        return [tuple(row) for row in self._read("find rows without generation or key", query)]  # type: ignore[misc]

    def read_generations(
        self, seq: int, first: int, last: int, only: Collection[int] | None = None
    ) -> list[SourceGeneration]:
        """The products of generations ``first``..``last`` of ``seq`` (or only those in
        ``only``) with their header and metadata rows.

        The three tables are read separately and matched by (generation, key), so a
        duplicated row in one of them never multiplies the others.  Of duplicated rows the
        last one (highest ``id`` in 2.0) is kept.
        """

        def where(table: sa.Table) -> list[Any]:
            conditions = [
                table.c.taskmanager_id == seq,
                table.c.generation_id >= first,
                table.c.generation_id <= last,
                table.c.key.is_not(None),
                table.c.key != "",
            ]
            if only is not None:
                conditions.append(table.c.generation_id.in_(sorted(only)))
            return conditions

        def ordered(table: sa.Table, rows: list[Any]) -> list[Any]:
            # Sorted here, not by the database: SQLite's sorter would copy every value.
            # Stable, so rows without an id (1.7) keep the order the database gave.
            if "id" in table.c:
                return sorted(rows, key=lambda row: (row.generation_id, row.key, row.id))
            return sorted(rows, key=lambda row: (row.generation_id, row.key))

        dp, header, meta = self.tables["dataproduct"], self.tables["header"], self.tables["metadata"]
        generations: dict[int, SourceGeneration] = {}
        columns = [dp.c.generation_id, dp.c.key, dp.c.value, *([dp.c.id] if "id" in dp.c else [])]
        rows = ordered(dp, list(self._read("read products", sa.select(*columns).where(*where(dp)))))
        for generation_id, key, stored, *_id in rows:
            generation = generations.get(generation_id)
            if generation is None:
                generation = generations[generation_id] = SourceGeneration(int(generation_id))
            value = bytes(stored) if stored is not None else None
            generation.rows += 1
            generation.value_bytes += len(value) if value is not None else 0
            known = generation.products.get(key)
            if known is None:
                generation.products[key] = SourceProduct(value)
            else:
                known.copies += 1
                known.identical = known.identical and known.value == value
                known.value = value
        del rows
        for table, attribute in ((header, "header"), (meta, "metadata")):
            query = sa.select(table).where(*where(table))
            for row in ordered(table, list(self._read(f"read {table.name} rows", query))):
                generation = generations.get(row.generation_id)
                product = generation.products.get(row.key) if generation is not None else None
                if product is not None:
                    setattr(product, attribute, row)
        return [generations[g] for g in sorted(generations)]

    def read_all(self, batch_rows: int = DEFAULT_BATCH_ROWS, batch_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[int]:
        """Every product row, read the way an import reads them (for the benchmark's
        baseline): yields each batch's row count."""
        for tm in self.taskmanagers():
            for batch in self.generation_ranges(tm.sequence_id, -(2**62), batch_rows, batch_bytes):
                generations = self.read_generations(tm.sequence_id, batch.first, batch.last)
                yield sum(g.rows for g in generations)


# -- the report ------------------------------------------------------------------------------------


@dataclass
class BadProduct:
    """A source product that was not imported, and why."""

    channel: str | None
    taskmanager_id: str | None
    generation_id: int | None
    key: str | None
    reason: str


@dataclass
class DuplicateProduct:
    """A product the reference holds more than once (1.7 has no unique constraint): the
    last row was kept."""

    channel: str | None
    taskmanager_id: str | None
    generation_id: int
    key: str
    copies: int
    identical: bool


@dataclass
class TaskManagerReport:
    """Source and target counts of one reference registration."""

    channel: str
    source_sequence_id: int
    source_taskmanager_id: str | None
    taskmanager_id: str
    sequence_id: int | None = None
    rows: int = 0
    products: int = 0
    duplicates: int = 0
    generations: int = 0
    last_generation: int = 0
    value_bytes: int = 0
    header_rows: int = 0
    metadata_rows: int = 0
    resume_after: int = 0
    rows_to_copy: int = 0
    rows_read: int = 0
    written: int = 0
    bad: int = 0
    present: int = 0
    target_generations: int = 0
    older_than_retention: int = 0
    finished: bool = False

    @property
    def missing(self) -> int:
        return max(0, self.products - self.present)

    @property
    def status(self) -> str:
        if not self.finished:
            return "incomplete"
        if self.missing == 0:
            return "ok"
        if self.missing == self.bad:
            return "ok, bad values skipped"
        return "MISMATCH"


@dataclass
class ImportProgress:
    """Where an import is: rows read of the rows to read, and the generation last written."""

    rows_done: int
    rows_total: int
    channel: str
    generation_id: int


@dataclass
class ImportReport:
    source: str
    target: str
    source_version: str
    dry_run: bool
    taskmanagers: list[TaskManagerReport] = field(default_factory=list)
    skipped_taskmanagers: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    bad_products: list[BadProduct] = field(default_factory=list)
    bad_total: int = 0
    duplicates: list[DuplicateProduct] = field(default_factory=list)
    duplicates_total: int = 0
    unregistered_rows: int = 0
    retention_days: float | None = None
    batches: int = 0
    rows_read: int = 0
    value_bytes_read: int = 0
    products_written: int = 0
    values_decoded: int = 0
    payloads_added: int = 0
    payload_bytes_added: int = 0
    elapsed: float = 0.0
    stopped: bool = False

    @property
    def complete(self) -> bool:
        """Every registration finished and every product not copied reported as bad."""
        return not self.stopped and all(t.status.startswith("ok") for t in self.taskmanagers)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0

    def totals(self) -> dict[str, int]:
        names = (
            "rows",
            "products",
            "duplicates",
            "generations",
            "rows_to_copy",
            "written",
            "bad",
            "present",
            "older_than_retention",
        )
        totals = {name: sum(getattr(t, name) for t in self.taskmanagers) for name in names}
        totals["missing"] = sum(t.missing for t in self.taskmanagers)
        return totals

    def add_bad(self, bad: BadProduct) -> None:
        self.bad_total += 1
        if len(self.bad_products) < MAX_LISTED:
            self.bad_products.append(bad)

    def as_dict(self) -> dict[str, Any]:
        taskmanagers = []
        for report in self.taskmanagers:
            entry = asdict(report)
            entry["missing"] = report.missing
            entry["status"] = report.status
            taskmanagers.append(entry)
        return {
            "source": self.source,
            "target": self.target,
            "source_version": self.source_version,
            "dry_run": self.dry_run,
            "complete": self.complete,
            "stopped": self.stopped,
            "totals": self.totals(),
            "taskmanagers": taskmanagers,
            "skipped_taskmanagers": self.skipped_taskmanagers,
            "conflicts": self.conflicts,
            "bad_products": [asdict(b) for b in self.bad_products],
            "bad_total": self.bad_total,
            "duplicates": [asdict(d) for d in self.duplicates],
            "duplicates_total": self.duplicates_total,
            "unregistered_rows": self.unregistered_rows,
            "retention_days": self.retention_days,
            "batches": self.batches,
            "rows_read": self.rows_read,
            "value_bytes_read": self.value_bytes_read,
            "products_written": self.products_written,
            "values_decoded": self.values_decoded,
            "payloads_added": self.payloads_added,
            "payload_bytes_added": self.payload_bytes_added,
            "elapsed_seconds": round(self.elapsed, 3),
            "rows_per_second": round(self.rows_per_second, 1),
        }


# -- the target ------------------------------------------------------------------------------------


def open_target(config: Mapping[str, Any], dry_run: bool = False) -> DataSpace | None:
    """The DataSpace to import into: created or upgraded for an import; for a dry run
    opened read-only, or None when it does not exist yet (nothing to compare with).

    "Does not exist yet" is asked of the database itself (a SQLite file that is not there,
    a database with no schema revision), so a dry run creates nothing, not even a file.
    """
    if not dry_run:
        return DataSpace(config)
    datasource = config["dataspace"]["datasource"]
    settings = {**(datasource.get("config") or {}), "read_only": True}
    readonly = {**config, "dataspace": {**config["dataspace"], "datasource": {**datasource, "config": settings}}}
    if datasource.get("module") == SQL_DATASOURCE:
        url = make_url(settings.get("url", ""))
        if url.get_backend_name() == "sqlite" and url.database and not pathlib.Path(url.database).is_file():
            return None
        engine = create_engine(settings)
        try:
            with translate_errors(engine, "read schema revision", mask_url(url)), engine.connect() as conn:
                revision = migrations.current_revision(conn)
        finally:
            engine.dispose()
        if revision is None:
            return None
    return DataSpace(readonly)


# -- the import ------------------------------------------------------------------------------------


class ReferenceImporter:
    """Copies a reference database into a DataSpace (see the module's docstring).

    ``target`` None is a dry run against a DataSpace that does not exist yet.
    ``channels``: import only these channel names.  ``max_batches``: stop after that many
    batches (a re-run continues), for imports in slices and for the tests.
    """

    def __init__(
        self,
        source: ReferenceSource,
        target: DataSpace | None,
        *,
        dry_run: bool = False,
        channels: Collection[str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_batches: int | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        progress: Callable[[ImportProgress], None] | None = None,
        retention_days: float | None = None,
    ) -> None:
        if target is None and not dry_run:
            raise ValueError("an import needs a target DataSpace (None is for a dry run)")
        self.source = source
        self.target = target
        self.dry_run = dry_run
        self.channels = set(channels) if channels else None
        self.batch_rows = max(1, int(batch_rows))
        self.batch_bytes = max(1, int(batch_bytes))
        self.max_batches = max_batches
        self.progress = progress
        policy = target.datasource.payload_policy if target is not None else DEFAULT_POLICY
        self.values = _DecodedValues(policy, max_value_bytes, cache_bytes)
        self.logger = get_logger().bind(module="reference_import", component="dataspace")
        target_url = repr(target.datasource) if target is not None else "(a new DataSpace)"
        self.report = ImportReport(source.url, target_url, source.version, dry_run, retention_days=retention_days)
        self._registrations: dict[str, dict[str, Any]] = {}

    # -- planning ----------------------------------------------------------------------------

    def _selected(self) -> list[tuple[ReferenceTaskManager, str]]:
        """The registrations to import, in the reference's order, with the id each gets here."""
        taskmanagers = self.source.taskmanagers()
        seen: set[str] = set()
        selected = []
        for tm in taskmanagers:
            base = (tm.taskmanager_id or "").strip() or f"REFERENCE-{tm.sequence_id}"
            target_id = base if base not in seen else f"{base}#{tm.sequence_id}"
            seen.add(base)
            if self.channels is not None and tm.name not in self.channels:
                continue
            selected.append((tm, target_id))
        return selected

    def _target_registrations(self) -> dict[str, dict[str, Any]]:
        if self.target is None:
            return {}
        return {r["taskmanager_id"]: r for r in self.target.get_taskmanagers()}

    def _check_conflicts(self, selected: list[tuple[ReferenceTaskManager, str]]) -> list[str]:
        """Channels whose history here did not come from this reference, and ids taken by
        another channel.  Importing those would make the imported registration the
        channel's newest, so ``de-server`` would continue the old numbering, not its own."""
        problems = []
        ours = {target_id for _tm, target_id in selected}
        names = {tm.name for tm, _ in selected}
        for registration in self._registrations.values():
            if registration["name"] in names and registration["taskmanager_id"] not in ours:
                problems.append(
                    f"channel {registration['name']!r} already has history here (task manager "
                    f"{registration['taskmanager_id']}, not from this reference)"
                )
        for tm, target_id in selected:
            registration = self._registrations.get(target_id)
            if registration is not None and registration["name"] != tm.name:
                problems.append(f"task manager id {target_id} is registered here as {registration['name']!r}")
        return sorted(set(problems))

    def _prepare(self) -> list[tuple[ReferenceTaskManager, str]]:
        """Read the target's registrations and the source's counts; the registrations to
        import (those with a name and products), recording the others as skipped."""
        self._registrations = self._target_registrations()
        selected = self._selected()
        self._counts = self.source.counts()
        registered = {tm.sequence_id for tm in self.source.taskmanagers()}
        self.report.unregistered_rows = sum(c.rows for seq, c in self._counts.items() if seq not in registered)
        kept = []
        for tm, target_id in selected:
            counts = self._counts.get(tm.sequence_id)
            if counts is None or counts.rows == 0:
                reason = "no products"
            elif not tm.name:
                reason = "no channel name"
                self.report.add_bad(
                    BadProduct(
                        tm.name, tm.taskmanager_id, None, None, f"{counts.rows} rows of a task manager without a name"
                    )
                )
            else:
                kept.append((tm, target_id))
                continue
            self.report.skipped_taskmanagers.append(
                {"sequence_id": tm.sequence_id, "taskmanager_id": tm.taskmanager_id, "name": tm.name, "reason": reason}
            )
        self.report.conflicts = self._check_conflicts(kept)
        return kept

    def _plan_taskmanager(self, tm: ReferenceTaskManager, target_id: str) -> TaskManagerReport:
        counts = self._counts[tm.sequence_id]
        registration = self._registrations.get(target_id)
        report = TaskManagerReport(
            channel=tm.name or "",
            source_sequence_id=tm.sequence_id,
            source_taskmanager_id=tm.taskmanager_id,
            taskmanager_id=target_id,
            sequence_id=registration["sequence_id"] if registration else None,
            rows=counts.rows,
            products=counts.products,
            duplicates=counts.rows - counts.products,
            generations=counts.generations,
            last_generation=counts.last_generation,
            value_bytes=counts.value_bytes,
            header_rows=counts.header_rows,
            metadata_rows=counts.metadata_rows,
        )
        if report.sequence_id is not None and self.target is not None:
            report.resume_after = self.target.get_last_generation_id(tm.name or "", target_id)
        report.rows_to_copy, _ = self.source.rows_after(tm.sequence_id, report.resume_after)
        if self.report.retention_days is not None:
            # what the Reaper will delete: generations older than the retention, but never
            # a registration's newest
            cutoff = time.time() - float(self.report.retention_days) * 86400
            old = self.source.generations_before(tm.sequence_id, cutoff)
            report.older_than_retention = old - 1 if old >= counts.generations > 0 else old
        self._count_present(tm, report)
        self.report.taskmanagers.append(report)
        return report

    def _count_present(self, tm: ReferenceTaskManager, report: TaskManagerReport) -> list[int]:
        """Set ``present``: the source's products the target holds, generation by
        generation; returns the generations up to the resume point that miss some."""
        held: dict[int, int] = {}
        if report.sequence_id is not None and self.target is not None:
            generations = self.target.get_generations(report.sequence_id)
            held = {g["generation_id"]: int(g["products"]) for g in generations}
            report.target_generations = len(generations)
        present = 0
        gaps = []
        for generation, count in self.source.products_per_generation(tm.sequence_id):
            have = min(held.get(generation, 0), count)
            present += have
            if have < count and generation <= report.resume_after:
                gaps.append(generation)
        report.present = present
        return gaps

    # -- importing -----------------------------------------------------------------------------

    def run(self) -> ImportReport:
        """Plan, refuse conflicts, copy what the target lacks, then count both sides.

        A dry run stops after the plan.  Raises :class:`ImportConflictError` (nothing
        written) when the target holds history of a channel that did not come from this
        reference; database errors propagate (what was committed stays, a re-run continues).
        """
        started = time.monotonic()
        stats_before = self._storage_stats()
        selected = self._prepare()
        if self.report.conflicts and not self.dry_run:
            raise ImportConflictError(
                "the target DataSpace already holds channels of the same name: "
                + "; ".join(self.report.conflicts)
                + ". Import into a DataSpace before de-server has run those channels, or leave them out "
                "(--channel names the channels to import)"
            )
        reports = [self._plan_taskmanager(tm, target_id) for tm, target_id in selected]
        if self.dry_run:
            self.report.elapsed = time.monotonic() - started
            return self.report
        total = sum(r.rows_to_copy for r in reports)
        done = 0
        self.logger.info(
            "importing reference history",
            source=self.source.url,
            taskmanagers=len(reports),
            rows=total,
        )
        for (tm, _target_id), report in zip(selected, reports, strict=True):
            if self.report.stopped:
                break
            done = self._copy(tm, report, done, total)
            if not self.report.stopped:
                self._fill_gaps(tm, report)
                report.finished = True
            self._count_present(tm, report)
        self.report.values_decoded = self.values.decoded
        stats_after = self._storage_stats()
        self.report.payloads_added = stats_after.get("payloads", 0) - stats_before.get("payloads", 0)
        self.report.payload_bytes_added = stats_after.get("payload_bytes", 0) - stats_before.get("payload_bytes", 0)
        self.report.elapsed = time.monotonic() - started
        if self.report.bad_total:
            self.logger.warning(
                "reference products not imported (see the report)",
                products=self.report.bad_total,
                first=[f"{b.channel}/{b.generation_id}/{b.key}: {b.reason}" for b in self.report.bad_products[:3]],
            )
        self.logger.info(
            "reference import ended",
            complete=self.report.complete,
            stopped=self.report.stopped,
            rows=self.report.rows_read,
            written=self.report.products_written,
            bad=self.report.bad_total,
            seconds=round(self.report.elapsed, 1),
        )
        return self.report

    def _storage_stats(self) -> dict[str, int]:
        try:
            return self.target.storage_stats() if self.target is not None else {}
        except (NotImplementedError, AttributeError):
            return {}

    def _copy(self, tm: ReferenceTaskManager, report: TaskManagerReport, done: int, total: int) -> int:
        """Copy the generations after the resume point, one batch (one read, one write) at a time."""
        for batch in self.source.generation_ranges(
            tm.sequence_id, report.resume_after, self.batch_rows, self.batch_bytes
        ):
            if self.max_batches is not None and self.report.batches >= self.max_batches:
                self.report.stopped = True
                return done
            generations = self.source.read_generations(tm.sequence_id, batch.first, batch.last)
            decoded = [(g.generation_id, self._products(tm, report, g)) for g in generations]
            self._store(tm, report, [(g, products) for g, products in decoded if products])
            self.report.batches += 1
            done += sum(g.rows for g in generations)
            if self.progress is not None and generations:
                self.progress(ImportProgress(done, total, report.channel, generations[-1].generation_id))
        for generation_id, key in self.source.unnumbered_rows(tm.sequence_id, MAX_LISTED):
            self._bad(tm, report, generation_id, key, "the row has no generation id or no key")
        return done

    def _fill_gaps(self, tm: ReferenceTaskManager, report: TaskManagerReport) -> None:
        """Products missing from generations an earlier run copied: try them again (they
        are reported again if they still cannot be imported)."""
        if report.resume_after == 0 or self.target is None:
            return
        gaps = self._count_present(tm, report)
        for start in range(0, len(gaps), 100):
            chunk = gaps[start : start + 100]
            pending = []
            for generation in self.source.read_generations(tm.sequence_id, chunk[0], chunk[-1], only=chunk):
                held = set(self.target.get_keys(report.sequence_id, generation.generation_id))  # type: ignore[arg-type]
                generation.products = {k: p for k, p in generation.products.items() if k not in held}
                products = self._products(tm, report, generation, count_rows=False)
                if products:
                    pending.append((generation.generation_id, products))
            self._store(tm, report, pending)

    def _bad(
        self, tm: ReferenceTaskManager, report: TaskManagerReport, generation: int | None, key: str | None, reason: str
    ) -> None:
        report.bad += 1
        self.report.add_bad(BadProduct(tm.name, tm.taskmanager_id, generation, key, reason))
        self.logger.info(
            "reference product skipped",
            channel=tm.name,
            taskmanager_id=tm.taskmanager_id,
            generation=generation,
            key=key,
            reason=reason,
        )

    def _products(
        self,
        tm: ReferenceTaskManager,
        report: TaskManagerReport,
        generation: SourceGeneration,
        count_rows: bool = True,
    ) -> dict[str, tuple[Any, Header, Metadata]]:
        """The importable products of one source generation; the others are reported."""
        if count_rows:
            report.rows_read += generation.rows
            self.report.rows_read += generation.rows
            self.report.value_bytes_read += generation.value_bytes
        products: dict[str, tuple[Any, Header, Metadata]] = {}
        for key, source in generation.products.items():
            if source.copies > 1 and count_rows:
                self.report.duplicates_total += 1
                if len(self.report.duplicates) < MAX_LISTED:
                    self.report.duplicates.append(
                        DuplicateProduct(
                            tm.name, tm.taskmanager_id, generation.generation_id, key, source.copies, source.identical
                        )
                    )
            try:
                products[key] = self._product(report.taskmanager_id, generation.generation_id, source)
            except BadValue as exc:
                self._bad(tm, report, generation.generation_id, key, str(exc))
        return products

    def _store(
        self,
        tm: ReferenceTaskManager,
        report: TaskManagerReport,
        generations: list[tuple[int, dict[str, tuple[Any, Header, Metadata]]]],
    ) -> None:
        """Write decoded generations, registering the task manager first if this is its
        first product here (a registration with nothing importable is never made)."""
        if not generations:
            return
        assert self.target is not None
        if report.sequence_id is None:
            report.sequence_id = self.target.store_taskmanager(tm.name or "", report.taskmanager_id, tm.datestamp)
        written = self._write_batch(report.sequence_id, generations, tm, report)
        report.written += written
        self.report.products_written += written

    def _product(self, taskmanager_id: str, generation_id: int, source: SourceProduct) -> tuple[Any, Header, Metadata]:
        """Value, Header and Metadata of one source product (BadValue if any is unusable)."""
        header, meta = source.header, source.metadata
        if header is None:
            raise BadValue("it has no header row")
        if meta is None:
            raise BadValue("it has no metadata row")
        times = {}
        for name in HEADER_FIELDS:
            moment = getattr(header, name)
            if not isinstance(moment, numbers.Real):
                raise BadValue(f"its header has no {name}")
            times[name] = float(moment)
        if header.creator is None:
            raise BadValue("its header has no creator")
        if not isinstance(meta.generation_time, numbers.Real):
            raise BadValue("its metadata has no generation_time")
        try:
            metadata = Metadata(
                taskmanager_id,
                state=meta.state,
                generation_id=generation_id,
                generation_time=float(meta.generation_time),
                missed_update_count=int(meta.missed_update_count or 0),
            )
        except InvalidMetadataError as exc:
            raise BadValue(f"its metadata: {exc}") from None
        value = self.values.get(source.value)  # type: ignore[arg-type]
        return (
            value,
            Header(taskmanager_id, creator=str(header.creator), schema_id=header.schema_id, **times),
            metadata,
        )

    def _write_batch(
        self,
        sequence_id: int,
        generations: list[tuple[int, dict[str, tuple[Any, Header, Metadata]]]],
        tm: ReferenceTaskManager,
        report: TaskManagerReport,
    ) -> int:
        """Write a batch of generations (one transaction); if the target refuses it for a
        reason that is not the database being away, write generation by generation, then
        product by product, to find what it refuses.  Returns the products written."""
        assert self.target is not None
        try:
            self.target.write_generations(sequence_id, generations)
            return sum(len(products) for _g, products in generations)
        except DataSpaceConnectionError:
            raise
        except (DataSpaceError, ValueError, TypeError) as exc:
            if len(generations) == 1 and len(generations[0][1]) == 1:
                generation_id, products = generations[0]
                self._bad(tm, report, generation_id, next(iter(products)), f"the target refused it: {exc}")
                return 0
        if len(generations) > 1:
            return sum(self._write_batch(sequence_id, [generation], tm, report) for generation in generations)
        generation_id, products = generations[0]
        return sum(
            self._write_batch(sequence_id, [(generation_id, {key: product})], tm, report)
            for key, product in products.items()
        )
