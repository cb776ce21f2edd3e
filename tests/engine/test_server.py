"""de-server end to end: a real server process, real channel processes, XML-RPC."""

import csv
import io
import json
import time
import urllib.request
import xmlrpc.client

import pytest

from decisionengine.framework.dataspace.datablock import DataBlock
from decisionengine.framework.dataspace.dataspace import DataSpace
from tests.conftest import global_config
from tests.engine.server import DEServer, write_channel
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server_root(tmp_path_factory):
    return tmp_path_factory.mktemp("de")


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_server_runs_a_channel_and_answers_every_method(server_root, db_url):
    record = server_root / "published.jsonl"
    channel = counting_channel(str(record))
    channel["sources"]["counter"]["schedule"] = 0.5
    server = DEServer(server_root, db_url, {"counting": channel}).start()
    rpc = server.rpc()
    try:
        assert "no channel is BOOT" in rpc.block_while("BOOT", 60)
        server.wait_for_generation("counting", 3)

        status = server.channel("counting")
        assert status["state"] == "STEADY"
        assert status["sources"]["counter"]["deliveries"] >= 3
        assert status["sources"]["counter"]["missed_update_count"] == 0
        assert status["last_generation"]["outcome"] == "committed"
        text = rpc.status()
        assert "counting" in text and "STEADY" in text and "counter" in text

        # products
        assert rpc.print_product("total") == "Product total:  Found in channel counting\n6"
        rows = list(csv.DictReader(io.StringIO(rpc.get_product("numbers", ["n", "x"], "x > 0", False, "csv"))))
        assert [r["x"] for r in rows] == ["1", "2"]
        as_json = json.loads(rpc.get_product("doubled", None, None, False, "json"))
        assert as_json["channel"] == "counting" and [r["x"] for r in as_json["value"]] == [0, 2, 4]
        everything = rpc.print_products()
        assert "product numbers" in everything and "product de_logicengine_facts" in everything
        assert json.loads(rpc.print_products("json"))["counting"]["products"]["numbers"]["shape"] == [3, 2]
        with pytest.raises(xmlrpc.client.Fault, match="no product 'nothing'"):
            rpc.print_product("nothing")
        with pytest.raises(xmlrpc.client.Fault, match="unknown columns"):
            rpc.print_product("numbers", None, "nope > 1")
        with pytest.raises(xmlrpc.client.Fault, match=r"method system\(\) is not allowed in a query"):
            rpc.print_product("numbers", None, "__import__('os').system('true')")

        dependencies = json.loads(rpc.product_dependencies("json"))["counting"]
        assert dependencies["numbers"] == {"producer": "counter", "consumers": ["doubler", "le"]}
        assert dependencies["total"]["producer"] == "summer"
        assert "numbers" in rpc.product_dependencies()

        # configuration
        assert json.loads(rpc.show_config("counting"))["counting"]["sources"]["counter"]["name"] == "CountingSource"
        assert "counting" in json.loads(rpc.show_config())
        de_config = json.loads(rpc.show_de_config())
        assert de_config["server_address"] == ["127.0.0.1", server.port]
        assert de_config["dataspace"]["datasource"]["config"]["url"].startswith(db_url.split(":")[0])

        # log levels
        assert rpc.get_log_level() == "DEBUG"
        assert "INFO" in rpc.set_log_level("info")
        assert rpc.get_log_level() == "INFO"
        assert rpc.get_channel_log_level("counting") == "INFO"
        rpc.set_channel_log_level("counting", "DEBUG")
        assert rpc.get_channel_log_level("counting") == "DEBUG"
        with pytest.raises(xmlrpc.client.Fault, match="unknown log level 'LOUD'"):
            rpc.set_channel_log_level("counting", "LOUD")
        with pytest.raises(xmlrpc.client.Fault, match="no channel 'ghost'"):
            rpc.get_channel_log_level("ghost")

        # metrics, over XML-RPC and plain HTTP
        with urllib.request.urlopen(f"{server.url}/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            exposition = response.read().decode()
        assert 'de_generations_total{channel="counting",outcome="committed"}' in exposition
        assert "de_server_up 1.0" in exposition
        assert 'de_source_acquire_seconds_count{channel="counting",source="counter"}' in exposition
        assert "de_reaper_runs_total" in exposition
        assert 'de_channel_state{channel="counting",state="STEADY"} 1.0' in exposition
        assert "de_generation_duration_seconds_bucket" in rpc.metrics()

        # reaper
        assert json.loads(rpc.reaper_status("json"))["state"] == "IDLE"
        assert rpc.reaper_stop() == "reaper stopped"
        assert json.loads(rpc.reaper_status("json"))["state"] == "SHUTDOWN"
        rpc.reaper_start(3600)
        assert "state" in rpc.reaper_status()

        # stop and start the channel: numbering continues
        before = server.channel("counting")["generation"]
        assert "stopped" in rpc.stop_channel("counting")
        assert server.channel("counting")["state"] == "SHUTDOWN"
        assert records(record)[-1].get("shutdown") is True
        assert "not running" in rpc.stop_channel("counting")
        assert "started" in rpc.start_channel("counting")
        with pytest.raises(xmlrpc.client.Fault, match="already running"):
            rpc.start_channel("counting")
        server.wait_for_generation("counting", before + 2)

        # protocol errors are faults, not tracebacks
        with pytest.raises(xmlrpc.client.Fault) as fault:
            rpc.no_such_method()
        assert fault.value.faultCode == -32601
        with pytest.raises(xmlrpc.client.Fault) as fault:
            rpc.ping("unexpected")
        assert fault.value.faultCode == -32602
        request = urllib.request.Request(
            f"{server.url}/RPC2", data=b"<methodCall><oops", method="POST", headers={"Content-Type": "text/xml"}
        )
        with urllib.request.urlopen(request) as response:
            body = response.read().decode()
        assert "malformed XML-RPC request" in body and "Traceback" not in body
        assert "ping" in rpc.list_rpc_methods()
        assert rpc.ping() == "pong"
    finally:
        code = server.stop()
    assert code == 0
    assert not server.pidfile.exists()
    assert records(record)[-1].get("shutdown") is True
    channel_log = server.log("counting")
    assert "generation committed" in channel_log
    assert all("channel=counting" in line for line in channel_log.splitlines() if line.strip())
    assert "decision engine stopped" in server.log()


def test_broken_channels_leave_the_others_running(server_root, sqlite_url):
    record = server_root / "good.jsonl"
    good = counting_channel(str(record))
    good["sources"]["counter"]["schedule"] = 0.3
    failing = {
        "sources": {
            "flaky": {**module("FlakySource", counter_file=str(server_root / "flaky")), "schedule": 0.3},
            "steady": module("ConstantSource", schedule=0.3),
        },
        "publishers": {},
    }
    hanging = {
        "sources": {"counter": module("CountingSource", schedule=0.3)},
        "publishers": {"stuck": module("HangingPublisher")},
        "task_manager": {"module_timeout": 2},
    }
    crashing = {"sources": {"doomed": module("ExitingSource", schedule=0.3, after=2)}, "publishers": {}}
    bad_module = {"sources": {"ghost": {"module": "no.such.module", "name": "Ghost", "schedule": 1}}, "publishers": {}}
    server = DEServer(
        server_root,
        sqlite_url,
        {
            "good": good,
            "failing": failing,
            "hanging": hanging,
            "crashing": crashing,
            "bad_module": bad_module,
            "bad_syntax": "{ sources: { ",
        },
    ).start()
    rpc = server.rpc()
    try:

        def settled(status):
            by_name = {c["channel"]: c for c in status["channels"]}
            return (
                by_name["hanging"]["state"] == "ERROR"
                and by_name["crashing"]["state"] == "ERROR"
                and by_name["bad_module"]["state"] == "ERROR"
                and (by_name["failing"]["sources"] or {}).get("flaky", {}).get("missed_update_count", 0) >= 2
            )

        status = server.wait_for(settled, 90, "the broken channels to fail")
        by_name = {c["channel"]: c for c in status["channels"]}
        assert "ran longer than module_timeout (2 s)" in by_name["hanging"]["last_error"]
        assert "'stuck'" in by_name["hanging"]["last_error"]
        assert "exited with code 3" in by_name["crashing"]["last_error"]
        assert "invalid configuration" in by_name["bad_module"]["last_error"]
        assert "no.such.module" in by_name["bad_module"]["last_error"]
        assert "ghost" in by_name["bad_module"]["last_error"]
        assert by_name["bad_syntax"]["state"] == "ERROR"
        assert "bad_syntax.jsonnet" in by_name["bad_syntax"]["last_error"]
        assert "ConnectionError: upstream unavailable" in by_name["failing"]["sources"]["flaky"]["last_error"]
        assert by_name["failing"]["state"] == "ACTIVE"

        # the good channel keeps advancing through all of it
        now = server.channel("good")["generation"]
        server.wait_for_generation("good", now + 3, 30)

        # a crashed channel can be started again
        assert "started" in rpc.start_channel("crashing")
        server.wait_for(
            lambda s: any(
                c["channel"] == "crashing" and c.get("restarts") == 1 and c["state"] == "ERROR" for c in s["channels"]
            ),
            60,
            "crashing to crash again",
        )
        # a fixed file can be started
        write_channel(
            server.channel_dir,
            "bad_syntax",
            {"sources": {"c": module("ConstantSource", schedule=0.3)}, "publishers": {}},
        )
        rpc.start_channel("bad_syntax")
        server.wait_for_generation("bad_syntax", 1, 60)
        # force-kill the channel whose source fails
        assert rpc.kill_channel("failing", 5) in ("channel failing stopped", "channel failing killed")
        assert server.channel("failing")["state"] in ("SHUTDOWN", "ERROR")
        assert "removed" in rpc.rm_channel("failing")
        assert all(c["channel"] != "failing" for c in server.status()["channels"])
        assert rpc.ping() == "pong"
    finally:
        assert server.stop() == 0
    assert "source failed" in server.log("failing")
    assert "channel=failing" in server.log("failing")


def test_status_answers_at_once_while_a_channel_boots(server_root, sqlite_url):
    slow = {"sources": {"slow": module("SlowBootSource", schedule=60, boot_seconds=4)}, "publishers": {}}
    server = DEServer(server_root, sqlite_url, {"slow": slow}).start()
    try:
        started = time.monotonic()
        status = server.channel("slow")
        assert time.monotonic() - started < 2
        assert status["state"] == "BOOT"
        answer = server.rpc().block_while("BOOT", 1)
        assert "timed out" in answer and "slow" in answer
        assert "no channel is BOOT" in server.rpc().block_while("BOOT", 60)
    finally:
        server.stop()


@pytest.mark.parametrize("shutdown_timeout, delay, finishes", [(15, 2.0, True), (1, 4.0, False)])
def test_sigterm_during_a_generation_leaves_the_dataspace_consistent(
    server_root, sqlite_url, shutdown_timeout, delay, finishes
):
    record = server_root / "r.jsonl"
    channel = counting_channel(str(record))
    channel["sources"]["counter"]["schedule"] = 0.3
    channel["transforms"]["doubler"]["parameters"]["delay"] = delay
    server = DEServer(server_root, sqlite_url, {"slow": channel}, shutdown_timeout=shutdown_timeout).start()
    server.wait_for_generation("slow", 1, 60)
    server.wait_for(lambda s: "doubler" in (s["channels"][0].get("busy") or {}), 30, "a generation in progress")
    committed_before = server.channel("slow")["generation"]
    assert server.stop() == 0

    space = DataSpace(global_config(sqlite_url))
    last = space.get_last_generation_id("slow")
    assert last == committed_before + (1 if finishes else 0)
    registration = space.get_taskmanager("slow")
    for generation in range(1, last + 1):
        block = DataBlock(space, "slow", registration["taskmanager_id"], generation_id=generation)
        assert set(block.keys()) == {
            "numbers",
            "doubled",
            "total",
            "de_logicengine_facts",
            "de_logicengine_fact_values",
            "publisher_status",
            "de_decision",
        }
    space.close()

    again = DEServer(server_root, sqlite_url, {"slow": channel}, shutdown_timeout=shutdown_timeout)
    again.start()
    try:
        again.wait_for_generation("slow", last + 1, 60)
    finally:
        again.stop()
