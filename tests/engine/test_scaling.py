"""Two de-servers sharing one DataSpace: each channel runs on exactly one of them."""

import pytest

from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(240)


def test_two_servers_share_channels_and_fail_over(tmp_path_factory, db_url):
    record = tmp_path_factory.mktemp("shared") / "r.jsonl"
    channel = counting_channel(str(record), standby_retry=0.5)
    channel["sources"]["counter"]["schedule"] = 0.3
    first = DEServer(tmp_path_factory.mktemp("first"), db_url, {"shared": channel}).start()
    second = None
    try:
        first.wait_for_generation("shared", 1, 60)
        second = DEServer(tmp_path_factory.mktemp("second"), db_url, {"shared": channel}).start()
        standby = second.wait_for(
            lambda s: s["channels"][0].get("standby") is True, 60, "the second server to wait in standby"
        )["channels"][0]
        assert standby["state"] == "BOOT"
        assert first.channel("shared")["state"] == "STEADY"
        last = first.channel("shared")["generation"]

        assert first.stop() == 0
        taken = second.wait_for_generation("shared", last + 2, 60)["channels"][0]
        assert taken["standby"] is False
        # the status counts a generation at its commit, and the channel turns STEADY once that
        # generation's publishers have run: the first server may have committed last + 1 as it
        # stopped, so last + 2 may be the second's first generation, still publishing
        second.wait_for(lambda s: s["channels"][0]["state"] == "STEADY", 30, "the taken-over channel STEADY")
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0
