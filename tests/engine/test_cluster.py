"""Servers sharing one PostgreSQL balance its channels: joins, leaves, drain and placement,
with real de-server processes, and every generation committed once whatever moved."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request

import pytest

from decisionengine.testing.postgres import direct_engine
from decisionengine.testing.waiting import eventually
from tests.cli.run import command
from tests.engine.server import DEServer
from tests.faults.integrity import assert_whole
from tests.taskmanager.channels import counting_channel

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgresql]

#: the issue's promise: balanced within 30 s of a server joining or leaving
REBALANCE_LIMIT = 30.0
CLUSTER = {"heartbeat_interval": 0.5, "member_timeout": 5}


def channels(root, names, **task_manager):
    made = {}
    for name in names:
        channel = counting_channel(str(root / f"{name}.jsonl"), standby_retry=0.3, **task_manager.get(name, {}))
        channel["sources"]["counter"]["schedule"] = 0.3
        # a source of each channel's own: these tests move channels (a source shared by channels
        # on several servers moves on its own: tests/engine/test_shared_sources_cluster.py)
        channel["sources"] = {f"counter_{name}": channel["sources"]["counter"]}
        made[name] = channel
    return made


def server(tmp_path_factory, url, name, configs):
    return DEServer(tmp_path_factory.mktemp(name), url, configs, cluster={"server_name": name, **CLUSTER})


def holding(one: DEServer) -> dict[str, list[str]]:
    """{server name: channels its processes hold}, as ``one`` sees the cluster."""
    cluster = one.status()["cluster"]
    return {member["name"]: member["holding"] for member in cluster["members"]}


def wait_for_shares(one: DEServer, shares: dict[str, int], what: str, limit: float = REBALANCE_LIMIT) -> float:
    """Wait until each named server holds that many channels (and no other server any); seconds taken."""
    started = time.monotonic()
    seen: dict[str, list[str]] = {}

    def balanced() -> bool:
        seen.clear()
        seen.update(holding(one))
        return {name: len(held) for name, held in seen.items() if held} == {k: v for k, v in shares.items() if v}

    eventually(balanced, limit + 30, what=lambda: f"{what}: wanted {shares}, saw {seen}")
    took = time.monotonic() - started
    assert took < limit, f"{what}: balanced after {took:.1f} s (limit {limit:g} s): {seen}"
    return took


def test_channels_balance_across_servers_as_they_join_and_leave(tmp_path_factory, pg_url):
    root = tmp_path_factory.mktemp("records")
    names = [f"ch{i}" for i in range(6)]
    configs = channels(root, names)
    servers = {name: server(tmp_path_factory, pg_url, name, configs) for name in ("a", "b", "c")}
    try:
        for one in servers.values():
            one.start()
        took = wait_for_shares(servers["a"], {"a": 2, "b": 2, "c": 2}, "three servers started")
        print(f"\nbalanced 2/2/2 {took:.1f} s after the third server answered")
        for name in names:
            servers["a"].wait_for(
                lambda s, name=name: (
                    any(c["channel"] == name and (c.get("generation") or 0) >= 1 for c in s["channels"])
                    or any(
                        c["channel"] == name and (c.get("generation") or 0) >= 1
                        for other in servers.values()
                        for c in other.status()["channels"]
                    )
                ),
                60,
                f"{name} committing",
            )

        assert servers["c"].stop() == 0
        took = wait_for_shares(servers["a"], {"a": 3, "b": 3}, "server c left")
        print(f"rebalanced 3/3 {took:.1f} s after server c stopped")

        servers["c"].start()
        took = wait_for_shares(servers["a"], {"a": 2, "b": 2, "c": 2}, "server c came back")
        print(f"rebalanced 2/2/2 {took:.1f} s after server c came back")

        # once settled, each channel runs (a process) on the server that holds it alone, and
        # stands by (no process) on the others
        def settled() -> bool:
            held = holding(servers["a"])
            for name, one in servers.items():
                for status in one.status()["channels"]:
                    mine = status["channel"] in held.get(name, [])
                    if mine != bool(status["process_alive"]) or mine == bool(status.get("standby")):
                        return False
            return True

        eventually(settled, REBALANCE_LIMIT, what="every channel running on its holder only")
    finally:
        for one in servers.values():
            one.stop()
    for name in names:
        assert_whole(pg_url, name, root / f"{name}.jsonl", repeats=True)


def test_drain_hands_every_channel_over_and_undrain_takes_a_share_back(tmp_path_factory, pg_url):
    root = tmp_path_factory.mktemp("records")
    names = ["d0", "d1", "d2", "d3"]
    configs = channels(root, names)
    a, b = (server(tmp_path_factory, pg_url, name, configs) for name in ("a", "b"))
    try:
        a.start()
        b.start()
        wait_for_shares(a, {"a": 2, "b": 2}, "two servers started")
        before = {c["channel"]: c.get("generation") or 0 for c in b.status()["channels"] + a.status()["channels"]}

        drained = command("de-client", "--url", a.url, "--drain", "--timeout", "60")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert "drained: no channel runs on this server" in drained.stdout
        assert not [c for c in a.status()["channels"] if c["process_alive"]]
        # a reports when it runs nothing; b claims what a released at its next beat
        wait_for_shares(b, {"b": len(names)}, "b took the drained channels")
        assert a.status()["cluster"]["draining"] is True
        for name in names:  # every channel goes on, numbered on from where it was
            b.wait_for_generation(name, before[name] + 2, 60)

        undrained = command("de-client", "--url", a.url, "--undrain", "--json")
        assert undrained.returncode == 0, undrained.stderr
        wait_for_shares(a, {"a": 2, "b": 2}, "after the drain ended")
    finally:
        a.stop()
        b.stop()
    for name in names:
        assert_whole(pg_url, name, root / f"{name}.jsonl", repeats=True)


def test_placement_is_honoured_while_the_preferred_server_lives(tmp_path_factory, pg_url):
    root = tmp_path_factory.mktemp("records")
    configs = channels(root, ["pinned", "free"], pinned={"placement": {"prefer": ["b"]}})
    a, b = (server(tmp_path_factory, pg_url, name, configs) for name in ("a", "b"))
    try:
        a.start()
        eventually(lambda: holding(a).get("a") == ["free", "pinned"], 30, what="a alone runs both")
        b.start()
        eventually(lambda: holding(a).get("b") == ["pinned"], REBALANCE_LIMIT, what="pinned moves to b")
        assert holding(a).get("a") == ["free"]
        assert b.stop() == 0
        eventually(lambda: holding(a).get("a") == ["free", "pinned"], REBALANCE_LIMIT, what="pinned back on a")
    finally:
        a.stop()
        b.stop()
    assert_whole(pg_url, "pinned", root / "pinned.jsonl", repeats=True)


def test_a_channel_process_killed_while_handing_over_does_not_strand_its_channel(tmp_path_factory, pg_url):
    """The process handing a channel over is killed (-9) before it lets the channel go: the
    database still shows the channel held by a live server, which no other server claims.
    Its server lets go of it at its next heartbeat, and the new server runs it on."""
    root = tmp_path_factory.mktemp("records")
    configs = channels(root, ["pinned"], pinned={"placement": {"prefer": ["b"]}})
    a, b = (server(tmp_path_factory, pg_url, name, configs) for name in ("a", "b"))
    try:
        a.start()
        a.wait_for_generation("pinned", 1, 60)
        pid = a.channel("pinned")["pid"]
        os.kill(pid, signal.SIGSTOP)  # frozen: it cannot let the channel go when told to
        b.start()
        a.wait_for(lambda s: s["channels"][0]["parked"], REBALANCE_LIMIT, "a handing pinned over to b")
        assert holding(a).get("a") == ["pinned"]  # still held by a: its process never released it
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        eventually(lambda: holding(a).get("b") == ["pinned"], REBALANCE_LIMIT, what="pinned taken by b")
        print(f"\nb holds pinned {time.monotonic() - started:.1f} s after a's process was killed")
        assert "let go of a handed-over channel" in a.log()  # as the process ended, not a beat later
        committed = a.channel("pinned").get("generation") or 0
        b.wait_for_generation("pinned", committed + 2, 60)
    finally:
        a.stop()
        b.stop()
    assert_whole(pg_url, "pinned", root / "pinned.jsonl", repeats=True)


def test_a_process_without_a_connection_leaves_the_release_to_its_server(tmp_path_factory, pg_url):
    """With one connection slot, an idle channel holds no connection: told to hand its
    channel over, its process does not wait in line for a slot to let the channel go; its
    server lets go of it as the process ends, and the new server numbers on."""
    root = tmp_path_factory.mktemp("records")
    configs = channels(root, ["idle"], idle={"placement": {"prefer": ["b"]}})
    configs["idle"]["sources"]["counter_idle"]["schedule"] = 3600  # one generation, then idle
    dataspace = {"datasource": {"config": {"url": pg_url}}, "reaper_start_delay_seconds": 3600}
    a, b = (
        DEServer(
            tmp_path_factory.mktemp(name),
            pg_url,
            configs,
            cluster={"server_name": name, **CLUSTER},
            dataspace={**dataspace, "channel_connections": 1},
        )
        for name in ("a", "b")
    )
    try:
        a.start()
        a.wait_for_generation("idle", 1, 60)
        b.start()
        took = wait_for_shares(a, {"b": 1}, "idle handed over to b")
        print(f"\nb holds idle {took:.1f} s after it answered")
        assert "no connection at hand: the server lets the channel go" in a.log("idle")
        assert "let go of a handed-over channel" in a.log()
        committed = a.channel("idle").get("generation") or 0
        b.wait_for_generation("idle", committed + 1, 60)  # its sources acquire as it takes over
    finally:
        a.stop()
        b.stop()
    assert_whole(pg_url, "idle", root / "idle.jsonl", repeats=True)


def test_a_lone_server_cannot_drain_and_says_why(tmp_path_factory, sqlite_url):
    root = tmp_path_factory.mktemp("records")
    alone = DEServer(tmp_path_factory.mktemp("alone"), sqlite_url, channels(root, ["solo"]))
    try:
        alone.start()
        alone.wait_for_generation("solo", 1, 60)
        answer = command("de-client", "--url", alone.url, "--drain", "--timeout", "20")
        assert answer.returncode == 1
        assert "cannot drain: no other live server offers solo" in answer.stdout
        assert alone.channel("solo")["process_alive"]  # nothing stopped
    finally:
        alone.stop()


def test_channel_connections_stay_within_the_servers_slots(tmp_path_factory, pg_url):
    """Six busy channels, two connection slots: never more than two channel connections at
    once (sampled from pg_stat_activity), and every channel keeps committing."""
    import sqlalchemy as sa

    root = tmp_path_factory.mktemp("records")
    names = [f"busy{i}" for i in range(6)]
    configs = channels(root, names)
    for channel in configs.values():
        for source in channel["sources"].values():
            source["schedule"] = 0.05
    one = DEServer(
        tmp_path_factory.mktemp("gated"),
        pg_url,
        configs,
        dataspace={
            "datasource": {"config": {"url": pg_url}},
            "reaper_start_delay_seconds": 3600,
            "channel_connections": 2,
        },
    )
    engine = direct_engine(pg_url)
    most = most_backends = samples = 0
    try:
        one.start()
        for name in names:
            one.wait_for_generation(name, 1, 60)
        start = {c["channel"]: c["generation"] for c in one.status()["channels"]}
        deadline = time.monotonic() + 3
        # busy: a connection in a statement or a transaction; all: also one whose client has closed
        # it while its backend is still exiting (a few milliseconds), which PostgreSQL still counts
        query = sa.text(
            "SELECT count(*) FILTER (WHERE state <> 'idle'), count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'de-channel:%'"
        )
        # autocommit: pg_stat_activity is a snapshot taken once per transaction
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while time.monotonic() < deadline:
                busy, every = conn.execute(query).one()
                most, most_backends = max(most, busy), max(most_backends, every)
                samples += 1
        for name in names:  # every channel keeps committing through the two slots
            one.wait_for_generation(name, start[name] + 2, 60)
        with urllib.request.urlopen(one.url + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
    finally:
        one.stop()
        engine.dispose()
    assert 1 <= most <= 2, f"{most} channel connections busy at once with 2 slots"
    # each slot: its connection, and at most the one closed just before it, still exiting
    assert most_backends <= 2 * 2, f"{most_backends} channel backends at once with 2 slots"
    assert samples > 50  # sampled often enough to see them
    # the channels' waits and holds, summed over their processes, for sizing the slots
    counts = {
        name: float(re.search(rf"^de_connection_slot_{name}_seconds_count (\S+)$", metrics, re.M).group(1))
        for name in ("wait", "hold")
    }
    assert counts["wait"] >= 6 * 3 and counts["hold"] >= 6 * 2, counts
