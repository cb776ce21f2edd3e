"""DataBlock: one task manager's view of one generation of data products.

A generation's products live in the DataSpace; a DataBlock is the handle a channel
uses to put and get them, together with each product's :class:`Header` (who made it,
when, when it expires) and :class:`Metadata` (state, generation, missed updates).

Writes are atomic per generation.  ``put`` outside a transaction commits one product;
inside ``with block.transaction():`` every put is buffered, visible to ``get`` on this
block, and committed in one database transaction when the block exits, so a reader
sees the whole generation or none of it.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import threading
import time
import uuid
import zlib
from collections import UserDict
from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar, Self

from decisionengine.framework.dataspace import codecs
from decisionengine.framework.dataspace.errors import DataSpaceError
from decisionengine.framework.util.logger import get_logger

STATE_NEW = "NEW"
STATE_START_BACKUP = "START_BACKUP"
STATE_METADATA_UPDATE = "METADATA_UPDATE"
STATE_END_CYCLE = "END_CYCLE"


def zdumps(obj: Any) -> bytes:
    """Pickle and compress
    :param obj: a python object
    :return: compressed string

    Writes the reference format (pickle, highest protocol, zlib level 9) so that bytes
    produced here can be read by any Decision Engine.  The DataSpace itself stores
    payloads with the faster codec in :mod:`~decisionengine.framework.dataspace.codecs`.
    """
    return codecs.encode(obj, codecs.ZlibCodec.name)


def zloads(zbytes: bytes) -> Any:
    """Decompress and unpickle
    If input is not compressed attempts to just unpickle it

    :param zbytes: compressed bytes
    :returns: returns python object

    Accepts every self-identifying codec (zstandard, zlib) and plain pickles.  Unpickles
    through the built-in allow-list of data types (builtins, the standard library's data
    types, numpy, pandas): anything else raises
    :class:`~decisionengine.framework.dataspace.errors.UntrustedPayloadError` (also a
    ``pickle.UnpicklingError``) and none of its code runs.  To read classes of your own,
    use ``codecs.decode(zbytes, UnpicklePolicy(trusted_modules=[...]))``.
    """
    return codecs.decode(zbytes)


def compress(obj: Any) -> bytes:
    """Compress python object
    :param obj: python object
    :return: compressed object

    The reference's text helper: stores ``str(obj)`` encoded as latin-1, zlib level 9
    (so ``compress(b"x")`` stores the text ``"b'x'"``, and text outside latin-1 raises
    ``UnicodeEncodeError``, as there).  Not a payload codec: use :func:`zdumps` to keep an
    object.
    """
    return zlib.compress(str(obj).encode("latin-1"), 9)


def decompress(zbytes: bytes) -> str:
    """Decompress zipped byte stream, convert to string.
    :param zbytes: byte stream
    :return: uncompressed string

    Bytes that are not a zlib stream are taken as they are (the reference accepts text that
    was never compressed); every byte decodes, as latin-1.
    """
    if isinstance(zbytes, str):
        return zbytes
    try:
        raw = zlib.decompress(zbytes)
    except zlib.error:
        raw = bytes(zbytes)
    return raw.decode("latin-1")


def taskmanager_name_argument(given: str | None, alias: str | None, given_label: str, alias_label: str) -> str:
    """The task manager name passed to ``store_taskmanager`` under either of its names.

    The reference calls it ``name`` in ``DataSpace.store_taskmanager`` and
    ``taskmanager_name`` in the data source's and the DataBlock's, so scripts use both
    keywords; every ``store_taskmanager`` of this package accepts either.
    """
    if given is not None and alias is not None and given != alias:
        raise TypeError(
            f"store_taskmanager() got two different names: {given_label}={given!r}, {alias_label}={alias!r}"
        )
    name = given if given is not None else alias
    if name is None:
        raise TypeError(f"store_taskmanager() needs the task manager's name ({given_label} or {alias_label})")
    return name


class InvalidMetadataError(Exception):
    """Errors due to invalid Metadata"""


class Header(UserDict):
    """Who created a product and for how long it is valid."""

    default_data_lifetime = 1800
    required_keys = {
        "taskmanager_id",
        "create_time",
        "expiration_time",
        "scheduled_create_time",
        "creator",
        "schema_id",
    }

    def __init__(
        self,
        taskmanager_id: str,
        create_time: float | None = None,
        expiration_time: float | None = None,
        scheduled_create_time: float | None = None,
        creator: str = "module",
        schema_id: int | None = None,
    ) -> None:
        super().__init__()
        now = time.time()
        if create_time is None:
            create_time = now
        if expiration_time is None:
            expiration_time = create_time + self.default_data_lifetime
        if scheduled_create_time is None:
            scheduled_create_time = now
        self.data = {
            "taskmanager_id": taskmanager_id,
            "create_time": create_time,
            "expiration_time": expiration_time,
            "scheduled_create_time": scheduled_create_time,
            "creator": creator,
            "schema_id": schema_id,
        }

    def is_valid(self) -> bool:
        """Check if the Header has minimum required information"""
        return self.required_keys.issubset(self.data)


class Metadata(UserDict):
    """A product's state within its generation."""

    valid_states = {STATE_NEW, STATE_START_BACKUP, STATE_METADATA_UPDATE, STATE_END_CYCLE}
    required_keys = {"taskmanager_id", "state", "generation_id", "generation_time", "missed_update_count"}

    def __init__(
        self,
        taskmanager_id: str,
        state: str = STATE_NEW,
        generation_id: int | None = None,
        generation_time: float | None = None,
        missed_update_count: int = 0,
    ) -> None:
        super().__init__()
        self._check_state(state)
        if generation_time is None:
            generation_time = time.time()
        self.data = {
            "taskmanager_id": taskmanager_id,
            "state": state,
            "generation_id": generation_id,
            "generation_time": generation_time,
            "missed_update_count": missed_update_count,
        }

    @classmethod
    def _check_state(cls, state: str) -> None:
        if state not in cls.valid_states:
            raise InvalidMetadataError(
                f"invalid metadata state {state!r}; valid states are {', '.join(sorted(cls.valid_states))}"
            )

    def set_state(self, state: str) -> None:
        """Set the state for the Metadata"""
        self._check_state(state)
        self.data["state"] = state

    def is_valid(self) -> bool:
        return self.required_keys.issubset(self.data)


