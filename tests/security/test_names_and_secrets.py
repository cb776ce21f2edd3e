"""Names are names (no path reaches a file outside the channel directory) and secrets never show."""

import json

import pytest

from tests.cli.run import command
from tests.engine.server import DEServer
from tests.security.helpers import CONTROL_TOKEN, READ_TOKEN, request, rpc, steady_channel, still_answering

pytestmark = pytest.mark.timeout(240)

HOSTILE_NAMES = [
    "../decision_engine",
    "../../../../etc/passwd",
    "/etc/passwd",
    "steady/../../decision_engine",
    "steady.jsonnet",
    "..",
    ".hidden",
    "x\x00y",
    "a" * 500,
    "",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    channel = steady_channel()
    channel["publishers"] = {}
    channel["sources"]["c"]["parameters"] = {
        "value": 7,
        "password": "hunter2-channel",
        "db_url": "postgresql://loader:pw-in-url@db.example.org/jobs",
        "credentials": {"user": "u", "api_key": "key-123"},
    }
    server = DEServer(
        root,
        f"sqlite:///{root / 'ds.sqlite'}",
        {"steady": channel},
        webserver={"api_token": CONTROL_TOKEN, "read_token": READ_TOKEN, "proxy_password": "global-hunter2"},
    )
    server.token = CONTROL_TOKEN
    server.start()
    server.wait_for_generation("steady", 1, 60)
    yield server
    server.stop()


SECRETS = ("hunter2-channel", "pw-in-url", "key-123", "global-hunter2", CONTROL_TOKEN, READ_TOKEN)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_channel_argument_never_becomes_a_path(server, name):
    client = rpc(server, CONTROL_TOKEN)
    for method in ("show_config", "start_channel", "stop_channel", "get_channel_log_level", "rm_channel"):
        if method == "show_config" and name == "":
            continue  # show_config("") is every channel, as in the reference
        # (XML cannot carry a NUL: that call is a malformed request before it is a bad name)
        with pytest.raises(Exception, match=r"no channel|non-empty string|malformed XML-RPC") as refused:
            getattr(client, method)(name)
        assert "dataspace" not in str(refused.value) and "root:" not in str(refused.value)
    quoted = name.replace("/", "%2F").replace("\x00", "%00") or "%20"
    status, _, body = request(server, "GET", f"/api/v1/channels/{quoted}", token=READ_TOKEN)
    assert status in (400, 404), body
    assert server.channel("steady")["state"] == "STEADY"
    still_answering(server, token=READ_TOKEN)


def test_show_config_masks_secrets_in_every_format(server):
    client = rpc(server, READ_TOKEN)
    outputs = [client.show_config("steady"), client.show_config(), client.show_de_config()]
    for fmt in ([], ["--json"]):
        for action in (["--show-config", "steady"], ["--show-config"], ["--show-de-config"]):
            result = command("de-client", "--url", server.url, *action, *fmt, env={"DE_API_TOKEN": READ_TOKEN})
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout)
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output, (secret, output[:500])
    channel = json.loads(outputs[0])["steady"]["sources"]["c"]["parameters"]
    assert channel["value"] == 7 and channel["password"] == "***"
    assert channel["db_url"] == "postgresql://loader:***@db.example.org/jobs"
    assert channel["credentials"] == {"user": "***", "api_key": "***"}
    assert json.loads(outputs[2])["webserver"]["read_token"] == "***"
