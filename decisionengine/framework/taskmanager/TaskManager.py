"""TaskManager: runs one channel, generation after generation.

Sources run on their schedules (APScheduler: interval seconds or a cron string) in a
thread pool; each delivery is checked against the source's declared products and kept
in memory.  The channel's own thread sleeps on a condition variable until every source
has delivered at least once and some source has delivered something new; then it runs
a generation:

1. a new DataBlock (generation n+1) with every source's latest products;
2. transforms in topological order, each result checked with ``verify_products``;
3. the logic engine (facts, rules) and its ``de_logicengine_facts`` product;
4. the publishers the fired actions name (or all / none, see the publisher policy);
5. the ``publisher_status`` product: the channel's publisher status board (each
   publisher enabled or not, since when; a ``publish()`` returning ``False`` disables
   it, ``True`` enables it again) with this generation's details (per publisher: ran,
   succeeded, seconds, error), stored after the publishers ran.

The modules of generation n read ``publisher_status`` as the board was at the end of
generation n-1 (what generation n-1 stored): the task manager attaches it to the block
(:meth:`DataBlock.attach`) without storing it with the generation, so that a stored
``publisher_status`` still means "this generation's publishers finished" (what the
recovery at start reads).  The board carries on across restarts from the last stored one.

Everything a generation writes is committed in one DataSpace transaction at the end
(``DataBlock.transaction()``), so a generation that fails (a transform or the logic
engine raises) leaves nothing behind, and the next one reuses its number.  The channel
goes on after a failure, and to ERROR after ``max_consecutive_failures`` in a row.

Nothing polls: an idle channel is a sleeping thread and APScheduler's timer.  Every
change of state is reported through the ``reporter`` callback as a status snapshot
(plain, JSON-able data), which the server uses to answer ``status`` at once and to kill
the channel if a module runs longer than ``module_timeout``.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from decisionengine.framework.config.plan import ChannelPlan, ModuleSpec
from decisionengine.framework.dataspace.datablock import STATE_END_CYCLE, DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace, DataSpaceConnectionError, OwnershipLost
from decisionengine.framework.dataspace.ownership import ChannelLock
from decisionengine.framework.logicengine.facts import explain
from decisionengine.framework.logicengine.LogicEngine import FACTS_PRODUCT
from decisionengine.framework.modules.Module import verify_products
from decisionengine.framework.taskmanager import acquiring, metrics
from decisionengine.framework.taskmanager.acquiring import SourceStatus
from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatus, PublisherStatusBoard, details_frame
from decisionengine.framework.taskmanager.settings import TaskManagerSettings
from decisionengine.framework.taskmanager.states import State, StateMachine
from decisionengine.framework.util import running_module
from decisionengine.framework.util.logger import get_logger

#: the publisher status (a :class:`PublisherStatus`), which modules may consume
PUBLISHER_STATUS = "publisher_status"
#: the generation's decision: the publishers to run and their idempotency key
DECISION = "de_decision"
#: seconds between commit attempts while the database is away: from the first to the most
DB_RETRY_FIRST = 0.25
DB_RETRY_MAX = 2.0
#: every fact's value in a generation (de_logicengine_facts holds the facts rules add)
FACT_VALUES = "de_logicengine_fact_values"
#: the longest pause between claim attempts of a standby under a cluster member: its server
#: tells it to claim (``claim_now``) at every heartbeat that shows the channel free, so its
#: own attempts are only a safety net; they double from ``standby_retry`` up to this
STANDBY_POLL_LONGEST = 10.0

Reporter = Callable[[dict[str, Any]], None]


class ModuleFailure(Exception):
    """A module raised (or returned something invalid) during a generation."""

    def __init__(self, key: str, error: BaseException) -> None:
        super().__init__(f"module {key!r} failed: {type(error).__name__}: {error}")
        self.key = key
        self.error = error


@dataclass
class GenerationRecord:
    """One generation attempt, kept in the channel's recent history."""

    generation_id: int
    started: float
    duration: float | None = None
    outcome: str = "running"  # committed | failed | publish_failed
    #: seconds from the newest source delivery it used to its start (how event-driven we are)
    trigger_latency: float | None = None
    module: str | None = None
    error: str | None = None
    publishers: dict[str, bool] = field(default_factory=dict)


@dataclass
class _Delivery:
    products: dict[str, Any]
    create_time: float
    scheduled_time: float