class _Row(tuple):
    """A row as the reference's data source returns it: a tuple in its column order, that
    also reads by field name (``row[4]``, ``row["create_time"]``, ``row.create_time``).

    ``keys()`` makes ``dict(row)`` give ``{field: value}``, as for the mapping this
    framework returned before; iteration, ``len`` and ``in`` are the tuple's (values).
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *values: Any) -> Self:
        if len(values) != len(cls._fields):
            raise TypeError(f"{cls.__name__} takes {len(cls._fields)} values ({', '.join(cls._fields)})")
        return super().__new__(cls, values)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for position, field in enumerate(cls._fields):
            setattr(cls, field, property(operator.itemgetter(position), doc=f"column {position}: {field}"))

    @classmethod
    def from_fields(cls, **fields: Any) -> Self:
        return cls(*(fields[name] for name in cls._fields))

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        if isinstance(index, str):
            try:
                index = self._fields.index(index)
            except ValueError:
                raise KeyError(index) from None
        return tuple.__getitem__(self, index)

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def keys(self) -> list[str]:
        return list(self._fields)

    def values(self) -> list[Any]:
        return list(self)

    def items(self) -> list[tuple[str, Any]]:
        return list(zip(self._fields, self, strict=True))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._fields else default

    def _asdict(self) -> dict[str, Any]:
        return dict(self.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.items())})"


class HeaderRow(_Row):
    """What ``get_header`` of a DataSpace or data source returns: the reference's header row.

    By position: (task manager UUID, sequence id, generation id, key, create_time,
    expiration_time, scheduled_create_time, creator, schema_id).  By name, ``taskmanager_id``
    is the task manager's UUID (as in :class:`Header`) and ``sequence_id`` its registry
    number.  ``DataBlock.get_header`` turns it into a :class:`Header`.
    """

    __slots__ = ()
    _fields = (
        "taskmanager_id",
        "sequence_id",
        "generation_id",
        "key",
        "create_time",
        "expiration_time",
        "scheduled_create_time",
        "creator",
        "schema_id",
    )


class MetadataRow(_Row):
    """What ``get_metadata`` of a DataSpace or data source returns: the reference's metadata row.

    By position: (task manager UUID, sequence id, generation id, key, state,
    generation_time, missed_update_count); by name as :class:`HeaderRow`.
    ``DataBlock.get_metadata`` turns it into a :class:`Metadata`.
    """

    __slots__ = ()
    _fields = (
        "taskmanager_id",
        "sequence_id",
        "generation_id",
        "key",
        "state",
        "generation_time",
        "missed_update_count",
    )


def _fields_of(record: Any, row_type: type[_Row]) -> Mapping[str, Any]:
    """A header or metadata record by field name: a mapping (``Header``, a row of ours) or a
    plain sequence in the reference's column order (a data source written for the reference)."""
    if hasattr(record, "keys"):
        return record
    values = tuple(record)
    if len(values) != len(row_type._fields):
        raise TypeError(f"expected a mapping or a {row_type.__name__} sequence ({', '.join(row_type._fields)})")
    return dict(zip(row_type._fields, values, strict=True))


