"""The Reaper: periodic removal of data older than the retention interval.

It runs in a thread of the server (or once, from ``de-reaper``).  Each pass removes
old generations in short batches (see :meth:`SQLAlchemyDS.reap`), so channels keep
writing while it works, and it can be stopped between any two batches.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from decisionengine.framework.dataspace import retention
from decisionengine.framework.dataspace.datasource import ReapReport
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.errors import DataSpaceConfigurationError, DataSpaceConnectionError
from decisionengine.framework.dataspace.retention import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_RETENTION_INTERVAL_DAYS,
    DEFAULT_SECONDS_BETWEEN_RUNS,
    DEFAULT_START_DELAY_SECONDS,
)
from decisionengine.framework.util.logger import get_logger

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_RETENTION_INTERVAL_DAYS",
    "DEFAULT_SECONDS_BETWEEN_RUNS",
    "DEFAULT_START_DELAY_SECONDS",
    "Reaper",
    "ReaperState",
]
#: a pass that failed because the database was away is tried again after this many seconds,
#: doubling up to RETRY_MAX (never waiting longer than the usual interval between passes)
RETRY_FIRST = 1.0
RETRY_MAX = 60.0


class ReaperState(enum.Enum):
    """The Reaper's states, with the reference Decision Engine's names and meanings.

    Monitoring written for the reference reads them: there a started Reaper waiting for its
    next pass is IDLE, a pass in progress ACTIVE, and a pass just done (by a call of
    ``reap()`` outside the Reaper's thread) STEADY.  The reference reported BOOT for a
    Reaper never started; OFFLINE says it plainly, as for a channel that is not running.
    """

    OFFLINE = "OFFLINE"  # created, never started (or stopped before its thread ran)
    IDLE = "IDLE"  # started, waiting for the next pass
    ACTIVE = "ACTIVE"  # deleting right now
    STEADY = "STEADY"  # a pass done outside the Reaper's own schedule (de-reaper, reap() called directly)
    SHUTTINGDOWN = "SHUTTINGDOWN"
    SHUTDOWN = "SHUTDOWN"
    ERROR = "ERROR"  # the last pass failed; the next one is still scheduled


class Reaper:
    """Reaper provides functionality of periodic deletion of data older than
    retention_interval in days

    The class attributes indicate a rational set of defaults that shouldn't be altered
    by user configuration.
    """

    MIN_RETENTION_INTERVAL_DAYS = retention.MIN_RETENTION_INTERVAL_DAYS
    MIN_SECONDS_BETWEEN_RUNS = retention.MIN_SECONDS_BETWEEN_RUNS

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        dataspace: DataSpace | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        dataspace_config = config.get("dataspace") if isinstance(config, Mapping) else None
        if not isinstance(dataspace_config, Mapping):
            raise DataSpaceConfigurationError(
                "Configuration is missing dataspace information: the Reaper needs the 'dataspace' dictionary"
            )
        self.logger = get_logger().bind(module="reaper", component="reaper")
        if "retention_interval_in_days" not in dataspace_config:
            # As the reference: how long data is kept is the operator's decision, never a silent
            # default.  (de-server's global configuration is completed with its defaults, 365
            # days, before it gets here; de-reaper --url fills the same default explicitly.)
            raise DataSpaceConfigurationError(
                "Invalid dataspace configuration: the Reaper needs dataspace.retention_interval_in_days "
                f"(days to keep data, at least {self.MIN_RETENTION_INTERVAL_DAYS})"
            )
        self.retention_interval = dataspace_config["retention_interval_in_days"]
        self.seconds_between_runs = dataspace_config.get("reaper_run_interval", DEFAULT_SECONDS_BETWEEN_RUNS)
        self.start_delay = float(dataspace_config.get("reaper_start_delay_seconds", DEFAULT_START_DELAY_SECONDS))
        self.batch_size = int(dataspace_config.get("reaper_batch_size", DEFAULT_BATCH_SIZE))
        self.dataspace = dataspace if dataspace is not None else DataSpace(config)
        self.clock = clock
        self._state = ReaperState.OFFLINE
        self._state_changed = threading.Condition()
        self._stop = threading.Event()
        self._reap_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0
        self.last_report: ReapReport | None = None
        #: everything removed by every pass since the Reaper was created
        self.removed = ReapReport()
        self.last_error: str | None = None
        self.last_run_started: float | None = None
        self.last_run_finished: float | None = None
        self.next_run: float | None = None
        #: called after every batch of a pass (e.g. to export metrics or show progress)
        self.on_batch: Callable[[ReapReport], None] | None = None

    # -- validated settings -------------------------------------------------------------------

    @property
    def retention_interval(self) -> float:
        """We have data constraints, so use a property to track"""
        return self._retention_interval

    @retention_interval.setter
    def retention_interval(self, value: float) -> None:
        days = _number("retention_interval_in_days", value)
        if days < self.MIN_RETENTION_INTERVAL_DAYS:
            raise ValueError(
                f"retention_interval_in_days must be at least {self.MIN_RETENTION_INTERVAL_DAYS} days "
                f"(got {value!r}): the Reaper refuses to delete younger data"
            )
        self._retention_interval = days

    @property
    def seconds_between_runs(self) -> float:
        """We have data constraints, so use a property to track"""
        return self._seconds_between_runs

    @seconds_between_runs.setter
    def seconds_between_runs(self, value: float) -> None:
        seconds = _number("reaper_run_interval", value)
        if seconds < self.MIN_SECONDS_BETWEEN_RUNS:
            raise ValueError(
                f"reaper_run_interval must be at least {self.MIN_SECONDS_BETWEEN_RUNS} seconds (got {value!r})"
            )
        self._seconds_between_runs = seconds

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> ReaperState:
        return self._state

    def _set_state(self, state: ReaperState) -> None:
        with self._state_changed:
            self._state = state
            self._state_changed.notify_all()

    def get_state(self) -> ReaperState:
        return self._state

    def wait_while(self, state: ReaperState, timeout: float | None = None) -> bool:
        """Block until the Reaper leaves ``state``; False on timeout."""
        with self._state_changed:
            return self._state_changed.wait_for(lambda: self._state is not state, timeout)

    def status(self) -> dict[str, Any]:
        """What the server reports about the Reaper."""
        report = self.last_report
        return {
            "state": self._state.value,
            "retention_interval_in_days": self.retention_interval,
            "reaper_run_interval": self.seconds_between_runs,
            "runs": self.runs,
            "failures": self.failures,
            "last_run_started": self.last_run_started,
            "last_run_finished": self.last_run_finished,
            "next_run": self.next_run,
            "last_error": self.last_error,
            "last_removed": None
            if report is None
            else {
                "generations": report.generations,
                "products": report.products,
                "payloads": report.payloads,
                "payload_bytes": report.payload_bytes,
                "stopped": report.stopped,
            },
        }

    def __repr__(self) -> str:
        return f"Reaper, retention interval {self.retention_interval} days, state {self._state.value}"

    # -- work -------------------------------------------------------------------------------

    def cutoff(self) -> float:
        """Generations whose time is before this (epoch seconds) are old enough to delete."""
        return self.clock() - self.retention_interval * 86400

    def reap(self, dry_run: bool = False, progress: Callable[[ReapReport], None] | None = None) -> ReapReport:
        """Actually spawn the query to delete the old records.

        One pass at a time (a second caller waits for the first); ``stop()`` ends a pass
        between two batches.  Raises what the data source raises, after recording it.
        """
        with self._reap_lock:
            previous = self._state
            if not dry_run:
                self._set_state(ReaperState.ACTIVE)
            self.last_run_started = time.time()
            try:
                report = self.dataspace.reap(
                    self.cutoff(),
                    self.batch_size,
                    dry_run=dry_run,
                    should_stop=self._stop.is_set,
                    progress=progress or self.on_batch,
                )
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._set_state(ReaperState.ERROR)
                self.logger.exception("reaper pass failed", error=self.last_error)
                raise
            finally:
                self.last_run_finished = time.time()
            if dry_run:
                self._set_state(previous)
                return report
            self.runs += 1
            self.last_report = report
            self.removed.add(report)
            self.last_error = None
            if not self._stop.is_set():
                # waiting for the next pass (IDLE) when the Reaper's thread runs it, as the reference
                self._set_state(ReaperState.IDLE if self._scheduled() else ReaperState.STEADY)
            self.logger.info(
                "reaper pass done",
                generations=report.generations,
                products=report.products,
                payloads=report.payloads,
                payload_bytes=report.payload_bytes,
                stopped=report.stopped,
            )
            return report

    def _scheduled(self) -> bool:
        """The Reaper's own thread runs (passes come on its schedule)."""
        return self.thread is not None and self.thread.is_alive()

    def _reaper_loop(self, delay: float) -> None:
        """The thread actually runs this."""
        self.next_run = time.time() + delay
        if self._stop.wait(delay):
            return
        retry = RETRY_FIRST
        while not self._stop.is_set():
            wait = self.seconds_between_runs
            try:
                self.reap()
                retry = RETRY_FIRST
            except DataSpaceConnectionError:  # recorded by reap(); the outage will end: try soon
                wait = min(retry, self.seconds_between_runs)
                retry = min(retry * 2, RETRY_MAX)
                self.logger.warning("reaper will retry when the database is back", retry=wait)
            except Exception:  # recorded by reap(); try again at the next interval
                pass
            self.next_run = time.time() + wait
            if self._stop.wait(wait):
                return

    def start(self, delay: float = 0) -> None:
        """Start thread with an optional delay to start the thread in X seconds"""
        if self.thread is not None and self.thread.is_alive():
            self.logger.info("reaper already running")
            return
        self._stop.clear()
        self._set_state(ReaperState.IDLE)
        self.thread = threading.Thread(target=self._reaper_loop, args=(delay,), name="Reaper_loop_thread", daemon=True)
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the reaper; a pass in progress ends after its current batch."""
        self._set_state(ReaperState.SHUTTINGDOWN)
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout)
        with self._reap_lock:  # a reap() called from another thread finishes its batch too
            self._set_state(ReaperState.SHUTDOWN)
        self.next_run = None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {value!r}") from None
    return float(value)
