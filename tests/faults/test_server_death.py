"""A de-server killed with SIGKILL takes every process it started with it; the next start
clears what it left (metrics directory, its liveness lock file, pidfile) and resumes at once; a live
server's things are never touched.  Real servers, real processes, both backends.

Query workers are in the killed server's tree here too (a query is run before the kill);
``tests/security/test_queries.py`` checks them on their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.testing.postgres import direct_engine
from decisionengine.testing.processes import Identity, cmdline, family_of, process_table, still_running
from decisionengine.testing.waiting import eventually
from tests.conftest import global_config
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(300)

CHANNELS = ("alpha", "beta")
SCHEDULE = 0.3
#: a channel that waited in standby even once could not meet the restart deadline
STANDBY_RETRY = 60.0
#: SIGKILL of the server to the end of every process it started
TEARDOWN_DEADLINE = 5.0
#: restart of the server to the first new generation of every channel
RESTART_DEADLINE = 10.0
#: how long after the kill a generation may still have started (the kill's own latency)
KILL_LATENCY = 0.5


def channels(root: pathlib.Path, standby_retry: float = STANDBY_RETRY, prefer: str | None = None) -> dict[str, Any]:
    """The test's channels; ``prefer``: they run on that server while it lives (the other stands by)."""
    found = {}
    placement = {"placement": {"prefer": [prefer]}} if prefer else {}
    for name in CHANNELS:
        channel = counting_channel(str(root / f"{name}.jsonl"), standby_retry=standby_retry, **placement)
        channel["sources"]["counter"]["schedule"] = SCHEDULE
        found[name] = channel
    return found


def new_server(root: pathlib.Path, url: str, tmp: pathlib.Path, name: str | None = None, **kwargs: Any) -> DEServer:
    """A server whose temporary directory (where its metrics directory goes) is ``tmp``."""
    cluster = {"cluster": {"server_name": name}} if name else {}
    server = DEServer(root, url, channels(root, **kwargs), **cluster)
    server.env["TMPDIR"] = str(tmp)
    return server


def metrics_dirs(tmp: pathlib.Path, pid: int) -> list[pathlib.Path]:
    """The metrics directories named after server ``pid`` (``de-metrics-<pid>-XXXX``)."""
    return [path for path in tmp.iterdir() if re.fullmatch(rf"de-metrics-{pid}-[a-z0-9_]+", path.name)]


def sqlite_file(url: str) -> pathlib.Path | None:
    return pathlib.Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def server_lock_files(url: str) -> list[pathlib.Path]:
    """The servers' liveness lock files next to the SQLite database (none on PostgreSQL)."""
    database = sqlite_file(url)
    if database is None:
        return []
    return sorted(database.parent.glob(f"{database.name}.server-*.lock"))


def held_by_someone(path: pathlib.Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def advisory_locks(url: str) -> int:
    """Advisory locks granted in the test's PostgreSQL database."""
    engine = direct_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).scalar()
            )
    finally:
        engine.dispose()


