"""de-client against a real de-server: every option, as text and as JSON."""

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from decisionengine.testing.postgres import free_port
from decisionengine.testing.waiting import eventually
from tests.cli.run import MODULES, command
from tests.engine.server import REPO, DEServer
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    channel = counting_channel(str(root / "r.jsonl"))
    channel["sources"]["counter"]["schedule"] = 0.3
    spare = {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}}
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", {"counting": channel, "spare": spare}).start()
    server.wait_for_generation("counting", 2, 60)
    server.wait_for_generation("spare", 1, 60)
    yield server
    server.stop()


def client(server, *args, **kwargs):
    return command("de-client", "--host", "127.0.0.1", "--port", server.port, *args, **kwargs)


def ok(result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def test_status(server):
    text = ok(client(server, "--status"))
    assert "counting" in text and "STEADY" in text and "counter" in text and "missed updates" in text
    status = as_json(client(server, "--status", "--json"))
    counting = next(c for c in status["channels"] if c["channel"] == "counting")
    assert counting["state"] == "STEADY" and counting["generation"] >= 2
    assert counting["sources"]["counter"]["missed_update_count"] == 0


def test_print_products(server):
    text = ok(client(server, "--print-products"))
    assert "channel counting" in text and "product numbers" in text and "product constant" in text
    assert "*** row 0 ***" in ok(client(server, "--print-products", "--vertical"))
    products = as_json(client(server, "--print-products", "--json"))
    assert products["counting"]["products"]["numbers"]["shape"] == [3, 2]


def test_print_product_in_every_format(server):
    table = ok(client(server, "--print-product", "doubled"))
    assert "product doubled" in table and "|" in table
    rows = list(csv.DictReader(io.StringIO(ok(client(server, "--print-product", "doubled", "--format", "csv")))))
    assert [r["x"] for r in rows] == ["0", "2", "4"]
    document = as_json(client(server, "--print-product", "doubled", "--json"))
    assert [r["x"] for r in document["value"]] == [0, 2, 4]
    assert as_json(client(server, "--print-product", "doubled", "--format", "json"))["product"] == "doubled"
    selected = as_json(client(server, "--print-product", "numbers", "--columns", "x", "--query", "x >= 1", "--json"))
    assert selected["value"] == [{"x": 1}, {"x": 2}]
    vertical = ok(client(server, "--print-product", "numbers", "--vertical"))
    assert "*** row 2 ***" in vertical
    assert ok(client(server, "--print-product", "constant", "--channel", "spare")).rstrip().endswith("7")


def test_publisher_status_shows_how_publishers_ran(server):
    """publisher_status (a PublisherStatus for modules) prints as its table, as before,
    with each publisher's enabled state and since when after the details."""

    # the newest generation stores its publisher status once its publishers have run, a moment
    # after it commits: asked in between, the product is not there yet (so each call is retried)
    def printed(*args: str):
        def answered():
            result = client(server, "--print-product", "publisher_status", "--channel", "counting", *args)
            return result if result.returncode == 0 else None

        return eventually(answered, 10, what=f"publisher_status of the newest generation {args}")

    table = ok(printed())
    for column in ("publisher", "ran", "succeeded", "seconds", "error", "enabled", "since"):
        assert column in table
    assert "recorder" in table
    document = as_json(printed("--json"))
    row = document["value"][0]
    assert row["publisher"] == "recorder" and row["ran"] is True and row["succeeded"] is True
    assert row["seconds"] >= 0 and row["error"] is None and row["enabled"] is True
    selected = printed("--columns", "publisher,succeeded")
    assert "succeeded" in ok(selected) and "seconds" not in ok(selected)
    spare = as_json(client(server, "--print-product", "publisher_status", "--channel", "spare", "--json"))
    assert spare["value"] == []  # no publishers: an empty table


def test_print_product_with_the_reference_options(server):
    typed = ok(client(server, "--print-product", "numbers", "--types"))
    header = next(line for line in typed.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["", "n", "n.type", "x", "x.type"]
    document = as_json(client(server, "--print-product", "numbers", "--types", "--columns", "x", "--json"))
    assert document["value"] == [{"x": 0, "x.type": "int"}, {"x": 1, "x.type": "int"}, {"x": 2, "x.type": "int"}]
    rows = list(
        csv.DictReader(io.StringIO(ok(client(server, "--print-product", "numbers", "--types", "--format", "csv"))))
    )
    assert rows[0] == {"n": rows[0]["n"], "n.type": "int", "x": "0", "x.type": "int"}
    assert "*** row 2 ***" in ok(client(server, "--print-product", "numbers", "--format", "vertical"))
    names = ok(client(server, "--print-product", "numbers", "--format", "column-names"))
    assert [line.strip("| ") for line in names.splitlines() if line.startswith("| ")] == ["column", "n", "x"]
    with_types = ok(client(server, "--print-product", "numbers", "--format", "column-names", "--types"))
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in with_types.splitlines() if line.startswith("| ")
    ]
    assert rows == [["column", "types"], ["n", "int"], ["x", "int"]]


def test_a_query_that_matches_no_row_prints_an_empty_product(server):
    text = ok(client(server, "--print-product", "numbers", "--query", "x > 100"))
    assert text.splitlines()[-1] == "(no rows)"
    assert as_json(client(server, "--print-product", "numbers", "--query", "x > 100", "--json"))["value"] == []


def test_wide_frames_wrap_to_the_terminal(server):
    narrow = ok(client(server, "--print-product", "numbers", env={"COLUMNS": "20"}))
    assert max(len(line) for line in narrow.splitlines()[1:]) <= 20


def test_unknown_product_is_one_line(server):
    result = client(server, "--print-product", "nothing")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no product 'nothing'" in result.stderr


def test_channel_control(server):
    assert "stopped" in ok(client(server, "--stop-channel", "spare"))
    assert json.loads(ok(client(server, "--status", "--json")))["channels"][1]["state"] == "SHUTDOWN"
    answer = as_json(client(server, "--start-channel", "spare", "--json"))
    assert answer == {"method": "start_channel", "result": "channel spare started"}
    assert "no channel is BOOT" in ok(client(server, "--block-while", "boot", "--timeout", "60"))
    assert as_json(client(server, "--block-while", "BOOT", "--timeout", "60", "--json"))["timed_out"] is False
    stopped = ok(client(server, "--stop-channels"))
    assert "counting" in stopped and "spare" in stopped
    assert "started" in ok(client(server, "--start-channels"))
    ok(client(server, "--block-while", "BOOT", "--timeout", "60"))
    killed = ok(client(server, "--kill-channel", "spare", "--timeout", "5"))
    assert killed in ("channel spare stopped\n", "channel spare killed\n")
    assert "removed" in ok(client(server, "--rm-channel", "spare"))
    assert "started" in ok(client(server, "--start-channel", "spare"))
    ok(client(server, "--block-while", "BOOT", "--timeout", "60"))


def test_kill_channel_waits_for_the_shutdown_timeout_or_kills_at_once_with_force(server):
    assert ok(client(server, "--kill-channel", "spare")) == "channel spare stopped\n"  # shutdown_timeout: clean
    ok(client(server, "--start-channel", "spare"))
    ok(client(server, "--block-while", "BOOT", "--timeout", "60"))
    server.wait_for_generation("spare", 1, 60)
    assert ok(client(server, "--kill-channel", "spare", "-f")) == "channel spare killed\n"
    assert server.channel("spare")["state"] in ("ERROR", "SHUTDOWN")
    ok(client(server, "--start-channel", "spare"))
    ok(client(server, "--block-while", "BOOT", "--timeout", "60"))


def test_block_while_times_out_with_status_1(server):
    result = client(server, "--block-while", "STEADY", "--timeout", "0.5")
    assert result.returncode == 1
    assert "timed out after 0.5 s; still STEADY" in result.stdout


def test_reaper(server):
    assert "state" in ok(client(server, "--reaper-status"))
    assert as_json(client(server, "--reaper-status", "--json"))["retention_interval_in_days"] >= 7
    assert ok(client(server, "--reaper-stop")) == "reaper stopped\n"
    assert as_json(client(server, "--reaper-status", "--json"))["state"] == "SHUTDOWN"
    assert "reaper started" in ok(client(server, "--reaper-start", "3600"))
    assert as_json(client(server, "--reaper-status", "--json"))["state"] == "IDLE"
    assert ok(client(server, "--reaper-start")).startswith("reaper already running (next pass ")
    ok(client(server, "--reaper-stop"))
    started = ok(client(server, "--reaper-start", "--reaper-start-delay-secs", "7200"))  # the reference's spelling
    assert started == "reaper started (first pass in 7200 s)\n"
    next_run = as_json(client(server, "--reaper-status", "--json"))["next_run"]
    assert 7100 < next_run - time.time() <= 7200


def test_log_levels(server):
    assert ok(client(server, "--print-engine-loglevel")).strip() in ("DEBUG", "INFO", "WARNING")
    assert "WARNING" in ok(client(server, "--set-engine-loglevel", "warning"))
    assert as_json(client(server, "--print-engine-loglevel", "--json"))["result"] == "WARNING"
    ok(client(server, "--set-channel-loglevel", "counting", "DEBUG"))
    assert ok(client(server, "--get-channel-loglevel", "counting")).strip() == "DEBUG"
    bad = client(server, "--set-channel-loglevel", "counting", "LOUD")
    assert bad.returncode == 1 and "unknown log level 'LOUD'" in bad.stderr


def test_source_log_levels(server):
    ok(client(server, "--set-channel-loglevel", "counting", "INFO"))
    table = ok(client(server, "--get-source-loglevel", "counter"))
    assert [line.split() for line in table.splitlines()[2:]] == [["counting", "counter", "INFO"]]
    answer = ok(client(server, "--set-source-loglevel", "counter", "debug"))
    assert answer == "source counter of channel counting log level is DEBUG\n"
    assert as_json(client(server, "--get-source-loglevel", "counter", "--json")) == {
        "source": "counter",
        "levels": {"counting": "DEBUG"},
    }
    assert as_json(client(server, "--get-source-loglevel", "c", "--channel", "spare", "--json"))["levels"] == {
        "spare": ok(client(server, "--get-channel-loglevel", "spare")).strip()
    }
    missing = client(server, "--get-source-loglevel", "nothing")
    assert missing.returncode == 1
    assert "no source 'nothing' in any channel; sources are counting.counter, spare.c" in missing.stderr
    wrong = client(server, "--set-source-loglevel", "counter", "DEBUG", "--channel", "spare")
    assert wrong.returncode == 1 and "no source 'counter' in channel 'spare'; sources are spare.c" in wrong.stderr
    ok(client(server, "--set-source-loglevel", "counter", "NOTSET"))
    assert as_json(client(server, "--get-source-loglevel", "counter", "--json"))["levels"] == {"counting": "INFO"}


def test_queue_status(server):
    lines = ok(client(server, "--queue-status")).splitlines()
    assert lines[0].split() == [
        "channel",
        "source",
        "delivery",
        "pending",
        "deliveries",
        "last",
        "update",
        "link",
        "backlog",
    ]
    channel_rows = lines[2 : lines.index("")]
    assert {tuple(line.split()[:2]) for line in channel_rows} == {("counting", "counter"), ("spare", "c")}
    # then every source with its consumers (the reference listed its sources)
    source_rows = {line.split()[0]: line.split() for line in lines[lines.index("") + 3 :]}
    assert source_rows["counter"][1:5] == ["in", "channel", "counting", socket.gethostname()]
    queues = {row["channel"]: row for row in as_json(client(server, "--queue-status", "--json"))}
    assert set(queues) == {"counting", "spare"}
    counter = queues["counting"]["sources"]["counter"]
    assert counter["deliveries"] >= 1 and counter["pending"] in (True, False) and counter["last_update"] > 0
    assert isinstance(queues["counting"]["link_backlog"], int)


def test_configuration_and_dependencies(server):
    assert as_json(client(server, "--show-config", "counting"))["counting"]["sources"]["counter"]["schedule"] == 0.3
    assert set(as_json(client(server, "--show-config", "--json"))) == {"counting", "spare"}
    assert as_json(client(server, "--show-de-config", "--json"))["server_address"][1] == server.port
    assert list(as_json(client(server, "--show-channel-config", "spare"))) == ["spare"]
    assert list(as_json(client(server, "--show-channel-config", "spare", "--json"))) == ["spare"]
    dependencies = as_json(client(server, "--product-dependencies", "--json"))
    assert dependencies["counting"]["doubled"] == {"producer": "doubler", "consumers": ["summer"]}
    assert "producer" in ok(client(server, "--product-dependencies"))


def test_metrics_methods_ping(server):
    assert "de_generations_total" in ok(client(server, "--metrics"))
    assert "status" in ok(client(server, "--list-rpc-methods")).split()
    assert "ping" in as_json(client(server, "--list-rpc-methods", "--json"))
    assert ok(client(server, "--ping")) == "pong\n"
    assert as_json(client(server, "--ping", "--json")) == {"method": "ping", "result": "pong"}


def test_server_not_running_is_one_line_and_status_1():
    port = free_port()
    for args in (["--status"], ["--status", "--json"], ["--print-product", "x"], ["--follow", "demo"]):
        result = command("de-client", "--port", port, *args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"de-client: cannot reach the decision engine at http://localhost:{port}: "
            "connection refused (is de-server running?)\n"
        )


def test_verbose_says_which_call_failed_and_why():
    port = free_port()
    result = command("de-client", "--port", port, "-v", "--status")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"de-client: cannot reach the decision engine at http://localhost:{port}: "
        "connection refused (is de-server running?)"
    )
    assert lines[1].startswith(f"  calling status('table') at http://localhost:{port}: ConnectionRefusedError")
    assert len(lines) == 2


