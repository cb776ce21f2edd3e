"""Two servers share PostgreSQL: when the owner of a channel goes, the standby takes over in
seconds, numbering goes on with no gap and no duplicate, and never two writers."""

import os
import signal
import time

import pytest

from decisionengine.testing.waiting import eventually
from tests.engine.server import DEServer
from tests.faults.integrity import assert_whole
from tests.taskmanager.channels import counting_channel

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(300)]

#: how the owner goes -> seconds until the standby commits the channel's next generation
TAKEOVER = {"SIGTERM": 4.0, "kill -9": 10.0}


@pytest.mark.parametrize("how", list(TAKEOVER))
def test_the_standby_takes_over(tmp_path_factory, pg_url, how):
    record = tmp_path_factory.mktemp("shared") / "published.jsonl"
    channel = counting_channel(str(record))
    channel["sources"]["counter"]["schedule"] = 0.3
    owner = DEServer(tmp_path_factory.mktemp("owner"), pg_url, {"shared": channel}).start()
    standby = None
    try:
        owner.wait_for_generation("shared", 2, 60)
        standby = DEServer(tmp_path_factory.mktemp("standby"), pg_url, {"shared": channel}).start()
        standby.wait_for(lambda s: s["channels"][0].get("standby") is True, 60, "the standby waiting")
        if how == "SIGTERM":
            owner.process.send_signal(signal.SIGTERM)
            assert owner.process.wait(60) == 0
        else:
            os.kill(owner.process.pid, signal.SIGKILL)
            owner.process.wait(10)
        gone = time.monotonic()
        last = owner_last_generation(pg_url)
        taken = standby.wait_for_generation("shared", last + 1, 60)["channels"][0]
        took = time.monotonic() - gone
        print(f"\n{how}: the standby committed {took:.2f} s after the owner went")
        assert took < TAKEOVER[how], f"{how}: the standby committed {took:.1f} s after the owner went"
        assert taken["standby"] is False and taken["state"] in ("ACTIVE", "STEADY")
        standby.wait_for_generation("shared", last + 3, 30)
    finally:
        owner.stop()
        if standby is not None:
            assert standby.stop() == 0
    assert_whole(pg_url, "shared", record, repeats=how == "kill -9")


def owner_last_generation(url):
    from decisionengine.framework.dataspace.dataspace import DataSpace
    from tests.conftest import global_config

    space = DataSpace(global_config(url))
    try:
        return eventually(lambda: space.get_last_generation_id("shared") or None, 10, what="a generation")
    finally:
        space.close()