def header_from_record(record: Any) -> Header:
    """A :class:`Header` from what a data source's ``get_header`` returned."""
    if isinstance(record, Header):
        return record
    fields = _fields_of(record, HeaderRow)
    return Header(
        fields["taskmanager_id"],
        create_time=fields["create_time"],
        expiration_time=fields["expiration_time"],
        scheduled_create_time=fields["scheduled_create_time"],
        creator=fields["creator"],
        schema_id=fields.get("schema_id"),
    )


def metadata_from_record(record: Any) -> Metadata:
    """A :class:`Metadata` from what a data source's ``get_metadata`` returned."""
    if isinstance(record, Metadata):
        return record
    fields = _fields_of(record, MetadataRow)
    return Metadata(
        fields["taskmanager_id"],
        state=fields["state"],
        generation_id=fields["generation_id"],
        generation_time=fields["generation_time"],
        missed_update_count=fields["missed_update_count"],
    )


class ProductRetriever:
    """Fetches one named product from a data block, checking its type.

    ``Module.consumes`` gives each module instance one retriever per consumed product,
    so that ``self.jobs(data_block)`` reads ``data_block["jobs"]``.  Any mapping works as
    the data block (tests pass plain dicts).
    """

    def __init__(self, product_name: str, product_type: type | None, product_source: str | None) -> None:
        self.name = product_name
        self.type = product_type
        self.source = product_source

    def __call__(self, datablock: Any) -> Any:
        try:
            product = datablock[self.name]
        except KeyError:
            raise KeyError(f"product {self.name!r} is not in the data block") from None
        if isinstance(self.type, type) and product is not None and not isinstance(product, self.type):
            raise TypeError(f"product {self.name!r} is a {type(product).__name__}, expected {self.type.__name__}")
        return product

    def __str__(self) -> str:
        type_name = getattr(self.type, "__name__", self.type)
        return f"Product retriever for {{'name': {self.name!r}, 'type': {type_name}, 'creator': {self.source!r}}}"

    __repr__ = __str__