def test_verbose_with_a_refusal_shows_the_fault(server):
    result = client(server, "--verbose", "--stop-channel", "nope")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "de-client: stop_channel: no channel 'nope'; channels are counting, spare",
        f"  calling stop_channel('nope') at http://127.0.0.1:{server.port}: XML-RPC fault 1",
    ]


def test_wait_for_a_server_that_starts_late(tmp_path):
    late = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {})
    threading.Timer(2, late.start, kwargs={"wait": False}).start()
    started = time.monotonic()
    try:
        assert ok(command("de-client", "--port", late.port, "--wait", "60", "--ping")) == "pong\n"
        assert time.monotonic() - started >= 2
        assert ok(command("de-client", "--port", late.port, "--stop")) == "decision engine stopping\n"
        assert late.process.wait(60) == 0
    finally:
        late.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no action given"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--status", "--bogus"], "unrecognized arguments: --bogus"),
        (["--status", "--ping"], "not allowed with argument"),
        (["--block-while", "SLEEPING"], "invalid choice: 'SLEEPING'"),
        (["--print-product", "x", "--format", "xml"], "invalid choice: 'xml'"),
        (["--status", "--types"], "--types goes with --print-product"),
        (["--status", "-f"], "-f/--force goes with --kill-channel"),
        (["--status", "--reaper-start-delay-secs", "5"], "--reaper-start-delay-secs goes with --reaper-start"),
        (["--kill-channel", "x", "-f", "--timeout", "3"], "give -f/--force (kill at once) or --timeout, not both"),
        (["--queue-status", "--print-products"], "not allowed with argument"),
        (["--port", "eighty", "--status"], "invalid int value"),
    ],
)
def test_bad_arguments_are_argparse_errors(args, message):
    result = command("de-client", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "one of the arguments" not in result.stderr
    assert "Traceback" not in result.stderr


def test_help_has_examples():
    result = command("de-client", "--help")
    assert result.returncode == 0 and "examples:" in result.stdout and "--follow" in result.stdout


def test_rpc_timeout_help_is_a_whole_sentence():
    help_text = " ".join(command("de-client", "--help", env={"COLUMNS": "300"}).stdout.split())
    assert "--rpc-timeout SECONDS give up on a call after SECONDS" in help_text


def test_health_is_one_line_and_its_exit_status_says_how_things_are(tmp_path):
    channels = {
        "good": {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}},
        "bad": {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}},
    }
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", channels).start()
    try:
        server.wait_for_generation("good", 1, 60)
        server.wait_for_generation("bad", 1, 60)
        healthy = client(server, "--health")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout == "OK: 2 channels running\n"
        assert as_json(client(server, "--health", "--json"))["healthy"] is True

        server.rpc().stop_channel("bad")
        stopped = client(server, "--health")
        assert stopped.returncode == 1
        assert stopped.stdout == "FAILING: not running: bad (of 2 channels)\n"

        server.rpc().start_channel("bad")
        server.wait_for(lambda s: any(c["state"] == "STEADY" for c in s["channels"] if c["channel"] == "bad"))
        pid = server.channel("bad")["pid"]
        os.kill(pid, signal.SIGKILL)  # the channel dies: ERROR
        server.wait_for(lambda s: any(c["state"] == "ERROR" for c in s["channels"] if c["channel"] == "bad"))
        failed = client(server, "--health")
        assert failed.returncode == 1
        assert failed.stdout == "FAILING: ERROR: bad (of 2 channels)\n"
        summary = json.loads(client(server, "--health", "--json").stdout)
        assert summary["healthy"] is False and summary["error"] == ["bad"] and summary["reachable"] is True
    finally:
        server.stop()
    gone = command("de-client", "--port", server.port, "--health")
    assert gone.returncode == 2
    assert gone.stdout.startswith("UNREACHABLE: cannot reach the decision engine") and gone.stdout.count("\n") == 1
    assert json.loads(command("de-client", "--port", server.port, "--health", "--json").stdout)["reachable"] is False


def test_a_closed_pipe_ends_every_command_quietly(server, tmp_path):
    """``de-client ... | head``: the reader goes away before the output is written."""
    space = f"sqlite:///{server.root / 'ds.sqlite'}"
    commands = [
        [sys.executable, "-m", MODULES["de-client"], "--port", str(server.port), "--status"],
        [sys.executable, "-m", MODULES["de-client"], "--port", str(server.port), "--print-products"],
        [sys.executable, "-m", MODULES["de-query-tool"], "--url", space, "counting", "numbers", "--since", "1d"],
        [sys.executable, "-m", MODULES["de-reaper"], "--url", space, "--dry-run"],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in commands:
        read, write = os.pipe()
        os.close(read)  # closed before the command starts: its first write fails, every time
        process = subprocess.run(
            argv, check=False, stdout=write, stderr=subprocess.PIPE, env=env, cwd=REPO, timeout=120
        )
        os.close(write)
        stderr = process.stderr.decode()
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, (argv, stderr)
        assert stderr == "", (argv, stderr)
        assert process.returncode == 141, (argv, process.returncode)
