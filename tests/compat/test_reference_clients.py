"""The reference 1.7 ``de-client`` and ``de-query-tool`` on the wire, against a real de-server.

``reference_client.py`` runs as a real client process and makes exactly the reference's
XML-RPC calls (method names, positional arguments and their types); each answer is checked
for what it says, not only for coming back.
"""

import csv
import io
import json
import re
import subprocess
import sys
import time
import xmlrpc.client

import pytest

from decisionengine.testing.waiting import eventually
from tests.engine.server import REPO, DEServer
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)

SCRIPT = REPO / "tests" / "compat" / "reference_client.py"
CONTROL_TOKEN = "reference-control-token-0123456789"


def channels(root):
    counting = counting_channel(str(root / "published.jsonl"))
    counting["sources"]["counter"]["schedule"] = 0.3
    counting["sources"]["talker"] = module("ChattySource", schedule=0.3)
    # sources are known by name across the server, as the reference's: both channels name
    # "counter" with the same configuration, so they share it (another configuration would
    # need another name)
    other = {"sources": {"counter": module("CountingSource", schedule=0.3)}, "publishers": {}}
    return {"counting": counting, "other": other}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", channels(root)).start()
    server.wait_for_generation("counting", 2, 60)
    server.wait_for_generation("other", 2, 60)
    yield server
    server.stop()


def reference_client(url, *args, timeout=240):
    """Run the script as a client process; {command: answer entry}, in the order made."""
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            url,
            "--channel",
            "counting",
            "--product",
            "numbers",
            "--source",
            "talker",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    return {entry["command"]: entry for entry in entries}


def answer(entries, command):
    entry = entries[command]
    assert "fault" not in entry, f"{command}: {entry['fault']}"
    return entry["result"]


def sections(text, product):
    """{channel: rendered value} from the reference's ``Product P:  Found in channel C`` layout."""
    assert text.startswith(f"Product {product}:  Found in channel ")
    parts = re.split(r"\s?Found in channel (\S+)\n", text[len(f"Product {product}: ") :])
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_header(table):
    """The column names of a psql table (the index's is empty)."""
    return cells(next(line for line in table.splitlines() if line.startswith("|")))


def table_rows(table):
    """The cells of a psql table's body rows."""
    lines = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|-")]
    return [cells(line) for line in lines[1:]]


