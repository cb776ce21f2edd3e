"""A server that hangs (SIGSTOP), not one that dies: its liveness lock stays held by PostgreSQL,
only its heartbeat goes stale.  The other server takes its channels once the heartbeat is
older than ``member_timeout``; when the hung server resumes (SIGCONT) it must not write a
generation of a channel it lost (the fencing epoch refuses it), it rejoins, and the cluster
balances again.  Two kinds of hang: the server process alone (its channel processes go on,
cut off from it), and the server with every process it started (a frozen host or VM)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
import sqlalchemy as sa

from decisionengine.testing.postgres import direct_engine
from decisionengine.testing.processes import descendants_of
from tests.engine.test_cluster import REBALANCE_LIMIT, channels, holding, server, wait_for_shares
from tests.engine.test_pgbouncer import generations, wait_for_generations
from tests.faults.integrity import assert_whole

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgresql]

#: test_cluster's settings: heartbeats every 0.5 s, a member is gone after 5 s without one
MEMBER_TIMEOUT = 5.0
#: beyond member_timeout: the next heartbeat, the claim, a channel's boot, on a loaded CI machine
TAKEOVER_MARGIN = 10.0


def database_time(url: str, name: str | None = None) -> float:
    """The database's clock now (epoch seconds), or server ``name``'s last heartbeat by it:
    the clock the servers judge each other's heartbeats with."""
    query = "SELECT extract(epoch FROM clock_timestamp())"
    if name is not None:
        query = "SELECT heartbeat_at FROM server_member WHERE name = :name"
    engine = direct_engine(url)
    try:
        with engine.connect() as conn:
            return float(conn.execute(sa.text(query), {"name": name}).scalar_one())
    finally:
        engine.dispose()


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@pytest.mark.parametrize("hang", ["server process", "server and its processes"])
def test_a_hung_server_loses_its_channels_and_writes_nothing_for_them_after_it_resumes(tmp_path_factory, pg_url, hang):
    root = tmp_path_factory.mktemp("records")
    names = [f"h{i}" for i in range(4)]
    configs = channels(root, names)
    a, b = (server(tmp_path_factory, pg_url, name, configs) for name in ("a", "b"))
    stopped: list[int] = []
    try:
        a.start()
        b.start()
        wait_for_shares(a, {"a": 2, "b": 2}, "two servers started")
        wait_for_generations([a, b], dict.fromkeys(names, 2))
        lost = sorted(holding(a)["b"])

        # the server first, then what it started (found before anything is stopped)
        family = descendants_of(b.process.pid) if hang == "server and its processes" else []
        stopped = [b.process.pid, *family]
        signal_all(stopped, signal.SIGSTOP)
        last_heartbeat = database_time(pg_url, "b")  # b's clock has stopped: this is its last
        took = wait_for_shares(a, {"a": 4}, f"b hung ({hang})", limit=MEMBER_TIMEOUT + TAKEOVER_MARGIN)
        print(f"\n{hang} stopped: a holds every channel {took:.1f} s later")
        # b's last heartbeat may be older than the stop (a loaded machine): what counts is its age
        stale = database_time(pg_url) - last_heartbeat
        assert stale >= MEMBER_TIMEOUT, f"taken over {stale:.1f} s after b's last heartbeat"
        before = generations([a])
        wait_for_generations([a], {name: before[name] + 2 for name in lost})

        signal_all(stopped, signal.SIGCONT)
        stopped = []
        took = wait_for_shares(a, {"a": 2, "b": 2}, f"b resumed ({hang})", limit=REBALANCE_LIMIT)
        print(f"b resumed: balanced 2/2 again {took:.1f} s later")
        before = generations([a, b])
        wait_for_generations([a, b], {name: number + 2 for name, number in before.items()})
        assert b.process.poll() is None, "the resumed server exited"
        refused = [line for line in b.log("decision_engine").splitlines() if "lost ownership" in line]
        refused += [line for name in lost for line in b.log(name).splitlines() if "lost ownership" in line]
        print(f"the resumed server's stale commits refused: {len(refused)}")
    finally:
        signal_all(stopped, signal.SIGCONT)
        a.stop()
        b.stop()
    for name in names:
        assert_whole(pg_url, name, root / f"{name}.jsonl", repeats=True)
