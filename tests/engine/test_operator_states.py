"""States an operator watches (issue 15, item 3), on a real server and through real clients:
a channel whose source keeps failing says so, a channel in ERROR names the module that failed
and why, and the Reaper's states have the reference's meanings."""

from __future__ import annotations

import json
import time

import pytest

from tests.api.client import http
from tests.cli.run import command
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)


def client(server: DEServer, *args: object):
    return command("de-client", "--host", "127.0.0.1", "--port", server.port, *args)


@pytest.fixture
def server(tmp_path_factory, sqlite_url):
    root = tmp_path_factory.mktemp("de")
    good = counting_channel(str(root / "good.jsonl"))
    good["sources"]["counter"]["schedule"] = 0.5
    flaky = {
        "sources": {
            # fails at every call: the channel never gets a generation
            "flaky": module("FlakySource", schedule=0.3, counter_file=str(root / "flaky")),
            "steady": module("ConstantSource", schedule=0.3),
        },
        "publishers": {},
    }
    refusing = counting_channel(str(root / "refusing.jsonl"), max_consecutive_failures=2)
    refusing["sources"]["counter"]["schedule"] = 0.3
    # another configuration than good's "counter": another name (sources are known by name)
    refusing["sources"] = {"refusing_counter": refusing["sources"]["counter"]}
    refusing["publishers"]["recorder"]["parameters"]["fail"] = True
    server = DEServer(root, sqlite_url, {"good": good, "flaky": flaky, "refusing": refusing}).start()
    try:
        server.wait_for_generation("good", 1)
        yield server
    finally:
        server.stop()


def test_a_channel_whose_source_keeps_failing_says_so(server):
    status = server.wait_for(
        lambda s: any(c["channel"] == "flaky" and c.get("failing_sources") for c in s["channels"]),
        what="flaky's failing source in its status",
    )
    flaky = next(c for c in status["channels"] if c["channel"] == "flaky")
    failing = flaky["failing_sources"]["flaky"]
    assert "ConnectionError: upstream unavailable" in failing["last_error"]
    assert failing["since"] <= time.time() and failing["missed_update_count"] >= 1
    assert "steady" not in flaky["failing_sources"]
    assert flaky["state"] in ("BOOT", "ACTIVE")  # the state keeps its meaning; the failure is beside it

    # it keeps retrying on schedule, and "since" stays the start of the failures
    first = failing["missed_update_count"]
    later = server.wait_for(
        lambda s: (
            next(c for c in s["channels"] if c["channel"] == "flaky")["failing_sources"]["flaky"]["missed_update_count"]
            >= first + 2
        ),
        what="more missed updates",
    )
    again = next(c for c in later["channels"] if c["channel"] == "flaky")["failing_sources"]["flaky"]
    assert again["since"] == failing["since"]

    # the status table: on the state line, and a line with the source, since when, its error
    text = client(server, "--status").stdout
    block = text[text.index("flaky") :]
    assert "(failing sources: flaky)" in block
    assert "failing source" in block and "flaky since" in block and "upstream unavailable" in block

    # --health counts it
    health = client(server, "--health")
    assert health.returncode == 1, health.stdout
    assert "sources failing: flaky (flaky)" in health.stdout
    summary = json.loads(client(server, "--health", "--json").stdout)
    assert summary["failing_sources"] == {"flaky": ["flaky"]} and summary["healthy"] is False

    # the JSON API (what the dashboard draws)
    code, _, body = http("GET", f"{server.url}/api/v1/channels/flaky")
    assert code == 200 and body["failing"] is True
    assert "upstream unavailable" in body["failing_sources"]["flaky"]["last_error"]
    code, _, body = http("GET", f"{server.url}/api/v1/channels/good")
    assert body["failing_sources"] == {}


def test_a_channel_in_error_names_the_module_and_its_error(server):
    status = server.wait_for(
        lambda s: any(c["channel"] == "refusing" and c["state"] == "ERROR" for c in s["channels"]),
        what="refusing in ERROR",
    )
    refusing = next(c for c in status["channels"] if c["channel"] == "refusing")
    assert "last: None" not in refusing["last_error"]
    assert "2 consecutive failed generations" in refusing["last_error"]
    assert "recorder: RuntimeError: the outside world said no" in refusing["last_error"]
    assert refusing["failed_module"]["module"] == "recorder"
    assert refusing["failed_module"]["error"] == "RuntimeError: the outside world said no"

    text = client(server, "--status").stdout
    block = text[text.index("refusing") :]
    assert "failed module" in block and "recorder: RuntimeError: the outside world said no" in block

    code, _, body = http("GET", f"{server.url}/api/v1/channels/refusing")
    assert code == 200 and body["state"] == "ERROR"
    assert body["failed_module"]["module"] == "recorder"
    assert "the outside world said no" in body["last_error"]


def test_the_reaper_uses_the_reference_state_names(server):
    rpc = server.rpc()
    # started by the server, waiting for its first pass: IDLE, as in the reference
    assert json.loads(rpc.reaper_status("json"))["state"] == "IDLE"
    assert "IDLE" in client(server, "--reaper-status").stdout
    code, _, body = http("GET", f"{server.url}/api/v1/reaper")
    assert code == 200 and body["state"] == "IDLE"
    rpc.reaper_stop()
    assert json.loads(rpc.reaper_status("json"))["state"] == "SHUTDOWN"
    rpc.reaper_start(3600)
    assert json.loads(rpc.reaper_status("json"))["state"] == "IDLE"


def test_a_reaper_never_started_is_offline(tmp_path, sqlite_url):
    server = DEServer(tmp_path, sqlite_url, {})
    server.args.append("--no-reaper")
    server.start()
    try:
        assert json.loads(server.rpc().reaper_status("json"))["state"] == "OFFLINE"
    finally:
        assert server.stop() == 0