def test_every_reference_call_answers_what_it_should(server):
    entries = reference_client(server.url)
    faults = {c: e["fault"] for c, e in entries.items() if "fault" in e}
    assert list(faults) == ["de-client --print-product nothing_makes_this"], faults
    assert (
        "no product 'nothing_makes_this' in any channel"
        in faults["de-client --print-product nothing_makes_this"]["string"]
    )

    # the server
    assert answer(entries, "de-client --ping") == "pong"
    status = answer(entries, "de-client --status")
    assert "counting" in status and "other" in status and "STEADY" in status and "talker" in status
    assert json.loads(answer(entries, "de-client --show-de-config"))["server_address"] == ["127.0.0.1", server.port]
    assert answer(entries, "de-client --print-engine-loglevel") == "DEBUG"
    dependencies = answer(entries, "de-client --product-dependencies")
    assert re.search(r"numbers\s+counter\s+doubler, le", dependencies)
    assert 'de_generations_total{channel="counting",outcome="committed"}' in answer(entries, "de-client --metrics")
    queues = answer(entries, "de-client --queue-status").splitlines()
    assert queues[0].split()[:5] == ["channel", "source", "delivery", "pending", "deliveries"]
    channel_rows = queues[2 : queues.index("")]
    by_source = {tuple(line.split()[:2]): line.split() for line in channel_rows}
    assert set(by_source) == {("counting", "counter"), ("counting", "talker"), ("other", "counter")}
    sources = queues[queues.index("") + 1 :]
    assert sources[0].split()[:3] == ["source", "runs", "consumers"]
    rows = {line.split()[0]: line.split() for line in sources[2:]}
    assert set(rows) == {"counter", "talker"} and rows["counter"][1:4] == ["shared", "counting,", "other"]
    assert all(row[2] in ("yes", "no") and int(row[3]) >= 2 for row in by_source.values())
    assert answer(entries, "de-client --block-while BOOT --timeout 60").strip() == "no channel is BOOT"

    # products: print_product(product, columns, query, types, format), in every channel holding it
    assert "channel counting" in answer(entries, "de-client --print-products")
    plain = sections(answer(entries, "de-client --print-product numbers"), "numbers")
    assert set(plain) == {"counting", "other"}
    assert [row[2] for row in table_rows(plain["counting"])] == ["0", "1", "2"]  # index, n, x
    selected = sections(answer(entries, "de-client --print-product numbers --columns x --query 'x > 0'"), "numbers")
    assert table_rows(selected["counting"]) == [["1", "1"], ["2", "2"]]
    typed = sections(answer(entries, "de-client --print-product numbers --types"), "numbers")["counting"]
    assert table_header(typed) == ["", "n", "n.type", "x", "x.type"]
    assert all(row[2] == "int" and row[4] == "int" for row in table_rows(typed))
    vertical = sections(answer(entries, "de-client --print-product numbers --format vertical"), "numbers")["counting"]
    assert [line for line in vertical.splitlines() if line.startswith("Row")] == ["Row 0", "Row 1", "Row 2"]
    assert "| x | 2 |" in vertical
    names = sections(answer(entries, "de-client --print-product numbers --format column-names"), "numbers")
    assert table_rows(names["counting"]) == [["n"], ["x"]]
    as_json = sections(answer(entries, "de-client --print-product numbers --format json"), "numbers")
    assert json.loads(as_json["counting"])["x"] == {"0": 0, "1": 1, "2": 2}  # pandas' column-oriented JSON
    as_csv = sections(answer(entries, "de-client --print-product numbers --types --format csv"), "numbers")
    rows = list(csv.DictReader(io.StringIO(as_csv["counting"])))
    assert [(r["x"], r["x.type"]) for r in rows] == [("0", "int"), ("1", "int"), ("2", "int")]

    # de-query-tool: query_tool(product, format, start_time): the history of every channel
    history = answer(entries, "de-query-tool numbers")
    assert history.startswith("Product numbers:  Found in channel counting\n Found in channel other\n")
    assert table_header(history) == ["", "n", "x", "channel", "taskmanager_id", "generation_id", "generation_time"]
    assert {row[3] for row in table_rows(history)} == {"counting", "other"}
    text = answer(entries, "de-query-tool numbers --format csv --since '2000-01-01 00:00:00'")
    found, body = text.split("\n", 2)[:2], text.split("\n", 2)[2]
    assert found == ["Product numbers:  Found in channel counting", " Found in channel other"]
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {r["channel"] for r in rows} == {"counting", "other"}
    counting_generations = sorted({int(r["generation_id"]) for r in rows if r["channel"] == "counting"})
    assert counting_generations[:2] == [1, 2] and len(counting_generations) >= 2
    assert all(r["x"] in ("0", "1", "2") for r in rows)
    document = json.loads(answer(entries, "de-query-tool numbers --format json").split("\n", 2)[2])
    assert {"n", "x", "channel", "taskmanager_id", "generation_id"} <= set(document)

    # configuration and log levels
    assert set(json.loads(answer(entries, "de-client --show-config"))) == {"counting", "other"}
    assert list(json.loads(answer(entries, "de-client --show-channel-config counting"))) == ["counting"]
    assert answer(entries, "de-client --get-channel-loglevel counting") == "INFO"
    assert answer(entries, "de-client --get-source-loglevel talker") == "INFO"
    assert "log level is DEBUG" in answer(entries, "de-client --set-source-loglevel talker DEBUG")
    assert answer(entries, "de-client --get-source-loglevel talker (after)") == "DEBUG"
    assert answer(entries, "de-client --get-channel-loglevel counting (after)") == "WARNING"

    # the Reaper
    assert answer(entries, "de-client --reaper-stop") == "reaper stopped"
    assert answer(entries, "de-client --reaper-start --reaper-start-delay-secs 3600") == (
        "reaper started (first pass in 3600 s)"
    )
    assert re.search(r"^state\s+IDLE$", answer(entries, "de-client --reaper-status (after)"), re.M)

    # channels
    assert answer(entries, "de-client --stop-channel counting") == "channel counting stopped"
    assert answer(entries, "de-client --start-channel counting") == "channel counting started"
    assert answer(entries, "de-client --block-while BOOT (after start)").strip() == "no channel is BOOT"
    assert answer(entries, "de-client --kill-channel counting --timeout 5") == "channel counting stopped"
    assert answer(entries, "de-client --kill-channel counting -f") == "channel counting killed"
    # no timeout: the server's shutdown_timeout, time enough to stop cleanly (the reference's meaning)
    assert answer(entries, "de-client --kill-channel counting") == "channel counting stopped"
    assert answer(entries, "rm_channel(counting, 10)") == "channel counting removed"
    after_rm = answer(entries, "de-client --status (after rm)")
    assert "counting" not in after_rm and "other" in after_rm
    assert answer(entries, "de-client --start-channel counting (after rm)") == "channel counting started"
    assert answer(entries, "de-client --stop-channels") == "stopped: counting, other"
    assert answer(entries, "de-client --start-channels") == "started: counting, other"
    assert answer(entries, "de-client --block-while BOOT --timeout 60 (last)").strip() == "no channel is BOOT"
    server.wait_for_generation("counting", 1, 60)


def chatty_lines(server, kind):
    """The call numbers of ChattySource's ``kind`` lines in the channel's log, in order."""
    pattern = re.compile(rf"chatty {kind} line .*call=(\d+)")
    return [int(m.group(1)) for m in map(pattern.search, server.log("counting").splitlines()) if m]


