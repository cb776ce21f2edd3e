"""PostgreSQL stops under a running server and starts again: nobody has to do anything.

The channels keep their state and keep acquiring, say since when the database is away,
and commit again within 5 s of its return; the API, the event listener, the event streams
and the Reaper recover too.
Every committed generation is whole and numbered once; no publisher acted on a generation
that was not committed.
"""

import json
import time

import pytest

from decisionengine.testing.waiting import eventually
from tests.api.test_events import drain, listen
from tests.conftest import new_pg_server
from tests.engine.server import DEServer
from tests.faults.integrity import assert_whole
from tests.security.helpers import request
from tests.taskmanager.channels import counting_channel

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(300)]


@pytest.fixture
def database():
    """A PostgreSQL server of the test's own, since the test stops it."""
    server = new_pg_server()
    server.start()
    yield server
    server.destroy()


def test_a_database_outage_heals_itself(tmp_path, database):
    url = database.url("postgres")
    channels = {}
    for name in ("alpha", "beta"):
        channel = counting_channel(str(tmp_path / f"{name}.jsonl"))
        channel["sources"]["counter"]["schedule"] = 0.3
        # a source of each channel's own (sources are known by name across the server: one
        # name would be one shared source, whose deliveries wait for the database)
        channel["sources"] = {f"counter_{name}": channel["sources"]["counter"]}
        channels[name] = channel
    server = DEServer(tmp_path, url, channels).start()
    try:
        for name in channels:
            server.wait_for_generation(name, 2, 60)
        stream = listen(f"{server.url}/api/v1/events?channel=alpha")
        database.stop("fast")
        down = server.wait_for(
            lambda s: all(c.get("database_unreachable_since") for c in s["channels"]),
            30,
            "every channel to notice the outage",
        )
        for channel in down["channels"]:
            assert channel["state"] == "STEADY", channel  # state kept: no ERROR, no operator needed
            assert "database unreachable since" in channel["last_error"]
        metrics = request(server, "GET", "/metrics")[2]
        assert 'de_channel_database_up{channel="alpha"} 0.0' in metrics
        assert 'de_channel_database_errors_total{channel="alpha"} 1.0' in metrics  # one outage, counted once
        before = {c["channel"]: c["generation"] for c in down["channels"]}
        deliveries = {c["channel"]: c["sources"][f"counter_{c['channel']}"]["deliveries"] for c in down["channels"]}
        eventually(
            lambda: all(
                c["sources"][f"counter_{c['channel']}"]["deliveries"] > deliveries[c["channel"]] + 2
                for c in server.status()["channels"]
            ),
            30,
            what="sources acquiring during the outage",
        )
        # a Reaper pass during the outage fails, and is tried again soon (not in a day)
        rpc = server.rpc()
        rpc.reaper_stop()
        assert rpc.reaper_start(0).startswith("reaper started")
        reaper = eventually(
            lambda: (r := json.loads(rpc.reaper_status("json")))["state"] == "ERROR" and r,
            30,
            what="a Reaper pass failing on the outage",
        )
        assert "cannot reach" in reaper["last_error"] and reaper["next_run"] - time.time() < 5, reaper
        time.sleep(3)  # an outage of some length: the channels keep retrying meanwhile
        drain(stream)

        database.start()
        back = time.monotonic()
        server.wait_for(
            lambda s: all(c["generation"] > before[c["channel"]] for c in s["channels"]),
            30,
            "a new generation of every channel",
        )
        assert time.monotonic() - back < 5.0, f"resumed {time.monotonic() - back:.1f} s after the database"
        status = server.status()
        assert all(c["database_unreachable_since"] is None and not c["last_error"] for c in status["channels"])
        assert request(server, "GET", "/api/v1/channels/alpha/products")[0] == 200  # the API reads again
        # the open event stream goes on, the listener listens again, the Reaper passes again
        event = stream.get(timeout=10)[1]
        while event.name != "generation":  # state changes may come first
            event = stream.get(timeout=10)[1]
        assert event.json()["generation"] > before["alpha"], event
        eventually(lambda: "generation listener listening again" in server.log(), 30, what="the listener back")
        reaper = eventually(
            lambda: (r := json.loads(rpc.reaper_status("json")))["runs"] >= 1 and r, 30, what="a Reaper pass"
        )
        assert reaper["state"] == "IDLE" and reaper["last_error"] is None, reaper
        for name in channels:
            server.wait_for_generation(name, before[name] + 3, 30)
    finally:
        assert server.stop() == 0
    for name in channels:
        assert_whole(url, name, tmp_path / f"{name}.jsonl")


