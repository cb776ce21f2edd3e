"""At most N database connections open at once across all the channel processes of a server.

PostgreSQL serves a fixed number of connections (``max_connections``, 100 by default), and
a server may run hundreds of channels.  So a channel process under de-server opens a
connection only when it has work for the database, and only after taking one of the
server's N *connection slots*; the slot is given back when the connection closes.  The
server's channel connections then number at most N, however many channels it runs: they
scale with the work done at once, not with the channels.

A channel done with its database work for now (``DataSpace.idle``: after a generation, a
shared source's delivery) keeps its connection if another slot is still free and nobody
waits in line, and gives it back at once otherwise.  A connection kept, or one left idle
otherwise (a channel's own source stored a delivery: the generation it starts follows), is
given back once someone waits in line and it has been idle :data:`IDLE_CLOSE` seconds (its
process looks every :data:`WAITER_CHECK` seconds), or after :data:`IDLE_KEEP` seconds
unused.  A new connection is dear: a PostgreSQL backend start and its first statements
cost the database about 14 ms of CPU on a 2-core VM, more than a whole no-op generation on
a connection kept (5 ms).  Closing every connection after half a second idle, as before,
paid that at every generation of every channel even on a server with slots to spare.  On
a server short of slots nothing changes: kept connections given back the moment someone
waited made the generation a delivery starts connect anew (``benchmarks/scale.py``: 1.7
times the connections).

A slot is a ``flock`` on one of N files in a directory private to the server.  The
kernel releases the ``flock`` of a process that dies, so a channel killed while holding
a slot (``kill -9``, the hang watchdog) cannot leak it, which a semaphore could.

Waiting is fair enough that nobody starves.  Waiters line up on one more lock file, the
*queue*: only the process holding it (the head) looks for a free slot, the others sleep in
the kernel until the head has its slot and lets the queue go.  A newcomer that finds the
queue held joins it instead of looking for a slot, so it cannot take the slot a long waiter
was about to get.  Before the queue (every waiter polling the slots, with pauses growing to
a quarter of a second) a saturated server (``benchmarks/scale.py``: 50 channels a core)
had channels wait more than 30 s while newcomers, looking again after 5 ms, took the slots.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.util import queue as pool_queue

from decisionengine.framework.dataspace.errors import DataSpaceConnectionError
from decisionengine.framework.util.backoff import pauses
from decisionengine.framework.util.metrics import Histogram

SLOT_FILE = "slot-{}.lock"
#: how long a connection waits for a free slot before the attempt fails like a lost database
DEFAULT_WAIT = 30.0
QUEUE_FILE = "queue.lock"
#: seconds between the head waiter's looks for a free slot: doubling from the first to the
#: longest.  Only the head looks (one process per server), so it may look often: a slot
#: given back is taken again within about 20 ms
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.02
#: seconds an idle connection is kept whoever waits: the generation a source's delivery
#: starts comes within that on a loaded server, and finds the delivery's connection open
IDLE_CLOSE = 0.5
#: seconds between a process's looks, while its connection is idle, for another waiting for a slot
WAITER_CHECK = 0.05
#: seconds an idle connection is kept although nobody waits for its slot (a quiet channel
#: does not keep a PostgreSQL backend for hours)
IDLE_KEEP = 60.0

#: the two sides of a server's slots (summed over its channel processes): long waits with short
#: holds say the slots are too few (raise ``dataspace.channel_connections``); long holds say
#: what keeps them (a slow database, or a machine too loaded for its holders to run)
SLOT_WAIT_SECONDS = Histogram(
    "connection_slot_wait_seconds",
    "Time a channel process waited for one of its server's connection slots",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30),
)
SLOT_HOLD_SECONDS = Histogram(
    "connection_slot_hold_seconds",
    "Time a channel process held a connection slot (from connecting to closing the connection)",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def create_slots(directory: str, slots: int) -> str:
    """Make the slot files of a server (once, at its start); the directory."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for name in [QUEUE_FILE, *(SLOT_FILE.format(number) for number in range(slots))]:
        os.close(os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o600))
    return directory


class _Turn:
    """One caller's place in line: the descriptor the line keeper blocks on for it."""

    def __init__(self, fd: int) -> None:
        self.own = os.dup(fd)  # the keeper's: closing it cannot close a descriptor the caller reused
        self.got = threading.Event()
        self.abandoned = False
        self.lock = threading.Lock()


