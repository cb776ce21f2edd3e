"""Shared sources under the server: one process per source that several channels name.

A source named by two or more of the server's channels (with the same configuration:
:mod:`decisionengine.framework.config.shared_sources`) runs once, in a process of its own
(:mod:`.source_process`), supervised as a channel is: :class:`SourceWorker` is a
:class:`~.workers.ChannelWorker` with another entry point, so the hang watchdog, the
crash report and the restart policy are the channels'.  A source only one channel names
stays in that channel's process, as before: no process, no memory, for nothing.

:class:`SharedSources` keeps, per shared source, the channels attached to it (those whose
process runs, starts, or waits for a restart, with it), its last delivery and whether it
is failing:

* a channel process starting attaches (:meth:`SharedSources.attach`, from the worker's
  ``prepare_launch``): the source starts if it does not run, and the channel is sent the
  source's last delivery at once, so a channel started later does not wait a schedule;
* each ``delivered`` event of a source (its generation is committed) is forwarded to
  every attached channel's command queue: the channels learn of it through the server's
  event path (pipe, router thread, queue), never by polling;
* a source failing (its acquire keeps failing, its process died or hung) is forwarded
  as ``source_failing`` to every consumer, whose status then shows it as a failing source;
* a source with no channel left stops (:meth:`SharedSources.reconcile`).

In a cluster of servers on one PostgreSQL (``cluster_wide``) a shared source is acquired
once for the whole cluster, not once per server.  Each server *offers* the shared sources
its running channels consume (:meth:`SharedSources.offered`, under the source's task
manager name, ``de-source:<key>``); the cluster balances sources among the servers that
offer them as it balances channels, and :meth:`SharedSources.apply` starts a source here
or hands it over, exactly as a channel (the process claims the source with a new fencing
epoch; a server thought dead cannot write for it any more).  The owner's process announces
every delivery in its commit (NOTIFY): the other servers hear it through their generation
listener and forward it to their own consumers (:meth:`SharedSources.on_announcement`),
and the owner announces failures the same way.  When the owner dies, the cluster gives
the source to another server that offers it.  Servers sharing one SQLite file cannot
notify each other: there each server runs the shared sources its own channels need.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from decisionengine.framework.config.shared_sources import shared_keys
from decisionengine.framework.engine.source_process import SourceLaunch
from decisionengine.framework.engine.source_process import main as source_main
from decisionengine.framework.engine.workers import ChannelWorker
from decisionengine.framework.taskmanager import metrics
from decisionengine.framework.taskmanager.settings import TaskManagerSettings
from decisionengine.framework.taskmanager.shared_source import taskmanager_name
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.util.logger import get_logger

#: shared source processes are known to the server (links, logs) as this, then the key
PREFIX = "source:"

#: the least time between two reconciles (seconds): what the keeper does on a wake waits at
#: most this long, and a server of hundreds of channels is not kept busy by it
RECONCILE_INTERVAL = 0.2
#: the least time between two exports of ``de_source_status`` (seconds): an export looks at
#: every source of every channel (a third of a busy server's CPU at 5 reconciles a second,
#: benchmarks/scale.py), and Prometheus scrapes every 15 s or so
EXPORT_INTERVAL = 1.0


class SourceWorker(ChannelWorker):
    """The server's handle on one shared source's process."""

    def __init__(
        self,
        key: str,
        entry: Any,
        channel_name: str,
        taskmanager: str,
        settings: TaskManagerSettings,
        launch_args: dict[str, Any],
        context: Any,
        notify: Callable[[], None],
        router: Any,
        restart_policy: Any,
    ) -> None:
        super().__init__(SimpleNamespace(name=PREFIX + key), launch_args, context, notify, None, router, restart_policy)
        self.key = key
        self.entry = entry
        self.channel_name = channel_name
        self.taskmanager = taskmanager
        self.settings = settings
        #: a channel attached while the process was stopping: start it again once it ended
        self.start_requested = False

    def _launch(self, writer: Any) -> tuple[Callable[[Any], None], Any, str]:
        args = self.launch_args
        launch = SourceLaunch(
            name=self.name,
            entry=self.entry,
            channel_name=self.channel_name,
            taskmanager=self.taskmanager,
            module_timeout=self.settings.module_timeout,
            data_lifetime=self.settings.data_lifetime,
            global_config=args["global_config"],
            link=writer,
            command_queue=self.command_queue,
            log_level=self.log_level,
            metrics_dir=args.get("metrics_dir"),
            json_logs=bool(args.get("json_logs")),
            module_log_levels=dict(self.source_log_levels),
            connection_slots=args.get("connection_slots"),
            server_id=args.get("server_id") if self.taskmanager == taskmanager_name(self.key) else None,
        )
        return source_main, launch, f"de-source-{self.key}"


class SharedSources:
    """Every shared source of the server: its process, its consumers, its news."""

    def __init__(
        self,
        channel_workers: Callable[[], dict[str, ChannelWorker]],
        launch_args: Callable[[], dict[str, Any]],
        context: Any,
        notify: Callable[[], None],
        router: Any,
        restart_policy: Callable[[], Any],
        server_name: str | None = None,
        *,
        cluster_wide: bool = False,
        server_id: str | None = None,
        announce: Callable[[dict[str, Any]], Any] | None = None,
        poke: Callable[[], None] | None = None,
    ) -> None:
        self.channel_workers = channel_workers
        self.launch_args = launch_args
        self.context = context
        self.notify = notify
        self.router = router
        self.restart_policy = restart_policy
        self.server_name = server_name
        #: one source process per cluster (servers on one PostgreSQL), not per server
        self.cluster_wide = cluster_wide
        self.server_id = server_id
        #: tells the other servers of the cluster (the owner's failures)
        self.announce = announce
        #: asks the cluster to look again now (what this server offers changed)
        self.poke = poke or (lambda: None)
        #: key -> the name of the server the cluster runs the source on, when not this one
        self.runs_on: dict[str, str | None] = {}
        #: key -> whether the cluster's last assignment gives the source to this server
        self.assigned_here: dict[str, bool] = {}
        #: key -> deliveries heard from the source running on another server
        self.heard: dict[str, int] = {}
        self.logger = get_logger().bind(module="shared_sources")
        self.workers: dict[str, SourceWorker] = {}
        #: key -> channels attached (their process runs, starts, or will restart, with it)
        self.consumers: dict[str, set[str]] = {}
        self.last_delivery: dict[str, dict[str, Any]] = {}
        self.failing: dict[str, dict[str, Any] | None] = {}
        self._attachments: dict[str, int] = {}
        #: source -> the de_source_status number last written
        self._exported: dict[str, int] = {}
        self._last_export = float("-inf")  # monotonic
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        #: reconciles the keeper started and the number of the last it finished (reconcile_now)
        self._reconciled = threading.Condition()
        self._reconciles_started = 0
        self._reconciles_done = 0
        self._thread = threading.Thread(target=self._keep, name="shared-sources", daemon=True)

    # -- which sources are shared ----------------------------------------------------------------

    def keys_for(self, config: Any) -> frozenset[str]:
        """The sources of a channel that run shared: another channel the server knows names them."""
        return shared_keys(config, [w.config for w in self.channel_workers().values()])

    def _settings(self, key: str) -> TaskManagerSettings:
        """The source's module_timeout and data_lifetime: the largest of its channels' (a shared
        source is not killed sooner than any of its channels would allow)."""
        timeout, lifetime = [], []
        for worker in self.channel_workers().values():
            if key in worker.config.sources:
                try:
                    settings = TaskManagerSettings.from_config(worker.config.task_manager, worker.name)
                except ValueError:
                    continue
                timeout.append(settings.module_timeout)
                lifetime.append(settings.data_lifetime)
        defaults = TaskManagerSettings()
        return TaskManagerSettings(
            module_timeout=max(timeout, default=defaults.module_timeout),
            data_lifetime=max(lifetime, default=defaults.data_lifetime),
        )

    # -- attaching -------------------------------------------------------------------------------

    def prepare_launch(self, worker: ChannelWorker) -> dict[str, Any]:
        """A channel process is about to start (its worker's lock held): attach it to its
        shared sources, starting those that do not run; the launch fields it needs."""
        keys = self.keys_for(worker.config)
        worker.shared_sources = keys
        if keys and not self._stopping.is_set():
            self.attach(worker, keys)
        return {"shared_sources": keys}

    def attach(self, channel: ChannelWorker, keys: frozenset[str]) -> None:
        news: list[tuple[str, str, Any]] = []
        for key in sorted(keys):
            entry = channel.config.sources[key]
            with self._lock:
                self.consumers.setdefault(key, set()).add(channel.name)
                self._attachments[channel.name] = self._attachments.get(channel.name, 0) + 1
                source = self.workers.get(key)
                if source is None:
                    source = self.workers[key] = SourceWorker(
                        key,
                        entry,
                        channel.name,
                        taskmanager_name(key, None if self.cluster_wide else self.server_name),
                        self._settings(key),
                        self.launch_args(),
                        self.context,
                        self.notify,
                        self.router,
                        self.restart_policy(),
                    )
                self._ensure_running(source, entry, channel.name)
                if key in self.last_delivery:
                    news.append(("source_delivery", key, self.last_delivery[key]))
                if self.failing.get(key):
                    news.append(("source_failing", key, self.failing[key]))
            self.logger.info("channel attached to shared source", channel=channel.name, source=key)
        for item in news:
            with contextlib.suppress(Exception):
                channel.command_queue.put(item)

    def _ensure_running(self, source: SourceWorker, entry: Any, channel: str) -> None:
        """Start the source unless it runs (lock held); in a cluster, offer it and start it
        if the cluster gives it to this server."""
        if self.cluster_wide:
            self._want(source, entry, channel)
            return
        if source.alive and source.wanted:
            return
        if source.alive:  # stopping: start it again once it has ended
            source.start_requested = True
            return
        source.entry = entry
        source.channel_name = channel
        source.settings = self._settings(source.key)
        source.start_requested = False
        try:
            source.start(automatic=True)
        except Exception as exc:  # reported as ERROR by the worker; the consumers see it failing
            self.logger.error("shared source could not start", source=source.key, error=str(exc))

    # -- once per cluster -------------------------------------------------------------------------

    def _want(self, source: SourceWorker, entry: Any, channel: str) -> None:
        """A channel here consumes the source: offer it to the cluster; run it at once if the
        last assignment already gives it to this server (lock held)."""
        if not source.wanted:
            source.entry = entry
            source.channel_name = channel
            source.settings = self._settings(source.key)
            source.want()
            self.poke()
        if self.assigned_here.get(source.key):
            self._run_here(source)

    def _run_here(self, source: SourceWorker) -> None:
        """The cluster gives the source to this server: run it (lock held)."""
        if source.parked or source.alive:
            source.assign(True, None)
        elif source.wanted and source.state in (State.SHUTDOWN, State.OFFLINE):
            # it stopped of its own accord (another server took it over while this one was
            # thought dead), and now it is this server's again
            source.parked = True
            source.assign(True, None)

    def offered(self) -> list[str]:
        """The shared sources this server offers to run for the cluster: those its running
        channels consume, under their task manager names."""
        if not self.cluster_wide:
            return []
        with self._lock:
            return sorted(
                taskmanager_name(key)
                for key, source in self.workers.items()
                if self.consumers.get(key) and source.offered
            )

    def apply(
        self, assignment: dict[str, str | None], me: str, member_name: Callable[[str | None], str | None]
    ) -> None:
        """The cluster's assignment of sources: run here those given to this server, hand
        the others over (the process finishes its acquisition, releases, exits)."""
        if not self.cluster_wide:
            return
        with self._lock:
            for key, source in self.workers.items():
                target = assignment.get(taskmanager_name(key))
                here = target == me
                self.assigned_here[key] = here
                self.runs_on[key] = None if here else member_name(target)
                if not source.offered:
                    continue
                if here:
                    self._run_here(source)
                else:
                    source.assign(False, self.runs_on[key])

    def on_announcement(self, message: dict[str, Any]) -> None:
        """What another server's shared source announced (a delivery, a failure), heard by
        this server's generation listener.  The database is shared, so the message is
        checked as hostile: only a known shared source's key, only well-formed fields."""
        key, origin = message.get("source"), message.get("server_id")
        if not self.cluster_wide or not isinstance(key, str) or origin == self.server_id:
            return  # this server's own sources report over their pipes
        with self._lock:
            if key not in self.workers:
                return
        if "delivery" in message:
            delivery = _checked_delivery(message["delivery"])
            if delivery is None:
                self.logger.warning("ignored a malformed shared source announcement", source=key)
                return
            if self._delivered(key, delivery):
                with self._lock:
                    self.heard[key] = self.heard.get(key, 0) + 1
        elif "failing" in message:
            failing = _checked_failing(message["failing"]) if message["failing"] is not None else None
            if message["failing"] is not None and failing is None:
                self.logger.warning("ignored a malformed shared source announcement", source=key)
                return
            self._tell_failing(key, failing)

    def _tell_failing(self, key: str, failing: dict[str, Any] | None) -> None:
        """Tell this server's consumers of ``key`` that it fails (or no longer does)."""
        with self._lock:
            if failing == self.failing.get(key):
                return
            self.failing[key] = failing
            names = sorted(self.consumers.get(key, ()))
        self._send_failing(self.channel_workers(), key, failing, names)

    @staticmethod
    def _send_failing(
        workers: dict[str, ChannelWorker], key: str, failing: dict[str, Any] | None, names: list[str]
    ) -> None:
        """Put ``source_failing`` on the command queue of each running consumer among ``names``."""
        for name in names:
            worker = workers.get(name)
            if worker is not None and worker.command_queue is not None and worker.alive:
                with contextlib.suppress(Exception):
                    worker.command_queue.put(("source_failing", key, failing))

    # -- what the source processes report ----------------------------------------------------------

    def owns(self, name: str) -> bool:
        return name.startswith(PREFIX) and name[len(PREFIX) :] in self.workers

    def on_event(self, kind: str, name: str, payload: Any) -> None:
        key = name[len(PREFIX) :]
        source = self.workers.get(key)
        if source is None:
            return
        if kind == "delivered":
            self._delivered(key, payload)
        elif kind == "status":
            source.on_status(payload)
        elif kind == "failed":
            source.on_failed(payload)
        elif kind == "invalid":
            source.on_invalid(payload)
        elif kind == "exited":
            source.on_exited(payload)

    def _delivered(self, key: str, delivery: dict[str, Any]) -> bool:
        """Forward a delivery to the consumers; False if it is not newer than the last one
        (heard twice: over the source's pipe and announced by the database)."""
        with self._lock:
            last = self.last_delivery.get(key)
            if (
                last is not None
                and last.get("taskmanager_seq") == delivery.get("taskmanager_seq")
                and last.get("generation", 0) >= delivery.get("generation", 0)
            ):
                return False
            self.last_delivery[key] = delivery
            consumers = sorted(self.consumers.get(key, ()))
        workers = self.channel_workers()
        for name in consumers:
            worker = workers.get(name)
            if worker is None or worker.command_queue is None or key not in worker.shared_sources:
                continue
            with contextlib.suppress(Exception):
                worker.command_queue.put(("source_delivery", key, delivery))
        return True

    # -- keeping them right --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _keep(self) -> None:
        """Reconcile when woken, at most once per :data:`RECONCILE_INTERVAL`.

        Every status report of every channel wakes this thread (several per generation), and a
        reconcile looks at every source of every channel: unthrottled, a server of hundreds of
        channels spent most of its CPU here (the cost grew with the square of its channels).
        Wakes that come meanwhile are served by the next reconcile, which sees all they saw."""
        while not self._stopping.is_set():
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            with self._reconciled:
                self._reconciles_started += 1
                number = self._reconciles_started
            try:
                self.reconcile()
            except Exception:
                self.logger.exception("shared sources: reconcile failed")
            with self._reconciled:
                self._reconciles_done = number
                self._reconciled.notify_all()
            if self._stopping.wait(max(0.0, RECONCILE_INTERVAL - (time.monotonic() - started))):
                return

    def reconcile(self) -> None:
        """Detach channels that no longer run; stop sources nobody uses; start those a
        channel attached to while they stopped; tell consumers of failures; export states."""
        with self._lock:
            snapshot = {key: set(names) for key, names in self.consumers.items()}
            seen = dict(self._attachments)
        workers = self.channel_workers()
        gone = {
            name
            for names in snapshot.values()
            for name in names
            if (worker := workers.get(name)) is None or not worker.runs_or_will_run
        }
        forward: list[tuple[str, dict[str, Any] | None, list[str]]] = []
        offer_changed = False
        with self._lock:
            for key, names in self.consumers.items():
                for name in names & gone:
                    if self._attachments.get(name) == seen.get(name):
                        names.discard(name)
                        self.logger.info("channel detached from shared source", channel=name, source=key)
            for key, source in self.workers.items():
                if self._stopping.is_set():
                    break
                if not self.consumers.get(key):
                    if source.wanted or source.alive:
                        self.logger.info("shared source has no channel left: stopping it", source=key)
                        source.stop()
                        source.start_requested = False
                        offer_changed = True
                elif source.start_requested and not source.alive:
                    self._ensure_running(source, source.entry, source.channel_name)
                elif self.cluster_wide and self.assigned_here.get(key) and not source.alive:
                    self._run_here(source)
                if self.cluster_wide and not (source.alive or self.assigned_here.get(key)):
                    continue  # runs on another server, which announces its failures
                failing = _failing(source)
                if failing != self.failing.get(key):
                    self.failing[key] = failing
                    forward.append((key, failing, sorted(self.consumers.get(key, ()))))
        if offer_changed:
            self.poke()
        for key, failing, names in forward:
            if self.cluster_wide and self.announce is not None:
                try:
                    self.announce({"source": key, "server_id": self.server_id, "failing": failing})
                except Exception as exc:  # the database is away: the consumers here are told anyway
                    self.logger.warning("could not announce a shared source's failure", source=key, error=str(exc))
            self._send_failing(workers, key, failing, names)
        if time.monotonic() - self._last_export >= EXPORT_INTERVAL:
            self._last_export = time.monotonic()
            self._export(workers)
        else:
            self._wake.set()  # what changed since the last export is exported at a later reconcile

    def reconcile_now(self, timeout: float = 5.0) -> bool:
        """Wake the keeper and wait for a reconcile that starts after this call to finish
        (a channel removed: its sources must not list it once the removal has answered)."""
        with self._reconciled:
            wanted = self._reconciles_started + 1
            self._wake.set()
            return self._reconciled.wait_for(
                lambda: self._reconciles_done >= wanted or self._stopping.is_set(), timeout
            )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._reconciled:
            self._reconciled.notify_all()

    def all_workers(self) -> list[SourceWorker]:
        with self._lock:
            return list(self.workers.values())

    # -- what operators see --------------------------------------------------------------------------

    def statuses(self) -> list[dict[str, Any]]:
        """Every source of the server's channels: shared ones (their process) and private
        ones (in their channel's process), each with its consumers, schedule, last acquire
        time and state."""
        workers = self.channel_workers()
        rows: dict[str, dict[str, Any]] = {}
        for name, worker in sorted(workers.items()):
            for key, entry in worker.config.sources.items():
                row = rows.setdefault(
                    key,
                    {
                        "source": key,
                        "shared": False,
                        "channels": [],
                        "consumers": [],
                        "schedule": entry.schedule,
                        "state": "OFFLINE",
                        "last_acquire": None,
                        "deliveries": 0,
                        "missed_update_count": 0,
                        "last_error": None,
                        "pid": None,
                        "runs_on": None,
                    },
                )
                row["channels"].append(name)
        with self._lock:
            shared = dict(self.workers)
            consumers = {key: sorted(names) for key, names in self.consumers.items()}
            elsewhere = {
                key: (name, self.last_delivery.get(key), self.failing.get(key), self.heard.get(key, 0))
                for key, name in self.runs_on.items()
                if name is not None and key in shared and not shared[key].alive
            }
        channel_statuses: dict[str, dict[str, Any]] = {}
        for key, row in rows.items():
            source = shared.get(key)
            if key in elsewhere and self.cluster_wide:
                runs_on, delivery, failing, heard = elsewhere[key]
                row.update(
                    shared=True,
                    consumers=consumers.get(key, []),
                    runs_on=runs_on,
                    state="ERROR" if failing else ("STEADY" if delivery else "BOOT"),
                    last_acquire=delivery.get("create_time") if delivery else None,
                    deliveries=heard,
                    missed_update_count=(failing or {}).get("missed_update_count", 0),
                    last_error=(failing or {}).get("last_error"),
                    taskmanager=taskmanager_name(key),
                )
                continue
            if source is not None and (source.alive or source.wanted or len(row["channels"]) > 1):
                status = source.status()
                detail = status.get("source") or {}
                row.update(
                    shared=True,
                    consumers=consumers.get(key, []),
                    state=status.get("state"),
                    last_acquire=detail.get("last_update"),
                    deliveries=detail.get("deliveries", 0),
                    missed_update_count=detail.get("missed_update_count", 0),
                    last_error=detail.get("last_error") or status.get("server_reason"),
                    pid=status.get("pid") if source.alive else None,
                    runs_on=self.server_name if source.alive else None,
                    restarts=status.get("restarts"),
                    generation=status.get("generation"),
                    taskmanager=source.taskmanager,
                )
                continue
            row["shared"] = len(row["channels"]) > 1
            for name in row["channels"]:
                if name not in channel_statuses:  # once per channel, not once per source of it
                    channel_statuses[name] = workers[name].status()
                channel = channel_statuses[name]
                detail = (channel.get("sources") or {}).get(key) or {}
                if channel.get("process_alive"):
                    row["consumers"].append(name)
                    row["state"] = "ERROR" if detail.get("missed_update_count") else channel.get("state")
                    row["pid"] = channel.get("pid")
                    row["runs_on"] = self.server_name
                elif channel.get("state") == State.ERROR.value and row["state"] == "OFFLINE":
                    row["state"] = "ERROR"
                if detail:
                    row["last_acquire"] = detail.get("last_update")
                    row["deliveries"] = detail.get("deliveries", 0)
                    row["missed_update_count"] = detail.get("missed_update_count", 0)
                    row["last_error"] = detail.get("last_error")
        return [rows[key] for key in sorted(rows)]

    def _export(self, workers: dict[str, ChannelWorker]) -> None:
        """``de_source_status{source_name}`` (the reference's numbers), written by the server only,
        and only where a number changed (each write is a write to a file shared by processes)."""
        del workers
        for row in self.statuses():
            state = row["state"] or "OFFLINE"
            if row["missed_update_count"] and state in ("ACTIVE", "STEADY"):
                state = "ERROR"
            number = metrics.REFERENCE_SOURCE_STATES.get(state, metrics.REFERENCE_SOURCE_STATES["OFFLINE"])
            if self._exported.get(row["source"]) != number:
                self._exported[row["source"]] = number
                metrics.REF_SOURCE_STATUS.labels(row["source"]).set(number)


def _checked_delivery(value: Any) -> dict[str, Any] | None:
    """A delivery another server announced, with only the fields a channel reads, each of
    the right type; None when anything is off."""
    if not isinstance(value, dict):
        return None
    try:
        generation, seq = value["generation"], value["taskmanager_seq"]
        if type(generation) is not int or type(seq) is not int or generation < 1:
            return None
        products = value.get("products") or []
        if not isinstance(products, list) or not all(isinstance(name, str) for name in products):
            return None
        acquire = value.get("acquire_seconds")
        return {
            "generation": generation,
            "taskmanager_seq": seq,
            "create_time": float(value["create_time"]),
            "scheduled_time": float(value.get("scheduled_time") or 0.0),
            "acquire_seconds": float(acquire) if acquire is not None else None,
            "products": list(products),
        }
    except (KeyError, TypeError, ValueError):
        return None


def _checked_failing(value: Any) -> dict[str, Any] | None:
    """A failure another server announced for a source, checked; None when malformed."""
    if not isinstance(value, dict):
        return None
    error = value.get("last_error")
    try:
        checked = {
            "since": float(value["since"]) if value.get("since") is not None else None,
            "missed_update_count": max(1, int(value.get("missed_update_count") or 1)),
            "last_error": str(error)[:2000] if error is not None else "shared source failing on another server",
        }
        if value.get("database_unreachable_since") is not None:
            checked["database_unreachable_since"] = float(value["database_unreachable_since"])
            checked["database_error"] = str(value.get("database_error"))[:2000]
    except (TypeError, ValueError):
        return None
    return checked


def _failing(source: SourceWorker) -> dict[str, Any] | None:
    """What consumers are told of a failing shared source (None: it is not failing)."""
    status = source.status()
    detail = status.get("source") or {}
    if not source.alive and status.get("state") == State.ERROR.value:
        failure = status.get("last_failure") or {}
        reason = status.get("server_reason") or status.get("last_error") or failure.get("reason") or "process ended"
        return {
            "since": failure.get("at") or status.get("state_since") or 0.0,
            "missed_update_count": max(1, int(detail.get("missed_update_count") or 0)),
            "last_error": f"shared source process: {reason}",
        }
    if status.get("database_unreachable_since"):
        return {
            "since": status["database_unreachable_since"],
            "missed_update_count": max(1, int(detail.get("missed_update_count") or 0)),
            "last_error": f"cannot store its delivery: {status.get('database_error')}",
            "database_unreachable_since": status["database_unreachable_since"],
            "database_error": status.get("database_error"),
        }
    if detail.get("missed_update_count"):
        return {
            "since": detail.get("failing_since"),
            "missed_update_count": detail.get("missed_update_count"),
            "last_error": detail.get("last_error"),
        }
    return None
