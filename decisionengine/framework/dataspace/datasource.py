"""The interface every DataSpace storage backend implements.

The abstract methods are the reference Decision Engine's data source contract.  The
methods below them extend it with what generation-atomic writes, cheap duplicates and
a batched Reaper need; they have default implementations in terms of the reference
methods so that a third-party data source written against the old contract still works
(without the atomicity and batching guarantees, which it cannot offer).

Throughout, ``taskmanager_id`` may be the task manager's registry sequence number
(``int``, what DataBlock passes) or its id string (the newest registration of that id).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.dataspace.datablock import header_from_record, metadata_from_record
from decisionengine.framework.dataspace.unpickling import DEFAULT_POLICY, UnpicklePolicy

TaskManagerRef = int | str
#: ``keys`` argument of :meth:`DataSource.get_latest_generation` asking for every product
ALL_PRODUCTS = None


@dataclass(frozen=True)
class Fence:
    """The right to write a channel's generations: its name and the epoch of the claim."""

    channel: str
    epoch: int


@dataclass(frozen=True)
class LatestGeneration:
    """The newest committed generation of a channel, and the products asked for.

    One answer to "what does this channel know now", shared by the server's product
    methods, the JSON API and ``de-query-tool``.
    """

    channel: str
    taskmanager_id: str
    sequence_id: int
    generation_id: int
    generation_time: float | None
    products: dict[str, Any] = field(default_factory=dict)
    #: the :class:`~.datablock.Header` of each product read (who created it, when), from
    #: the same read: empty when the data source cannot give them at no extra cost
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReapReport:
    """What one reaping pass removed (or, in a dry run, would remove)."""

    generations: int = 0
    products: int = 0
    payloads: int = 0
    payload_bytes: int = 0
    batches: int = 0
    dry_run: bool = False
    stopped: bool = False
    per_taskmanager: dict[str, int] = field(default_factory=dict)

    def add(self, other: ReapReport) -> None:
        self.generations += other.generations
        self.products += other.products
        self.payloads += other.payloads
        self.payload_bytes += other.payload_bytes
        self.batches += other.batches
        for name, count in other.per_taskmanager.items():
            self.per_taskmanager[name] = self.per_taskmanager.get(name, 0) + count