def generations(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every committed generation of every channel: id, time, product count; oldest first."""
    with DataSpace(global_config(url)) as dataspace:
        found = {}
        for name in CHANNELS:
            registration = dataspace.get_taskmanager(name)
            found[name] = dataspace.get_generations(registration["taskmanager_id"])
        return found


def survivors(family: set[Identity]) -> list[str]:
    _, names = process_table()
    return [f"{pid} ({names.get(pid, '?')})" for pid, started in sorted(family) if still_running((pid, started))]


def kill_all(family: set[Identity]) -> None:
    """Clean up after a failed test: nothing of it may outlive it."""
    for pid, started in family:
        if still_running((pid, started)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_server_takes_its_processes_with_it_and_a_restart_resumes_at_once(tmp_path_factory, db_url):
    root = tmp_path_factory.mktemp("server")
    tmp = root / "tmp"
    tmp.mkdir()
    server = new_server(root, db_url, tmp)
    family: set[Identity] = set()
    try:
        server.start()
        for name in CHANNELS:
            server.wait_for_generation(name, 2, 60)
        # a query, so that a query worker runs too
        assert json.loads(server.rpc().get_product("numbers", None, "n > 0", False, "json", "alpha"))["value"]
        status = {channel["channel"]: channel for channel in server.status()["channels"]}
        channel_pids = {status[name]["pid"] for name in CHANNELS}
        old_pid = server.process.pid
        family = family_of(old_pid)
        _, names = process_table()
        assert channel_pids <= {pid for pid, _ in family}
        kinds = [names.get(pid) for pid, _ in family]
        assert {kinds.count(kind) for kind in ("de-fork-server", "de-query-worker")} == {1}
        assert kinds.count("de-channel") == len(CHANNELS)
        (fork_server,) = (pid for pid, _ in family if names.get(pid) == "de-fork-server")
        assert cmdline(fork_server) == cmdline(old_pid)  # forked from de-server at boot (fork_at_boot)
        assert any("multiprocessing.resource_tracker" in cmdline(pid) for pid, _ in family)
        (old_metrics,) = tmp.glob("de-metrics-*")
        locks = server_lock_files(db_url)
        assert len(locks) == (1 if sqlite_file(db_url) else 0)
        assert all(held_by_someone(path) for path in locks)
        if sqlite_file(db_url) is None:
            assert advisory_locks(db_url) == 1  # the server's liveness lock; its channels hold none

        killed_at = time.time()
        started = time.monotonic()
        server.process.kill()
        server.process.wait(10)
        eventually(
            lambda: not survivors(family),
            TEARDOWN_DEADLINE,
            what=lambda: f"the killed server's processes to end; left: {survivors(family)}",
        )
        teardown = time.monotonic() - started
        if sqlite_file(db_url) is None:
            eventually(lambda: advisory_locks(db_url) == 0, 5, what="the server's advisory lock to be released")
        assert all(path.exists() and not held_by_someone(path) for path in locks)  # stale: left, not held
        assert old_metrics.is_dir()
        assert server.pidfile.read_text().strip() == str(old_pid)
        last = {name: rows[-1]["generation_id"] for name, rows in generations(db_url).items()}

        restarted_at = time.time()
        started = time.monotonic()
        server.start()
        for name in CHANNELS:
            server.wait_for_generation(name, last[name] + 1, RESTART_DEADLINE)
        restart = time.monotonic() - started
        print(f"\nteardown after SIGKILL: {teardown:.3f} s; restart to first new generation: {restart:.2f} s")
        assert restart < RESTART_DEADLINE
        assert all(not channel["standby"] for channel in server.status()["channels"])

        def whole() -> dict[str, list[dict[str, Any]]] | None:
            """Every generation with all its products: a generation's publisher status is
            stored once it is published, just after its commit, which the wait above sees."""
            found = generations(db_url)
            return found if all(len({row["products"] for row in rows}) == 1 for rows in found.values()) else None

        history = eventually(whole, 10, what=lambda: f"every generation whole: {generations(db_url)}")
        for name, rows in history.items():
            numbers = [row["generation_id"] for row in rows]
            assert numbers == list(range(1, len(numbers) + 1)), f"{name}: {numbers}"  # consecutive, no duplicate
            after_kill = [
                row["generation_id"] for row in rows if killed_at + KILL_LATENCY < row["generation_time"] < restarted_at
            ]
            assert not after_kill, f"{name}: generations started after the kill: {after_kill}"
            assert last[name] + 1 in numbers

        # what the dead server left is cleared, and the log says so
        assert re.fullmatch(rf"de-metrics-{old_pid}-[a-z0-9_]+", old_metrics.name)  # named after its server
        assert not old_metrics.exists()
        assert server.pidfile.read_text().strip() == str(server.process.pid)
        log = server.log()
        assert str(old_metrics) in log
        assert "replaced the pidfile of a dead server" in log and f"dead_pid={old_pid}" in log
        for path in locks:
            assert str(path) in log and not path.exists()  # the dead server's, removed
        assert all(held_by_someone(path) for path in server_lock_files(db_url))  # the new server's own
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        kill_all(family)


def test_a_second_server_leaves_a_live_servers_leftovers_alone(tmp_path_factory, db_url):
    tmp = tmp_path_factory.mktemp("tmp")
    first = new_server(tmp_path_factory.mktemp("first"), db_url, tmp, name="first", prefer="first")
    second = new_server(tmp_path_factory.mktemp("second"), db_url, tmp, name="second", prefer="first")
    family: set[Identity] = set()
    try:
        first.start()
        for name in CHANNELS:
            first.wait_for_generation(name, 1, 60)
        family = family_of(first.process.pid)
        (live_metrics,) = metrics_dirs(tmp, first.process.pid)
        locks = server_lock_files(db_url)
        contents = {path: path.read_text() for path in locks}
        # what a dead server left beside them: a metrics directory and a lock file nobody holds
        gone = dead_pid()
        dead_metrics = tmp / f"de-metrics-{gone}-planted"
        dead_metrics.mkdir()
        (dead_metrics / "counter_1.db").write_bytes(b"\0" * 16)
        database = sqlite_file(db_url)
        dead_lock = database.parent / f"{database.name}.gone.lock" if database else None
        if dead_lock is not None:
            dead_lock.write_text(f"{gone}\n")

        second.start()
        second.wait_for(
            lambda s: all(c.get("standby") for c in s["channels"]), 60, "the second server's channels to wait"
        )
        generation = {name: first.channel(name)["generation"] for name in CHANNELS}

        assert live_metrics.is_dir() and any(live_metrics.iterdir())
        assert not dead_metrics.exists()
        for path in locks:
            assert path.read_text() == contents[path]
            assert held_by_someone(path)
        if dead_lock is not None:
            assert not dead_lock.exists()
            assert str(dead_lock) in second.log()
        log = second.log()
        assert str(dead_metrics) in log
        assert str(live_metrics) not in log
        assert not any(str(path) in log for path in locks)
        for name in CHANNELS:  # the first server goes on running its channels
            first.wait_for_generation(name, generation[name] + 2, 30)
            assert first.channel(name)["state"] == "STEADY"
    finally:
        with contextlib.suppress(Exception):
            second.stop()
        with contextlib.suppress(Exception):
            first.stop()
        kill_all(family)


def test_a_standby_server_takes_over_soon_after_the_owner_is_killed(tmp_path_factory, db_url):
    """Another server sharing the database (here: on the same host) waits in standby; it
    takes the channels over within its ``standby_retry`` once the owner is killed."""
    retry = 2.0
    tmp = tmp_path_factory.mktemp("tmp")
    owner = new_server(tmp_path_factory.mktemp("owner"), db_url, tmp, name="owner", prefer="owner")
    standby = new_server(
        tmp_path_factory.mktemp("standby"), db_url, tmp, name="standby", prefer="owner", standby_retry=retry
    )
    family: set[Identity] = set()
    try:
        owner.start()
        for name in CHANNELS:
            owner.wait_for_generation(name, 1, 60)
        standby.start()
        standby.wait_for(lambda s: all(c.get("standby") for c in s["channels"]), 60, "the standby to wait")
        family = family_of(owner.process.pid)
        last = {name: owner.channel(name)["generation"] for name in CHANNELS}

        started = time.monotonic()
        owner.process.kill()
        owner.process.wait(10)
        for name in CHANNELS:
            standby.wait_for_generation(name, last[name] + 1, retry + 10)
        takeover = time.monotonic() - started
        print(f"\nstandby (standby_retry {retry:g} s) took over {takeover:.2f} s after the owner was killed")
        assert takeover < retry + 5
        assert not survivors(family)
    finally:
        with contextlib.suppress(Exception):
            standby.stop()
        kill_all(family)
