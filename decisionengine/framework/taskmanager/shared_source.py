"""SourceRunner: one source shared by several channels, acquiring once for all of them.

A source that several channels name with the same configuration runs once, in a process
of its own under the server (:mod:`decisionengine.framework.engine.source_process`).  This
class is what runs there: the source on its schedule (APScheduler, the same retry policy
as in a channel), each delivery checked with ``verify_products`` and written **once** to
the DataSpace as a generation of a task manager of its own (``de-source:<key>``; its
payloads are stored once by content hash, and the consuming channels' generations point
at the same payloads).  After the write, ``on_delivery`` is told the generation, and the
server forwards that to every consuming channel, which reads the products back with one
query and treats them as a delivery of that source.

Status snapshots (state, the source's :class:`SourceStatus`, the module busy) go to the
``reporter`` as for a channel, so the server's hang watchdog, crash handling and restart
policy apply to a shared source unchanged.

In a cluster of servers on one PostgreSQL (``server_id`` given) a shared source is acquired
once per cluster: its task manager is named by the key alone, and the runner claims it as
a channel is claimed (``channel_owner``, a new fencing epoch, refused while another live
server holds it), writes every delivery fenced by that epoch, and announces it (NOTIFY)
so that consuming channels on every server hear of it.  A runner whose claim was taken
over (its server was thought dead) writes nothing more and stops.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from decisionengine.framework.config.plan import ModuleSpec
from decisionengine.framework.dataspace import codecs
from decisionengine.framework.dataspace.datablock import STATE_END_CYCLE, Header, Metadata
from decisionengine.framework.dataspace.dataspace import (
    SHARED_SOURCE_PREFIX,
    DataSpace,
    DataSpaceConnectionError,
    OwnershipLost,
)
from decisionengine.framework.logicengine.facts import explain
from decisionengine.framework.taskmanager import acquiring
from decisionengine.framework.taskmanager.states import State, StateMachine
from decisionengine.framework.util import running_module
from decisionengine.framework.util.logger import get_logger

#: deliveries up to this size (pickled) travel to the channels of the same server with the
#: news of them, so that twenty channels do not each read the same rows back at once
INLINE_DELIVERY_LIMIT = 1 << 20
#: task managers of shared sources are named this, then the source's key
SOURCE_TASKMANAGER_PREFIX = SHARED_SOURCE_PREFIX


def taskmanager_name(key: str, server: str | None = None) -> str:
    """The DataSpace task manager holding a shared source's deliveries: the key alone when
    the source is acquired once for the whole cluster (and so also the name it is claimed
    under), the key and the server's name when each server acquires it for its own channels
    (servers on one SQLite file, which cannot tell each other of deliveries)."""
    return f"{SOURCE_TASKMANAGER_PREFIX}{key}" + (f"@{server}" if server else "")


class SourceRunner:
    """Runs one source on its schedule and stores each delivery once."""

    def __init__(
        self,
        spec: ModuleSpec,
        dataspace: DataSpace,
        *,
        name: str,
        taskmanager: str,
        module_timeout: float,
        data_lifetime: float,
        reporter: Callable[[dict[str, Any]], None] | None = None,
        on_delivery: Callable[[dict[str, Any]], None] | None = None,
        server_id: str | None = None,
    ) -> None:
        self.spec = spec
        self.key = spec.key
        self.name = name
        self.dataspace = dataspace
        self.taskmanager = taskmanager
        self.module_timeout = module_timeout
        self.data_lifetime = data_lifetime
        self.reporter = reporter
        self.on_delivery = on_delivery
        #: the server of a cluster this source is acquired for, once for the whole cluster
        self.server_id = server_id
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        #: the right to write the source's deliveries (cluster only)
        self.fence: Any = None
        #: waiting for another server to let the source go
        self.standby = False
        self._claim_now = threading.Event()
        #: since when (and why) deliveries cannot be stored: the consumers are told
        self.database_unreachable_since: float | None = None
        self.database_error: str | None = None
        self.logger = get_logger().bind(module="SourceRunner", channel=name, source=spec.key)
        self.state = StateMachine(State.BOOT, on_change=lambda old, new: self._state_changed(new))
        self.source = acquiring.SourceStatus(spec.schedule)
        self.busy: dict[str, float] = {}
        self.generation = 0
        self.sequence_id: int | None = None
        self.taskmanager_id: str | None = None
        self.instance: Any = None
        self._stop = threading.Event()
        self._report_lock = threading.Lock()

    # -- reporting ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.name,
            "state": self.state.state.value,
            "state_since": self.state.since,
            "pid": os.getpid(),
            "generation": self.generation,
            "taskmanager": self.taskmanager,
            "source": asdict(self.source),
            "busy": dict(self.busy),
            "module_timeout": self.module_timeout,
            "standby": self.standby,
            "database_unreachable_since": self.database_unreachable_since,
            "database_error": self.database_error,
            "epoch": self.fence.epoch if self.fence is not None else None,
        }

    def _report(self) -> None:
        if self.reporter is None:
            return
        with self._report_lock:
            try:
                self.reporter(self.status())
            except Exception:
                self.logger.exception("could not report source status")

    def _state_changed(self, new: State) -> None:
        self.logger.info("shared source state changed", state=new.value)
        self._report()

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._claim_now.set()

    def claim_now(self) -> None:
        """Waiting for another server to let the source go: try to claim it now."""
        self._claim_now.set()

    def run(self) -> State:
        """Acquire on schedule until stopped; the final state."""
        try:
            self._boot()
        except Exception as exc:
            self.source.last_error = f"boot failed: {explain(exc)}"
            self.logger.exception("shared source could not start", error=self.source.last_error)
            self.state.set(State.ERROR)
            return self.state.state
        if self.server_id is not None and not self._claim():
            self.state.set(State.SHUTTINGDOWN)
            self.state.set(State.SHUTDOWN)
            return self.state.state
        self.state.set(State.ACTIVE)
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        import datetime  # noqa: PLC0415

        scheduler.add_job(
            self._acquire,
            trigger=self.spec.trigger(),
            id=self.key,
            name=self.name,
            next_run_time=datetime.datetime.now(datetime.UTC),
        )
        scheduler.start()
        self._stop.wait()
        self.state.set(State.SHUTTINGDOWN)
        scheduler.shutdown(wait=False)
        self._release()
        self.state.set(State.SHUTDOWN)
        return self.state.state

    def _claim(self) -> bool:
        """Claim the source for this server (a new fencing epoch), waiting while another live
        server holds it or the database cannot be reached; False when stopped first."""
        waiting_since: float | None = None
        while not self._stop.is_set():
            try:
                fence = self.dataspace.claim_channel(self.taskmanager, self.owner, self.server_id)
            except DataSpaceConnectionError as exc:
                self.logger.error("database unreachable; retrying the claim", error=str(exc))
                fence = None
            else:
                self.dataspace.idle(long=fence is None)  # in standby: for a while
            if fence is not None:
                self.fence = fence
                if self.standby:
                    self.logger.info(
                        "took the shared source over",
                        epoch=fence.epoch,
                        waited=round(time.time() - (waiting_since or 0), 3),
                    )
                self.standby = False
                # its generations go on from the last one any server wrote
                self.generation = self.dataspace.get_last_generation_id(self.taskmanager, self.taskmanager_id)
                self._report()
                return True
            if not self.standby:
                waiting_since = time.time()
                self.standby = True
                self.logger.info("another server still holds the shared source; waiting for it to let go")
                self._report()
            self._claim_now.wait(1.0)
            self._claim_now.clear()
        return False

    def _release(self) -> None:
        """Let the source go at once for the next server to claim (cluster only)."""
        if self.fence is None:
            return
        try:
            self.dataspace.release_channel(self.fence)
        except Exception as exc:  # the next owner claims it once this server is gone instead
            self.logger.warning("could not release the shared source", error=str(exc))

    def _boot(self) -> None:
        self.instance = self._call(self.spec.create)
        while True:
            try:
                try:
                    registration = self.dataspace.get_taskmanager(self.taskmanager)
                    self.taskmanager_id = registration["taskmanager_id"]
                except KeyError:
                    self.taskmanager_id = str(uuid.uuid4()).upper()
                self.sequence_id = self.dataspace.store_taskmanager(self.taskmanager, self.taskmanager_id)
                self.generation = self.dataspace.get_last_generation_id(self.taskmanager, self.taskmanager_id)
                return
            except DataSpaceConnectionError as exc:
                self.logger.error("database unreachable; retrying", error=str(exc))
                if self._stop.wait(1.0):
                    raise

    # -- acquiring ---------------------------------------------------------------------------

    def _call(self, function: Callable[[], Any]) -> Any:
        self.busy[self.key] = time.time()
        self._report()
        try:
            with running_module.running(self.key):
                return function()
        finally:
            self.busy.pop(self.key, None)
            self._report()

    def _acquire(self) -> None:
        """One scheduled run, with the source's retry policy (as in a channel); stored once."""
        status = self.source
        acquired = acquiring.acquire(
            self.spec,
            self.instance,
            lambda: self._call(self.instance.acquire),
            status,
            channel=self.name,
            stop=self._stop,
            logger=self.logger,
            report=self._report,
        )
        if acquired is None or not self._store(acquired):
            return
        acquiring.delivered(status, self.name, self.key, acquired)
        if self.state.state is State.ACTIVE:
            self.state.set(State.STEADY)
        if self.on_delivery is not None:
            delivery = self._delivery(self.generation, acquired)
            inline = codecs.pickle_bytes(acquired.products)
            if len(inline) <= INLINE_DELIVERY_LIMIT:
                delivery["inline"] = inline
            self.on_delivery(delivery)
        self._report()

    def _delivery(self, generation: int, acquired: acquiring.Acquired) -> dict[str, Any]:
        """What consumers are told of a delivery stored as ``generation``."""
        return {
            "generation": generation,
            "taskmanager_seq": self.sequence_id,
            "create_time": acquired.at,
            "scheduled_time": acquired.scheduled,
            "acquire_seconds": acquired.took,
            "products": sorted(acquired.products),
        }

    def _store(self, acquired: acquiring.Acquired) -> bool:
        """Write the delivery as the next generation (waiting through database outages);
        False when stopped first."""
        generation, now = self.generation + 1, acquired.at
        header = Header(
            self.taskmanager_id,
            create_time=now,
            expiration_time=now + self.data_lifetime,
            scheduled_create_time=acquired.scheduled,
            creator=self.key,
        )
        metadata = Metadata(self.taskmanager_id, state=STATE_END_CYCLE, generation_id=generation, generation_time=now)
        announce = None
        if self.server_id is not None:  # consumers on the other servers hear of it at commit
            delivery = self._delivery(generation, acquired)
            announce = {"source": self.key, "server_id": self.server_id, "delivery": delivery}
        delay = 0.25
        while True:
            try:
                self.dataspace.write_generation(
                    self.sequence_id,
                    generation,
                    {k: (v, header, metadata) for k, v in acquired.products.items()},
                    announce=announce,
                    fence=self.fence,
                )
            except OwnershipLost as exc:
                self.logger.warning("another server took the shared source over; stopping here", reason=str(exc))
                self.fence = None  # nothing to release: it is not ours
                self.stop()
                return False
            except DataSpaceConnectionError as exc:
                self.logger.error("database unreachable; delivery kept until it is back", error=str(exc))
                self._database_unreachable(exc)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 2.0)
                continue
            finally:
                self.dataspace.idle()  # under a server: kept only while it has slots to spare
            self.generation = generation
            self._database_reachable()
            return True

    def _database_unreachable(self, exc: BaseException) -> None:
        """The consumers never write while their source cannot: they learn of the outage
        from its status (the server forwards it as a failure of the source)."""
        self.database_error = str(exc)
        if self.database_unreachable_since is None:
            self.database_unreachable_since = time.time()
            self._report()

    def _database_reachable(self) -> None:
        if self.database_unreachable_since is not None:
            self.logger.info(
                "database reachable again", unreachable_seconds=round(time.time() - self.database_unreachable_since, 3)
            )
            self.database_unreachable_since = None
            self.database_error = None
