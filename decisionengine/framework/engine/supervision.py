"""Nothing the server starts outlives it, however the server dies (SIGKILL included).

The processes of a server::

    de-server ─┬─ fork server ─┬─ channel processes
               │               └─ query workers
               └─ resource tracker

A server killed with SIGKILL runs no cleanup of its own, and Linux re-parents its children
to init: left alone, channel processes would go on committing generations nobody sees,
holding their channels' locks, so that the next server (here or on another host) would
wait in standby for ever.  So, in layers:

1. **The kernel** (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, Linux): the fork server is killed
   the moment de-server dies, and each process the fork server forked is killed the moment
   the fork server dies; the chain takes milliseconds and needs no Python code to run (a
   module stuck in C code holding the GIL is killed all the same).  SIGKILL, not SIGTERM:
   a channel whose server is gone must not commit another generation, and a transaction
   it had open is rolled back by the database.  Three caveats of ``man 2 prctl``:

   * the signal comes when the *thread* that created the child ends, not its process: so
     de-server starts the fork server from a thread of its own that lives as long as the
     process (:func:`ensure_fork_server`), never from a request thread that may end;
   * the setting is cleared by ``fork()``: every child of the fork server sets its own
     (:func:`guard_forked_child`);
   * the parent may die before the child has set it: the child then checks that its parent
     is still the one it expects (``getppid()``) and, if not, kills itself.  (A child whose
     parent *thread* ended first is re-parented to another thread of the same process, which
     ``getppid()`` cannot show: one more reason the fork server's parent thread never ends.)

2. **A pipe** (any POSIX system): every process forked for de-server watches
   ``multiprocessing.parent_process().sentinel``, a pipe whose only writer is de-server
   itself, and kills itself when it reads end-of-file.  This watches de-server directly
   (not the fork server), covers systems without ``prctl``, and has no race: a pipe whose
   writer has already died reads end-of-file at once.

3. **By themselves**: the fork server exits when de-server and all its children have
   closed its "alive" pipe; the resource tracker exits when every process holding its pipe
   (de-server and every child) has ended, after unlinking the semaphores the dead left.

Where ``prctl`` is missing, :func:`parent_death_supported` says so and the server logs it;
layers 2 and 3 still end everything, only later for a channel busy in C code.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.util
import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from decisionengine.framework.config.global_config import DEFAULT_CHANNEL_NICE

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_NAME = 15
#: the pid the fork server must have as parent; set only while de-server starts it
PARENT_ENV = "DE_FORK_SERVER_PARENT"

#: set to 1 to warm up the fork server before it forks (see :mod:`.warmup`): about 2 MiB less per
#: idle channel, but every channel start waits for it, and on a busy host that is long (a server
#: joining a loaded cluster in benchmarks/scale.py took 66-76 s instead of 10 s to get its share)
WARM_UP_ENV = "DE_FORK_SERVER_WARM_UP"

#: the fork server's pid, set in the fork server (:func:`guard_fork_server`) and so
#: inherited by every process it forks; None elsewhere
fork_server_pid: int | None = None


def libc_prctl() -> Any:
    """libc's ``prctl`` (Linux), None where there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def name_this_process(name: str) -> None:
    """Set what ``ps`` and ``/proc/<pid>/comm`` call this process (Linux; 15 bytes at most).

    Processes forked from de-server keep its command line, so the name is what tells a
    fork server (``de-fork-server``), a channel (``de-channel``), a shared source
    (``de-source``) and a query worker (``de-query-worker``) apart.  Nothing elsewhere."""
    prctl = libc_prctl()
    if prctl is not None:
        prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))


def parent_death_supported() -> bool:
    """Whether the kernel can kill a child when its parent dies (asks, changes nothing)."""
    prctl = libc_prctl()
    if prctl is None:
        return False
    current = ctypes.c_int(0)
    return prctl(PR_GET_PDEATHSIG, ctypes.byref(current), 0, 0, 0) == 0


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``signum`` to this process when its parent (thread) ends.

    False where that is not possible (not Linux); the caller logs it.
    """
    prctl = libc_prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def die_with_parent(expected_parent: int | None) -> bool:
    """SIGKILL this process when its parent dies, and at once if it has already died.

    ``expected_parent`` is the pid the parent must have; a different ``getppid()`` after
    the signal is armed means the parent died first (we were re-parented), which the
    kernel will never report.  None: the parent is not known, only arm the signal.
    Returns whether the kernel can do it.
    """
    armed = set_parent_death_signal()
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return armed


def kill_self_when_closed(sentinel: int, name: str = "server-watch") -> threading.Thread:
    """A daemon thread that SIGKILLs this process when ``sentinel`` (a pipe's read end) ends."""

    def watch() -> None:
        try:
            multiprocessing.connection.wait([sentinel])
        except (OSError, ValueError):  # not a descriptor we can watch: nothing to do
            return
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name=name, daemon=True)
    thread.start()
    return thread


def guard_fork_server() -> bool | None:
    """Run in the fork server as it starts (its first preload module): die with de-server.

    None when this fork server was not started by :func:`ensure_fork_server` (no expected
    parent known: nothing is armed here, and its children still watch de-server's pipe).
    """
    global fork_server_pid
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit() or int(parent) == os.getpid():  # not a fork server, or de-server itself
        return None
    del os.environ[PARENT_ENV]  # the processes it forks have nothing to do with it
    fork_server_pid = os.getpid()
    name_this_process("de-fork-server")
    return die_with_parent(int(parent))


