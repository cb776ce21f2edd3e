"""ChannelWorker: the server's handle on one channel process.

The server never waits on a channel to answer a question: each worker keeps the last
status snapshot its channel reported (over the event queue), and a monitor thread
blocked in ``process.join()`` notices the moment the process ends.  A channel that
exits without saying SHUTDOWN (it raised, called ``os._exit``, was killed) is reported
as ERROR with the reason, and is started again by itself after a growing delay
(:mod:`.restarts`) unless the operator stopped it.

The hang watchdog arms a timer whenever the channel reports a module busy; if the same
call is still running ``module_timeout`` seconds later, the channel process is killed
(SIGKILL: a module stuck in C code cannot be interrupted any other way).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from decisionengine.framework.engine import supervision
from decisionengine.framework.engine.channel_process import ChannelLaunch, main
from decisionengine.framework.engine.deadlines import Deadlines
from decisionengine.framework.engine.restarts import RestartPolicy
from decisionengine.framework.taskmanager.states import FINISHED, State
from decisionengine.framework.util import metrics
from decisionengine.framework.util.logger import get_logger

Notify = Callable[[], None]

#: seconds a reader (status, the cluster's offer) waits for a worker's lock (see ChannelWorker._reading)
READ_WAIT = 0.05

#: the hang watchdog of every worker of the process: one thread, not one per armed worker
WATCHDOG = Deadlines("hang-watchdog")
#: (channel, state, since): told of every change of a channel's state, whoever made it
StateListener = Callable[[str, str, float | None], None]


class ChannelWorker:
    """One channel: its file, its process (if running) and what it last reported.

    ``config`` is the channel file as read (cheap, no module imported); the channel
    process validates it and reports ``plan``, a plain description of the validated
    channel (modules, products, producers), or why it is invalid.
    """

    def __init__(
        self,
        config: Any,
        launch_args: dict[str, Any],
        context: Any,
        notify: Notify,
        on_state: StateListener | None = None,
        router: Any = None,
        restart_policy: RestartPolicy | None = None,
        prepare_launch: Callable[[ChannelWorker], dict[str, Any]] | None = None,
        on_handed_over: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        #: called with the channel's name once a process it handed over has ended (the
        #: server then lets the channel go, if the process could not)
        self.on_handed_over = on_handed_over
        #: called at each start, before the process exists: more launch fields (the shared
        #: sources the channel uses; the server attaches it to them then)
        self.prepare_launch = prepare_launch
        #: the shared sources the running (or last) process of the channel uses
        self.shared_sources: frozenset[str] = frozenset()
        self.on_state = on_state
        self.plan: dict[str, Any] | None = None
        self.name: str = config.name
        self.launch_args = launch_args
        self.context = context
        self.notify = notify
        #: reads the pipe each channel process writes its log lines and events to
        self.router = router
        self.logger = get_logger().bind(module="workers", channel=self.name)
        self.process: Any = None
        self.command_queue: Any = None
        self.snapshot: dict[str, Any] = {"channel": self.name, "state": State.OFFLINE.value}
        self.reason: str | None = None  # why the server considers the channel failed
        self.log_level: str = launch_args["log_level"]
        #: {source key: level} the operator set; a source not here logs at the channel's level
        self.source_log_levels: dict[str, str] = {}
        self.started_at: float | None = None
        self.exit_code: int | None = None
        self.restarts = 0
        self.restart_policy = restart_policy or RestartPolicy(enabled=False)
        #: the channel should run: set by start, cleared by stop (the operator or the server
        #: stopping); a process that ends in ERROR while wanted is restarted
        self.wanted = False
        #: the configuration was refused: starting again would fail the same way
        self.config_invalid = False
        self.failures_in_a_row = 0
        self.restart_at: float | None = None
        #: the last time the process ended in ERROR, kept across restarts (reason, at, exit code)
        self.last_failure: dict[str, Any] | None = None
        self._restart_timer: threading.Timer | None = None
        #: the cluster runs the channel on another server (or on none yet): this server
        #: stands by without a process (see :meth:`assign`)
        self.parked = False
        #: the name of the server the cluster gives the channel to, when not this one
        self.runs_on: str | None = None
        self._generation_at_start = 0
        self._lock = threading.RLock()
        self._exited = threading.Event()
        self._ended = threading.Event()

    # -- what the server reports ------------------------------------------------------------

    @property
    def state(self) -> State:
        return State(self.snapshot.get("state", State.OFFLINE.value))

    @property
    def alive(self) -> bool:
        """The process runs (only the monitor thread waits on it: two waiters would race to reap it).

        A process object without a pid never started: it is not alive, and nothing may
        signal it (``os.kill(None, ...)`` is a TypeError)."""
        return self.process is not None and self.process.pid is not None and not self._ended.is_set()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """The lock, for a reader, waited for at most :data:`READ_WAIT` seconds.

        The lock is held while the channel's process starts, which takes seconds on a loaded
        machine; the status and the cluster's offer read every channel in the order the
        cluster starts them, so each waited for one start after the other (the offer, and
        with it the heartbeat, came 20-30 s late).  Past the wait, the fields are read as
        they are: each read is atomic, at worst a moment's mix of before and after."""
        locked = self._lock.acquire(timeout=READ_WAIT)
        try:
            yield
        finally:
            if locked:
                self._lock.release()

    def status(self) -> dict[str, Any]:
        with self._reading():
            status = dict(self.snapshot)
            status.setdefault("channel", self.name)
            status["server_reason"] = self.reason
            status["exit_code"] = self.exit_code
            status["process_alive"] = self.alive
            status["restarts"] = self.restarts
            status["failures_in_a_row"] = self.failures_in_a_row
            status["restart_at"] = self.restart_at
            status["last_failure"] = self.last_failure
            # what validation warned about (a missing parameter, an unknown key...): an
            # operator sees it in the status, not only in the channel's log
            status["config_warnings"] = list((self.plan or {}).get("warnings") or [])
            status["parked"] = self.parked
            if self.parked and not self.alive:
                status["standby"] = True
            if self.reason and not status.get("last_error"):
                status["last_error"] = self.reason
            return status

    def _replace(self, snapshot: dict[str, Any]) -> None:
        """Every change of the snapshot goes through here, so that state changes are announced."""
        with self._lock:
            before = self.snapshot.get("state")
            self.snapshot = snapshot
        if self.on_state is not None and snapshot.get("state") != before:
            self.on_state(self.name, snapshot["state"], snapshot.get("state_since"))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, automatic: bool = False) -> None:
        """Start the channel's process.  ``automatic``: a restart after a failure (the
        failure count, which sets the next delay, is kept; an operator's start clears it)."""
        with self._lock:
            if self.alive:
                raise RuntimeError(f"channel {self.name!r} is already running (pid {self.process.pid})")
            self._cancel_restart()
            if not automatic:
                self.failures_in_a_row = 0
            self.wanted = True
            self.parked = False
            self.config_invalid = False
            self._generation_at_start = int(self.snapshot.get("generation") or 0)
            self.reason = None
            self.exit_code = None
            if self.started_at is not None:
                self.restarts += 1
            self.started_at = time.time()
            if self.context.get_start_method() == "forkserver":
                try:
                    supervision.ensure_fork_server()  # from a thread that lives as long as the server
                except BaseException as exc:
                    self._never_started(exc, None, None)
                    raise
            self.command_queue = self.context.Queue()
            self._exited = threading.Event()
            self._ended = threading.Event()
            reader, writer = self.context.Pipe(duplex=False)
            try:
                target, launch, title = self._launch(writer)
            except BaseException as exc:
                self._never_started(exc, reader, writer)
                raise
            self.process = self.context.Process(target=target, args=(launch,), name=title)
            # Report BOOT before the process exists, so that status answers at once.
            self._replace(
                {
                    "channel": self.name,
                    "state": State.BOOT.value,
                    "state_since": self.started_at,
                    "generation": self.snapshot.get("generation"),
                }
            )
            if self.router is not None:
                self.router.add(self.name, reader)
            try:
                self.process.start()
            except BaseException as exc:
                self._never_started(exc, reader, writer)
                raise
            writer.close()  # the child has its copy: the pipe ends when the child does
            self.snapshot["pid"] = self.process.pid
        self.logger.info("channel process started", pid=self.process.pid)
        self.notify()
        threading.Thread(
            target=self._monitor,
            args=(self.process, self._exited, self._ended),
            name=f"monitor-{self.name}",
            daemon=True,
        ).start()

    def _launch(self, writer: Any) -> tuple[Callable[[Any], None], Any, str]:
        """(the process's entry point, its launch argument, its name); lock held."""
        extra = self.prepare_launch(self) if self.prepare_launch is not None else {}
        launch = ChannelLaunch(
            config=self.config,
            link=writer,
            command_queue=self.command_queue,
            log_level=self.log_level,
            module_log_levels=dict(self.source_log_levels),
            **{k: v for k, v in self.launch_args.items() if k != "log_level"},
            **extra,
        )
        return main, launch, f"de-channel-{self.name}"

    def _never_started(self, exc: BaseException, reader: Any, writer: Any) -> None:
        """The process could not be started (the fork server is unreachable, say): there is
        no process to wait for, stop or kill, so forget it and report ERROR with the reason
        (lock held).  Shutdown and ``stop_channel`` then see a channel that is not running."""
        self.process = None
        self._ended.set()
        self._exited.set()
        # closing the writing end ends the pipe: the router reads EOF and drops the reader
        for end in (writer,) if self.router is not None else (reader, writer):
            if end is not None:
                with contextlib.suppress(Exception):
                    end.close()
        self.reason = f"channel process could not be started: {type(exc).__name__}: {exc}"
        self.last_failure = {"reason": self.reason, "at": time.time(), "exit_code": None}
        self._replace({**self.snapshot, "state": State.ERROR.value, "state_since": time.time(), "busy": {}})
        self.logger.error("channel process could not be started", error=f"{type(exc).__name__}: {exc}")
        restart_in = self._schedule_restart()  # the fork server may be reachable later
        if restart_in is not None:
            self.logger.warning("channel will be restarted", delay=restart_in, failures_in_a_row=self.failures_in_a_row)

    def _monitor(self, process: Any, exited: threading.Event, ended: threading.Event) -> None:
        process.join()
        try:
            if self._process_ended(process, exited) and self.on_handed_over is not None:
                # before ``ended``: no new process of this server can claim the channel
                # meanwhile, so the release cannot undo a claim of this server's own
                try:
                    self.on_handed_over(self.name)
                except Exception as exc:  # the next heartbeat lets it go (DecisionEngine)
                    self.logger.warning("could not let go of a handed-over channel", error=str(exc))
        finally:
            ended.set()
            self.notify()

    def _process_ended(self, process: Any, exited: threading.Event) -> bool:
        """Record how the process ended; True when it ended handing the channel over."""
        self._cancel_watchdog()
        if process.exitcode in (0, 1):
            # A process that exited by itself sent "exited" last: let the event pump deliver it.
            exited.wait(5)
        with self._lock:
            if process is not self.process:
                return False
            if self.command_queue is not None:  # nobody reads it now: never wait at exit to flush it
                with contextlib.suppress(Exception):
                    self.command_queue.cancel_join_thread()
            self.exit_code = process.exitcode
            state = self.state
            if self.parked and self.wanted:
                # handed over: whatever the exit, this server now stands by for the channel
                if process.exitcode not in (0, None):
                    self.last_failure = {
                        "reason": _exit_reason(process.exitcode, state) + " (while handing the channel over)",
                        "at": time.time(),
                        "exit_code": process.exitcode,
                    }
                self._replace({**self.snapshot, "state": State.BOOT.value, "standby": True, "busy": {}})
                metrics.mark_process_dead(process.pid)
                self.logger.info("channel handed over", pid=process.pid, exit_code=process.exitcode)
                return True
            if state not in FINISHED or state is State.OFFLINE:
                if self.reason is None:
                    self.reason = _exit_reason(process.exitcode, state)
                self._replace({**self.snapshot, "state": State.ERROR.value, "state_since": time.time(), "busy": {}})
            metrics.mark_process_dead(process.pid)
            if self.state is State.ERROR:
                self.last_failure = {
                    "reason": self.reason or self.snapshot.get("last_error"),
                    "at": time.time(),
                    "exit_code": process.exitcode,
                }
            restart_in = self._schedule_restart() if self.state is State.ERROR else None
        level = "info" if self.state is State.SHUTDOWN else "error"
        getattr(self.logger, level)(
            "channel process ended",
            pid=process.pid,
            exit_code=process.exitcode,
            state=self.state.value,
            reason=self.reason,
        )
        if restart_in is not None:
            self.logger.warning("channel will be restarted", delay=restart_in, failures_in_a_row=self.failures_in_a_row)
        self.notify()
        return False

    @property
    def runs_or_will_run(self) -> bool:
        """The process runs, is being started, or a restart is pending: the channel still
        needs what it uses (its shared sources)."""
        with self._lock:
            if self._restart_timer is not None:
                return True
            return self.process is not None and not self._ended.is_set()

    # -- the cluster's say -----------------------------------------------------------------

    def want(self) -> None:
        """The channel should run, wherever the cluster puts it: stand by until :meth:`assign`
        gives it to this server."""
        with self._lock:
            self.wanted = True
            self.config_invalid = False
            if self.alive:
                return
            self.parked = True
            self._cancel_restart()
            self._replace({**self.snapshot, "state": State.BOOT.value, "state_since": time.time(), "standby": True})

    @property
    def offered(self) -> bool:
        """Whether this server offers to run the channel: wanted, and not failed for good
        (a refused configuration, or an ERROR with no restart coming)."""
        with self._reading():
            return self._offered()

    def _offered(self) -> bool:
        if not self.wanted or self.config_invalid:
            return False
        return not (self.state is State.ERROR and not self.alive and self._restart_timer is None)

    @property
    def booting(self) -> bool:
        """Its process runs and boots (imports, builds modules, registers): it uses CPU."""
        with self._lock:
            return self.alive and self.state is State.BOOT and not self.snapshot.get("standby")

    def assign(self, here: bool, runs_on: str | None, may_start: bool = True, claimable: bool = True) -> str | None:
        """The cluster's assignment: run the channel here, or hand it over (the process
        finishes its generation, releases the channel and exits; the worker stands by).
        ``claimable``: no other live server holds the channel now.
        Returns what was done ("started", "handed over") or None."""
        with self._lock:
            self.runs_on = None if here else runs_on
            if not self._offered():
                return None  # not running here for reasons of its own (stopped, failed): shown as is
            if here and self.alive and self.snapshot.get("standby"):
                if claimable:  # its holder let it go or is gone: its process claims it at once
                    with contextlib.suppress(Exception):
                        self.command_queue.put(("claim_now",))
                return None
            if here and self.parked and not self.alive:
                if not may_start:
                    return None  # at a later beat: this server starts a few channels at a time
                self.parked = False
                action = "started"
            elif not here and not self.parked:
                self.parked = True
                self._cancel_restart()
                if not self.alive:
                    self._replace({**self.snapshot, "state": State.BOOT.value, "standby": True})
                    return None
                with contextlib.suppress(Exception):
                    self.command_queue.put(("stop",))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGTERM)
                action = "handed over"
            else:
                return None
        if action == "started":
            self.start(automatic=True)
        self.logger.info(f"channel {action}", runs_on=runs_on)
        self.notify()
        return action

    # -- automatic restarts -----------------------------------------------------------------

    def _schedule_restart(self) -> float | None:
        """After a failure: start again later if the channel is still wanted (lock held)."""
        if not (self.wanted and self.restart_policy.enabled) or self.config_invalid or self.parked:
            return None
        self.failures_in_a_row += 1
        delay = self.restart_policy.delay(self.failures_in_a_row)
        self.restart_at = time.time() + delay
        timer = threading.Timer(delay, self._restart)
        timer.daemon = True
        timer.name = f"restart-{self.name}"
        self._restart_timer = timer
        timer.start()
        return delay

    def _restart(self) -> None:
        with self._lock:
            if not self.wanted or self.parked or self.alive or self._restart_timer is None:
                return  # stopped, handed over, or started by someone else, meanwhile
            self._restart_timer = None
            self.restart_at = None
            self.logger.info("restarting channel after failure", failures_in_a_row=self.failures_in_a_row)
            try:
                self.start(automatic=True)
            except Exception as exc:  # the fork server failed, say: try again later
                self.logger.exception("channel restart failed", error=f"{type(exc).__name__}: {exc}")
                self._schedule_restart()

    def _cancel_restart(self) -> bool:
        """Forget a pending restart (lock held); True if there was one."""
        timer, self._restart_timer = self._restart_timer, None
        self.restart_at = None
        if timer is not None:
            timer.cancel()
        return timer is not None

    def on_status(self, snapshot: dict[str, Any]) -> None:
        """A snapshot from the channel process."""
        with self._lock:
            final = snapshot.get("state") in (State.SHUTDOWN.value, State.ERROR.value)
            if not self.alive and not final and self.exit_code is not None:
                return  # a late message from a process that has already ended: its end is what counts
            self._replace(snapshot)
            if self.failures_in_a_row and int(snapshot.get("generation") or 0) > self._generation_at_start:
                self.failures_in_a_row = 0  # it commits again: the next failure waits initial_delay
        self._arm_watchdog(snapshot)
        self.notify()

    def on_plan(self, plan: dict[str, Any]) -> None:
        with self._lock:
            self.plan = plan
        self.notify()

    def on_failed(self, reason: str) -> None:
        with self._lock:
            self.reason = reason

    def on_invalid(self, reason: str) -> None:
        """The channel refused its configuration: it is not restarted until started by hand."""
        with self._lock:
            self.reason = reason
            self.config_invalid = True

    def on_exited(self, final_state: str) -> None:
        """The channel's last message: the state it ended in."""
        with self._lock:
            if final_state == State.SHUTDOWN.value and self.parked and self.wanted:
                # handed over to another server: stand by (as a channel that was never here)
                self._replace({**self.snapshot, "state": State.BOOT.value, "standby": True, "busy": {}})
            elif final_state in (State.SHUTDOWN.value, State.ERROR.value):
                self._replace({**self.snapshot, "state": final_state, "busy": {}})
            self._exited.set()
        self.notify()

    def stop(self) -> bool:
        """Ask the channel to stop (it finishes its generation, shuts its publishers down).

        Also ends the channel's wish to run: a pending automatic restart is cancelled (the
        return value says whether there was one) and a failure from here on is final.
        """
        with self._lock:
            self.wanted = False
            self.parked = False
            cancelled = self._cancel_restart()
            if not self.alive:
                if self.state is State.BOOT:  # was standing by for the cluster: now simply not running
                    self._replace({**self.snapshot, "state": State.OFFLINE.value, "standby": False})
                return cancelled
            with contextlib.suppress(Exception):
                self.command_queue.put(("stop",))
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            if self.state not in (State.SHUTTINGDOWN, State.ERROR):
                self._replace({**self.snapshot, "state": State.SHUTTINGDOWN.value, "state_since": time.time()})
        self.notify()
        return cancelled

    def join(self, timeout: float | None) -> bool:
        """Wait for the process to end (and its end to be recorded); True if it did."""
        if self.process is None or self.process.pid is None:
            return True  # never started: nothing to wait for
        return self._ended.wait(timeout)

    def kill(self, reason: str) -> None:
        """End the process now (SIGKILL)."""
        with self._lock:
            if not self.alive:
                return
            self.reason = reason
            self.logger.error("killing channel process", pid=self.process.pid, reason=reason)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def set_log_level(self, level: str) -> None:
        self.log_level = level
        if self.alive:
            self.command_queue.put(("set_log_level", level))

    def source_log_level(self, source: str) -> str:
        """The level of the lines emitted while ``source`` runs: its own, else the channel's."""
        return self.source_log_levels.get(source, self.log_level)

    def set_source_log_level(self, source: str, level: str) -> None:
        """Give ``source`` a level of its own (NOTSET: follow the channel's again), now in
        the running process and at every later start."""
        if level == "NOTSET":
            self.source_log_levels.pop(source, None)
        else:
            self.source_log_levels[source] = level
        if self.alive:
            self.command_queue.put(("set_module_log_level", source, level))

    # -- hang watchdog -----------------------------------------------------------------------

    def _arm_watchdog(self, snapshot: dict[str, Any]) -> None:
        busy = snapshot.get("busy") or {}
        timeout = float(snapshot.get("module_timeout") or 0)
        if not busy or timeout <= 0:
            self._cancel_watchdog()
            return
        module, since = min(busy.items(), key=lambda item: item[1])
        delay = max(0.0, since + timeout - time.time())
        WATCHDOG.arm(self, delay, functools.partial(self._check_hang, module, since, timeout))

    def _cancel_watchdog(self) -> None:
        WATCHDOG.cancel(self)

    def _check_hang(self, module: str, since: float, timeout: float) -> None:
        with self._lock:
            busy = self.snapshot.get("busy") or {}
            still = busy.get(module) == since and self.alive
        if still:
            self.kill(f"module {module!r} ran longer than module_timeout ({timeout:g} s)")


def _exit_reason(code: int | None, state: State) -> str:
    if code is None:
        return "process ended"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"channel process was killed by signal {name} while {state.value}"
    return f"channel process exited with code {code} while {state.value}"