class DataSource(abc.ABC):
    """Storage backend of a DataSpace."""

    #: Name of the dataproduct table
    dataproduct_table = "dataproduct"
    #: Name of the header table
    header_table = "header"
    #: Name of the metadata table
    metadata_table = "metadata"
    #: Name of the taskmanager table
    taskmanager_table = "taskmanager"
    #: How this data source unpickles payloads: the built-in allow-list of data types, plus
    #: the classes of ``dataspace.trusted_modules`` when a DataSpace built it from a global
    #: configuration (a data source built on its own trusts no module)
    payload_policy: UnpicklePolicy = DEFAULT_POLICY

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @abc.abstractmethod
    def create_tables(self) -> None:
        """Create database tables"""

    @abc.abstractmethod
    def store_taskmanager(
        self,
        taskmanager_name: str | None = None,
        taskmanager_id: str | None = None,
        datestamp: Any = None,
        *,
        name: str | None = None,
    ) -> int:
        """Store TaskManager; returns its sequence number (the name as ``taskmanager_name`` or
        ``name``; ``datestamp`` a datetime, epoch seconds or ISO-8601 text, default now)"""

    @abc.abstractmethod
    def get_taskmanager(self, taskmanager_name: str, taskmanager_id: str | None = None) -> dict[str, Any]:
        """Retrieve TaskManager: the newest registration of the name (and id, if given)"""

    @abc.abstractmethod
    def get_taskmanagers(
        self, taskmanager_name: str | None = None, start_time: Any = None, end_time: Any = None
    ) -> list[dict[str, Any]]:
        """Retrieve TaskManagers registered between start_time and end_time"""

    @abc.abstractmethod
    def get_last_generation_id(self, taskmanager_name: str, taskmanager_id: str | None = None) -> int:
        """Return last generation id for current task manager or taskmanager w/ task_manager_id."""

    @abc.abstractmethod
    def insert(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        """Insert data into respective tables for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def update(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        """Update the data in respective tables for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def get_header(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """Return the header for the given taskmanager_id, generation_id, key: a
        :class:`~.datablock.HeaderRow` (the reference's row, also readable by field name)"""

    @abc.abstractmethod
    def get_metadata(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """Return the metadata for the given taskmanager_id, generation_id, key: a
        :class:`~.datablock.MetadataRow` (the reference's row, also readable by field name)"""

    @abc.abstractmethod
    def get_dataproduct(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """Return the data for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def get_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> list[dict[str, Any]]:
        """Return list of all data products associated with with taskmanager_id: dicts with
        ``taskmanager_id`` (the sequence id, as in the reference), ``generation_id``, ``key``
        and ``value``, oldest first; ``[]`` for an unknown task manager"""

    @abc.abstractmethod
    def get_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int) -> dict[str, Any]:
        """Return the entire datablock for the given taskmanager_id, generation_id"""

    @abc.abstractmethod
    def duplicate_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int, new_generation_id: int) -> None:
        """Make a copy of the datablock with generation_id as new_generation_id"""

    @abc.abstractmethod
    def delete_data_older_than(self, days: float) -> ReapReport:
        """Delete data older that interval (``days`` > 0, else ``ValueError``)"""

    @abc.abstractmethod
    def get_schema(self, table: str | None = None) -> Any:
        """Given the table name return it's schema"""

    @abc.abstractmethod
    def connect(self) -> None:
        """Create a pool of database connections"""

    @abc.abstractmethod
    def reset_connections(self) -> None:
        """Drop any cached connections and reconnect to the database"""

    @abc.abstractmethod
    def close(self) -> None:
        """Close all connections to the database"""

    # -- extensions, with defaults in terms of the reference contract ---------------------

    def write_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        products: Mapping[str, tuple[Any, Any, Any]],
        mode: str = "upsert",
        announce: Mapping[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Write (insert or replace) several products of one generation.

        Backends that can should do this in one transaction, tell listeners about it
        (``announce``) when it commits, and with a ``fence`` refuse the write
        (:class:`~.errors.OwnershipLost`) unless the fence's epoch is still the channel's,
        checked in that same transaction.  This default can do none of the three.
        """
        existing = set(self.get_keys(taskmanager_id, generation_id))
        for key, (value, header, metadata) in products.items():
            writer = self.update if key in existing else self.insert
            writer(taskmanager_id, generation_id, key, value, header, metadata)

    def write_generations(
        self,
        taskmanager_id: TaskManagerRef,
        generations: Sequence[tuple[int, Mapping[str, tuple[Any, Any, Any]]]],
    ) -> None:
        """Write (insert or replace) the products of several generations of one task
        manager: ``[(generation_id, {key: (value, header, metadata)}), ...]``.

        For bulk copies (the reference import): backends that can should do it in one
        transaction, so that a batch costs one commit rather than one per generation, and
        pickle a value passed for several products once.  This default writes one
        generation after the other.
        """
        for generation_id, products in generations:
            self.write_generation(taskmanager_id, generation_id, products)

    def read_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        keys: Collection[str] | None = ALL_PRODUCTS,
        headers: bool = False,
    ) -> dict[str, Any]:
        """The products of one generation, all of them or the ``keys`` given (keys it does
        not hold are left out): {key: value}, or with ``headers`` {key: (value, Header)}.

        The read every caller wanting several products of a generation uses: backends
        should answer it with one statement.  This default asks the reference methods.
        """
        products = self.get_datablock(taskmanager_id, generation_id)
        if keys is not ALL_PRODUCTS:
            products = {key: products[key] for key in keys if key in products}
        if not headers:
            return dict(products)
        return {
            key: (value, header_from_record(self.get_header(taskmanager_id, generation_id, key)))
            for key, value in products.items()
        }

    def iter_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`get_dataproducts` as a stream (backends that can read it a page at a time)."""
        return iter(self.get_dataproducts(taskmanager_id, key))

    def get_keys(self, taskmanager_id: TaskManagerRef, generation_id: int) -> list[str]:
        """Keys of the products of one generation."""
        return list(self.get_datablock(taskmanager_id, generation_id))

    def mark_expired(
        self, taskmanager_id: TaskManagerRef, generation_id: int, key: str | None, expiry_time: float
    ) -> None:
        """Set the expiration time of one product (or, with ``key=None``, all of a generation)."""
        keys = [key] if key is not None else self.get_keys(taskmanager_id, generation_id)
        for k in keys:
            header = header_from_record(self.get_header(taskmanager_id, generation_id, k))
            header["expiration_time"] = expiry_time
            value = self.get_dataproduct(taskmanager_id, generation_id, k)
            metadata = metadata_from_record(self.get_metadata(taskmanager_id, generation_id, k))
            self.update(taskmanager_id, generation_id, k, value, header, metadata)

    def get_latest_generation(
        self, taskmanager_name: str, keys: Collection[str] | None = ALL_PRODUCTS
    ) -> LatestGeneration | None:
        """The newest generation of the newest registration of ``taskmanager_name`` with its
        products (all of them, the ``keys`` given, or none for ``keys=()``); None when the
        channel is unknown or has no generation yet.  Keys it does not hold are left out.

        Backends should answer from one consistent snapshot; this default asks the
        reference methods one after the other.
        """
        try:
            registration = self.get_taskmanager(taskmanager_name)
        except KeyError:
            return None
        generation = self.get_last_generation_id(taskmanager_name, registration["taskmanager_id"])
        if not generation:
            return None
        sequence = registration["sequence_id"]
        if keys is ALL_PRODUCTS:
            products = dict(self.get_datablock(sequence, generation))
        else:
            present = set(self.get_keys(sequence, generation))
            products = {key: self.get_dataproduct(sequence, generation, key) for key in keys if key in present}
        return LatestGeneration(
            channel=taskmanager_name,
            taskmanager_id=registration["taskmanager_id"],
            sequence_id=sequence,
            generation_id=generation,
            generation_time=None,
            products=products,
        )

    def last_generation(self, taskmanager_id: TaskManagerRef) -> int:
        """The newest generation of a task manager given by sequence number or id (0 if none)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement last_generation")

    def get_generations(self, taskmanager_id: TaskManagerRef, since: float | None = None) -> list[dict[str, Any]]:
        """Generations of a task manager, oldest first: ``generation_id``, ``generation_time``
        (epoch seconds) and ``products`` (how many), optionally from ``since`` on."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_generations")

    def iter_products(
        self,
        taskmanager_id: TaskManagerRef,
        key: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Products across generations, oldest first, optionally of one key and between two
        generation times: dicts with ``taskmanager_id``, ``sequence_id``, ``generation_id``,
        ``generation_time``, ``key``, ``value`` and ``header``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement iter_products")

    def storage_stats(self) -> dict[str, int]:
        """Row counts and sizes for reports (empty when the backend cannot tell)."""
        return {}

    def database_bytes(self) -> int | None:
        """The database's size on disk, cheaply (no row counts), for monitoring; None when the
        backend cannot tell.  Raises DataSpace errors when the database cannot be reached."""
        return None

    def watch_generations(
        self,
        on_generation: Callable[[dict[str, Any]], None],
        stop: threading.Event,
        on_listening: Callable[[], None] | None = None,
    ) -> bool:
        """Call ``on_generation(announcement)`` for every generation any process commits
        (the ``announce`` of :meth:`write_generation`) until ``stop`` is set; ``on_listening()``
        is called once every commit from then on will be heard.

        Returns False at once when the backend cannot notify (the server then relies on
        what its own channel processes report); returns True when ``stop`` ended it;
        raises when the connection is lost (the caller retries).
        """
        return False

    def announce(self, message: Mapping[str, Any]) -> bool:
        """Tell every listener of :meth:`watch_generations` (other servers included) ``message``
        (JSON), outside any generation; False when the backend cannot notify."""
        return False

    def delete(self, taskmanager_id: TaskManagerRef, all_generations: bool = False) -> int:
        """Delete the latest generation of a task manager (or all of them); returns generations removed."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete generations")

    def claim_channel(self, name: str, owner: str, server_id: str | None = None) -> int | None:
        """Make the caller (which holds the channel's lock) the channel's owner: a new,
        higher epoch for ``name``, recorded with ``owner`` (who, for operators).

        Writes fenced with an older epoch fail from then on.  ``server_id``: the claim is
        for that server of a cluster (``server_member``), and is refused (None) while
        another live server holds the channel.  A data source that cannot fence returns 0
        and ignores fences.
        """
        return 0

    def release_channel(self, name: str, epoch: int) -> bool:
        """Clear the server holding channel ``name`` if ``epoch`` is still current."""
        return False

    def release_server_claim(self, name: str, server_id: str) -> bool:
        """Clear the server holding channel ``name`` if it is still ``server_id``."""
        return False

    def channel_lock(self, name: str) -> Any:
        """The lock that makes one process the owner of channel ``name``.

        A data source that cannot coordinate processes grants it always.
        """
        from decisionengine.framework.dataspace.ownership import ChannelLock  # noqa: PLC0415

        return ChannelLock()

    def clear_stale_channel_locks(self) -> list[str]:
        """Remove what dead owners of channel locks left (SQLite lock files); what was removed.

        Nothing for a data source whose locks end with their holder (PostgreSQL's advisory
        locks end with its connection) or that has none.
        """
        return []

    def reap(
        self,
        cutoff: float,
        batch_size: int,
        dry_run: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[ReapReport], None] | None = None,
    ) -> ReapReport:
        """Remove generations older than ``cutoff`` (epoch seconds) in batches."""
        raise NotImplementedError(f"{type(self).__name__} cannot reap in batches")