class TaskManager:
    """One channel: its modules, schedules and generations."""

    def __init__(
        self,
        plan: ChannelPlan,
        dataspace: DataSpace,
        reporter: Reporter | None = None,
        settings: TaskManagerSettings | None = None,
        server_id: str | None = None,
        shared_sources: frozenset[str] = frozenset(),
    ) -> None:
        """``shared_sources``: keys of sources that run shared, outside this process (the
        server forwards their deliveries to :meth:`deliver_shared`); the channel neither
        builds nor schedules them.

        ``server_id``: the channel runs for that server of a cluster (de-server passes it),
        which the cluster has given the channel to; it is claimed in the database for that
        server, with no lock of its own (so no connection held while idle).  Without one,
        the channel's own lock (an advisory lock, a lock file) decides who runs it."""
        self.plan = plan
        self.server_id = server_id
        self.shared_sources = frozenset(shared_sources) & frozenset(plan.sources)
        self.name = plan.name
        self.dataspace = dataspace
        self.settings = settings or TaskManagerSettings.from_config(plan.task_manager, plan.name)
        self.reporter = reporter
        self.logger = get_logger().bind(module="TaskManager", channel=self.name)
        self.state = StateMachine(State.BOOT, on_change=self._state_changed)
        self.taskmanager_id: str | None = None
        self.sequence_id: int | None = None
        self.generation_id = 0  # the last committed generation
        self.generations_run = 0
        self.consecutive_failures = 0
        self.failed_generations = 0
        self.last_error: str | None = None
        #: the module (and its error) whose failures put the channel in ERROR
        self.failed_module: dict[str, Any] | None = None
        self.sources = {key: SourceStatus(spec.schedule) for key, spec in plan.sources.items()}
        self.history: collections.deque[GenerationRecord] = collections.deque(maxlen=max(self.settings.history, 1))
        #: id(record) -> its dict, for the finished records of the history (see _history_dicts)
        self._record_dicts: dict[int, tuple[GenerationRecord, dict[str, Any]]] = {}
        self.busy: dict[str, float] = {}
        self.instances: dict[str, Any] = {}
        #: every publisher enabled or not, since when (carried on from the DataSpace at boot)
        self.board = PublisherStatusBoard(plan.publishers)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        #: set to try claiming the channel now rather than after standby_retry (see claim_now)
        self._claim_now = threading.Event()
        #: (task manager seq, generation) of the last delivery taken from each shared source
        self._shared_taken: dict[str, tuple[int, int]] = {}
        #: shared sources that report they cannot store their deliveries (a database outage)
        self._source_outages: set[str] = set()
        self._latest: dict[str, _Delivery] = {}
        self._fresh: set[str] = set()
        self._scheduler: BackgroundScheduler | None = None
        self._report_lock = threading.Lock()
        self._ownership: Any = None
        self.standby = False
        #: the right to write this channel's generations (renewed whenever it is claimed)
        self.fence: Any = None
        #: who owns the channel, for operators: host and process
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.database_unreachable_since: float | None = None
        self._db_delay = DB_RETRY_FIRST
        for warning in (*plan.warnings, *self.settings.warnings):
            self.logger.warning("channel configuration", warning=warning)

    # -- reporting --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A snapshot of the channel (plain data: it crosses process boundaries as is)."""
        history = self._history_dicts()
        with self._cond:  # a delivery waiting for the next generation (what queue_status shows)
            pending = set(self._fresh)
        return {
            "channel": self.name,
            "state": self.state.state.value,
            "state_since": self.state.since,
            "pid": os.getpid(),
            "taskmanager_id": self.taskmanager_id,
            "generation": self.generation_id,
            "generations_run": self.generations_run,
            "consecutive_failures": self.consecutive_failures,
            "failed_generations": self.failed_generations,
            "last_generation": history[-1] if history else None,
            "last_error": self.last_error,
            "failed_module": self.failed_module,
            "failing_sources": self.failing_sources(),
            "sources": {
                key: {**asdict(status), "pending": key in pending, "shared": key in self.shared_sources}
                for key, status in self.sources.items()
            },
            "busy": dict(self.busy),
            "standby": self.standby,
            "owner": self.owner if not self.standby and self.fence is not None else None,
            "database_unreachable_since": self.database_unreachable_since,
            "module_timeout": self.settings.module_timeout,
            "history": history,
        }

    def _history_dicts(self) -> list[dict[str, Any]]:
        """The history as plain dicts: the newest record afresh (its generation may still
        run), the others from a cache (a record is final once the next generation starts).

        A channel reports its status before and after every module call; converting all
        ``history`` records each time (``dataclasses.asdict`` copies deeply) was a fifth of
        a busy channel's CPU in ``benchmarks/scale.py``."""
        records = list(self.history)  # a copy: generations append
        if not records:
            return []
        cache = self._record_dicts  # holds the records too: an id is not reused while cached
        finished = [cached[1] if (cached := cache.get(id(record))) else asdict(record) for record in records[:-1]]
        self._record_dicts = {id(record): (record, done) for record, done in zip(records[:-1], finished, strict=True)}
        return [*finished, asdict(records[-1])]

    def failing_sources(self) -> dict[str, dict[str, Any]]:
        """{source: {since, missed_update_count, last_error}} of the sources that keep failing
        (every attempt of at least one scheduled run failed, none succeeded since).

        A channel whose sources fail makes no generation but stays ACTIVE or STEADY (it keeps
        retrying on schedule and recovers by itself), so its state alone would hide it: this
        is what the status line, ``--health`` and the dashboard show instead.
        """
        return {
            key: {
                "since": status.failing_since,
                "missed_update_count": status.missed_update_count,
                "last_error": status.last_error,
            }
            for key, status in self.sources.items()
            if status.missed_update_count > 0
        }

    def _report(self) -> None:
        if self.reporter is None:
            return
        with self._report_lock:
            try:
                self.reporter(self.status())
            except Exception:  # a reporter must never take the channel down
                self.logger.exception("could not report channel status")

    def _state_changed(self, old: State, new: State) -> None:
        self.logger.info("channel state changed", old=old.value, new=new.value)
        for state in State:
            metrics.CHANNEL_STATE.labels(self.name, state.value).set(1 if state is new else 0)
        self._report()

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> State:
        """Run the channel until it is stopped, finishes its generations, or fails.

        Returns the final state (SHUTDOWN or ERROR).
        """
        self._ownership = ChannelLock() if self.server_id else self.dataspace.channel_lock(self.name)
        if not self._wait_for_ownership():
            self.state.set(State.SHUTTINGDOWN)
            self.state.set(State.SHUTDOWN)
            return self.state.state
        try:
            return self._run_owned()
        finally:
            self._release_claim()
            self._ownership.release()
            metrics.OWNER.labels(self.name).set(0)

    def _release_claim(self) -> None:
        """Let the channel go at once for another server of the cluster to claim.

        Over a connection this process holds; one that holds none leaves it to its server,
        which lets the channel go the moment this process has ended, over its own pool: a
        release that waited in line for a connection slot held the hand-over up by the
        slot wait (up to 10 s on a saturated server in ``benchmarks/scale.py``)."""
        if self.server_id is None or self.fence is None:
            return
        if not self.dataspace.can_write_at_once():
            self.logger.info("no connection at hand: the server lets the channel go as this process ends")
            return
        try:
            self.dataspace.release_channel(self.fence)
        except Exception as exc:  # the next owner claims it once this server is gone instead
            self.logger.warning("could not release the channel", error=str(exc))

    def _try_lock(self) -> bool | None:
        """Take the channel's lock: True taken, False held by another process, None when
        the database cannot be reached (then nobody can tell who owns the channel)."""
        try:
            return self._ownership.acquire()
        except DataSpaceConnectionError as exc:
            self._database_unreachable(exc)
            return None

    def _take_and_claim(self) -> bool | None:
        """Take the channel's lock and claim the channel (a new fence epoch): True when both
        are done, False when another process holds the lock, None when the database cannot
        be reached (the lock, if taken, is let go again)."""
        taken = self._try_lock()
        if not taken:
            return taken
        try:
            fence = self.dataspace.claim_channel(self.name, self.owner, self.server_id)
        except DataSpaceConnectionError as exc:
            self._database_unreachable(exc)
            self._ownership.release()
            return None
        if fence is None:  # another live server of the cluster still holds it
            self._ownership.release()
            return False
        self.fence = fence
        return True

    def _wait_for_ownership(self) -> bool:
        """Take the channel's lock, waiting in standby while another process holds it, and
        claim the channel (a new fence epoch).  False if the channel was stopped meanwhile.

        Alone, a standby tries every ``standby_retry``.  Under a cluster member its pauses
        double up to :data:`STANDBY_POLL_LONGEST`: its server says when to try (``claim_now``),
        and each attempt is a new database connection (a PostgreSQL backend start: 6-9 ms of
        the database's CPU on a small VM): fifty standby processes of a returning server,
        trying every second, cost the database a third of a core or more just when the
        hand-overs needed it."""
        pause = self.settings.standby_retry
        while True:
            taken = self._take_and_claim()
            if taken:
                break
            if taken is False and not self.standby:
                self.standby = True
                metrics.OWNER.labels(self.name).set(0)
                self.logger.info(
                    "another process owns this channel; waiting in standby", retry=self.settings.standby_retry
                )
                self._report()
            # a process in standby holds no connection (under a server: no connection slot)
            # while it waits: fifty channels booting on a joining server, each trying once a
            # second and keeping its slot half a second after, starved that server's channels
            self.dataspace.idle(long=True)
            self._claim_now.wait(pause)
            self._claim_now.clear()
            if self.server_id is not None:
                pause = min(pause * 2, max(STANDBY_POLL_LONGEST, self.settings.standby_retry))
            if self._stop.is_set():
                return False
        self._database_reachable()
        if self.standby:
            self.logger.info("took over the channel", epoch=self.fence.epoch)
            # its last generation is the other owner's: the age alerts count from the takeover
            metrics.LAST_GENERATION_TIME.labels(self.name).set(time.time())
        self.standby = False
        metrics.OWNER.labels(self.name).set(1)
        self._report()
        return True

    def _still_owner(self) -> bool:
        """Whether this process may run the next generation: its lock is held, or can be
        taken again (a lost connection) and the channel claimed anew.  False when another
        process holds the lock now; waits while the database cannot be reached."""
        while True:
            if self._ownership.held():
                return True
            taken = self._take_and_claim()
            if taken:
                self._database_reachable()
                self.logger.info("took the channel's lock again", epoch=self.fence.epoch)
                return True
            if taken is False:
                return False
            if self._stop.wait(self._db_retry()):
                return True  # stopping: the loop ends without another generation

    def _yield_ownership(self, reason: str) -> bool:
        """Another process owns the channel now: stop acquiring, wait in standby, and take
        it back when it is free again.  False if the channel was stopped meanwhile."""
        self.logger.warning("lost ownership of the channel; waiting in standby", reason=reason)
        self.last_error = f"lost ownership of the channel ({reason}); waiting in standby"
        self._ownership.release()
        self.state.set(State.BOOT)
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
        with self._cond:
            self._fresh.clear()
        if not self._wait_for_ownership():
            return False
        self.generation_id = self.dataspace.get_last_generation_id(self.name, self.taskmanager_id)
        self.board = self._stored_board()  # the other owner's publishers may have changed it
        self._export_board()
        self.last_error = None
        self.state.set(State.ACTIVE)
        if self._scheduler is not None:
            self._scheduler.resume()
            for job in self._scheduler.get_jobs():
                job.modify(next_run_time=_now_utc())  # fresh data before the next generation
        return True

    # -- the database going away ------------------------------------------------------------------

    def _database_unreachable(self, error: BaseException) -> None:
        started = self.database_unreachable_since
        first = started is None
        if started is None:
            started = time.time()
        since = datetime.datetime.fromtimestamp(started).astimezone()
        # the error first: whoever sees the outage (another thread, a status report) sees why
        self.last_error = f"database unreachable since {since.isoformat(timespec='seconds')}: {error}"
        if first:
            self.database_unreachable_since = started
            self._db_delay = DB_RETRY_FIRST
            metrics.DATABASE_UP.labels(self.name).set(0)
            metrics.DATABASE_ERRORS.labels(self.name).inc()
            self.logger.error("database unreachable; retrying until it is back", error=str(error))
        self._report()

    def _database_reachable(self) -> None:
        if self.database_unreachable_since is not None:
            lasted = time.time() - self.database_unreachable_since
            self.logger.info("database reachable again", unreachable_seconds=round(lasted, 3))
            self.database_unreachable_since = None
            if self.last_error and self.last_error.startswith("database unreachable"):
                self.last_error = None
            self._report()
        metrics.DATABASE_UP.labels(self.name).set(1)

    def _db_retry(self) -> float:
        """Seconds to the next attempt while the database is away: short at first, at most
        DB_RETRY_MAX (so a generation resumes within that of the database's return)."""
        delay = self._db_delay
        self._db_delay = min(self._db_delay * 2, DB_RETRY_MAX)
        return delay

    def _run_owned(self) -> State:
        try:
            booted = self._boot()
        except Exception as exc:
            self.last_error = f"boot failed: {type(exc).__name__}: {exc}"
            self.logger.exception("channel could not start", error=self.last_error)
            self._close_modules()
            self.state.set(State.ERROR)
            return self.state.state
        if not booted:
            self.state.set(State.SHUTTINGDOWN)
            self._close_modules()
            self.state.set(State.SHUTDOWN)
            return self.state.state
        self.dataspace.idle()
        self.state.set(State.ACTIVE)
        final = State.SHUTDOWN
        try:
            self._start_sources()
            final = self._loop()
        except Exception as exc:  # a framework error: report it rather than die silently
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.logger.exception("channel failed", error=self.last_error)
            final = State.ERROR
        if final is State.ERROR:
            self._close_modules()
            self.state.set(State.ERROR)
        else:
            self.state.set(State.SHUTTINGDOWN)
            self._close_modules()
            self.state.set(State.SHUTDOWN)
        return self.state.state

    def claim_now(self) -> None:
        """Waiting in standby: try to claim the channel now (its server has seen the holder
        go), not at the end of ``standby_retry``."""
        self._claim_now.set()

    def stop(self) -> None:
        """Ask the channel to stop; a generation in progress finishes first."""
        self._stop.set()
        self._claim_now.set()
        with self._cond:
            self._cond.notify_all()

    def _register(self) -> None:
        """Everything boot reads from or writes to the DataSpace (repeated whole if the
        database goes away half-way)."""
        try:
            registration = self.dataspace.get_taskmanager(self.name)
            self.taskmanager_id = registration["taskmanager_id"]
        except KeyError:
            self.taskmanager_id = str(uuid.uuid4()).upper()
        self.sequence_id = self.dataspace.store_taskmanager(self.name, self.taskmanager_id)
        self.generation_id = self.dataspace.get_last_generation_id(self.name, self.taskmanager_id)
        self.board = self._stored_board()
        self._recover_unpublished()

    def _boot(self) -> bool:
        """Build the modules, register in the DataSpace; False if stopped before it could."""
        for spec in self.plan.modules():
            if spec.key in self.shared_sources:
                continue  # runs in its own process; its deliveries arrive through deliver_shared
            self.instances[spec.key] = self._call(spec.key, spec.create)
        while True:  # the database may be away: wait for it as a generation does, do not fail
            try:
                self._register()
                break
            except DataSpaceConnectionError as exc:
                self._database_unreachable(exc)
                if self._stop.wait(self._db_retry()):
                    return False  # stopped while waiting for the database
        self._database_reachable()
        metrics.LAST_GENERATION.labels(self.name).set(self.generation_id)
        metrics.LAST_GENERATION_TIME.labels(self.name).set(time.time())  # until it commits one
        metrics.initialize_channel(self.name, self.plan.sources, self.plan.publishers)
        if self.plan.sources:
            metrics.SCHEDULE.labels(self.name).set(min(spec.period() for spec in self.plan.sources.values()))
        self._export_board()
        if not self.plan.sources:
            self.logger.warning("channel has no sources: nothing will start a generation")
        self.logger.info(
            "channel booted",
            taskmanager_id=self.taskmanager_id,
            last_generation=self.generation_id,
            sources=list(self.plan.sources),
            transforms=[spec.key for spec in self.plan.transforms],
            publishers=list(self.plan.publishers),
        )
        return True

    def _start_sources(self) -> None:
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(1, len(self.plan.sources)))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        for key, spec in self.plan.sources.items():
            if key in self.shared_sources:
                continue
            self._scheduler.add_job(
                self._acquire,
                trigger=spec.trigger(),
                args=(spec,),
                id=key,
                name=f"{self.name}.{key}",
                next_run_time=_now_utc(),
            )
        self._scheduler.start()

    def _close_modules(self) -> None:
        """Stop the schedules, then call every publisher's ``shutdown()``."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for key in self.plan.publishers:
            publisher = self.instances.get(key)
            if publisher is None:
                continue
            try:
                publisher.shutdown()
            except Exception:
                self.logger.exception("publisher shutdown failed", publisher=key)

    # -- sources -----------------------------------------------------------------------------

    def _acquire(self, spec: ModuleSpec) -> None:
        """One scheduled run of a source, with its retry policy."""
        status = self.sources[spec.key]
        acquired = acquiring.acquire(
            spec,
            self.instances[spec.key],
            lambda: self._call(spec.key, self.instances[spec.key].acquire),
            status,
            channel=self.name,
            stop=self._stop,
            logger=self.logger,
            report=self._report,
            describe=lambda exc: _describe(exc.error if isinstance(exc, ModuleFailure) else exc),
        )
        if acquired is None:
            return
        acquiring.delivered(status, self.name, spec.key, acquired)
        with self._cond:
            self._latest[spec.key] = _Delivery(acquired.products, acquired.at, acquired.scheduled)
            self._fresh.add(spec.key)
            self._cond.notify_all()
        self._report()

    # -- shared sources ------------------------------------------------------------------------

    def deliver_shared(self, key: str, delivery: Mapping[str, Any]) -> bool:
        """A shared source stored a delivery (``generation`` of its task manager
        ``taskmanager_seq``): take its products (sent along, ``inline``, by a source of this
        server when small; else read with one query) and treat them as a delivery of source
        ``key``, as an in-process one.  False if it could not be read."""
        if key not in self.shared_sources:
            return False
        taken = (delivery["taskmanager_seq"], delivery["generation"])
        last = self._shared_taken.get(key)
        if last is not None and last[0] == taken[0] and last[1] >= taken[1]:
            return False  # heard twice, or out of order: a generation uses the newest only
        products: dict[str, Any] | None = None
        if delivery.get("inline") is not None:  # sent along by the source: no need to read it back
            try:
                products = dict(self.dataspace.loads(delivery["inline"]))
            except Exception as exc:  # read it from the DataSpace instead
                self.logger.warning("shared source delivery not readable inline", source=key, error=_describe(exc))
        delay = DB_RETRY_FIRST
        while products is None:
            try:
                products = self.dataspace.get_datablock(delivery["taskmanager_seq"], delivery["generation"])
            except DataSpaceConnectionError as exc:
                self._database_unreachable(exc)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, DB_RETRY_MAX)
            except Exception as exc:  # reaped meanwhile, or unreadable: the next delivery comes on schedule
                self.logger.error("shared source delivery unreadable", source=key, error=_describe(exc))
                return False
        self._shared_taken[key] = taken
        wanted = self.plan.sources[key].produces
        products = {name: value for name, value in products.items() if not wanted or name in wanted}
        status = self.sources[key]
        status.deliveries += 1
        status.last_update = float(delivery["create_time"])
        status.last_acquire_seconds = delivery.get("acquire_seconds")
        status.missed_update_count = 0
        status.failing_since = None
        status.last_error = None
        status.expired = False
        with self._cond:
            self._latest[key] = _Delivery(
                products, float(delivery["create_time"]), float(delivery.get("scheduled_time") or 0.0)
            )
            self._fresh.add(key)
            self._cond.notify_all()
        self._report()
        return True

    def shared_source_failing(self, key: str, failing: Mapping[str, Any] | None) -> None:
        """A shared source keeps failing (``{since, missed_update_count, last_error}``), or
        no longer does (None): shown in this channel's status as one of its own sources."""
        if key not in self.shared_sources:
            return
        status = self.sources[key]
        if failing:
            status.missed_update_count = max(1, int(failing.get("missed_update_count") or 0))
            status.last_error = failing.get("last_error")
            status.failing_since = failing.get("since") or status.failing_since or time.time()
        else:
            status.missed_update_count = 0
            status.failing_since = None
        outage = (failing or {}).get("database_unreachable_since")
        if outage is not None:
            # the channel writes nothing while its source cannot: the source's outage is its own
            self._source_outages.add(key)
            if self.database_unreachable_since is None:
                self.database_unreachable_since = float(outage)
            error = (failing or {}).get("database_error")
            self._database_unreachable(DataSpaceConnectionError(f"shared source {key!r}: {error}"))
            return
        if key in self._source_outages:
            self._source_outages.discard(key)
            if not self._source_outages:
                self._database_reachable()
        self._report()

    # -- generations ---------------------------------------------------------------------------

    def _ready(self) -> bool:
        return bool(self._fresh) and len(self._latest) == len(self.plan.sources)

    def _loop(self) -> State:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or self._ready())
                if self._stop.is_set():
                    return State.SHUTDOWN
                deliveries = dict(self._latest)
                self._fresh.clear()
            if not self._still_owner():
                if not self._yield_ownership("its lock is held by another process"):
                    return State.SHUTDOWN
                continue
            if self._stop.is_set():
                return State.SHUTDOWN
            try:
                self._run_generation(deliveries)
            except OwnershipLost as exc:
                if not self._yield_ownership(str(exc)):
                    return State.SHUTDOWN
                continue
            finally:
                self.dataspace.idle()  # under a server: kept only while it has slots to spare
            if self.consecutive_failures >= self.settings.max_consecutive_failures:
                last = self.history[-1]
                module = last.module or "framework"
                self.failed_module = {"module": module, "error": last.error, "generation": last.generation_id}
                self.last_error = (
                    f"{self.consecutive_failures} consecutive failed generations; "
                    f"last: generation {last.generation_id}: {module}: {last.error}"
                )
                self.logger.error("channel goes to ERROR", reason=self.last_error)
                return State.ERROR
            if self.settings.max_generations is not None and self.generations_run >= self.settings.max_generations:
                self.logger.info("channel ran its configured number of generations", generations=self.generations_run)
                return State.SHUTDOWN

    def _run_generation(self, deliveries: Mapping[str, _Delivery]) -> None:
        """Compute a generation, commit it, then publish it, then record how publishing went.

        The order is the guarantee publishers get: they act only on a generation that is
        committed (products, facts and decision), at least once for each one (a commit
        whose publishers never ran is published at the next start), never for one that was
        not.  A commit the database refuses for a connection problem is retried until it
        succeeds (the channel shows "database unreachable since ..."); nothing else of the
        generation is redone.  :class:`OwnershipLost` goes to the caller: nothing was written.
        """
        generation = self.generation_id + 1
        record = GenerationRecord(generation, time.time())
        if deliveries:
            record.trigger_latency = record.started - max(d.create_time for d in deliveries.values())
        self.history.append(record)
        started = time.monotonic()
        block = DataBlock(self.dataspace, self.name, self.taskmanager_id, generation, self.sequence_id)
        block.fence = self.fence
        block.begin()
        self._attach_board(block, record)
        try:
            self._put_source_products(block, deliveries, record)
            for spec in self.plan.transforms:
                self._run_transform(block, spec, record)
            fired = self._run_logic_engine(block, record)
            to_run = self.plan.publishers_to_run(fired)
            decision = self._decide(block, generation, to_run, record)
            block.announce(
                {
                    "channel": self.name,
                    "generation": generation,
                    "time": time.time(),
                    "outcome": "committed",
                    "duration": time.monotonic() - started,
                    "idempotency_key": decision["idempotency_key"],
                }
            )
        except Exception as exc:
            block.discard()
            self._generation_failed(record, exc, started)
            return
        try:
            committed = self._commit(block, record)
        except OwnershipLost:
            block.discard()
            record.outcome = "failed"
            record.error = "lost ownership before the commit"
            raise
        except Exception as exc:  # the database refused it (not a connection problem)
            block.discard()
            self._generation_failed(record, exc, started)
            return
        if not committed:  # stopped while the database was away: nothing was written
            record.outcome = "failed"
            record.error = "stopped before the database came back; nothing was written"
            record.duration = time.monotonic() - started
            self._report()
            return
        self.generation_id = generation
        self.generations_run += 1
        record.outcome = "committed"  # publish_failed if a publisher fails now
        metrics.LAST_GENERATION.labels(self.name).set(generation)
        metrics.LAST_GENERATION_TIME.labels(self.name).set(time.time())
        self._publish(block, decision, record)
        record.duration = time.monotonic() - started
        if record.outcome == "publish_failed":
            self.consecutive_failures += 1
            self.failed_generations += 1
            self.last_error = f"generation {record.generation_id}: {record.module}: {record.error}"
        else:
            self.consecutive_failures = 0
        metrics.GENERATIONS.labels(self.name, record.outcome).inc()
        metrics.GENERATION_SECONDS.labels(self.name).observe(record.duration)
        self.logger.info(
            "generation committed",
            generation=generation,
            seconds=round(record.duration, 4),
            outcome=record.outcome,
            publishers=record.publishers,
        )
        if self.state.state is State.ACTIVE:
            self.state.set(State.STEADY)  # reports
        else:
            self._report()

    def _generation_failed(self, record: GenerationRecord, exc: BaseException, started: float) -> None:
        failure = exc if isinstance(exc, ModuleFailure) else None
        record.outcome = "failed"
        record.module = failure.key if failure else None
        record.error = _describe(failure.error if failure else exc)
        record.duration = time.monotonic() - started
        self.consecutive_failures += 1
        self.failed_generations += 1
        self.last_error = f"generation {record.generation_id}: {record.module or 'framework'}: {record.error}"
        metrics.GENERATIONS.labels(self.name, "failed").inc()
        self.logger.error(
            "generation failed; nothing of it was stored",
            generation=record.generation_id,
            failed_module=record.module,
            error=record.error,
            exc_info=failure.error if failure else exc,
        )
        self._report()

    def _decide(self, block: DataBlock, generation: int, to_run: list[str], record: GenerationRecord) -> dict[str, Any]:
        """The generation's decision, stored with it: the publishers to run and the
        idempotency key they can read (``data_block.idempotency_key``)."""
        facts = block.get(FACT_VALUES) if self.plan.logic_engine is not None else None
        decided = {
            "channel": self.name,
            "generation": generation,
            "publishers": sorted(to_run),
            "facts": {} if facts is None else dict(zip(facts["fact_name"], facts["fact_value"], strict=True)),
        }
        digest = hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()[:16]
        decision = {
            "idempotency_key": f"{self.name}:{generation}:{digest}",
            "publishers": list(to_run),
            "generation": generation,
        }
        block.idempotency_key = decision["idempotency_key"]
        block.put(DECISION, decision, self._header("taskmanager", record), self._metadata(record))
        return decision

    def _commit(self, block: DataBlock, record: GenerationRecord) -> bool:
        """Commit the generation, waiting through database outages; False if stopped first."""
        while True:
            try:
                block.commit(keep=True)
            except DataSpaceConnectionError as exc:
                self._database_unreachable(exc)
                if self._stop.wait(self._db_retry()):
                    block.discard()
                    return False
                continue
            self._database_reachable()
            return True

    def _attach_board(self, block: DataBlock, record: GenerationRecord) -> None:
        """Let the generation's modules read ``publisher_status``: the board as the previous
        generation left it (a copy: nothing of this generation shows through it)."""
        block.attach(PUBLISHER_STATUS, self.board.frozen(), self._header("taskmanager", record), self._metadata(record))

    def _stored_board(self) -> PublisherStatusBoard:
        """The board as the last published generation stored it (the last committed one, or
        the one before when that one's publishers did not finish), for the channel's
        publishers; a fresh board (every publisher enabled from now) when there is none, or
        only a table of the format before the board (a plain DataFrame), or one unreadable."""
        for generation in (self.generation_id, self.generation_id - 1):
            if generation < 1:
                break
            try:
                stored = self.dataspace.get_dataproduct(self.sequence_id, generation, PUBLISHER_STATUS)
            except KeyError:
                continue
            except DataSpaceConnectionError:
                raise
            except Exception as exc:  # a damaged or refused payload must not keep the channel down
                self.logger.warning(
                    "stored publisher status unreadable; every publisher starts enabled",
                    generation=generation,
                    error=_describe(exc),
                )
                break
            if isinstance(stored, PublisherStatus):
                disabled = [
                    name for name, (enabled, _) in stored.items() if not enabled and name in self.plan.publishers
                ]
                if disabled:
                    self.logger.info("publishers disabled since before the start", publishers=disabled)
                return PublisherStatusBoard.resume(self.plan.publishers, stored)
            break  # stored by a version before the board: nothing to carry on
        return PublisherStatusBoard(self.plan.publishers)

    def _publish(self, block: DataBlock, decision: Mapping[str, Any], record: GenerationRecord) -> None:
        """Run the decided publishers on the committed generation, then store their status:
        the board updated with what they returned, and how each ran."""
        details = self._run_publishers(block, list(decision["publishers"]), record)
        statuses = self.board.frozen(details)
        header, metadata = self._header("taskmanager", record), self._metadata(record)
        while True:
            try:
                self.dataspace.write_generation(
                    self.sequence_id,
                    record.generation_id,
                    {PUBLISHER_STATUS: (statuses, header, metadata)},
                    fence=self.fence,
                )
            except DataSpaceConnectionError as exc:
                self._database_unreachable(exc)
                if self._stop.wait(self._db_retry()):
                    self.logger.warning(
                        "publisher status not stored (stopping while the database is away); "
                        "the generation's publishers will run again at the next start",
                        generation=record.generation_id,
                    )
                    return
                continue
            except OwnershipLost as exc:
                self.logger.warning("publisher status not stored: lost ownership", error=str(exc))
                return
            self._database_reachable()
            return

    def _recover_unpublished(self) -> None:
        """At start: a committed generation whose publishers' status was never stored (the
        process ended between commit and status) is published now, with its stored decision
        and idempotency key: at least once for every committed generation."""
        if not self.generation_id:
            return
        keys = set(self.dataspace.get_keys(self.sequence_id, self.generation_id))
        if PUBLISHER_STATUS in keys or DECISION not in keys:
            return
        block = DataBlock(self.dataspace, self.name, self.taskmanager_id, self.generation_id, self.sequence_id)
        decision = block[DECISION]
        block.idempotency_key = decision["idempotency_key"]
        record = GenerationRecord(self.generation_id, time.time())
        self._attach_board(block, record)  # as the previous generation left it, as the first time
        self.logger.warning(
            "publishing a committed generation whose publishers had not finished",
            generation=self.generation_id,
            idempotency_key=block.idempotency_key,
        )
        self._publish(block, decision, record)

    def _header(
        self, creator: str, record: GenerationRecord, create_time: float | None = None, **times: float
    ) -> Header:
        create_time = record.started if create_time is None else create_time
        return Header(
            self.taskmanager_id,
            create_time=create_time,
            expiration_time=times.get("expiration_time", create_time + self.settings.data_lifetime),
            scheduled_create_time=times.get("scheduled_create_time", record.started),
            creator=creator,
        )

    def _metadata(self, record: GenerationRecord, missed: int = 0) -> Metadata:
        return Metadata(
            self.taskmanager_id,
            state=STATE_END_CYCLE,
            generation_id=record.generation_id,
            generation_time=record.started,
            missed_update_count=missed,
        )

    def _put_source_products(
        self, block: DataBlock, deliveries: Mapping[str, _Delivery], record: GenerationRecord
    ) -> None:
        for key, delivery in deliveries.items():
            header = self._header(key, record, delivery.create_time, scheduled_create_time=delivery.scheduled_time)
            status = self.sources[key]
            if header["expiration_time"] <= record.started and not status.expired:
                status.expired = True
                self.logger.warning(
                    "source data expired: its products are stored marked expired",
                    source=key,
                    expired_at=header["expiration_time"],
                    products=list(delivery.products),
                )
            metadata = self._metadata(record, status.missed_update_count)
            for product, value in delivery.products.items():
                block.put(product, value, header, metadata)

    def _run_transform(self, block: DataBlock, spec: ModuleSpec, record: GenerationRecord) -> None:
        module = self.instances[spec.key]
        products = self._call(spec.key, module.transform, block)
        try:
            verify_products(module, products)
        except Exception as exc:
            raise ModuleFailure(spec.key, exc) from exc
        header = self._header(spec.key, record, time.time())
        for product, value in products.items():
            block.put(product, value, header, self._metadata(record))

    def _run_logic_engine(self, block: DataBlock, record: GenerationRecord) -> frozenset[str]:
        spec = self.plan.logic_engine
        if spec is None:
            return frozenset()
        result = self._call(spec.key, self.instances[spec.key].evaluate_generation, block)
        header = self._header(spec.key, record, time.time())
        block.put(FACTS_PRODUCT, result.facts_frame, header, self._metadata(record))
        # each column in its dtype at once (as LogicEngine.facts_frame), not converted afterwards
        values = pd.DataFrame(
            {
                "fact_name": pd.Series(list(result.facts), dtype=object),
                "fact_value": pd.Series([bool(v) for v in result.facts.values()], dtype=bool),
            }
        )
        block.put(FACT_VALUES, values, header, self._metadata(record))
        self.logger.info(
            "logic engine decided",
            generation=record.generation_id,
            facts=result.facts,
            fired=sorted(result.publishers),
            suppressed_errors=result.suppressed_errors or None,
        )
        return result.publishers

    def _run_publishers(self, block: DataBlock, to_run: list[str], record: GenerationRecord) -> pd.DataFrame:
        rows = []
        for key in self.plan.publishers:
            if key not in to_run:
                rows.append({"publisher": key, "ran": False, "succeeded": None, "seconds": None, "error": None})
                continue
            started = time.monotonic()
            error = None
            try:
                result = self._call(key, self.instances[key].publish, block)
            except ModuleFailure as failure:
                error = _describe(failure.error)
                record.outcome = "publish_failed"
                if record.module is None:  # the first publisher that failed names the generation's failure
                    record.module, record.error = key, error
                metrics.PUBLISHER_FAILURES.labels(self.name, key).inc()
                self.logger.error("publisher failed", publisher=key, error=error, exc_info=failure.error)
            else:
                self._record_result(key, result)
            record.publishers[key] = error is None
            rows.append(
                {
                    "publisher": key,
                    "ran": True,
                    "succeeded": error is None,
                    "seconds": time.monotonic() - started,
                    "error": error,
                }
            )
        return details_frame(rows)

    def _record_result(self, key: str, result: Any) -> None:
        """Update the board with what ``publish()`` returned (only ``True``/``False``
        count: see :meth:`PublisherStatusBoard.record`); log a change."""
        was = self.board.snapshot().is_enabled(key)
        now = self.board.record(key, result)
        if now is not None and now != was:
            self.logger.info("publisher enabled" if now else "publisher disabled", publisher=key)
            metrics.PUBLISHER_ENABLED.labels(self.name, key).set(1 if now else 0)

    def _export_board(self) -> None:
        """Every publisher's state as the gauge ``de_publisher_enabled``."""
        for name, (enabled, _since) in self.board.frozen().items():
            metrics.PUBLISHER_ENABLED.labels(self.name, name).set(1 if enabled else 0)

    def _call(self, key: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call into a module, marking it busy (the server's hang watchdog reads that)."""
        self.busy[key] = time.time()
        if self.reporter is not None:
            self._report()
        try:
            with running_module.running(key):  # the module's own log level applies (engine.logs)
                return function(*args)
        except Exception as exc:
            raise ModuleFailure(key, exc) from exc
        finally:
            self.busy.pop(key, None)
            if self.reporter is not None:
                self._report()


def _describe(error: BaseException) -> str:
    """``Type: message`` and the exception's notes: a failed fact raises its own exception
    (``NameError``...) and says which fact, expression and products in a note."""
    return explain(error)


def _now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