def test_an_outage_longer_than_member_timeout_moves_no_channel(tmp_path_factory, database):
    """Two servers, four channels; PostgreSQL stops for longer than ``member_timeout``.
    Every heartbeat is stale when it returns, yet no server takes another for dead: each
    keeps its channels, which commit again, numbered on."""
    url = database.url("postgres")
    root = tmp_path_factory.mktemp("records")
    channels = {}
    for name in ("c0", "c1", "c2", "c3"):
        channel = counting_channel(str(root / f"{name}.jsonl"))
        channel["sources"]["counter"]["schedule"] = 0.3
        channels[name] = channel
    cluster = {"heartbeat_interval": 0.3, "member_timeout": 2}
    servers = [
        DEServer(tmp_path_factory.mktemp(name), url, channels, cluster={"server_name": name, **cluster})
        for name in ("a", "b")
    ]
    try:
        for server in servers:
            server.start()

        def holders():
            members = servers[0].status()["cluster"]["members"]
            return {member["name"]: sorted(member["holding"]) for member in members}

        def balanced():
            seen = holders()
            return seen if sorted(map(len, seen.values())) == [2, 2] else None

        before = eventually(balanced, 60, what="two channels on each server")
        for server in servers:  # each running its two (booted and committing) before the outage
            for channel in before[server.status()["cluster"]["server_name"]]:
                server.wait_for_generation(channel, 1, 60)
        database.stop("fast")
        time.sleep(cluster["member_timeout"] * 2)  # the outage itself: longer than member_timeout
        database.start()
        for server in servers:
            name = server.status()["cluster"]["server_name"]
            for channel in before[name]:
                last = server.channel(channel)["generation"]
                server.wait_for_generation(channel, last + 2, 60)
        assert holders() == before
        for server in servers:
            assert "joined the cluster" not in server.log().split("cannot reach the database for the cluster")[-1]
    finally:
        for server in servers:
            server.stop()
    for name in channels:
        assert_whole(url, name, root / f"{name}.jsonl", repeats=True)


def test_channels_of_a_shared_source_report_the_outage_and_resume(tmp_path, database):
    """Channels fed by a shared source never write while it cannot store its deliveries:
    they still say the database is unreachable (learnt from their source), and commit again
    within 5 s of its return."""
    url = database.url("postgres")
    channels = {}
    for name in ("alpha", "beta"):
        channel = counting_channel(str(tmp_path / f"{name}.jsonl"))
        channel["sources"]["counter"]["schedule"] = 0.3  # the same configuration: one shared source
        channels[name] = channel
    server = DEServer(tmp_path, url, channels).start()
    try:
        for name in channels:
            server.wait_for_generation(name, 2, 60)
        assert {row["source"]: row["shared"] for row in server.status()["sources"]} == {"counter": True}
        database.stop("fast")
        down = server.wait_for(
            # a channel may meet the outage itself first; its source's report follows
            lambda s: all(
                c.get("database_unreachable_since") and "counter" in (c.get("failing_sources") or {})
                for c in s["channels"]
            ),
            30,
            "every consuming channel to report the outage and its failing source",
        )
        for channel in down["channels"]:
            assert channel["state"] == "STEADY", channel
            assert "database unreachable since" in channel["last_error"], channel
            # the channel may have met the outage itself (reading a delivery); its source tells it anyway
            failing = channel["failing_sources"]["counter"]
            assert failing["last_error"].startswith("cannot store its delivery: cannot reach"), channel
        before = {c["channel"]: c["generation"] for c in down["channels"]}
        database.start()
        back = time.monotonic()
        server.wait_for(
            lambda s: all(c["generation"] > before[c["channel"]] for c in s["channels"]),
            30,
            "a new generation of every channel",
        )
        assert time.monotonic() - back < 5.0, f"resumed {time.monotonic() - back:.1f} s after the database"
        server.wait_for(
            lambda s: all(c["database_unreachable_since"] is None and not c["failing_sources"] for c in s["channels"]),
            10,
            "the outage cleared from every channel",
        )
    finally:
        assert server.stop() == 0
    for name in channels:
        assert_whole(url, name, tmp_path / f"{name}.jsonl")