class _LineKeeper:
    """One thread per process that waits in line (a blocking ``flock``) for the callers.

    ``flock`` has no timeout, so the waiting is done by this thread while the caller waits
    on an Event that can time out.  One thread for the process's life, not one per wait:
    starting a thread at every wait was a tenth of a busy channel's CPU on a loaded machine
    (``benchmarks/scale.py``).  A turn given up on is released the moment the keeper gets it,
    so the next in line is not held up by a caller that has gone."""

    def __init__(self) -> None:
        self._turns: queue.SimpleQueue[_Turn] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def lock_within(self, fd: int, seconds: float) -> bool:
        """Take ``fd``'s exclusive ``flock`` within ``seconds``; False when that time passed."""
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        turn = _Turn(fd)
        self._ensure_thread()
        self._turns.put(turn)
        if not turn.got.wait(seconds):
            with turn.lock:
                if not turn.got.is_set():
                    turn.abandoned = True  # the keeper closes turn.own when it gets the lock
                    return False
        os.close(turn.own)  # the lock stays: it belongs to the open file, which fd still refers to
        return True

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():  # none yet, or a forked child's
                self._thread = threading.Thread(target=self._keep, name="connection-slot-line", daemon=True)
                self._thread.start()

    def _keep(self) -> None:
        while True:
            turn = self._turns.get()
            try:
                fcntl.flock(turn.own, fcntl.LOCK_EX)
            except OSError:  # not seen; the caller gives up when its time is spent
                with turn.lock:
                    turn.abandoned = True
                os.close(turn.own)
                continue
            with turn.lock:
                if not turn.abandoned:
                    turn.got.set()
                    continue
            os.close(turn.own)


_line_keeper = _LineKeeper()


