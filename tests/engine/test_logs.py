"""What operators read: channel logs with real traceback lines or JSON lines, and no leftovers."""

import json

import pytest

from tests.engine.server import DEServer
from tests.taskmanager.channels import module

pytestmark = pytest.mark.timeout(180)


def failing_channel():
    """Every generation fails in a transform (it returns a wrong type): a traceback each time."""
    return {
        "sources": {"counter": module("CountingSource", schedule=0.3)},
        "transforms": {"wrong": module("WrongTypeTransform")},
        "publishers": {},
        "task_manager": {"max_consecutive_failures": 1000},
    }


def run_until_a_failure(tmp_path, **global_config):
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"bad": failing_channel()}, **global_config)
    server.start()
    try:
        server.wait_for(
            lambda s: (next(c for c in s["channels"] if c["channel"] == "bad").get("failed_generations") or 0) >= 2,
            60,
            "two failed generations",
        )
    finally:
        server.stop()
    return server


def test_a_traceback_in_a_channel_log_is_lines_each_naming_the_channel(tmp_path):
    server = run_until_a_failure(tmp_path)
    log = server.log("bad")
    lines = [line for line in log.splitlines() if line.strip()]
    failures = [i for i, line in enumerate(lines) if "generation failed" in line]
    assert failures, log[-3000:]
    first = failures[0]
    assert "\\n" not in lines[first], lines[first]  # no escaped newlines: the traceback follows as lines
    following = lines[first + 1 : first + 40]
    assert following[0] == "channel=bad | Traceback (most recent call last):", following[:3]
    assert any(line.startswith("channel=bad | RuntimeError") for line in following), following
    assert all("channel=bad" in line for line in lines)
    # The server log gets the channel's errors too, tracebacks included, still tagged.
    server_lines = server.log().splitlines()
    assert "channel=bad | Traceback (most recent call last):" in server_lines


def test_a_clean_stop_leaves_no_lock_file(tmp_path):
    channel = {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}}
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"one": channel, "two": channel})
    server.start()
    try:
        server.wait_for_generation("one", 1, 60)
        server.wait_for_generation("two", 1, 60)
        # held while the server runs: its liveness lock (channels under a server take no lock of their own)
        assert [p.name.startswith("ds.sqlite.server-") for p in tmp_path.glob("ds.sqlite.*.lock")] == [True]
    finally:
        assert server.stop() == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")) == []


def test_json_log_format_is_one_object_per_line(tmp_path):
    server = run_until_a_failure(
        tmp_path,
        logger={"log_file": str(tmp_path / "logs" / "decision_engine.log"), "log_level": "DEBUG", "format": "json"},
    )
    channel = [json.loads(line) for line in server.log("bad").splitlines() if line.strip()]
    assert channel and all(entry["channel"] == "bad" for entry in channel)
    failed = [entry for entry in channel if entry["event"].startswith("generation failed")]
    assert failed and "Traceback (most recent call last):" in failed[0]["exception"]
    assert all({"timestamp", "level", "event"} <= set(entry) for entry in channel)
    server_entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert any(entry["event"] == "decision engine stopped" for entry in server_entries)