def guard_forked_child() -> bool | None:
    """Run first in every process forked for de-server: die with the fork server and with de-server.

    The kernel's signal is armed only under a fork server that :func:`guard_fork_server`
    guarded: that parent is single-threaded and dies with de-server.  Under any other
    parent (another start method, whose parent may be a thread that ends early) only the
    pipe watches.  Returns whether the signal is armed: True, False where ``prctl`` is
    missing (the caller logs it), None where it does not apply.
    """
    armed = die_with_parent(fork_server_pid) if fork_server_pid is not None else None
    parent = multiprocessing.parent_process()  # de-server, the process that asked for this one
    if parent is not None and parent.sentinel is not None:
        kill_self_when_closed(parent.sentinel)
    return armed


def yield_to_the_server(global_config: dict[str, Any] | None) -> int:
    """Lower this (channel or source) process's CPU priority by ``channel_nice``; the niceness added.

    Under CPU contention the server and the database then come first: a heartbeat that waits
    behind a hundred booting channel processes comes late, the other servers take this one
    for dead and move its channels, which boots more processes (the cluster thrashed that way
    in ``benchmarks/scale.py``).  On an idle machine it changes nothing."""
    step = int((global_config or {}).get("channel_nice", DEFAULT_CHANNEL_NICE))
    if step > 0:
        with contextlib.suppress(OSError):
            os.nice(step)
            return step
    return 0


# -- starting the fork server from a thread that lives as long as the process ---------------------

#: imported once by the fork server, shared (copy-on-write) by every channel process
PRELOAD = [
    "decisionengine.framework.engine.forkserver_guard",  # first: dies with de-server (supervision)
    "decisionengine.framework.engine.preload",  # the framework, warmed up and frozen
]


def channel_context() -> Any:
    """How channel processes are started: a fork server.

    The fork server is a clean, single-threaded process started once; it imports the
    framework (pandas, SQLAlchemy, APScheduler...) and forks each channel from itself.  A
    channel therefore starts without re-importing everything, and its memory pages for
    those libraries are shared with the other channels.  Unlike forking the server itself,
    nothing of the server's threads, locks or connections leaks into a channel.

    The fork server and everything it forks die with de-server (below).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm_fork_server(on_error: Callable[[BaseException], None] | None = None) -> None:
    """Start the fork server in the background and return at once.

    de-server calls it first thing, before importing the rest of the framework: the fork
    server's imports (pandas, SQLAlchemy...: about a second) then run beside de-server's own
    instead of after them, while the first channel start waits for it.  ``on_error`` gets
    what went wrong; the first channel start tries again anyway and reports it."""

    def warm() -> None:
        try:
            ensure_fork_server()
        except Exception as exc:
            if on_error is not None:
                on_error(exc)

    threading.Thread(target=warm, name="warm-fork-server", daemon=True).start()


_requests: queue.SimpleQueue[concurrent.futures.Future[None]] = queue.SimpleQueue()
_keeper: threading.Thread | None = None
_keeper_lock = threading.Lock()


def ensure_fork_server() -> None:
    """Make sure the fork server runs, starting it if needed from the keeper thread.

    The fork server's parent-death signal fires when the *thread* that started it ends:
    started from a request thread that later ends, it would take every channel with it.
    The keeper thread is started once and never ends while the process lives.  Called
    before each process start (cheap when the fork server runs: one ``waitpid``), so that
    a fork server that died is started again from the keeper too.
    """
    global _keeper
    with _keeper_lock:
        if _keeper is None or not _keeper.is_alive():
            _keeper = threading.Thread(target=_keep, name="fork-server-keeper", daemon=True)
            _keeper.start()
    request: concurrent.futures.Future[None] = concurrent.futures.Future()
    _requests.put(request)
    request.result()


def _keep() -> None:
    while True:
        request = _requests.get()
        if not request.set_running_or_notify_cancel():
            continue
        try:
            _start_fork_server()
        except BaseException as exc:  # the caller gets it
            request.set_exception(exc)
        else:
            request.set_result(None)


#: the longest socket path Linux takes (``sun_path`` is 108 bytes with its NUL), less a margin
AF_UNIX_PATH_MAX = 100
#: what multiprocessing adds to the temp directory: ``/pymp-XXXXXXXX/listener-XXXXXXXX``
_SOCKET_SUFFIX = len("/pymp-xxxxxxxx/listener-xxxxxxxx")


def fit_socket_directory(parent: str = "/tmp") -> str | None:
    """Give multiprocessing a temp directory short enough for its Unix sockets.

    The fork server listens on a Unix socket in multiprocessing's temp directory, made
    under ``$TMPDIR``; a socket path longer than 107 bytes cannot be bound ("AF_UNIX path
    too long"), so a long ``TMPDIR`` would keep every channel from starting.  Then this
    process's multiprocessing gets a private directory under ``parent`` instead (mode 0700,
    as ``mkdtemp`` makes it, so no other user can reach the socket), removed when the
    process exits.  Returns that directory, None when ``$TMPDIR`` is short enough or one was
    already chosen.  Idempotent.
    """
    config = multiprocessing.process.current_process()._config  # type: ignore[attr-defined]
    chosen = config.get("tempdir")
    if chosen is not None or len(tempfile.gettempdir()) + _SOCKET_SUFFIX <= AF_UNIX_PATH_MAX:
        return None
    directory = tempfile.mkdtemp(prefix=f"de-mp-{os.getpid()}-", dir=parent)
    multiprocessing.util.Finalize(None, shutil.rmtree, args=[directory, True], exitpriority=-100)
    config["tempdir"] = directory
    return directory


def _start_fork_server() -> None:
    """``ensure_running`` with the expected parent in the environment the fork server starts with."""
    fit_socket_directory()
    os.environ[PARENT_ENV] = str(os.getpid())
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        with contextlib.suppress(KeyError):
            del os.environ[PARENT_ENV]
