"""Sources shared by channels (issue 16), with real server processes.

Channels that name one source with the same configuration share one source process,
which acquires once per tick and feeds every channel; a channel naming it with another
configuration is refused while the others run; stopping a channel detaches it, and a
source with no channel left stops; a shared source that raises or hangs shows in every
consuming channel's status.  Acquisitions are counted in a file the source appends to.
"""

import itertools
import json
import pathlib
import statistics
import time
import urllib.request
import xmlrpc.client

import pytest

from decisionengine.testing.waiting import eventually
from tests.engine.server import TRIGGER_LATENCY_LIMIT, DEServer, trigger_latencies, write_channel
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)

SCHEDULE = 0.5


def acquisitions(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def shared_channel(root: pathlib.Path, record: str, schedule: float = SCHEDULE, **task_manager) -> dict:
    """counting_channel whose source is ``jobs``, an AcquisitionLogSource logging to root/acquired.jsonl."""
    channel = counting_channel(str(root / record), **task_manager)
    channel["sources"] = {
        "jobs": module(
            "AcquisitionLogSource",
            schedule=schedule,
            record=str(root / "acquired.jsonl"),
            fault_file=str(root / "fault"),
        )
    }
    return channel


def more_acquisitions(root: pathlib.Path, count: int) -> list[dict]:
    """Every acquisition logged so far, once ``count`` more than now are logged."""
    before = len(acquisitions(root / "acquired.jsonl"))

    def enough() -> list[dict] | None:
        seen = acquisitions(root / "acquired.jsonl")
        return seen if len(seen) >= before + count else None

    return eventually(enough, 30, what=f"{count} more acquisitions")


def source_row(server: DEServer, key: str = "jobs") -> dict:
    rows = {row["source"]: row for row in server.status()["sources"]}
    return rows[key]


@pytest.fixture
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


def test_two_channels_share_one_source_acquired_once_per_tick(root, db_url):
    channels = {name: shared_channel(root, f"{name}.jsonl") for name in ("alpha", "beta")}
    server = DEServer(root, db_url, channels).start()
    try:
        server.wait_for_generation("alpha", 4)
        server.wait_for_generation("beta", 4)
        row = source_row(server)
        assert row["shared"] is True and row["consumers"] == ["alpha", "beta"]
        assert row["state"] == "STEADY" and row["schedule"] == SCHEDULE and row["last_acquire"] > 0
        pids = {server.channel(name)["pid"] for name in channels}

        # over a few more ticks: every acquisition from one process (not a channel's), one per tick
        seen = more_acquisitions(root, 4)
        assert {entry["pid"] for entry in seen} == {row["pid"]} and row["pid"] not in pids
        assert [entry["n"] for entry in seen] == list(range(1, len(seen) + 1))
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(seen)]
        assert gaps and min(gaps) > 0.5 * SCHEDULE, f"two acquisitions in one tick: {gaps}"
        span = seen[-1]["time"] - seen[0]["time"]
        assert len(seen) <= span / SCHEDULE + 1.5

        # both channels used the shared deliveries: their products hold the source's numbers
        for name in channels:
            status = server.channel(name)
            assert status["sources"]["jobs"]["shared"] is True
            assert status["sources"]["jobs"]["deliveries"] >= 4
            assert statistics.median(trigger_latencies(lambda name=name: server.channel(name))) < TRIGGER_LATENCY_LIMIT
        numbers = json.loads(server.rpc().get_product("numbers", None, None, False, "json", "beta"))
        assert numbers["value"][0]["n"] in {entry["n"] for entry in acquisitions(root / "acquired.jsonl")}

        # queue_status lists the source and its consumers
        text = server.rpc().queue_status()
        assert "jobs" in text and "alpha, beta" in text
        # the reference's metric names
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            exposition = response.read().decode()
        assert 'de_source_status{source_name="jobs"} 3.0' in exposition
        assert 'de_source_last_acquire_timestamp_seconds{source_name="jobs"}' in exposition
        assert 'de_source_acquire_seconds_count{source_name="jobs"}' in exposition
    finally:
        server.stop()


