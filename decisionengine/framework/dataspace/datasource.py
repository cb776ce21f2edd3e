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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TaskManagerRef = int | str


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

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @abc.abstractmethod
    def create_tables(self) -> None:
        """Create database tables"""

    @abc.abstractmethod
    def store_taskmanager(self, taskmanager_name: str, taskmanager_id: str, datestamp: Any = None) -> int:
        """Store TaskManager; returns its sequence number"""

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
        """Return the header for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def get_metadata(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """Return the metadata for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def get_dataproduct(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """Return the data for the given taskmanager_id, generation_id, key"""

    @abc.abstractmethod
    def get_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> list[dict[str, Any]]:
        """Return list of all data products associated with with taskmanager_id"""

    @abc.abstractmethod
    def get_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int) -> dict[str, Any]:
        """Return the entire datablock for the given taskmanager_id, generation_id"""

    @abc.abstractmethod
    def duplicate_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int, new_generation_id: int) -> None:
        """Make a copy of the datablock with generation_id as new_generation_id"""

    @abc.abstractmethod
    def delete_data_older_than(self, days: float) -> ReapReport:
        """Delete data older that interval"""

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
    ) -> None:
        """Write (insert or replace) several products of one generation.

        Backends that can should do this in one transaction, and tell listeners about it
        (``announce``) when it commits.
        """
        existing = set(self.get_keys(taskmanager_id, generation_id))
        for key, (value, header, metadata) in products.items():
            writer = self.update if key in existing else self.insert
            writer(taskmanager_id, generation_id, key, value, header, metadata)

    def get_keys(self, taskmanager_id: TaskManagerRef, generation_id: int) -> list[str]:
        """Keys of the products of one generation."""
        return list(self.get_datablock(taskmanager_id, generation_id))

    def mark_expired(
        self, taskmanager_id: TaskManagerRef, generation_id: int, key: str | None, expiry_time: float
    ) -> None:
        """Set the expiration time of one product (or, with ``key=None``, all of a generation)."""
        keys = [key] if key is not None else self.get_keys(taskmanager_id, generation_id)
        for k in keys:
            header = self.get_header(taskmanager_id, generation_id, k)
            header["expiration_time"] = expiry_time
            value = self.get_dataproduct(taskmanager_id, generation_id, k)
            metadata = self.get_metadata(taskmanager_id, generation_id, k)
            self.update(taskmanager_id, generation_id, k, value, header, metadata)

    def delete(self, taskmanager_id: TaskManagerRef, all_generations: bool = False) -> int:
        """Delete the latest generation of a task manager (or all of them); returns generations removed."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete generations")

    def channel_lock(self, name: str) -> Any:
        """The lock that makes one process the owner of channel ``name``.

        A data source that cannot coordinate processes grants it always.
        """
        from decisionengine.framework.dataspace.ownership import ChannelLock  # noqa: PLC0415

        return ChannelLock()

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
