"""One authorization point: every control path needs the control token, reads the read token.

Against real de-server processes, over XML-RPC, the JSON API, /metrics and the requests the
dashboard makes; with tokens (in files), and without any token (existing operators' scripts).
"""

import json
import os
import xmlrpc.client

import pytest

from tests.cli.run import command
from tests.engine.server import DEServer
from tests.security.helpers import CONTROL_TOKEN, READ_TOKEN, request, rpc, steady_channel, still_answering

pytestmark = pytest.mark.timeout(240)

CONTROL_METHODS = [
    ("stop_channel", ("steady",)),
    ("start_channel", ("steady",)),
    ("kill_channel", ("steady", 1)),
    ("rm_channel", ("steady",)),
    ("rm_channel", ("steady", 5)),
    ("set_source_log_level", ("c", "DEBUG")),
    ("start_channels", ()),
    ("stop_channels", ()),
    ("set_log_level", ("DEBUG",)),
    ("set_channel_log_level", ("steady", "DEBUG")),
    ("reaper_start", (3600,)),
    ("reaper_stop", ()),
    ("stop", ()),
]
READ_METHODS = [
    ("status", ()),
    ("print_products", ()),
    ("show_config", ()),
    ("show_de_config", ()),
    ("reaper_status", ()),
    ("get_log_level", ()),
    ("metrics", ()),
    ("product_dependencies", ()),
    ("print_product", ("constant", None, None, True, "json")),
    ("get_product", ("constant",)),
    ("query_tool", ("constant", "csv", None)),
    ("queue_status", ()),
    ("get_source_log_level", ("c",)),
    ("block_while", ("BOOT", 1)),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A server whose tokens are in files: a control token and a read token."""
    root = tmp_path_factory.mktemp("secured")
    (root / "control.token").write_text(CONTROL_TOKEN + "\n")
    (root / "read.token").write_text(READ_TOKEN)
    server = DEServer(
        root,
        f"sqlite:///{root / 'ds.sqlite'}",
        {"steady": steady_channel()},
        webserver={"api_token_file": "control.token", "read_token_file": str(root / "read.token")},
    )
    server.token = READ_TOKEN
    server.start()
    server.wait_for_generation("steady", 1, 60)
    yield server
    server.stop()


def assert_fault(call, code, text):
    with pytest.raises(xmlrpc.client.Fault) as fault:
        call()
    assert fault.value.faultCode == code, fault.value
    assert text in fault.value.faultString, fault.value


@pytest.mark.parametrize("method, params", CONTROL_METHODS)
def test_xmlrpc_control_needs_the_control_token(secured, method, params):
    for token in (None, READ_TOKEN, "guessed"):
        assert_fault(lambda t=token: getattr(rpc(secured, t), method)(*params), 401, method)
    assert secured.channel("steady")["state"] == "STEADY"  # nothing was done
    still_answering(secured, token=READ_TOKEN)


@pytest.mark.parametrize("method, params", READ_METHODS)
def test_xmlrpc_reads_need_a_token_when_a_read_token_is_set(secured, method, params):
    assert_fault(lambda: getattr(rpc(secured), method)(*params), 401, "needs the read token")
    assert_fault(lambda: getattr(rpc(secured, "guessed"), method)(*params), 401, "not valid")
    assert getattr(rpc(secured, READ_TOKEN), method)(*params)
    assert getattr(rpc(secured, CONTROL_TOKEN), method)(*params)


def test_control_with_the_control_token_works(secured):
    client = rpc(secured, CONTROL_TOKEN)
    assert client.stop_channel("steady") == "channel steady stopped"
    assert client.start_channel("steady") == "channel steady started"
    secured.wait_for_generation("steady", 1, 60)
    # The reference's clients put credentials in the URL (HTTP Basic): the password is the token.
    reference = xmlrpc.client.ServerProxy(f"http://de:{CONTROL_TOKEN}@127.0.0.1:{secured.port}", allow_none=True)
    assert reference.reaper_stop() == "reaper stopped"
    assert reference.reaper_start(3600).startswith("reaper started")


def test_json_api_and_metrics(secured):
    assert request(secured, "GET", "/api/v1/channels")[0] == 401
    assert request(secured, "GET", "/api/v1/channels", token="guessed")[0] == 401
    assert request(secured, "GET", "/api/v1/channels", token=READ_TOKEN)[0] == 200
    assert request(secured, "GET", "/metrics")[0] == 401
    status, _, body = request(secured, "GET", "/metrics", token=READ_TOKEN)
    assert status == 200 and "de_server_up" in body
    status, _, body = request(secured, "POST", "/api/v1/reaper/stop", token=READ_TOKEN)
    assert status == 401 and "needs the API token" in body["error"]
    status, _, body = request(secured, "POST", "/api/v1/reaper/stop", token=CONTROL_TOKEN)
    assert status == 200 and body["result"] == "reaper stopped"
    assert request(secured, "POST", "/api/v1/reaper/start?delay=3600", token=CONTROL_TOKEN)[0] == 200
    # what the dashboard sends: same-origin markers and the token typed into it
    same_origin = {"Origin": secured.url, "Sec-Fetch-Site": "same-origin"}
    assert request(secured, "GET", "/", headers=same_origin)[0] == 200  # the page itself is public
    assert request(secured, "GET", "/api/v1/channels/steady", headers=same_origin)[0] == 401
    assert request(secured, "GET", "/api/v1/channels/steady", token=READ_TOKEN, headers=same_origin)[0] == 200
    status, _, body = request(secured, "POST", "/api/v1/reaper/stop", token=CONTROL_TOKEN, headers=same_origin)
    assert status == 200
    assert request(secured, "POST", "/api/v1/reaper/start?delay=3600", token=CONTROL_TOKEN)[0] == 200
    status, _, body = request(secured, "GET", "/api/v1/events")
    assert status == 401 and "read token" in body["error"]


def test_secrets_never_show(secured):
    shown = rpc(secured, READ_TOKEN).show_de_config()
    assert CONTROL_TOKEN not in shown and READ_TOKEN not in shown
    assert "control.token" in shown  # the file's name is not the secret
    logs = "".join(path.read_text() for path in (secured.root / "logs").glob("*.log"))
    assert CONTROL_TOKEN not in logs and READ_TOKEN not in logs


def test_de_client_sends_the_token(secured, tmp_path):
    base = ["--url", secured.url]
    refused = command("de-client", *base, "--status")
    assert refused.returncode == 1 and "needs the read token" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(CONTROL_TOKEN)
    assert command("de-client", *base, "--token-file", token_file, "--reaper-stop").stdout == "reaper stopped\n"
    from_env = command("de-client", *base, "--reaper-start", "3600", env={"DE_API_TOKEN": CONTROL_TOKEN})
    assert from_env.returncode == 0, from_env.stderr
    # the token file the server's own configuration names
    from_config = command("de-client", "--config", secured.root, "--status", "--json")
    assert from_config.returncode == 0, from_config.stderr
    assert json.loads(from_config.stdout)["channels"][0]["channel"] == "steady"
    missing = command("de-client", *base, "--token-file", tmp_path / "nothing", "--status")
    assert missing.returncode == 2 and "nothing" in missing.stderr and "Traceback" not in missing.stderr


def test_a_token_file_that_cannot_be_read_stops_the_start(tmp_path):
    server = DEServer(
        tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {}, webserver={"api_token_file": "missing.token"}
    )
    server.start(wait=False)
    assert server.process.wait(60) == 2
    output = server.output.read_text()
    assert "webserver.api_token_file" in output and "missing.token" in output
    assert "Traceback" not in output
    (tmp_path / "empty.token").write_text("  \n")
    (tmp_path / "decision_engine.jsonnet").write_text(
        (tmp_path / "decision_engine.jsonnet").read_text().replace("missing.token", "empty.token")
    )
    server.start(wait=False)
    assert server.process.wait(60) == 2
    assert "empty.token is empty" in server.output.read_text()


def test_without_any_token_local_scripts_keep_control_and_the_api_stays_read_only(tmp_path):
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"steady": steady_channel()}).start()
    try:
        server.wait_for_generation("steady", 1, 60)
        stopped = command("de-client", "--port", server.port, "--host", "127.0.0.1", "--stop-channel", "steady")
        assert stopped.returncode == 0 and stopped.stdout == "channel steady stopped\n"
        assert rpc(server).start_channel("steady") == "channel steady started"
        status, _, body = request(server, "POST", "/api/v1/channels/steady/stop")
        assert status == 403 and "control needs webserver.api_token" in body["error"]
        assert request(server, "GET", "/api/v1/channels/steady")[0] == 200
        warnings = [line for line in server.log().splitlines() if "control over XML-RPC is open" in line]
        assert len(warnings) == 1, warnings
    finally:
        server.stop()
    assert os.path.exists(server.root / "ds.sqlite")
