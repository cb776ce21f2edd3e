"""Automatic restarts of failed channels: the delays, and what is never restarted.

The recovery of each kind of fault is in tests/faults/test_channel_faults.py; here, a real
server shows that an operator's stop cancels a pending restart and that a channel whose
configuration is invalid is left alone.
"""

import time

import pytest

from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.global_config import validate_global_config
from decisionengine.framework.engine.restarts import RestartPolicy
from tests.engine.server import DEServer
from tests.taskmanager.channels import module

pytestmark = pytest.mark.timeout(120)


def test_delays_double_up_to_the_maximum():
    policy = RestartPolicy(initial_delay=1, max_delay=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(10_000) == 10  # no overflow however long a fault lasts


def test_configuration_defaults_and_errors():
    assert RestartPolicy.from_config(validate_global_config({})[0]) == RestartPolicy(True, 1, 300)
    with pytest.raises(ConfigError, match=r"channel_restart.max_delay: expected at least initial_delay \(5\)"):
        validate_global_config({"channel_restart": {"initial_delay": 5, "max_delay": 1}})
    with pytest.raises(ConfigError, match=r"channel_restart\.initial_delay"):
        validate_global_config({"channel_restart": {"initial_delay": -1}})


def channel(status, name):
    return next(c for c in status["channels"] if c["channel"] == name)


def test_an_operator_stop_cancels_a_pending_restart_and_invalid_channels_stay_down(tmp_path, sqlite_url):
    crashing = {"sources": {"doomed": module("ExitingSource", schedule=0.3, after=1)}, "publishers": {}}
    invalid = {"sources": {"ghost": {"module": "no.such.module", "name": "Ghost", "schedule": 1}}, "publishers": {}}
    restart = {"enabled": True, "initial_delay": 3, "max_delay": 3}
    server = DEServer(tmp_path, sqlite_url, {"crashing": crashing, "invalid": invalid}, channel_restart=restart)
    server.start()
    try:
        status = server.wait_for(
            # ERROR comes with the channel's last message; last_failure once its process has ended
            lambda s: (
                all(c["state"] == "ERROR" and c["last_failure"] for c in s["channels"])
                and channel(s, "crashing")["restart_at"]
            ),
            60,
            "both channels failed, one restart pending",
        )
        crashed = channel(status, "crashing")
        assert crashed["failures_in_a_row"] == 1 and "code 3" in crashed["last_failure"]["reason"]
        invalid_now = channel(status, "invalid")
        assert invalid_now["restart_at"] is None and "invalid configuration" in invalid_now["last_failure"]["reason"]

        answer = server.rpc().stop_channel("crashing")
        assert answer == "channel crashing is not running (ERROR); its automatic restart is cancelled"
        restart_was_due = crashed["restart_at"]
        # nothing can be awaited here: the absence of a restart shows only once its time has passed
        time.sleep(max(0.0, restart_was_due - time.time()) + 1.0)
        after = {c["channel"]: c for c in server.status()["channels"]}
        assert after["crashing"]["restarts"] == 0 and after["crashing"]["restart_at"] is None
        assert after["invalid"]["restarts"] == 0 and after["invalid"]["state"] == "ERROR"
        # the operator's start still works, and a failure after it is restarted again
        assert server.rpc().start_channel("crashing") == "channel crashing started"
        server.wait_for(lambda s: channel(s, "crashing")["restarts"] >= 2, 30, "restarted by itself")
    finally:
        assert server.stop() == 0
    assert "channel will be restarted" in server.log()
