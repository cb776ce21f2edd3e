"""A channel's module raises, hangs, kills its interpreter, or its process is killed.

Each fault takes down only its channel: the server reports it (the reason kept in
``last_failure``) within a bounded time and keeps answering; the other channel goes on;
the server starts the failed channel again by itself, with a growing delay while the
fault lasts, and once the fault is gone the channel commits again with no one's help,
numbering continuing.  Every committed generation is whole and numbered once, and
publishers acted on committed generations only.
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


#: the restart delays of these tests: 0.5 s, 1 s, 2 s, then 2 s while the fault lasts
RESTART = {"enabled": True, "initial_delay": 0.5, "max_delay": 2}
#: seconds from the fault's end to the faulty channel's next committed generation: the
#: longest restart delay, a channel boot, a source delivery and a generation
RECOVERY = 10.0


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_channel_fault_takes_down_only_its_channel(tmp_path, db_url, fault):
    bystander = counting_channel(str(tmp_path / "bystander.jsonl"))
    bystander["sources"]["counter"]["schedule"] = 0.3
    channels = {"faulty": faulty_channel(tmp_path), "bystander": bystander}
    server = DEServer(tmp_path, db_url, channels, channel_restart=RESTART).start()
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
            lambda s: next(c for c in s["channels"] if c["channel"] == "faulty")["last_failure"],
            FAULTS[fault] + 10,
            f"the failure of the channel after {fault}",
        )
        reported = time.monotonic() - injected
        assert reported < FAULTS[fault], f"{fault}: reported after {reported:.1f} s"
        faulty = next(c for c in status["channels"] if c["channel"] == "faulty")
        reason = {"raise": "injected failure", "hang": "module_timeout", "exit": "code 3", "kill -9": "SIGKILL"}
        assert reason[fault] in faulty["last_failure"]["reason"], faulty["last_failure"]
        # the server answers, the other channel goes on
        started = time.monotonic()
        assert server.rpc().ping() == "pong" and time.monotonic() - started < 1
        going = server.channel("bystander")["generation"]
        server.wait_for_generation("bystander", going + 2, 30)
        assert state_of(server, "bystander") == "STEADY"
        if fault != "kill -9":  # a lasting fault: the channel is restarted and fails again
            server.wait_for(
                lambda s: next(c for c in s["channels"] if c["channel"] == "faulty")["restarts"] >= 2,
                30,
                "the faulty channel restarted while its fault lasts",
            )

        # the fault is gone: the channel commits again by itself and numbering goes on
        last = server.channel("faulty")["generation"]
        (tmp_path / "fault").write_text("")
        healed = time.monotonic()
        server.wait_for_generation("faulty", last + 1, 30)
        recovery = time.monotonic() - healed
        assert recovery < RECOVERY, f"{fault}: committed again {recovery:.1f} s after the fault ended"
        # on PostgreSQL the server hears of the commit (NOTIFY) before the process's own
        # report of its state, which may still say BOOT for a moment
        status = server.wait_for(
            lambda s: next(c for c in s["channels"] if c["channel"] == "faulty")["state"] in ("ACTIVE", "STEADY"),
            10,
            "the healed channel running",
        )
        assert next(c for c in status["channels"] if c["channel"] == "faulty")["restarts"] >= 1
        # it commits again: the next failure waits the first delay again
        server.wait_for(
            lambda s: next(c for c in s["channels"] if c["channel"] == "faulty")["failures_in_a_row"] == 0,
            10,
            "the failure count cleared by a commit",
        )
    finally:
        assert server.stop() == 0
    numbers = assert_whole(db_url, "faulty", tmp_path / "published.jsonl", repeats=fault != "raise")
    assert len(numbers) >= 4
    assert_whole(db_url, "bystander", tmp_path / "bystander.jsonl")
