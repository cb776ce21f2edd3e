"""The JSON API against a real server: every endpoint, every error, the OpenAPI document."""

import http.client as http_client
import json
import time

import pytest
from openapi_spec_validator import validate

from decisionengine.testing.waiting import eventually
from tests.api.client import OpenApiChecker, http
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)
TOKEN = "s3cret-t0ken-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    channel = counting_channel(str(root / "r.jsonl"))
    channel["sources"]["counter"]["schedule"] = 0.3
    failing = {
        "sources": {"flaky": {**module("FlakySource", counter_file=str(root / "flaky")), "schedule": 0.3}},
        "publishers": {},
    }
    server = DEServer(
        root,
        f"sqlite:///{root / 'ds.sqlite'}",
        {"counting": channel, "failing": failing, "broken": "{ sources: 1 }"},
        webserver={"api_token": TOKEN},
    ).start()
    server.wait_for_generation("counting", 3, 60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openapi(server):
    status, headers, document = http("GET", f"{server.url}/api/v1/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    validate(document)  # a valid OpenAPI 3.1 document
    return OpenApiChecker(document)


def get(server, path, openapi=None, template=None, expect=200):
    status, _, body = http("GET", f"{server.url}/api/v1{path}")
    assert status == expect, body
    if openapi is not None:
        openapi.check(template or path.split("?")[0], "get", status, body)
    return body


def test_channels(server, openapi):
    channels = get(server, "/channels", openapi)["channels"]
    by_name = {c["name"]: c for c in channels}
    assert set(by_name) == {"counting", "failing", "broken"}
    assert by_name["counting"]["state"] == "STEADY" and not by_name["counting"]["failing"]
    assert by_name["broken"]["failing"] and by_name["broken"]["config_error"]

    def failing_channel():
        return {c["name"]: c for c in get(server, "/channels")["channels"]}["failing"]

    failing = eventually(lambda: (c := failing_channel())["failing"] and c, 30, what="channel 'failing' failing")
    by_name["failing"] = failing
    assert by_name["failing"]["failing"]
    assert by_name["failing"]["sources"]["flaky"]["missed_update_count"] >= 1


def test_one_channel(server, openapi):
    channel = get(server, "/channels/counting", openapi, "/channels/{name}")
    assert channel["name"] == "counting" and channel["generation"] >= 3
    outcomes = [record["outcome"] for record in channel["history"]]
    assert "committed" in outcomes and outcomes[-1] in ("committed", "running"), outcomes
    assert channel["sources"]["counter"]["deliveries"] >= 3
    assert get(server, "/channels/broken", openapi, "/channels/{name}")["state"] == "ERROR"


def test_the_cluster_of_one_server_holds_every_running_channel(server, openapi):
    cluster = get(server, "/cluster", openapi)
    (member,) = cluster["members"]
    assert member["this_server"] and member["name"] == cluster["server_name"]
    assert "counting" in member["holding"] and "counting" in member["assigned"]
    assert cluster["drain"] == {
        "draining": False,
        "running": cluster["drain"]["running"],
        "cannot_move": [],
        "drained": False,
    }
    counting = get(server, "/channels/counting", openapi, "/channels/{name}")
    assert counting["owner_server"] == counting["assigned_server"] == cluster["server_name"]
    code, _, body = http("POST", f"{server.url}/api/v1/cluster/drain")  # control needs the token
    assert code == 401, body
    assert not get(server, "/cluster")["draining"]


def test_graph(server, openapi):
    graph = get(server, "/channels/counting/graph", openapi, "/channels/{name}/graph")
    assert {n["key"]: n["kind"] for n in graph["nodes"]} == {
        "counter": "source",
        "doubler": "transform",
        "summer": "transform",
        "le": "logicengine",
        "recorder": "publisher",
    }
    assert {"from": "counter", "to": "doubler", "product": "numbers"} in graph["edges"]
    assert {"from": "summer", "to": "recorder", "product": "total"} in graph["edges"]
    assert graph["transform_order"] == ["doubler", "summer"]
    conflict = get(server, "/channels/broken/graph", openapi, "/channels/{name}/graph", expect=409)
    assert "not been validated" in conflict["error"]


def test_products_and_paging(server, openapi):
    products = get(server, "/channels/counting/products", openapi, "/channels/{name}/products")
    by_name = {p["name"]: p for p in products["products"]}
    assert by_name["numbers"]["shape"] == [3, 2] and by_name["numbers"]["numeric_columns"] == ["n", "x"]
    assert by_name["total"]["type"] == "int"
    template = "/channels/{name}/products/{key}"
    page = get(server, "/channels/counting/products/doubled?offset=1&limit=1&columns=x", openapi, template)
    assert page["total_rows"] == 3 and page["columns"] == ["x"] and page["rows"] == [{"x": 2}]
    whole = get(server, "/channels/counting/products/doubled", openapi, template)
    assert [r["x"] for r in whole["rows"]] == [0, 2, 4]
    scalar = get(server, "/channels/counting/products/total", openapi, template)
    assert scalar["value"] == 6 and scalar["type"] == "int"


def test_history(server, openapi):
    template = "/channels/{name}/products/{key}/history"
    rows = get(server, "/channels/counting/products/numbers/history", openapi, template)
    assert rows["measure"] == "rows" and len(rows["points"]) >= 3
    assert all(p["value"] == 3 for p in rows["points"])
    ids = [p["generation_id"] for p in rows["points"]]
    assert ids == sorted(ids)
    summed = get(server, "/channels/counting/products/numbers/history?column=x&agg=sum&since=1h", openapi, template)
    assert summed["measure"] == "sum(x)" and {p["value"] for p in summed["points"]} == {3.0}
    maxed = get(server, "/channels/counting/products/numbers/history?column=n&agg=max", openapi, template)
    assert [p["value"] for p in maxed["points"]] == sorted(p["value"] for p in maxed["points"])
    totals = get(server, "/channels/counting/products/total/history", openapi, template)
    assert {p["value"] for p in totals["points"]} == {6}
    future = get(server, f"/channels/counting/products/total/history?since={time.time() + 3600}", openapi, template)
    assert future["points"] == []


def test_decisions(server, openapi):
    decisions = get(server, "/channels/counting/decisions?limit=2", openapi, "/channels/{name}/decisions")["decisions"]
    assert len(decisions) == 2
    assert decisions[0]["generation_id"] < decisions[1]["generation_id"]
    for decision in decisions:  # each whole, even while the channel commits the next ones
        assert {f["fact_name"]: f["fact_value"] for f in decision["facts"]} == {"big": False, "has_numbers": True}
        assert decision["new_facts"] == [{"rule_name": "publish", "fact_name": "published", "fact_value": True}]
    assert decisions[0]["published"]  # only the newest may still be publishing
    for decision in decisions:
        assert decision["actions"] == (["recorder"] if decision["published"] else [])


def test_publisher_status_is_the_table_of_how_publishers_ran(server, openapi):
    """publisher_status answers the reference's API to modules; readers get its table:
    ran, succeeded, seconds, error per publisher as before, then enabled and since."""
    template = "/channels/{name}/products/{key}"
    status = get(server, "/channels/counting/products/publisher_status", openapi, template)
    assert status["columns"] == ["publisher", "ran", "succeeded", "seconds", "error", "enabled", "since"]
    row = status["rows"][0]
    assert row["publisher"] == "recorder" and row["ran"] is True and row["succeeded"] is True
    assert row["seconds"] >= 0 and row["error"] is None and row["enabled"] is True and row["since"]

    # the newest generation's products: its publisher status is stored once its publishers have
    # run, a moment after the generation commits, so the listing may have to be asked again
    def listed() -> dict | None:
        listing = get(server, "/channels/counting/products", openapi, "/channels/{name}/products")
        products = {p["name"]: p for p in listing["products"]}
        return products if "publisher_status" in products else None

    products = eventually(listed, 10, what="a generation listing its publisher status")
    assert products["publisher_status"]["shape"] == [1, 7]

    # the same for the newest decision: a generation newer than the one listed above may have
    # committed meanwhile, its publishers not run yet
    def decided() -> dict | None:
        answer = get(server, "/channels/counting/decisions?limit=1", openapi, "/channels/{name}/decisions")
        newest = answer["decisions"][-1]
        return newest if newest["publishers"] else None

    latest = eventually(decided, 10, what="the newest decision listing its publishers")
    assert {k: latest["publishers"][0][k] for k in ("publisher", "ran", "succeeded", "error")} == {
        "publisher": "recorder",
        "ran": True,
        "succeeded": True,
        "error": None,
    }
    history = get(server, "/channels/counting/products/publisher_status/history", openapi, template + "/history")
    assert history["measure"] == "rows" and {p["value"] for p in history["points"]} == {1}


def test_reaper(server, openapi):
    assert get(server, "/reaper", openapi)["retention_interval_in_days"] >= 7


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/channels/nope", 404, "no channel 'nope'"),
        ("/channels/nope/products", 404, "no channel 'nope'"),
        ("/channels/counting/products/nothing", 404, "no product 'nothing'"),
        ("/channels/counting/products/nothing/history", 404, "no product 'nothing'"),
        ("/channels/counting/nonsense", 404, "no such API path"),
        ("/nowhere", 404, "no such API path"),
        ("/channels/counting/products/doubled?limit=-1", 400, "'limit' must be at least 0"),
        ("/channels/counting/products/doubled?limit=many", 400, "'limit' must be an integer"),
        ("/channels/counting/products/doubled?offset=1.5", 400, "'offset' must be an integer"),
        ("/channels/counting/products/doubled?limit=1000000", 400, "'limit' must be at most"),
        ("/channels/counting/products/doubled?columns=x,nope", 400, "unknown columns ['nope']"),
        ("/channels/counting/products/total?columns=x", 400, "columns applies to DataFrame products"),
        ("/channels/counting/products/numbers/history?agg=median", 400, "agg must be one of"),
        ("/channels/counting/products/numbers/history?column=nope", 400, "unknown column 'nope'"),
        ("/channels/counting/products/total/history?column=x", 400, "column applies to DataFrame products"),
        ("/channels/counting/products/numbers/history?since=yesterday", 400, "'since' must be"),
        ("/channels/counting/decisions?limit=0", 400, "'limit' must be at least 1"),
    ],
)
def test_errors_are_json(server, path, status, message):
    code, headers, body = http("GET", f"{server.url}/api/v1{path}")
    assert code == status
    assert headers["Content-Type"] == "application/json"
    assert message in body["error"]


