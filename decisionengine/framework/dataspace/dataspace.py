"""DataSpace: the collection of data blocks, stored through a pluggable data source.

The data source is named in the global configuration::

    {"dataspace": {"datasource": {"module": "...", "name": "...", "config": {...}}}}

and imported by name, so a configuration written for the HEPCloud Decision Engine
(``decisionengine.framework.dataspace.datasources.sqlalchemy_ds`` / ``SQLAlchemyDS``)
selects the SQL data source of this package.

Payloads are unpickled through an allow-list of data types; ``dataspace.trusted_modules``
(a list of module names) adds the classes of those modules, for channels that store
instances of their own classes (see :mod:`.unpickling`).
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from decisionengine.framework.dataspace import unpickling
from decisionengine.framework.dataspace.datablock import taskmanager_name_argument
from decisionengine.framework.dataspace.datasource import (
    ALL_PRODUCTS,
    DataSource,
    Fence,
    LatestGeneration,
    ReapReport,
    TaskManagerRef,
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
from decisionengine.framework.dataspace.unpickling import UnpicklePolicy

__all__ = [
    "ALL_PRODUCTS",
    "CorruptPayloadError",
    "DataSpace",
    "DataSpaceConfigurationError",
    "DataSpaceConnectionError",
    "DataSpaceError",
    "DataSpaceExistsError",
    "Fence",
    "LatestGeneration",
    "OwnershipLost",
    "UntrustedPayloadError",
]


def payload_policy_from_config(config: Any) -> UnpicklePolicy:
    """The allow-list a global configuration asks for: the built-in one, plus the classes of
    ``dataspace.trusted_modules`` (each entry: that module and its submodules)."""
    dataspace_config = config.get("dataspace") if isinstance(config, Mapping) else None
    trusted = dataspace_config.get("trusted_modules", []) if isinstance(dataspace_config, Mapping) else []
    if trusted is None:
        trusted = []
    if not isinstance(trusted, list | tuple):
        raise DataSpaceConfigurationError(
            f"Invalid dataspace configuration: dataspace.trusted_modules must be a list of module names, "
            f"not {trusted!r}"
        )
    try:
        return UnpicklePolicy(trusted)
    except ValueError as exc:
        raise DataSpaceConfigurationError(
            f"Invalid dataspace configuration: dataspace.trusted_modules: {exc}"
        ) from None


def datasource_from_config(config: Any) -> DataSource:
    """Import and construct the data source a global configuration names."""
    if not isinstance(config, Mapping) or not config.get("dataspace"):
        raise DataSpaceConfigurationError("Configuration is missing dataspace information: dataspace key not found.")
    dataspace_config = config["dataspace"]
    if not isinstance(dataspace_config, Mapping):
        raise DataSpaceConfigurationError(
            "Configuration is missing dataspace information: dataspace key must correspond to a dictionary"
        )
    try:
        datasource = dataspace_config["datasource"]
        module_name = datasource["module"]
        class_name = datasource["name"]
        datasource_config = datasource["config"]
    except (KeyError, TypeError) as exc:
        raise DataSpaceConfigurationError(
            f"Invalid dataspace configuration: dataspace.datasource needs 'module', 'name' and 'config' (missing {exc})"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DataSpaceConfigurationError(
            f"Invalid dataspace configuration: dataspace.datasource.module {module_name!r} cannot be imported: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, DataSource)):
        raise DataSpaceConfigurationError(
            f"Invalid dataspace configuration: dataspace.datasource.name {class_name!r} "
            f"is not a DataSource class in {module_name}"
        )
    return cls(datasource_config)


#: task managers of shared sources (taskmanager.shared_source): not channels
SHARED_SOURCE_PREFIX = "de-source:"


class DataSpace:
    """DataSpace class is collection of datablocks and provides interface to the database
    used to store the actual data"""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        policy = payload_policy_from_config(config)
        self.datasource = datasource_from_config(config)
        self.datasource.payload_policy = policy
        if not getattr(self.datasource, "schema_ready", False):  # SQLAlchemyDS has done it already
            self.create()

    def __str__(self) -> str:
        return f"DataSpace({self.datasource!r})"

    def loads(self, raw: bytes) -> Any:
        """Unpickle ``raw`` (plain pickle bytes, as a shared source hands its delivery to its
        channels) under the same allow-list as every payload read from the database."""
        return unpickling.loads(raw, self.datasource.payload_policy)

    def create(self) -> None:
        """Create the schema, or upgrade it to the newest migration (a no-op when current)."""
        self.datasource.create_tables()

    def close(self) -> None:
        self.datasource.close()

    #: called by :meth:`idle` with its ``long`` (a channel process under a server sets it:
    #: see connection_gate)
    idle_hook: Callable[[bool], None] | None = None
    #: in a process whose connections are rationed: whether it holds one now (a statement
    #: would otherwise wait in line for a slot); None: connections are not rationed
    connection_at_hand: Callable[[], bool] | None = None

    def idle(self, long: bool = False) -> None:
        """The caller has no database work for now (a channel between generations): a
        process whose connections are rationed gives its idle one back now unless its server
        has slots to spare (see :mod:`.connection_gate`); with ``long`` (a standby, for
        seconds at least), now whatever the slots."""
        if self.idle_hook is not None:
            self.idle_hook(long)

    def __enter__(self) -> DataSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- products -------------------------------------------------------------------------

    def insert(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        self.datasource.insert(taskmanager_id, generation_id, key, value, header, metadata)

    def update(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        key: str,
        value: Any,
        header: Any,
        metadata: Any,
    ) -> None:
        self.datasource.update(taskmanager_id, generation_id, key, value, header, metadata)

    def write_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        products: Mapping[str, tuple[Any, Any, Any]],
        announce: Mapping[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Insert or replace several products of one generation at once (one transaction);
        ``announce`` is what listeners hear when it commits (PostgreSQL NOTIFY); with a
        ``fence`` the write happens only while its epoch is the channel's (else
        :class:`OwnershipLost`, nothing written)."""
        self.datasource.write_generation(taskmanager_id, generation_id, products, announce=announce, fence=fence)

    def write_generations(
        self,
        taskmanager_id: TaskManagerRef,
        generations: Sequence[tuple[int, Mapping[str, tuple[Any, Any, Any]]]],
    ) -> None:
        """Insert or replace the products of several generations of one task manager, in one
        transaction where the data source can (bulk copies, such as the reference import)."""
        self.datasource.write_generations(taskmanager_id, generations)

    def get_dataproduct(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        return self.datasource.get_dataproduct(taskmanager_id, generation_id, key)

    def get_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> list[dict[str, Any]]:
        return self.datasource.get_dataproducts(taskmanager_id, key)

    def iter_dataproducts(self, taskmanager_id: TaskManagerRef, key: str | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`get_dataproducts` as a stream: the same rows in the same order, read one
        page at a time, so that a long history never sits in memory whole."""
        return self.datasource.iter_dataproducts(taskmanager_id, key)

    def read_generation(
        self,
        taskmanager_id: TaskManagerRef,
        generation_id: int,
        keys: Collection[str] | None = ALL_PRODUCTS,
        headers: bool = False,
    ) -> dict[str, Any]:
        """Several products of one generation in one round trip: all of them, or the
        ``keys`` given (keys it does not hold are left out); {key: value}, or with
        ``headers`` {key: (value, Header)}.  Reading products one ``get_dataproduct`` at a
        time costs a statement each."""
        return self.datasource.read_generation(taskmanager_id, generation_id, keys, headers)

    def iter_products(
        self,
        taskmanager_id: TaskManagerRef,
        key: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """A product's history across generations (see the data source)."""
        return self.datasource.iter_products(taskmanager_id, key, since, until)

    def get_header(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """The reference's header row (a :class:`~.datablock.HeaderRow`: a tuple that also
        reads by field name); ``DataBlock.get_header`` gives a :class:`~.datablock.Header`."""
        return self.datasource.get_header(taskmanager_id, generation_id, key)

    def get_metadata(self, taskmanager_id: TaskManagerRef, generation_id: int, key: str) -> Any:
        """The reference's metadata row (a :class:`~.datablock.MetadataRow`);
        ``DataBlock.get_metadata`` gives a :class:`~.datablock.Metadata`."""
        return self.datasource.get_metadata(taskmanager_id, generation_id, key)

    def get_keys(self, taskmanager_id: TaskManagerRef, generation_id: int) -> list[str]:
        return self.datasource.get_keys(taskmanager_id, generation_id)

    def get_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int) -> dict[str, Any]:
        return self.datasource.get_datablock(taskmanager_id, generation_id)

    def duplicate_datablock(self, taskmanager_id: TaskManagerRef, generation_id: int, new_generation_id: int) -> None:
        self.datasource.duplicate_datablock(taskmanager_id, generation_id, new_generation_id)

    def get_generations(self, taskmanager_id: TaskManagerRef, since: float | None = None) -> list[dict[str, Any]]:
        return self.datasource.get_generations(taskmanager_id, since)

    def mark_expired(
        self, taskmanager_id: TaskManagerRef, generation_id: int, key: str | None, expiry_time: float
    ) -> None:
        """Set the expiration time of a product (``key=None``: every product of the generation)."""
        self.datasource.mark_expired(taskmanager_id, generation_id, key, expiry_time)

    def mark_demented(self, taskmanager_id: TaskManagerRef, keys: list[str], generation_id: int | None = None) -> None:
        """Mark products as no longer valid (expired now) in a generation, the latest by default."""
        if generation_id is None:
            generation_id = self.datasource.last_generation(taskmanager_id)
        now = time.time()
        for key in keys:
            self.datasource.mark_expired(taskmanager_id, generation_id, key, now)

    def delete(self, taskmanager_id: TaskManagerRef, all_generations: bool = False) -> int:
        """Delete the latest generation of a task manager, or all of them; returns how many."""
        return self.datasource.delete(taskmanager_id, all_generations)

    # -- task managers ----------------------------------------------------------------------

    def store_taskmanager(
        self,
        name: str | None = None,
        taskmanager_id: str | None = None,
        datestamp: Any = None,
        *,
        taskmanager_name: str | None = None,
    ) -> int:
        """Register a task manager (the name as ``name`` or ``taskmanager_name``; ``datestamp``
        a datetime, epoch seconds or ISO-8601 text); returns its sequence number."""
        name = taskmanager_name_argument(name, taskmanager_name, "name", "taskmanager_name")
        return self.datasource.store_taskmanager(name, taskmanager_id, datestamp)

    def get_taskmanager(self, taskmanager_name: str, taskmanager_id: str | None = None) -> dict[str, Any]:
        return self.datasource.get_taskmanager(taskmanager_name, taskmanager_id)

    def get_taskmanagers(
        self, taskmanager_name: str | None = None, start_time: Any = None, end_time: Any = None
    ) -> list[dict[str, Any]]:
        return self.datasource.get_taskmanagers(taskmanager_name, start_time, end_time)

    def get_last_generation_id(self, taskmanager_name: str, taskmanager_id: str | None = None) -> int:
        return self.datasource.get_last_generation_id(taskmanager_name, taskmanager_id)

    def latest_generation(self, channel: str, keys: Collection[str] | None = ALL_PRODUCTS) -> LatestGeneration | None:
        """The newest committed generation of ``channel`` with its products: all of them by
        default, only ``keys`` when given (``()`` for none); None when the channel is
        unknown or has committed nothing yet.  The one way every reader (the server's
        methods, the JSON API, ``de-query-tool``) asks "what does this channel know now"."""
        return self.datasource.get_latest_generation(channel, keys)

    def latest_holding(self, channel: str, key: str) -> LatestGeneration | None:
        """The newest committed generation of ``channel`` that holds ``key``, with that
        product only: the newest, or the one before when the newest does not hold it yet
        (``publisher_status`` is stored once a generation's publishers have run, a moment
        after its commit; a reader asking for it then gets the previous generation's rather
        than "no such product").  The earlier generation's ``generation_time`` is not read
        (None).  The newest generation, without the product, when neither holds it; None
        when the channel has no generation."""
        latest = self.latest_generation(channel, [key])
        if latest is None or key in latest.products or latest.generation_id <= 1:
            return latest
        earlier_id = latest.generation_id - 1
        try:
            earlier = self.read_generation(latest.sequence_id, earlier_id, [key], headers=True)
        except KeyError:  # reaped meanwhile
            return latest
        if key not in earlier:
            return latest
        value, header = earlier[key]
        return dataclasses.replace(
            latest, generation_id=earlier_id, generation_time=None, products={key: value}, headers={key: header}
        )

    def channel_names(self) -> list[str]:
        """Every channel (task manager name) the DataSpace holds, sorted."""
        return sorted(
            {
                registration["name"]
                for registration in self.datasource.get_taskmanagers()
                if not registration["name"].startswith(SHARED_SOURCE_PREFIX)
            }
        )

    def claim_channel(self, name: str, owner: str, server_id: str | None = None) -> Fence | None:
        """Become the owner of channel ``name`` (call while holding its lock): the fence
        every write of its generations must then carry (see :class:`OwnershipLost`).

        ``server_id``: claim it for this server of a cluster; None while another live
        server holds it (see :mod:`~decisionengine.framework.dataspace.membership`)."""
        epoch = self.datasource.claim_channel(name, owner, server_id)
        return None if epoch is None else Fence(name, epoch)

    def release_channel(self, fence: Fence) -> bool:
        """Let the channel go for another server to claim (its epoch must still be current)."""
        return self.datasource.release_channel(fence.channel, fence.epoch)

    def can_write_at_once(self) -> bool:
        """Whether a statement may run now without waiting for a connection slot (see
        :attr:`connection_at_hand`): always, unless connections are rationed and this
        process holds none."""
        return self.connection_at_hand is None or self.connection_at_hand()

    def release_server_claim(self, name: str, server_id: str) -> bool:
        """Let the channel go if server ``server_id`` still holds it: what a server does once
        the process it handed the channel over from has ended (that process may have failed
        to let it go itself).  True if it was still held."""
        return self.datasource.release_server_claim(name, server_id)

    def channel_lock(self, name: str) -> Any:
        """The lock making this process the one owner of channel ``name`` (see ``ownership``)."""
        return self.datasource.channel_lock(name)

    def clear_stale_channel_locks(self) -> list[str]:
        """Remove the channel locks that dead processes left (SQLite lock files nobody holds;
        never a live owner's); the paths removed.  A server calls it before its channels start."""
        return self.datasource.clear_stale_channel_locks()

    # -- maintenance ---------------------------------------------------------------------------

    def reap(self, cutoff: float, batch_size: int = 100, **kwargs: Any) -> ReapReport:
        return self.datasource.reap(cutoff, batch_size, **kwargs)

    def storage_stats(self) -> dict[str, int]:
        return self.datasource.storage_stats()

    def database_bytes(self) -> int | None:
        return self.datasource.database_bytes()

    def announce(self, message: Mapping[str, Any]) -> bool:
        """Tell every server listening to the DataSpace ``message`` (PostgreSQL NOTIFY);
        False when the data source cannot notify (see :meth:`DataSource.announce`)."""
        return self.datasource.announce(message)

    def watch_generations(
        self,
        on_generation: Callable[[dict[str, Any]], None],
        stop: threading.Event,
        on_listening: Callable[[], None] | None = None,
    ) -> bool:
        """Hear every generation committed by any process (see :meth:`DataSource.watch_generations`)."""
        return self.datasource.watch_generations(on_generation, stop, on_listening)
