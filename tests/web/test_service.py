"""The control service validates every argument before it acts: a refused request changes nothing.

Driven over XML-RPC against a real de-server (the JSON API shares the same service).
"""

import xmlrpc.client

import pytest

from tests.engine.server import DEServer
from tests.taskmanager.channels import module

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    channel = {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}}
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", {"steady": channel}).start()
    server.wait_for_generation("steady", 1, 60)
    # STEADY follows the first generation's commit a moment later (after its publishers)
    server.wait_for(lambda status: status["channels"][0]["state"] == "STEADY", 60, "the channel STEADY")
    yield server
    server.stop()


def refused(call, *args, match):
    with pytest.raises(xmlrpc.client.Fault, match=match) as fault:
        call(*args)
    return fault.value


@pytest.mark.parametrize("timeout", ["x", -1, float("inf"), 1e30, [1]])
def test_kill_channel_with_a_bad_timeout_leaves_the_channel_running(server, timeout):
    pid = server.channel("steady")["pid"]
    if timeout == float("inf"):  # not representable in XML-RPC's double: send it as text
        timeout = "inf"
    refused(server.rpc().kill_channel, "steady", timeout, match="timeout must be")
    channel = server.channel("steady")
    assert channel["state"] == "STEADY" and channel["pid"] == pid and channel["process_alive"]


@pytest.mark.parametrize("delay", [-1, 1e30, "soon", "nan"])
def test_reaper_start_with_a_bad_delay_changes_nothing(server, delay):
    before = server.rpc().reaper_status("json")
    refused(server.rpc().reaper_start, delay, match="delay must be")
    assert server.rpc().reaper_status("json") == before


def test_unknown_channels_and_levels_are_refused(server):
    rpc = server.rpc()
    refused(rpc.stop_channel, "nope", match="no channel 'nope'; channels are steady")
    refused(rpc.start_channel, "../decision_engine", match="no channel '../decision_engine'")
    refused(rpc.show_config, "../decision_engine", match="no channel")
    refused(rpc.set_channel_log_level, "steady", "LOUD", match="unknown log level 'LOUD'")
    refused(rpc.block_while, "SLEEPING", match="SLEEPING")
    refused(rpc.block_while, "BOOT", "soon", match="timeout must be")
    refused(rpc.print_product, "c", None, None, False, "xml", match="unknown format 'xml'")
    refused(rpc.print_product, "c", None, None, "yes", match="types must be true or false")
    refused(rpc.get_product, "c", None, None, False, "xml", match="unknown format 'xml'")
    refused(rpc.print_product, "c", 5, match="columns must be")
    refused(rpc.query_tool, "c", None, "next tuesday", match="start_time: invalid time 'next tuesday'")
    refused(rpc.query_tool, "c", "xml", match="unknown format 'xml'")
    refused(rpc.rm_channel, "steady", "soon", match="timeout must be")
    refused(rpc.set_source_log_level, "c", "LOUD", match="unknown log level 'LOUD'")
    refused(rpc.set_source_log_level, "nope", "DEBUG", match="no source 'nope' in any channel; sources are steady.c")
    refused(rpc.set_source_log_level, "c", "DEBUG", "other", match="no channel 'other'")
    refused(rpc.get_source_log_level, ["c"], match="source must be a non-empty string")
    assert server.channel("steady")["state"] == "STEADY"
    assert rpc.get_channel_log_level("steady") != "LOUD"
    assert rpc.get_source_log_level("c") == rpc.get_channel_log_level("steady")


def test_unknown_methods_and_wrong_arguments_are_faults(server):
    rpc = server.rpc()
    fault = refused(rpc.rpc_status, match="no method 'rpc_status'")
    assert fault.faultCode == -32601
    fault = refused(rpc.stop_channel, match="stop_channel: missing a required argument")
    assert fault.faultCode == -32602
    refused(rpc.ping, "extra", match="too many positional arguments")
