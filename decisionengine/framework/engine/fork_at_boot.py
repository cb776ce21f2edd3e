"""de-server's fork server, forked from de-server itself at boot instead of started afresh.

Started the ordinary way (:func:`.supervision.ensure_fork_server`), the fork server is a new
interpreter that imports the framework again: about 1.3 s of CPU at every server start, on
top of the 1.5 s de-server spends importing the same libraries.  At boot, de-server's main
thread is still the only thread: no other thread's lock can be held across a fork taken
there and no connection is open yet, so de-server imports what every channel needs once
(:mod:`.preload`), freezes it, and forks the fork server from itself.  The copy shares
those pages with de-server and with every channel.  What it inherits beyond a new
interpreter's is de-server's descriptors (let go, the numbers kept taken: see
:func:`_release_all_but`) and the state of the modules imported so far, which is what the
preload would have built anyway.

The fork server forked here then runs :mod:`multiprocessing.forkserver`'s own loop, exactly
as a started one would, with the same preload list (its guard arms the parent-death
signal; the framework is already loaded).  Only the first start is made this way: a fork
server that dies later is started again the ordinary way, from a server that has threads
by then.  Where this Python's fork server internals are not the ones this module knows
(an allow-list of versions and attributes), a thread already runs or ``DE_FORK_SERVER_AT_BOOT=0``
is set, :func:`fork_fork_server` declines and the ordinary start is used.
"""

from __future__ import annotations

import importlib
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import multiprocessing.util
import os
import socket
import sys
import threading
import traceback
from typing import NoReturn

from decisionengine.framework.engine import supervision

#: Pythons whose ``multiprocessing.forkserver`` keeps the state this module sets (3.14 adds
#: an authentication key to the handshake: not known here, so the ordinary start is used)
KNOWN_PYTHONS = {(3, 11), (3, 12), (3, 13)}
#: set to 0 to start the first fork server as a new interpreter too (``benchmarks/server_start.py``
#: compares both; an operator's way back should a module need it)
FORK_AT_BOOT_ENV = "DE_FORK_SERVER_AT_BOOT"
#: the fork server's state in ``multiprocessing.forkserver._forkserver`` that this module sets
STATE = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid", "_preload_modules")


def can_fork_here() -> bool:
    """Whether a fork taken now is safe and this Python's fork server is the one known."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    return (
        sys.version_info[:2] in KNOWN_PYTHONS
        and server is not None
        and all(hasattr(server, name) for name in STATE)
        and not hasattr(server, "_forkserver_authkey")
        and threading.current_thread() is threading.main_thread()
        and threading.active_count() == 1
        and os.environ.get(supervision.WARM_UP_ENV) != "1"  # the warm-up belongs in the fork server
        and os.environ.get(FORK_AT_BOOT_ENV) != "0"
    )


def fork_fork_server() -> int | None:
    """Load the framework here and fork the fork server from this process; its pid.

    None when it declines (see the module's docstring): nothing was started then, and the
    caller starts the fork server the ordinary way.  Call it from de-server's main thread
    before any other thread starts, after the environment the channels need is set
    (``PROMETHEUS_MULTIPROC_DIR``: prometheus_client reads it once, when imported).
    """
    if not can_fork_here():
        return None
    supervision.channel_context()  # the preload list, for this fork server and any started after it
    server = multiprocessing.forkserver._forkserver
    # Not under server._lock: this is the only thread, and a lock held across the fork would
    # stay held in the fork server and every channel (their own ensure_running would hang).
    if server._forkserver_pid is not None:
        return None
    importlib.import_module("decisionengine.framework.engine.preload")  # loads and freezes, here
    supervision.fit_socket_directory()
    multiprocessing.resource_tracker.ensure_running()
    with socket.socket(socket.AF_UNIX) as listener:
        address = multiprocessing.connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        if not multiprocessing.util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # every client holds the write end; the fork server the read end
        parent = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:
                _serve(parent, listener.fileno(), alive_r, list(server._preload_modules))
        except BaseException:
            os.close(alive_w)
            raise
        finally:
            os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return pid


def _serve(parent: int, listener_fd: int, alive_r: int, preload: list[str]) -> NoReturn:
    """In the forked child: become the fork server; never returns (``os._exit``: none of
    de-server's exit handlers, which remove its directories, may run here)."""
    code = 1
    try:
        _release_all_but(0, 1, 2, listener_fd, alive_r)  # what a started fork server inherits
        os.environ[supervision.PARENT_ENV] = str(parent)  # read by its guard, the first preload module
        multiprocessing.forkserver.main(listener_fd, alive_r, preload)
        code = 0
    except SystemExit as exc:  # its loop ends so when de-server and every client are gone
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _release_all_but(*kept: int) -> None:
    """Point every descriptor but ``kept`` at /dev/null: the files, pipes and sockets behind
    them are let go, as a new interpreter would not have them.

    Not closed: a Python object inherited from de-server (a metrics file of
    prometheus_client's, which a forked process closes when it sees its pid change) may
    still close "its" descriptor later, in a channel, and a closed number is reused there,
    by the channel's own pipes: its signal pipe then read metrics files and stopped the
    channel.  A number that stays taken (by /dev/null) cannot be reused."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _open_descriptors():
            if fd not in kept and fd != devnull:
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _open_descriptors() -> list[int]:
    try:
        listed = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: the usual range
        listed = list(range(3, 256))
    found = []
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:  # the directory listing's own descriptor, or never open
            continue
        found.append(fd)
    return found
