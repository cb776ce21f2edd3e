"""What a dead de-server leaves behind, found and cleared by the next server to start.

A server killed with SIGKILL (or by the OOM killer) runs none of its cleanup; its
processes die with it (:mod:`.supervision`), but some files stay:

* its **metrics directory**, ``$TMPDIR/de-metrics-<pid>-XXXXXXXX`` (the Prometheus
  multiprocess files of the server and its channels): removed when no process has that
  pid any more.  A directory whose pid is alive is never touched (it may be a live
  server's, or the pid was reused: either way keeping it is the safe side), nor one
  owned by another user, nor one without a pid in its name (older servers');
* the **lock files** of its SQLite channels, ``<database>.<channel>.lock``: removed when
  no live process holds them (:func:`..dataspace.ownership.clear_stale_lock_files`);
  a live server's channels hold theirs;
* its **pidfile**: ``de-server`` overwrites one that names a dead pid.

This module imports nothing that loads ``prometheus_client``: ``de-server`` names its
metrics directory before that library is first imported.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

METRICS_PREFIX = "de-metrics-"
_METRICS_DIRECTORY = re.compile(rf"{re.escape(METRICS_PREFIX)}(?P<pid>\d+)-[a-z0-9_]+")


@dataclass(frozen=True)
class Leftover:
    """One thing a dead process left and this server removed."""

    what: str  # what it is and whose, as a log line says it
    path: str
    pid: int | None = None  # the dead process's, when the leftover names it


def new_metrics_directory(parent: str | None = None) -> str:
    """A new metrics directory named after this process (``de-metrics-<pid>-XXXXXXXX``), so
    that the next server can tell whether the server that made it is still alive."""
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=parent)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: it cannot be signalled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_dead_metrics_directories(parent: str | None = None) -> list[Leftover]:
    """Remove the metrics directories in ``parent`` (the temporary directory) whose server is dead."""
    parent = parent or tempfile.gettempdir()
    cleared = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        match = _METRICS_DIRECTORY.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            cleared.append(Leftover("the metrics directory of a dead server", entry.path, pid))
    return cleared


def clear_stale_channel_locks(dataspace: Any) -> list[Leftover]:
    """Remove the channel locks of dead processes (SQLite lock files nobody holds)."""
    removed = dataspace.clear_stale_channel_locks()
    return [Leftover("a channel lock file no live process held", path) for path in removed]


def report(logger: Any, cleared: list[Leftover]) -> None:
    """One log line per thing cleared, naming it."""
    for leftover in cleared:
        fields = {"path": leftover.path} if leftover.pid is None else {"path": leftover.path, "dead_pid": leftover.pid}
        logger.warning(f"removed {leftover.what}", **fields)