def test_mismatched_configuration_refused_while_the_others_run(root, db_url):
    channels = {name: shared_channel(root, f"{name}.jsonl") for name in ("alpha", "beta")}
    other = shared_channel(root, "gamma.jsonl")
    other["sources"]["jobs"]["parameters"]["rows"] = 5
    channels["gamma"] = other
    server = DEServer(root, db_url, channels).start()
    try:
        server.wait_for_generation("alpha", 2)
        server.wait_for_generation("beta", 2)
        gamma = server.channel("gamma")
        assert gamma["state"] == "ERROR" and gamma.get("config_error") is True
        error = gamma["last_error"]
        assert "channel 'gamma' not loaded" in error and "source 'jobs'" in error
        assert "parameters.rows: 5 here, (not set) in 'alpha'" in error
        assert source_row(server)["consumers"] == ["alpha", "beta"]
        # starting it again is refused the same way, naming the keys that differ
        with pytest.raises(xmlrpc.client.Fault, match=r"parameters\.rows"):
            server.rpc().start_channel("gamma")
    finally:
        server.stop()


def test_stopping_a_channel_detaches_it_and_the_last_one_stops_the_source(root, db_url):
    channels = {name: shared_channel(root, f"{name}.jsonl") for name in ("alpha", "beta")}
    server = DEServer(root, db_url, channels).start()
    try:
        server.wait_for_generation("beta", 2)
        source_pid = source_row(server)["pid"]
        server.rpc().stop_channel("beta")
        server.wait_for(lambda s: source_row_of(s)["consumers"] == ["alpha"], 30, "beta detached")
        alpha = server.channel("alpha")["generation"]
        server.wait_for_generation("alpha", alpha + 3)
        assert source_row(server)["pid"] == source_pid  # the same process goes on

        server.rpc().stop_channel("alpha")
        server.wait_for(lambda s: source_row_of(s)["pid"] is None, 30, "the source stopped")
        count = len(acquisitions(root / "acquired.jsonl"))
        time.sleep(3 * SCHEDULE)  # three ticks in which nothing may happen
        assert len(acquisitions(root / "acquired.jsonl")) == count

        # a channel started later attaches to (and starts) the source again
        beta = server.channel("beta")["generation"]
        server.rpc().start_channel("beta")
        server.wait_for_generation("beta", beta + 2)
        row = source_row(server)
        assert row["consumers"] == ["beta"] and row["pid"] not in (None, source_pid)
    finally:
        server.stop()


def source_row_of(status: dict, key: str = "jobs") -> dict:
    return {row["source"]: row for row in status["sources"]}[key]


def failing(status: dict, channel: str) -> dict:
    found = [c for c in status["channels"] if c["channel"] == channel]
    return (found[0].get("failing_sources") or {}) if found else {}


def test_a_shared_source_that_raises_shows_in_every_consumer(root, db_url):
    channels = {name: shared_channel(root, f"{name}.jsonl") for name in ("alpha", "beta")}
    server = DEServer(root, db_url, channels).start()
    try:
        server.wait_for_generation("alpha", 2)
        (root / "fault").write_text("raise")
        status = server.wait_for(
            lambda s: all("jobs" in failing(s, name) for name in channels), 30, "both channels see the failure"
        )
        for name in channels:
            assert "injected source failure" in failing(status, name)["jobs"]["last_error"]
        assert source_row_of(status)["state"] == "ERROR" or source_row_of(status)["missed_update_count"] > 0
        (root / "fault").write_text("")
        server.wait_for(lambda s: not any(failing(s, name) for name in channels), 30, "recovered")
        generation = server.channel("beta")["generation"]
        server.wait_for_generation("beta", generation + 2)
    finally:
        server.stop()