def test_a_source_log_level_applies_to_what_the_source_logs_and_outlives_a_restart(server):
    rpc = server.rpc()
    server.wait_for_generation("counting", 1, 60)
    rpc.set_channel_log_level("counting", "INFO")
    rpc.set_source_log_level("talker", "NOTSET")  # the channel's level: INFO
    assert rpc.get_source_log_level("talker") == "INFO"
    debug_before = len(chatty_lines(server, "debug"))
    info_before = len(chatty_lines(server, "info"))
    eventually(lambda: len(chatty_lines(server, "info")) >= info_before + 2, 30, what="info lines at INFO")
    assert len(chatty_lines(server, "debug")) == debug_before  # the channel's INFO holds

    assert rpc.set_source_log_level("talker", "DEBUG") == "source talker of channel counting log level is DEBUG"
    eventually(lambda: len(chatty_lines(server, "debug")) >= debug_before + 2, 30, what="the source's DEBUG lines")
    assert rpc.get_channel_log_level("counting") == "INFO"  # the channel's own level is unchanged
    assert "[debug" not in "\n".join(  # other modules' lines keep the channel's level
        line for line in server.log("counting").splitlines() if "chatty" not in line
    )

    # the level is the server's record of the channel: a new channel process gets it too
    assert rpc.stop_channel("counting") == "channel counting stopped"
    stopped_at = len(chatty_lines(server, "debug"))
    rpc.start_channel("counting")
    eventually(lambda: len(chatty_lines(server, "debug")) > stopped_at, 60, what="DEBUG lines after a restart")

    # WARNING: the source's INFO lines stop while the channel's go on
    rpc.set_source_log_level("talker", "WARNING", "counting")
    time.sleep(0.5)  # the command reaches the channel process
    infos = len(chatty_lines(server, "info"))
    generation = server.channel("counting")["generation"]
    server.wait_for_generation("counting", generation + 3, 30)
    assert len(chatty_lines(server, "info")) <= infos + 1  # at most one acquire already under way
    assert rpc.get_source_log_level("talker", "counting") == "WARNING"


def test_the_sources_of_several_channels_share_a_name_as_the_reference_sources_did(server):
    rpc = server.rpc()
    rpc.set_channel_log_level("counting", "INFO")
    assert json.loads(rpc.get_source_log_level("counter", None, "json")) == {"counting": "INFO", "other": "INFO"}
    assert rpc.set_source_log_level("counter", "ERROR", "other") == "source counter of channel other log level is ERROR"
    assert rpc.get_source_log_level("counter") == "counting: INFO\nother: ERROR\n"
    assert rpc.set_source_log_level("counter", "NOTSET") == (
        "source counter of channel counting log level is INFO; source counter of channel other log level is INFO"
    )
    assert rpc.get_source_log_level("counter") == "INFO"


def test_reference_clients_send_the_token_in_the_url(tmp_path):
    (tmp_path / "control.token").write_text(CONTROL_TOKEN)
    server = DEServer(
        tmp_path,
        f"sqlite:///{tmp_path / 'ds.sqlite'}",
        channels(tmp_path),
        webserver={"api_token_file": "control.token"},
    ).start()
    try:
        server.wait_for_generation("counting", 2, 60)
        only = "--only=ping,print_product,query_tool,queue_status,get_source_log_level,set_source_log_level,reaper_stop"
        anonymous = reference_client(server.url, only)
        # reads are open (no read token), orders need the control token
        assert answer(anonymous, "de-client --ping") == "pong"
        assert "Found in channel counting" in answer(anonymous, "de-client --print-product numbers")
        assert "Found in channel counting" in answer(anonymous, "de-query-tool numbers")
        assert "counting" in answer(anonymous, "de-client --queue-status")
        refused = anonymous["de-client --set-source-loglevel talker DEBUG"]["fault"]
        assert refused["code"] == 401 and "set_source_log_level needs the API token" in refused["string"]
        assert anonymous["de-client --reaper-stop"]["fault"]["code"] == 401
        assert answer(anonymous, "de-client --get-source-loglevel talker (after)") == "INFO"  # nothing changed

        with_token = reference_client(f"http://de:{CONTROL_TOKEN}@127.0.0.1:{server.port}", only)
        assert "log level is DEBUG" in answer(with_token, "de-client --set-source-loglevel talker DEBUG")
        assert answer(with_token, "de-client --get-source-loglevel talker (after)") == "DEBUG"
        assert answer(with_token, "de-client --reaper-stop") == "reaper stopped"

        wrong = reference_client(f"http://de:guessed@127.0.0.1:{server.port}", "--only=ping")
        assert wrong["de-client --ping"]["fault"]["code"] == 401
        with pytest.raises(xmlrpc.client.Fault, match="needs the API token"):
            server.rpc().rm_channel("counting", 10)
        assert server.channel("counting")["state"] == "STEADY"
    finally:
        server.stop()
