"""The decision engine daemon's core: channels, their processes, the Reaper, live events.

One object holds all the server's state.  It reads every channel of config.d, runs each
in its own process (:mod:`.workers`, :mod:`.channel_process`), runs the Reaper, and hears
what the channels report.  It answers nothing over the network itself: the web layer
(:mod:`decisionengine.framework.web`) wraps it in one control service and serves that;
``de-server`` (:mod:`decisionengine.framework.cli.de_server`) puts the two together.

No method here waits on a channel to answer a question: channel processes report status
snapshots on an event queue, which a pump thread applies to each :class:`ChannelWorker`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from decisionengine.framework.config.channel_file import ChannelConfig, read_channel_file
from decisionengine.framework.config.channels import ChannelFailure, read_channels
from decisionengine.framework.config.shared_sources import conflicts_of, split_conflicting
from decisionengine.framework.dataspace.connection_gate import create_slots
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.maintain import Reaper
from decisionengine.framework.engine import server_metrics, supervision
from decisionengine.framework.engine.balance import Placement
from decisionengine.framework.engine.cluster import Cluster, ClusterSettings, View
from decisionengine.framework.engine.database_probe import DatabaseProbe
from decisionengine.framework.engine.errors import ChannelConflict, ChannelNotFound
from decisionengine.framework.engine.events import EventHub, GenerationListener
from decisionengine.framework.engine.links import LinkRouter
from decisionengine.framework.engine.restarts import RestartPolicy
from decisionengine.framework.engine.shared_sources import SharedSources
from decisionengine.framework.engine.supervision import channel_context
from decisionengine.framework.engine.workers import ChannelWorker
from decisionengine.framework.taskmanager import metrics as channel_metrics
from decisionengine.framework.taskmanager.settings import TaskManagerSettings
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.util.logger import get_logger


class DecisionEngine:
    """The server's state: channel workers, configuration failures, the Reaper, events."""

    def __init__(
        self,
        global_config: dict[str, Any],
        channel_dir: str,
        *,
        config_path: str | None = None,
        log_service: Any = None,
        metrics_dir: str | None = None,
        context: Any = None,
        start_reaper: bool = True,
    ) -> None:
        self.logger = get_logger().bind(module="DecisionEngine")
        self.global_config = global_config
        self.config_path = config_path
        self.channel_dir = channel_dir
        self.log_service = log_service
        self.metrics_dir = metrics_dir
        self.context = context or channel_context()
        self.started = time.time()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self._changed = threading.Condition()
        self.links = LinkRouter(self._on_log, self._on_channel_event)
        self.dataspace = DataSpace(global_config)
        self.reaper = Reaper(global_config, dataspace=self.dataspace)
        self.database_probe = DatabaseProbe(self.dataspace)
        self.start_reaper = start_reaper
        self.workers: dict[str, ChannelWorker] = {}
        #: the state last exported for each channel not running here (None: its process exports it)
        self._exported_states: dict[str, State | None] = {}
        self.config_failures: dict[str, ChannelFailure] = {}
        self.events = EventHub()
        self.listener: GenerationListener | None = None
        #: this server as a member of the cluster of servers sharing the DataSpace (None: a
        #: data source that cannot coordinate servers; every channel then runs here)
        self.cluster: Cluster | None = None
        if hasattr(self.dataspace.datasource, "engine"):
            self.cluster = Cluster(
                self.dataspace.datasource,
                ClusterSettings.from_config(global_config),
                self._offer,
                self._apply_view,
            )
        #: the channel processes' connection slots (PostgreSQL under a server with a private directory)
        self._connection_slots: tuple[str, int] | None = None
        engine = getattr(self.dataspace.datasource, "engine", None)
        if metrics_dir and engine is not None and engine.dialect.name == "postgresql":
            count = int(global_config["dataspace"].get("channel_connections", 8))
            self._connection_slots = (create_slots(os.path.join(metrics_dir, "connection-slots"), count), count)
        #: sources several channels name: one process each (see engine.shared_sources); once
        #: for the whole cluster where servers can tell each other of deliveries (PostgreSQL)
        self.sources = SharedSources(
            lambda: dict(self.workers),
            self._launch_args,
            self.context,
            self._notify,
            self.links,
            lambda: RestartPolicy.from_config(self.global_config),
            server_name=self.cluster.settings.name if self.cluster is not None else None,
            cluster_wide=self.cluster is not None and engine is not None and engine.dialect.name == "postgresql",
            server_id=self.cluster.server_id if self.cluster is not None else None,
            announce=self.dataspace.announce,
            poke=self._poke_cluster,
        )
        configs, failures = read_channels(channel_dir)
        for failure in failures.values():
            self._config_failed(failure)
        read, (configs, refused) = configs, split_conflicting(configs)
        for name, conflicts in refused.items():
            self._source_conflict(name, conflicts, read[name].path)
        for name, config in configs.items():
            for warning in config.warnings:
                self.logger.warning("channel configuration", channel=name, warning=warning)
            self.workers[name] = self._new_worker(config)

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def shutdown_timeout(self) -> float:
        return float(self.global_config.get("shutdown_timeout", 10))

    def _config_failed(self, failure: ChannelFailure) -> None:
        self.config_failures[failure.name] = failure
        self.logger.error(
            "channel configuration is invalid; the channel will not run",
            channel=failure.name,
            file=failure.path,
            reason=failure.reason,
        )

    def _source_conflict(self, name: str, conflicts: list[Any], path: str | None) -> None:
        """A channel names a source another channel configures differently: it is not loaded."""
        self._config_failed(ChannelFailure(name, str(path or name), "; ".join(str(c) for c in conflicts)))

    def _launch_args(self) -> dict[str, Any]:
        logger_config = self.global_config.get("logger", {})
        return {
            "global_config": self.global_config,
            "log_level": logger_config.get("global_channel_log_level", "INFO"),
            "metrics_dir": self.metrics_dir,
            "json_logs": bool(self.log_service.json_lines) if self.log_service else False,
            "server_id": self.cluster.server_id if self.cluster is not None else None,
            "connection_slots": self._connection_slots,
        }

    def _new_worker(self, config: ChannelConfig) -> ChannelWorker:
        return ChannelWorker(
            config,
            self._launch_args(),
            self.context,
            functools.partial(self._notify, config.name),
            self.events.state,
            router=self.links,
            restart_policy=RestartPolicy.from_config(self.global_config),
            prepare_launch=self.sources.prepare_launch,
            on_handed_over=self._let_go_after_hand_over,
        )

    def _let_go_after_hand_over(self, name: str) -> None:
        """A process that handed its channel over has ended: let the channel go now, over
        the server's own connections, if it is still held by this server (its process could
        not: it held no connection, or died first), rather than at the next heartbeat."""
        if self.cluster is not None and self.dataspace.release_server_claim(name, self.cluster.server_id):
            self.logger.info("let go of a handed-over channel", channel=name)

    def _notify(self, channel: str | None = None) -> None:
        """Something changed: in ``channel`` (its worker reports), or anywhere (None)."""
        self._export_channel_states(None if channel is None else (channel,))
        self.sources.wake()
        with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _start_worker(worker: ChannelWorker, *, automatic: bool = False) -> None:
        try:
            worker.start(automatic=automatic)
        except Exception:  # the worker reports ERROR with the reason; the others start
            return

    def _warm_fork_server(self) -> None:
        """Start the fork server now, in the background, even if no channel runs here yet: a
        server standing by must not pay for importing the framework when it takes over
        (de-server has started it already; a DecisionEngine made otherwise may not have)."""
        if self.context.get_start_method() == "forkserver":
            supervision.warm_fork_server(
                lambda exc: self.logger.error("could not start the fork server ahead of the channels", error=str(exc))
            )

    # -- the cluster ------------------------------------------------------------------------------

    def _offer(self) -> tuple[list[str], dict[str, Placement]]:
        """The channels this server offers to run, and where each prefers to run."""
        offered, placements = [], {}
        for name, worker in list(self.workers.items()):
            if self.stopping.is_set() or not worker.offered:
                continue
            offered.append(name)
            try:
                settings = TaskManagerSettings.from_config(worker.config.task_manager, name)
            except ValueError:  # the channel process reports it; no preference meanwhile
                continue
            placements[name] = Placement(settings.prefer, settings.avoid)
        if not self.stopping.is_set():
            offered.extend(self.sources.offered())
        return offered, placements

    def _apply_view(self, view: View) -> None:
        """Start the channels given to this server, hand over the others."""
        if self.stopping.is_set() or self.cluster is None:
            return
        me = self.cluster.server_id
        workers = list(self.workers.items())
        # at most max_starting channel processes boot at once: a cold start of hundreds of
        # channels (or a takeover of another server's) goes in waves, one per heartbeat
        room = self.cluster.settings.max_starting - sum(worker.booting for _, worker in workers)
        live = {member.server_id for member in view.members}
        for name, worker in workers:
            target = view.assignment.get(name)
            holder = view.holders.get(name)
            claimable = holder is None or holder == me or holder not in live
            runs_on = self.cluster.member_name(target)
            if worker.assign(target == me, runs_on, may_start=room > 0, claimable=claimable) == "started":
                room -= 1
        self._release_stale_holds(view, self.cluster)
        self.sources.apply(view.assignment, me, self.cluster.member_name)

    def _release_stale_holds(self, view: View, cluster: Cluster) -> None:
        """Let go of channels the database still shows held by this server although the
        cluster gives them to another and their process here has ended.

        A channel process lets its channel go as it ends, but one that could not (no
        connection slot came free within its wait on a loaded server, a database hiccup)
        left it held by a live server, which no other server claims: the channel ran nowhere
        until this server stopped (seen in benchmarks/scale.py).  With the process gone there
        is no writer to fence, so the server clears the hold; at every apply, so a failed
        attempt is tried again at the next heartbeat."""
        me = cluster.server_id
        for name, holder in view.holders.items():
            worker = self.workers.get(name)
            target = view.assignment.get(name)
            if holder != me or worker is None or target in (me, None) or worker.runs_or_will_run:
                continue
            try:
                released = self.dataspace.release_server_claim(name, me)
            except Exception as exc:  # the next heartbeat tries again
                self.logger.warning("could not let go of a handed-over channel", channel=name, error=str(exc))
                continue
            if released:
                self.logger.warning(
                    "let go of a channel its process had not released",
                    channel=name,
                    runs_on=cluster.member_name(target),
                )

    def drain(self) -> dict[str, Any]:
        """Hand every channel of this server to the others (before maintenance)."""
        if self.cluster is None:
            raise ChannelConflict("this server's data source cannot share channels with other servers")
        self.cluster.draining = True
        self.logger.warning("draining: handing every channel to the other servers")
        self.cluster.beat()
        return self.drain_status()

    def undrain(self) -> dict[str, Any]:
        """Take channels again after a drain."""
        if self.cluster is None:
            raise ChannelConflict("this server's data source cannot share channels with other servers")
        self.cluster.draining = False
        self.logger.info("drain ended: this server takes channels again")
        self.cluster.beat()
        return self.drain_status()

    def drain_status(self) -> dict[str, Any]:
        """Whether this server drains, what still runs here, and what cannot move (no other
        live server offers it)."""
        running = sorted(name for name, worker in self.workers.items() if worker.alive)
        view = self.cluster.view if self.cluster is not None else None
        me = self.cluster.server_id if self.cluster is not None else None
        stuck = sorted(name for name, sid in (view.assignment.items() if view else ()) if sid == me)
        draining = bool(self.cluster and self.cluster.draining)
        return {
            "draining": draining,
            "running": running,
            "cannot_move": stuck if draining else [],
            "drained": draining and not running,
        }

    def _cluster_announced(self, announcement: dict[str, Any]) -> None:
        """Another server joined or left (PostgreSQL NOTIFY): look at the cluster now."""
        if self.cluster is not None and announcement.get("server_id") != self.cluster.server_id:
            self.cluster.poke()

    def _poke_cluster(self) -> None:
        """What this server offers changed: tell the cluster now (another server may take over)."""
        if self.cluster is not None:
            self.cluster.poke()

    def cluster_status(self) -> dict[str, Any] | None:
        return self.cluster.status() if self.cluster is not None else None

    def _export_channel_states(self, channels: Iterable[str] | None = None) -> None:
        """Channels whose process is not running are exported by the server itself.

        Called on every change any channel reports, for that channel (``channels``; None:
        every channel): only what changed since the last call is written (a gauge write is a
        write to a shared file, and hundreds of channels report several times a generation;
        looking at every channel on each report made the server's work grow with the square
        of its channels)."""
        if channels is None:
            channels = [*self.workers, *self.config_failures]
        wanted: dict[str, State | None] = {}
        for name in channels:
            if name in self.config_failures:
                wanted[name] = State.ERROR
            elif (worker := self.workers.get(name)) is not None:
                wanted[name] = None if worker.alive else worker.state
        for name, shown in wanted.items():
            if name in self._exported_states and self._exported_states[name] == shown:
                continue
            self._exported_states[name] = shown
            for state in State:
                channel_metrics.CHANNEL_STATE.labels(name, state.value).set(1 if state is shown else 0)

    def _on_log(self, record: Any) -> None:
        if self.log_service is not None:
            self.log_service.accept(record)

    def _on_channel_event(self, kind: str, name: str, payload: Any) -> None:
        """Apply what a channel process reports (status snapshots, plan, failure, exit)."""
        if self.sources.owns(name):
            self.sources.on_event(kind, name, payload)
            return
        worker = self.workers.get(name)
        if worker is None:
            return
        if kind == "status":
            previous = worker.snapshot
            worker.on_status(payload)
            self._announce(name, previous, payload)
            if previous.get("state") == State.BOOT.value and payload.get("state") != State.BOOT.value:
                self._poke_cluster()  # done booting: the next channels waiting for a start may go
        elif kind == "plan":
            worker.on_plan(payload)
        elif kind == "failed":
            worker.on_failed(payload)
        elif kind == "invalid":
            worker.on_invalid(payload)
        elif kind == "exited":
            worker.on_exited(payload)

    def _announce(self, channel: str, previous: dict[str, Any], current: dict[str, Any]) -> None:
        """Publish a generation a channel reports committed (the SQLite commit hook; on PostgreSQL
        NOTIFY usually comes first, and the hub publishes each generation once)."""
        generation = current.get("generation") or 0
        last = current.get("last_generation") or {}
        if generation > (previous.get("generation") or 0) and last.get("generation_id") == generation:
            self.events.generation(
                {
                    "channel": channel,
                    "generation": generation,
                    "time": last["started"] + (last.get("duration") or 0.0),
                    "outcome": last.get("outcome"),
                    "duration": last.get("duration"),
                }
            )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and return at once: channels boot in their own processes."""
        server_metrics.SERVER_UP.set(1)
        self.links.start()
        self.sources.start()
        if self.cluster is not None:
            for worker in self.workers.values():
                worker.want()
            self._warm_fork_server()
            self.cluster.start()  # its first beat starts the channels this server is given
        else:
            for worker in self.workers.values():  # spawning returns at once; channels boot in parallel
                self._start_worker(worker)
        self.listener = GenerationListener(
            self.dataspace, self.events, on_cluster=self._cluster_announced, on_source=self.sources.on_announcement
        )
        self.listener.start()
        self.database_probe.start()
        if self.start_reaper:
            self.reaper.start(delay=float(self.global_config["dataspace"].get("reaper_start_delay_seconds", 1818)))
        self._notify()
        self.logger.info(
            "decision engine started", channels=sorted(self.workers), invalid_channels=sorted(self.config_failures)
        )

    def wait(self) -> None:
        """Block until :meth:`request_stop` (SIGTERM, SIGINT or the ``stop`` method).

        Waits in short steps: Python runs signal handlers only in the main thread, between
        bytecodes, and a signal the kernel delivers to another thread does not interrupt
        the main thread's lock wait.  A wait without a timeout could therefore sleep
        through SIGTERM for ever; this one sees it within a quarter of a second.
        """
        while not self.stopping.wait(0.25):
            pass

    def request_stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every channel within one global deadline, then the Reaper and the event streams."""
        timeout = self.shutdown_timeout
        self.logger.info("decision engine shutting down", timeout=timeout)
        self.stopping.set()
        if self.cluster is not None:
            self.cluster.stop()  # no more hand-overs; the others claim our channels as they are released
        deadline = time.monotonic() + timeout
        self._stop_workers(list(self.workers.values()), timeout)
        self.sources.stop()  # no more attaching or detaching: stop every shared source now
        self._stop_workers(self.sources.all_workers(), max(1.0, deadline - time.monotonic()))
        self.reaper.stop(timeout=timeout)
        self.database_probe.stop()
        server_metrics.SERVER_UP.set(0)
        self.events.close()  # ends the event streams, so the web server can stop
        if self.listener is not None:
            self.listener.stop()
        self.links.stop()
        self.dataspace.close()
        self.logger.info("decision engine stopped")
        self.stopped.set()

    def _stop_workers(self, workers: list[ChannelWorker], timeout: float) -> list[str]:
        """Ask all to stop, wait for all against one deadline, kill those still running."""
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.stop()
        killed = []
        for worker in workers:
            if not worker.join(max(0.0, deadline - time.monotonic())):
                worker.kill(f"did not stop within the shutdown timeout ({timeout:g} s)")
                worker.join(5)
                killed.append(worker.name)
        return killed

    # -- what the control service asks -------------------------------------------------------------

    def channel_names(self) -> list[str]:
        """Every channel this server knows: running or not, valid or not."""
        return sorted(set(self.workers) | set(self.config_failures))

    def worker(self, channel: str) -> ChannelWorker:
        worker = self.workers.get(channel)
        if worker is None:
            raise ChannelNotFound(channel, self.channel_names())
        return worker

    def channel_file(self, channel: str) -> pathlib.Path:
        """The file a known channel was read from; never built from the name."""
        worker = self.workers.get(channel)
        if worker is not None and worker.config.path:
            return pathlib.Path(worker.config.path)
        failure = self.config_failures.get(channel)
        if failure is not None:
            return pathlib.Path(failure.path.split(",")[0].strip())
        raise ChannelNotFound(channel, self.channel_names())

    def channel_statuses(self) -> list[dict[str, Any]]:
        statuses = [worker.status() for _, worker in sorted(self.workers.items())]
        view = self.cluster.view if self.cluster is not None else None
        if view is not None and self.cluster is not None:
            for status in statuses:
                name = status["channel"]
                status["owner_server"] = self.cluster.member_name(view.holders.get(name))
                status["assigned_server"] = self.cluster.member_name(view.assignment.get(name))
        for name, failure in sorted(self.config_failures.items()):
            statuses.append(
                {
                    "channel": name,
                    "state": "ERROR",
                    "last_error": f"invalid configuration: {failure.reason}",
                    "config_error": True,
                }
            )
        return statuses

    def process_ids(self) -> list[tuple[str, str, int]]:
        """(kind, name, pid) of every channel (``channel``) and shared source (``source``) process alive."""
        found = []
        workers = [("channel", name, worker) for name, worker in list(self.workers.items())]
        workers += [("source", worker.key, worker) for worker in self.sources.all_workers()]
        for kind, name, worker in workers:
            process = worker.process  # once: a process that ends meanwhile is set to None
            if worker.alive and process is not None and process.pid is not None:
                found.append((kind, name, process.pid))
        return found

    def source_statuses(self) -> list[dict[str, Any]]:
        """Every source of the server's channels with its consumers, schedule, last acquire and state."""
        return self.sources.statuses()

    def channel_status(self, channel: str) -> dict[str, Any]:
        for status in self.channel_statuses():
            if status["channel"] == channel:
                return status
        raise ChannelNotFound(channel, self.channel_names())

    def _read_channel(self, channel: str) -> ChannelConfig:
        """Read a channel's file again (the operator may have fixed or added it).

        A channel the server already knows is read from its own file; any other name must
        be one that a file of the channel directory declares: the name is looked up in the
        directory's listing, never joined into a path.
        """
        if channel in self.workers or channel in self.config_failures:
            path = self.channel_file(channel)
            if not path.exists():
                raise ChannelConflict(f"channel {channel!r} cannot start: {path} no longer exists")
            try:
                return read_channel_file(path)
            except Exception as exc:
                raise ChannelConflict(f"channel {channel!r} cannot start: {exc}") from exc
        configs, failures = read_channels(self.channel_dir)
        if channel in configs:
            return configs[channel]
        if channel in failures:
            raise ChannelConflict(f"channel {channel!r} cannot start: {failures[channel].reason}")
        raise ChannelNotFound(channel, sorted(set(self.channel_names()) | set(configs) | set(failures)))

    def start_channel(self, channel: str) -> str:
        worker = self.workers.get(channel)
        if worker is not None and worker.alive:
            raise ChannelConflict(f"channel {channel!r} is already running")
        config = self._read_channel(channel)
        conflicts = conflicts_of(config, [w.config for name, w in self.workers.items() if name != channel])
        if conflicts:
            if worker is None:
                self._source_conflict(channel, conflicts, config.path)
            raise ChannelConflict("; ".join(str(c) for c in conflicts))
        self.config_failures.pop(channel, None)
        if worker is None:
            worker = self.workers[channel] = self._new_worker(config)
        else:
            worker.config = config
        if self.cluster is None:
            worker.start()
            return f"channel {channel} started"
        worker.want()
        self.cluster.beat()  # now: a lone server starts it before answering
        if worker.alive:
            return f"channel {channel} started"
        where = worker.runs_on or "no live server yet"
        return f"channel {channel} stands by here: the cluster runs it on {where}"

    def stop_channel(self, channel: str) -> str:
        worker = self.worker(channel)
        if not worker.alive:
            cancelled = worker.stop()
            note = "; its automatic restart is cancelled" if cancelled else ""
            return f"channel {channel} is not running ({worker.state.value}){note}"
        killed = self._stop_workers([worker], self.shutdown_timeout)
        self._poke_cluster()
        return f"channel {channel} {'killed' if killed else 'stopped'}"

    def start_channels(self) -> list[str]:
        """Start every channel that is not running; the names started."""
        started = []
        for name in self.channel_names():
            if name in self.workers and self.workers[name].alive:
                continue
            with contextlib.suppress(ChannelConflict, ChannelNotFound):
                self.start_channel(name)
                started.append(name)
        return started

    def stop_channels(self) -> tuple[list[str], list[str]]:
        """Stop every running channel; (stopped, killed)."""
        running = [w for w in self.workers.values() if w.alive]
        for waiting in self.workers.values():
            if not waiting.alive:
                waiting.stop()  # cancels a pending automatic restart
        killed = self._stop_workers(running, self.shutdown_timeout)
        self._poke_cluster()
        return sorted(w.name for w in running), killed

    def kill_channel(self, channel: str, timeout: float) -> str:
        """Ask a channel to stop; kill it if it has not stopped after ``timeout`` seconds."""
        worker = self.worker(channel)
        if not worker.alive:
            note = "; its automatic restart is cancelled" if worker.stop() else ""
            return f"channel {channel} is not running ({worker.state.value}){note}"
        worker.stop()
        self._poke_cluster()
        if worker.join(timeout):
            return f"channel {channel} stopped"
        worker.kill("killed by the operator")
        worker.join(10)
        return f"channel {channel} killed"

    def remove_channel(self, channel: str, timeout: float | None = None) -> str:
        """Stop a channel (killed after ``timeout`` seconds, by default ``shutdown_timeout``)
        and forget it until it is started again."""
        worker = self.worker(channel)
        killed = []
        if worker.alive:
            killed = self._stop_workers([worker], self.shutdown_timeout if timeout is None else timeout)
        worker.stop()  # cancels a pending automatic restart
        del self.workers[channel]
        self._poke_cluster()
        self._notify()
        self.sources.reconcile_now()  # its shared sources list it no more once this answers
        return f"channel {channel} {'killed and ' if killed else ''}removed"

    def wait_while(self, state: State, timeout: float | None) -> tuple[bool, list[str]]:
        """Wait until no channel is in ``state`` (one timeout for all); (done, channels still in it)."""

        def blocking() -> list[str]:
            return sorted(name for name, w in self.workers.items() if w.state is state)

        with self._changed:
            done = self._changed.wait_for(lambda: not blocking() or self.stopping.is_set(), timeout)
        return bool(done) and not blocking(), blocking()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` holds (checked whenever a channel changes)."""
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout))