def test_a_shared_source_that_hangs_is_killed_and_restarted(root, db_url):
    channels = {name: shared_channel(root, f"{name}.jsonl", module_timeout=2) for name in ("alpha", "beta")}
    server = DEServer(root, db_url, channels, channel_restart={"enabled": True, "initial_delay": 0.5}).start()
    try:
        server.wait_for_generation("alpha", 2)
        first_pid = source_row(server)["pid"]
        (root / "fault").write_text("hang")
        status = server.wait_for(
            lambda s: all("jobs" in failing(s, name) for name in channels), 60, "both channels see the hang"
        )
        for name in channels:
            assert "ran longer than module_timeout" in failing(status, name)["jobs"]["last_error"]
            assert next(c for c in status["channels"] if c["channel"] == name)["process_alive"] is True
        (root / "fault").write_text("")
        server.wait_for(lambda s: not any(failing(s, name) for name in channels), 60, "recovered after restart")
        row = source_row(server)
        assert row["pid"] not in (None, first_pid) and row["restarts"] >= 1
        generation = server.channel("alpha")["generation"]
        server.wait_for_generation("alpha", generation + 2)
    finally:
        server.stop()


COMBINED = """
local de_std = import 'de_std.libsonnet';
local base = import 'base.libsonnet';
local extra = import 'extra.libsonnet';
local both = import 'both.libsonnet';
%s
"""


def test_combined_channels_built_with_de_std_share_their_common_source(root, db_url):
    config_dir = root / "config.d"
    config_dir.mkdir()
    jobs = module("AcquisitionLogSource", schedule=SCHEDULE, record=str(root / "acquired.jsonl"))
    extra_source = module("ConstantSource", schedule=SCHEDULE)
    chain = counting_channel(str(root / "x.jsonl"))
    (config_dir / "base.libsonnet").write_text(json.dumps({"sources": {"jobs": jobs}}))
    (config_dir / "extra.libsonnet").write_text(
        json.dumps({"sources": {"constant": extra_source}, "transforms": chain["transforms"]})
    )
    # a second level: a fragment that is itself combined from the two others
    (config_dir / "both.libsonnet").write_text(
        "local de_std = import 'de_std.libsonnet';\n"
        "{ sources: de_std.sources_from([import 'base.libsonnet', import 'extra.libsonnet']),"
        "  transforms: de_std.transforms_from([import 'extra.libsonnet']) }"
    )
    publishers = lambda name: json.dumps(  # noqa: E731
        {"recorder": module("RecordingPublisher", record=str(root / f"{name}.jsonl"))}
    )
    # level one: sources and transforms merged from fragments
    write_channel(
        config_dir,
        "one",
        COMBINED
        % (
            "{ sources: de_std.sources_from([base, extra]), transforms: de_std.transforms_from([extra]),"
            f" publishers: {publishers('one')} }}"
        ),
    )
    # levels two and three: from the combined fragment, and combined again with base
    write_channel(
        config_dir,
        "two",
        COMBINED % f"{{ sources: both.sources, transforms: both.transforms, publishers: {publishers('two')} }}",
    )
    write_channel(
        config_dir,
        "three",
        COMBINED
        % (
            "{ sources: de_std.sources_from([both, base]), transforms: de_std.transforms_from([both, extra]),"
            f" publishers: {publishers('three')} }}"
        ),
    )
    server = DEServer(root, db_url, {}).start()
    try:
        for name in ("one", "two", "three"):
            server.wait_for_generation(name, 3)
        rows = {row["source"]: row for row in server.status()["sources"]}
        assert rows["jobs"]["shared"] is True and rows["jobs"]["consumers"] == ["one", "three", "two"]
        assert rows["constant"]["shared"] is True
        seen = more_acquisitions(root, 3)
        assert len({entry["pid"] for entry in seen}) == 1
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(seen)]
        assert min(gaps) > 0.5 * SCHEDULE, f"two acquisitions in one tick: {gaps}"
    finally:
        server.stop()


def test_source_named_by_one_channel_stays_in_its_process(root, sqlite_url):
    alone = shared_channel(root, "alone.jsonl")
    server = DEServer(root, sqlite_url, {"alone": alone}).start()
    try:
        server.wait_for_generation("alone", 2)
        row = source_row(server)
        assert row["shared"] is False and row["consumers"] == ["alone"]
        assert {entry["pid"] for entry in acquisitions(root / "acquired.jsonl")} == {server.channel("alone")["pid"]}
        eventually(lambda: 'de_source_status{source_name="jobs"} 3.0' in metrics(server), 30, what="source metric")
    finally:
        server.stop()


def metrics(server: DEServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
        return response.read().decode()