def test_wrong_methods(server):
    code, headers, body = http("POST", f"{server.url}/api/v1/channels", TOKEN)
    assert code == 405 and headers["Allow"] == "GET" and "use GET" in body["error"]
    code, headers, body = http("GET", f"{server.url}/api/v1/channels/counting/stop")
    assert code == 405 and headers["Allow"] == "POST"


def test_control_needs_the_token(server, openapi):
    url = f"{server.url}/api/v1/channels/failing/stop"
    code, headers, body = http("POST", url)
    assert code == 401 and "needs the API token" in body["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    openapi.check("/channels/{name}/stop", "post", 401, body)
    assert http("POST", url, "wrong-token")[0] == 401
    code, _, body = http("POST", url, TOKEN)
    assert code == 200 and "failing" in body["result"]
    openapi.check("/channels/{name}/stop", "post", 200, body)
    assert body["channel"]["state"] in ("SHUTDOWN", "ERROR")
    code, _, body = http("POST", f"{server.url}/api/v1/channels/failing/start", TOKEN)
    assert code == 200 and body["result"] == "channel failing started"
    code, _, body = http("POST", f"{server.url}/api/v1/channels/failing/start", TOKEN)
    assert code == 409 and "already running" in body["error"]
    assert http("POST", f"{server.url}/api/v1/channels/ghost/stop", TOKEN)[0] == 404

    code, _, body = http("POST", f"{server.url}/api/v1/reaper/stop", TOKEN)
    assert code == 200 and body["reaper"]["state"] == "SHUTDOWN"
    openapi.check("/reaper/stop", "post", 200, body)
    code, _, body = http("POST", f"{server.url}/api/v1/reaper/start?delay=3600", TOKEN)
    assert code == 200 and body["reaper"]["state"] == "IDLE"
    assert http("POST", f"{server.url}/api/v1/reaper/start?delay=-1", TOKEN)[0] == 400
    assert http("POST", f"{server.url}/api/v1/reaper/stop")[0] == 401


def test_the_token_is_never_logged(server):
    http("POST", f"{server.url}/api/v1/reaper/stop", TOKEN)
    http("POST", f"{server.url}/api/v1/reaper/start?delay=3600", TOKEN)

    def logs():
        return "".join(path.read_text() for path in (server.root / "logs").glob("*.log"))

    eventually(lambda: "POST /api/v1/reaper/start" in logs(), 10, what="the access log lines")
    assert "POST /api/v1/reaper/stop" in logs()  # the access log is there...
    assert TOKEN not in logs()  # ...without the token
    assert TOKEN not in json.dumps(get(server, "/channels"))


#: one real request for each documented operation: (method, path template, concrete path)
EXAMPLES = [
    ("get", "/", "/"),
    ("get", "/channels", "/channels"),
    ("get", "/channels/{name}", "/channels/counting"),
    ("get", "/channels/{name}/graph", "/channels/counting/graph"),
    ("get", "/channels/{name}/products", "/channels/counting/products"),
    ("get", "/channels/{name}/products/{key}", "/channels/counting/products/doubled?limit=2"),
    ("get", "/channels/{name}/products/{key}/history", "/channels/counting/products/numbers/history"),
    ("get", "/channels/{name}/decisions", "/channels/counting/decisions"),
    ("post", "/channels/{name}/stop", "/channels/failing/stop"),
    ("post", "/channels/{name}/start", "/channels/failing/start"),
    ("get", "/cluster", "/cluster"),
    ("post", "/cluster/drain", "/cluster/drain"),
    ("post", "/cluster/undrain", "/cluster/undrain"),
    ("get", "/sources", "/sources"),
    ("get", "/reaper", "/reaper"),
    ("post", "/reaper/stop", "/reaper/stop"),
    ("post", "/reaper/start", "/reaper/start?delay=3600"),
    ("get", "/events", None),  # a stream, not JSON: tests/api/test_events.py
]


def test_every_documented_operation_answers_as_documented(openapi, server):
    """Each documented operation, requested here (in this order, by this test alone),
    answers 200 with a body its schema accepts; nothing depends on other tests."""
    documented = {(path, method) for path, methods in openapi.document["paths"].items() for method in methods}
    assert documented == {(template, method) for method, template, _ in EXAMPLES}
    for method, template, path in EXAMPLES:
        if path is None:
            continue
        status, _, body = http(method.upper(), f"{server.url}/api/v1{path}", TOKEN if method == "post" else None)
        assert status == 200, (method, path, body)
        openapi.check(template, method, status, body)


def test_the_api_index_links_everything(server, openapi):
    status, headers, index = http("GET", f"{server.url}/api/v1/")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert index["openapi"] == "/api/v1/openapi.json" and index["dashboard"] == "/"
    paths = {resource["path"] for resource in index["resources"]}
    assert {"/api/v1/channels", "/api/v1/reaper", "/api/v1/events"} <= paths
    for resource in index["resources"]:
        if "GET" in resource["methods"] and "{" not in resource["path"] and not resource["path"].endswith("events"):
            assert http("GET", f"{server.url}{resource['path']}")[0] == 200, resource
    assert http("GET", f"{server.url}/api")[0] == 200  # redirected to the index


@pytest.mark.parametrize("path", ["/api/v1/channels/counting/stop", "/api/v1/nowhere", "/api/v2/channels"])
def test_a_body_too_large_is_a_json_413_and_changes_nothing(server, path):
    """The request declares more than 10 MiB; the server answers before reading it."""
    connection = http_client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 413, body
    assert response.getheader("Content-Type") == "application/json"
    assert "too large" in json.loads(body)["error"]
    assert get(server, "/channels/counting")["state"] in ("ACTIVE", "STEADY")  # nothing was done


def test_read_only_without_a_token(tmp_path):
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {}).start()
    try:
        code, _, body = http("POST", f"{server.url}/api/v1/reaper/stop", "anything")
        assert code == 403 and "control needs webserver.api_token" in body["error"]
    finally:
        server.stop()