class ConnectionGate:
    """Take a slot before connecting, give it back when the connection closes."""

    def __init__(self, directory: str, slots: int, wait: float = DEFAULT_WAIT) -> None:
        self.paths = [os.path.join(directory, SLOT_FILE.format(number)) for number in range(slots)]
        self.queue_path = os.path.join(directory, QUEUE_FILE)
        self.wait = wait
        self._held: dict[int, tuple[int, float]] = {}  # id(DBAPI connection) -> (its slot's fd, when taken)
        self._lock = threading.Lock()
        #: since when the pool's connection is idle, and the pool (see _idle_from_now)
        self._idle_since: tuple[float, Any] | None = None
        self._idle_changed = threading.Condition()
        self._closer: threading.Thread | None = None

    def take(self) -> int:
        """A slot's file descriptor, holding its lock; waits up to ``wait`` seconds, in line
        behind the processes already waiting."""
        started = time.monotonic()
        line = os.open(self.queue_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _line_keeper.lock_within(line, self.wait):
                raise self._timed_out("behind the other waiters")
            fd = self._try_take()
            if fd is not None:
                return fd
            for _ in pauses(FIRST_PAUSE, LONGEST_PAUSE, self.wait - (time.monotonic() - started)):
                fd = self._try_take()
                if fd is not None:
                    return fd
            raise self._timed_out("at the head of the line")
        finally:
            os.close(line)  # the next in line becomes the head

    def _timed_out(self, where: str) -> DataSpaceConnectionError:
        return DataSpaceConnectionError(
            f"no database connection slot came free within {self.wait:g} s (waiting {where}): all "
            f"{len(self.paths)} (dataspace.channel_connections) are in use by this server's channels"
        )

    def _try_take(self) -> int | None:
        """A free slot's locked file descriptor, or None when every slot is held (looked at
        in random order, so that waiters do not all race for the first file)."""
        for path in random.sample(self.paths, len(self.paths)):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    @staticmethod
    def give_back(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)  # drops the flock

    def install(self, engine: sa.Engine | None = None) -> None:
        """Gate every new connection of ``engine``, and close its idle ones soon.

        Without an engine, every engine of this process, from now on: installed before the
        DataSpace is opened, so that even the connections its start makes take a slot."""
        target: Any = engine if engine is not None else sa.Engine
        pools: Any = engine.pool if engine is not None else sa.pool.Pool

        @event.listens_for(target, "do_connect")
        def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            asked = time.monotonic()
            fd = self.take()
            taken = time.monotonic()
            SLOT_WAIT_SECONDS.observe(taken - asked)
            try:
                connection = dialect.connect(*cargs, **cparams)
            except BaseException:
                self.give_back(fd)
                SLOT_HOLD_SECONDS.observe(time.monotonic() - taken)
                raise
            with self._lock:
                self._held[id(connection)] = (fd, taken)
            return connection

        def _closed(connection: Any, *_: Any) -> None:
            with self._lock:
                held = self._held.pop(id(connection), None)
            if held is not None:
                self.give_back(held[0])
                SLOT_HOLD_SECONDS.observe(time.monotonic() - held[1])

        event.listen(pools, "close", _closed)
        event.listen(pools, "close_detached", _closed)
        if engine is not None:
            self.close_when_idle(engine)

    def close_when_idle(self, engine: sa.Engine) -> None:
        """Close ``engine``'s idle connection once another process waits for a slot (but
        not before IDLE_CLOSE seconds idle), or after IDLE_KEEP seconds unused."""
        event.listen(engine.pool, "checkin", lambda *_: self._idle_from_now(engine.pool))
        event.listen(engine.pool, "checkout", lambda *_: self._in_use_again())

    def idle_hook(self, pool: Any) -> Callable[[bool], None]:
        """What ``DataSpace.idle(long)`` calls in a gated process: :meth:`close_idle` for a
        long pause (a standby), :meth:`idle` otherwise."""
        return lambda long: self.close_idle(pool) if long else self.idle(pool)

    def idle(self, pool: Any) -> None:
        """The pool's user has no database work for now: keep its idle connection if a slot
        is still free for the others and nobody waits, else give it back now."""
        if self.someone_waits() or not self.a_slot_is_free():
            self.close_idle(pool)

    def a_slot_is_free(self) -> bool:
        """Whether one of the slots this process does not hold is free now."""
        fd = self._try_take()
        if fd is None:
            return False
        self.give_back(fd)
        return True

    def someone_waits(self) -> bool:
        """Whether a process of this server is in line for a slot: the head of the line holds
        the line's lock while it looks for a free slot."""
        fd = os.open(self.queue_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # lets go of the line at once if it was free
        return False

    def _idle_from_now(self, pool: Any) -> None:
        """A connection came back to the pool: the closer thread watches the line from now.
        One closer thread per gate, woken with the news: a ``threading.Timer`` started at
        every check-in cost a thread start each time."""
        with self._idle_changed:
            self._idle_since = (time.monotonic(), pool)
            if self._closer is None or not self._closer.is_alive():
                self._closer = threading.Thread(target=self._close_when_due, name="connection-idle-close", daemon=True)
                self._closer.start()
            self._idle_changed.notify()

    def _in_use_again(self) -> None:
        with self._idle_changed:
            self._idle_since = None

    def _close_when_due(self) -> None:
        while True:
            with self._idle_changed:
                while self._idle_since is None:
                    self._idle_changed.wait()
                since = self._idle_since
            time.sleep(random.uniform(0.5, 1.5) * WAITER_CHECK)  # spread: one waiter, one close
            if self._idle_since is not since:
                continue  # used again meanwhile (or closed by close_idle)
            idle_for = time.monotonic() - since[0]
            if idle_for < IDLE_CLOSE or (idle_for < IDLE_KEEP and not self.someone_waits()):
                continue
            with self._idle_changed:
                if self._idle_since is not since:
                    continue
                self._idle_since = None
            self._close_idle(since[1])

    def close_idle(self, pool: Any) -> None:
        """Close the pool's idle connections now (their slots go back); the pool stays usable.
        A channel calls it when it expects no database work for a while
        (``DataSpace.idle(long=True)``: between its attempts in standby)."""
        with self._idle_changed:
            self._idle_since = None
        self._close_idle(pool)

    @staticmethod
    def _close_idle(pool: Any) -> None:
        """Close the connections idle in the pool (their slots go back).

        Each idle entry is taken from the pool's queue without waiting, its connection
        closed, and the entry put back unconnected: the next checkout connects again (taking
        a slot).  Not ``pool.dispose()``: a thread checking out while dispose had emptied the
        queue found the pool full and waited on the queue, which nobody refilled, for the
        whole ``pool_timeout`` (30 s) before connecting anew."""
        entries = getattr(pool, "_pool", None)  # QueuePool's queue of idle entries
        if entries is None:
            if pool.checkedout() == 0:
                pool.dispose()
            return
        taken = []
        while True:
            try:
                taken.append(entries.get(False))
            except pool_queue.Empty:
                break
        for entry in taken:
            try:
                with contextlib.suppress(Exception):  # one that cannot even close is gone anyway
                    entry.close()  # fires the pool's "close" event: the slot goes back
            finally:
                entries.put(entry, False)

    def in_use(self) -> int:
        """Slots this process holds now (for tests and status)."""
        with self._lock:
            return len(self._held)


def gated_config(datasource_config: dict[str, Any], channel: str) -> dict[str, Any]:
    """The datasource config of a gated channel process: a pool of exactly one connection,
    emptied when idle (the server's own pool sizes do not apply), and connections named after
    the channel (``application_name`` in ``pg_stat_activity``).

    One, not more: a process that held a slot with one connection while waiting for a slot
    for a second could wait on another doing the same (every slot held, nobody able to
    finish).  With one, a thread needing the database while another uses it waits for that
    connection, which is always given back."""
    config = {
        key: value
        for key, value in datasource_config.items()
        if key not in ("pool_size", "max_overflow", "pool_timeout", "pool_use_lifo", "poolclass")
    }
    config.update(pool_size=1, max_overflow=0, pool_timeout=DEFAULT_WAIT)
    config["connect_args"] = {"application_name": f"de-channel:{channel}"[:63], **(config.get("connect_args") or {})}
    return config
