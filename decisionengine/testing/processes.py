"""Processes as Linux shows them in /proc: trees, liveness, identity (for tests).

A process is identified by its pid *and* its start time (``/proc/<pid>/stat`` field 22):
a pid alone may be reused by an unrelated process once the one a test recorded is gone.
"""

from __future__ import annotations

import pathlib

Identity = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 first), None when gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie has ended: only its exit status is left)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def identity(pid: int) -> Identity | None:
    fields = _stat_fields(pid)
    return None if fields is None else (pid, int(fields[19]))


def still_running(process: Identity) -> bool:
    """The very process recorded (same pid, same start time) still runs."""
    return alive(process[0]) and identity(process[0]) == process


def process_table() -> tuple[dict[int, int], dict[int, str]]:
    """(pid -> parent pid, pid -> name) of every process."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(int(proc.name))
        if fields is None:
            continue
        try:
            names[int(proc.name)] = (proc / "comm").read_text().strip()
        except OSError:
            continue
        parents[int(proc.name)] = int(fields[1])
    return parents, names


def descendants_of(root: int) -> list[int]:
    """Pids of every process descending from ``root``."""
    parents, _ = process_table()

    def descends(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    return [pid for pid in parents if descends(pid)]


def family_of(root: int) -> set[Identity]:
    """``root`` and every process descending from it, as identities."""
    found = {identity(pid) for pid in [root, *descendants_of(root)]}
    return {process for process in found if process is not None}


def cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def guarded_sleep(seconds: float) -> None:
    """A process target that does what every process the server forks does first (die with
    its parents), then sleeps."""
    import time  # noqa: PLC0415

    from decisionengine.framework.engine import supervision  # noqa: PLC0415

    supervision.guard_forked_child()
    time.sleep(seconds)
