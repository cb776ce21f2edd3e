"""A channel's module raises, hangs, kills its interpreter, or its process is killed.

Each fault takes down only its channel: the server reports it (ERROR, with the reason)
within a bounded time and keeps answering; the other channel goes on; once the fault is
gone the channel starts again and numbering continues.  Every committed generation is
whole and numbered once, and publishers acted on committed generations only.
"""

import os
import signal
import time

import pytest

from tests.engine.server import DEServer
from tests.faults.integrity import assert_whole
from tests.taskmanager.channels import counting_channel, module

pytestmark = pytest.mark.timeout(240)

#: fault -> (how it is injected, seconds the server may take to report the channel in ERROR)
FAULTS = {
    "raise": 10.0,  # two failed generations in a row (max_consecutive_failures: 2)
    "hang": 6.0,  # module_timeout: 2
    "exit": 5.0,
    "kill -9": 5.0,
}


def faulty_channel(tmp_path):
    channel = counting_channel(str(tmp_path / "published.jsonl"), max_consecutive_failures=2, module_timeout=2)
    channel["sources"]["counter"]["schedule"] = 0.3
    channel["transforms"]["doubler"] = module("FaultyTransform", fault_file=str(tmp_path / "fault"))
    channel["transforms"]["doubler"]["module"] = "tests.fixtures.fault_modules"
    return channel


def state_of(server, name):
    return server.channel(name)["state"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_channel_fault_takes_down_only_its_channel(tmp_path, db_url, fault):
    bystander = counting_channel(str(tmp_path / "bystander.jsonl"))
    bystander["sources"]["counter"]["schedule"] = 0.3
    server = DEServer(tmp_path, db_url, {"faulty": faulty_channel(tmp_path), "bystander": bystander}).start()
    try:
        server.wait_for_generation("faulty", 3, 60)
        server.wait_for_generation("bystander", 1, 60)
        pid = server.channel("faulty")["pid"]
        injected = time.monotonic()
        if fault == "kill -9":
            os.kill(pid, signal.SIGKILL)
        else:
            (tmp_path / "fault").write_text(fault)
        status = server.wait_for(
            lambda s: next(c for c in s["channels"] if c["channel"] == "faulty")["state"] == "ERROR",
            FAULTS[fault] + 10,
            f"channel in ERROR after {fault}",
        )
        reported = time.monotonic() - injected
        assert reported < FAULTS[fault], f"{fault}: reported after {reported:.1f} s"
        faulty = next(c for c in status["channels"] if c["channel"] == "faulty")
        reason = {"raise": "injected failure", "hang": "module_timeout", "exit": "code 3", "kill -9": "SIGKILL"}
        assert reason[fault] in faulty["last_error"], faulty["last_error"]
        # the server answers, the other channel goes on
        started = time.monotonic()
        assert server.rpc().ping() == "pong" and time.monotonic() - started < 1
        going = server.channel("bystander")["generation"]
        server.wait_for_generation("bystander", going + 2, 30)
        assert state_of(server, "bystander") == "STEADY"

        # the fault is gone: the channel starts again and numbering goes on
        (tmp_path / "fault").write_text("")
        last = server.channel("faulty")["generation"]
        assert server.rpc().start_channel("faulty") == "channel faulty started"
        restarted = time.monotonic()
        server.wait_for_generation("faulty", last + 1, 30)
        assert time.monotonic() - restarted < 15
    finally:
        assert server.stop() == 0
    numbers = assert_whole(db_url, "faulty", tmp_path / "published.jsonl", repeats=fault in ("kill -9", "exit", "hang"))
    assert len(numbers) >= 4
    assert_whole(db_url, "bystander", tmp_path / "bystander.jsonl")
