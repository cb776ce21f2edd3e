"""Cross-site requests and DNS rebinding: what a hostile web page could make a browser send.

A page of another site can make the operator's browser post a form (text/plain) to
http://localhost:8888/, send requests with its own Origin, or (DNS rebinding) reach the
server under a name of the attacker's.  Refused on every surface; the server keeps answering.
"""

import pytest

from tests.engine.server import DEServer
from tests.security.helpers import CONTROL_TOKEN, request, rpc, steady_channel, still_answering, xmlrpc_body

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", params=["without a token", "with a token"])
def target(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("crosssite")
    webserver = {"allowed_hosts": ["de.example.org"]}
    if request.param == "with a token":
        webserver["api_token"] = CONTROL_TOKEN
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", {"steady": steady_channel()}, webserver=webserver)
    server.token = CONTROL_TOKEN if request.param == "with a token" else None
    server.start()
    server.wait_for_generation("steady", 1, 60)
    yield server
    server.stop()


def running(server):
    return server.channel("steady")["state"] == "STEADY"


def test_a_cross_site_form_post_never_reaches_a_method(target):
    """A form can only send text/plain (or urlencoded) without asking the server first."""
    for path in ("/", "/RPC2"):
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
            if kind:
                headers["Content-Type"] = kind
            status, _, body = request(
                target, "POST", path, token=target.token, headers=headers, body=xmlrpc_body("stop_channel", "steady")
            )
            assert status == 415, (path, kind, body)
            assert "text/xml" in body
    assert running(target)
    still_answering(target, token=target.token)


@pytest.mark.parametrize(
    "markers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of localhost is another site for us
        {"Origin": "http://127.0.0.1:1"},
    ],
)
def test_cross_site_requests_may_read_but_never_control(target, markers):
    attacker = rpc(target, target.token, {**markers, "Content-Type": "text/xml"})
    assert attacker.ping() == "pong"  # reading is not refused
    with pytest.raises(Exception, match="cross-site request"):
        attacker.stop_channel("steady")
    status, _, body = request(target, "POST", "/api/v1/channels/steady/stop", token=target.token, headers=markers)
    assert status == 403 and "cross-site" in body["error"]
    assert request(target, "GET", "/api/v1/channels", token=target.token, headers=markers)[0] == 200
    assert running(target)
    still_answering(target, token=target.token)


@pytest.mark.parametrize("path, method", [("/api/v1/channels", "GET"), ("/metrics", "GET"), ("/", "GET")])
def test_a_foreign_host_name_is_refused(target, path, method):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1; the Host header still says it."""
    status, _, body = request(target, method, path, token=target.token, headers={"Host": "evil.example:8888"})
    assert status == 403
    assert "evil.example" in (body["error"] if isinstance(body, dict) else body)
    status, _, _ = request(
        target,
        "POST",
        "/RPC2",
        token=target.token,
        headers={"Host": "rebound.evil.example", "Content-Type": "text/xml"},
        body=xmlrpc_body("stop_channel", "steady"),
    )
    assert status == 403
    assert running(target)
    # names of this server pass: the configured address, localhost, webserver.allowed_hosts
    for host in (f"127.0.0.1:{target.port}", f"localhost:{target.port}", "de.example.org", "[::1]:1"):
        assert request(target, method, path, token=target.token, headers={"Host": host})[0] == 200, host
    still_answering(target, token=target.token)


def test_the_dashboard_itself_is_same_origin(target):
    """What the dashboard sends from its own page is admitted."""
    headers = {"Origin": target.url, "Sec-Fetch-Site": "same-origin"}
    assert request(target, "GET", "/api/v1/channels", headers=headers)[0] == 200
    if target.token:
        status, _, body = request(target, "POST", "/api/v1/reaper/stop", token=target.token, headers=headers)
        assert status == 200, body
        assert request(target, "POST", "/api/v1/reaper/start?delay=3600", token=target.token, headers=headers)[0] == 200