class DataBlock:
    """Products of one generation of one task manager.

    ``dataspace`` is a :class:`~decisionengine.framework.dataspace.dataspace.DataSpace`.
    With ``sequence_id`` alone, the block opens that registered task manager of ``name``
    (its id is read from the registry, as in the reference); without ``taskmanager_id``
    or ``sequence_id`` a new task manager id is made; without ``sequence_id`` the task
    manager is looked up (or registered) under ``name``; without ``generation_id`` the
    block opens the task manager's latest generation (1 when it has none).
    """

    def __init__(
        self,
        dataspace: Any,
        name: str,
        taskmanager_id: str | None = None,
        generation_id: int | None = None,
        sequence_id: int | None = None,
    ) -> None:
        self.dataspace = dataspace
        self.name = name
        if not taskmanager_id and sequence_id is not None:
            taskmanager_id = self._registered_id(dataspace, name, sequence_id)
        self.taskmanager_id = str(taskmanager_id) if taskmanager_id else str(uuid.uuid4()).upper()
        self.logger = get_logger().bind(module=__name__.split(".")[-1], channel=name)
        if sequence_id is None:
            try:
                sequence_id = dataspace.get_taskmanager(name, self.taskmanager_id)["sequence_id"]
            except KeyError:
                sequence_id = dataspace.store_taskmanager(name, self.taskmanager_id)
        self.sequence_id = sequence_id
        if generation_id is None:
            generation_id = max(dataspace.get_last_generation_id(name, self.taskmanager_id), 1)
        self.generation_id = int(generation_id)
        self.lock = threading.RLock()
        self._pending: dict[str, tuple[Any, Header, Metadata]] | None = None
        #: what the last commit wrote: read from memory, not from the database, afterwards
        self._committed: dict[str, tuple[Any, Header, Metadata]] = {}
        #: products this block answers from memory and never writes (see :meth:`attach`)
        self._attached: dict[str, tuple[Any, Header, Metadata]] = {}
        self._announcement: dict[str, Any] | None = None
        #: the right to write this channel's generations (see DataSpace.claim_channel)
        self.fence: Any = None
        #: a key that names this generation's decision, for publishers to recognise a repeat
        self.idempotency_key: str | None = None

    @staticmethod
    def _registered_id(dataspace: Any, name: str, sequence_id: int) -> str:
        """The id of the task manager registered as ``name`` with ``sequence_id`` (KeyError if none)."""
        for registration in dataspace.get_taskmanagers(name):
            if registration["sequence_id"] == sequence_id:
                return str(registration["taskmanager_id"])
        raise KeyError(f"no task manager named {name!r} with sequence id {sequence_id} in the dataspace")

    def __str__(self) -> str:
        return (
            f"DataBlock(name={self.name!r}, taskmanager_id={self.taskmanager_id!r}, "
            f"sequence_id={self.sequence_id}, generation_id={self.generation_id}, keys={self.keys()})"
        )

    __repr__ = __str__

    # -- writing -------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value, Header(self.taskmanager_id))

    def put(self, key: str, value: Any, header: Header, metadata: Metadata | None = None) -> None:
        """Put data into the DataBlock"""
        self._setitem(key, value, header, metadata)

    def _setitem(self, key: str, value: Any, header: Header, metadata: Metadata | None = None) -> None:
        """put a product in the database with header and metadata"""
        if not isinstance(header, Header):
            raise TypeError(f"header of product {key!r} must be a Header, not {type(header).__name__}")
        if metadata is None:
            metadata = Metadata(self.taskmanager_id, generation_id=self.generation_id)
        elif not isinstance(metadata, Metadata):
            raise TypeError(f"metadata of product {key!r} must be a Metadata, not {type(metadata).__name__}")
        with self.lock:
            if self._pending is not None:
                self._pending[key] = (value, header, metadata)
            else:
                self.dataspace.write_generation(self.sequence_id, self.generation_id, {key: (value, header, metadata)})

    def attach(self, key: str, value: Any, header: Header, metadata: Metadata | None = None) -> None:
        """Let readers of this block see ``key`` without writing it to the DataSpace.

        For what the framework keeps elsewhere and stores at another moment: the task
        manager attaches the channel's ``publisher_status`` (the board as of the previous
        generation) for the modules of a generation, and stores the updated board after the
        publishers have run.  A product put or committed in this block under the same key wins
        (the stored one does not: the block answers ``key`` from memory)."""
        if not isinstance(header, Header):
            raise TypeError(f"header of product {key!r} must be a Header, not {type(header).__name__}")
        if metadata is None:
            metadata = Metadata(self.taskmanager_id, generation_id=self.generation_id)
        with self.lock:
            self._attached[key] = (value, header, metadata)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[DataBlock]:
        """Buffer every put and commit them together, in one database transaction.

        If the body raises, nothing is written and the generation stays as it was.
        """
        with self.lock:
            if self._pending is not None:
                yield self  # nested: the outer transaction commits
                return
            self.begin()
            try:
                yield self
                self.commit()
            finally:
                self.discard()

    def begin(self) -> None:
        """Start buffering puts (see :meth:`commit`)."""
        with self.lock:
            self._pending = {}
            self._announcement = None

    def commit(self, keep: bool = False) -> None:
        """Write what was put since :meth:`begin` in one transaction (fenced by ``fence``).

        If the write fails, the buffer is kept, so that the caller may try again (a
        database that went away); :meth:`discard` drops it.  With ``keep``, the committed
        products are then read from memory (what the task manager's publishers read),
        else from the database as always.
        """
        with self.lock:
            if self._pending is None:
                raise DataSpaceError("commit() without begin()")
            if self._pending:
                self.dataspace.write_generation(
                    self.sequence_id, self.generation_id, self._pending, announce=self._announcement, fence=self.fence
                )
            self._committed = self._pending if keep else {}
            self._pending = None
            self._announcement = None

    def discard(self) -> None:
        """Drop what was put and not committed."""
        with self.lock:
            self._pending = None
            self._announcement = None

    def announce(self, payload: dict[str, Any]) -> None:
        """What to tell listeners when the current transaction commits (see DataSpace.write_generation)."""
        if self._pending is None:
            raise DataSpaceError("announce() is for the generation a transaction() is writing")
        self._announcement = payload

    def duplicate(self) -> DataBlock:
        """Duplicate the datablock and return this new DataBlock.

        The block this is called on moves to generation n+1, which holds every product of
        generation n (referencing the same stored payloads, so no payload bytes are
        copied); the returned copy stays at generation n.
        """
        with self.lock:
            if self._pending:
                raise DataSpaceError("cannot duplicate a data block inside an uncommitted transaction")
            dup = copy.copy(self)
            dup.lock = threading.RLock()
            dup._pending = None
            self.dataspace.duplicate_datablock(self.sequence_id, self.generation_id, self.generation_id + 1)
            self.generation_id += 1
            self._committed = {}  # a new generation: what it holds is in the database
            dup._attached = self._attached
            self._attached = {}
            return dup

    def mark_expired(self, expiration_time: float) -> None:
        """Set the expiration_time for the current generation of the dataproduct and mark
        it as expired if expiration_time <= current time"""
        self.dataspace.mark_expired(self.sequence_id, self.generation_id, None, expiration_time)

    # -- reading -------------------------------------------------------------------------

    def _buffered(self, key: str) -> tuple[Any, Header, Metadata] | None:
        if self._pending is not None and key in self._pending:
            return self._pending[key]
        if key in self._committed:
            return self._committed[key]
        return self._attached.get(key)

    def __getitem__(self, key: str) -> Any:
        buffered = self._buffered(key)
        if buffered is not None:
            return buffered[0]
        return self.dataspace.get_dataproduct(self.sequence_id, self.generation_id, key)

    def read(self, keys: Collection[str] | None = None) -> dict[str, Any]:
        """Several products at once, {key: value}: every product of the block, or the
        ``keys`` given (those it does not hold are left out).  What this block holds in
        memory comes from there, the rest from the DataSpace in one round trip (reading
        ``block[key]`` one key after the other costs a statement each)."""
        with self.lock:
            memory = {**self._attached, **self._committed, **(self._pending or {})}
        wanted = None if keys is None else list(dict.fromkeys(keys))
        stored_keys = None if wanted is None else [k for k in wanted if k not in memory]
        stored = (
            self.dataspace.read_generation(self.sequence_id, self.generation_id, stored_keys)
            if (stored_keys is None or stored_keys)
            else {}
        )
        found = {**stored, **{k: v[0] for k, v in memory.items()}}
        order = wanted if wanted is not None else [*stored, *(k for k in memory if k not in stored)]
        return {k: found[k] for k in order if k in found}

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value associated with the key in the database"""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        stored = self.dataspace.get_keys(self.sequence_id, self.generation_id)
        buffered = [k for k in (*self._committed, *(self._pending or {}), *self._attached) if k not in stored]
        return stored + list(dict.fromkeys(buffered))

    def get_header(self, key: str) -> Header:
        """Return the Header associated with the key in the database"""
        buffered = self._buffered(key)
        if buffered is not None:
            return buffered[1]
        return header_from_record(self.dataspace.get_header(self.sequence_id, self.generation_id, key))

    def get_metadata(self, key: str) -> Metadata:
        """Return the metadata associated with the key in the database"""
        buffered = self._buffered(key)
        if buffered is not None:
            return buffered[2]
        return metadata_from_record(self.dataspace.get_metadata(self.sequence_id, self.generation_id, key))

    def get_dataproducts(self, key: str | None = None) -> list[dict[str, Any]]:
        return self.dataspace.get_dataproducts(self.sequence_id, key)

    def is_expired(self, key: str | None = None) -> bool:
        """Check if the dataproduct for a given key or any key is expired"""
        keys = [key] if key is not None else self.keys()
        now = time.time()
        return any(self.get_header(k)["expiration_time"] <= now for k in keys)

    # -- task manager registry -------------------------------------------------------------

    def store_taskmanager(
        self,
        taskmanager_name: str | None = None,
        taskmanager_id: str | None = None,
        datestamp: Any = None,
        *,
        name: str | None = None,
    ) -> int:
        """Persist TaskManager, returns sequence number (the name as ``taskmanager_name`` or ``name``)"""
        return self.dataspace.store_taskmanager(
            taskmanager_name_argument(taskmanager_name, name, "taskmanager_name", "name"), taskmanager_id, datestamp
        )

    def get_taskmanager(self, taskmanager_name: str, taskmanager_id: str | None = None) -> dict[str, Any]:
        """Retrieve TaskManager: a dict with datestamp, sequence_id, name and taskmanager_id."""
        return self.dataspace.get_taskmanager(taskmanager_name, taskmanager_id)
