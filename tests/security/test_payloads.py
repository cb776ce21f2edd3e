"""Payloads that cannot run code: a pickle planted in the database, read by a real server.

Whoever can write to a shared database can replace a stored payload.  The server reads
products for XML-RPC, the JSON API and the dashboard: every one refuses the planted
payload with an error naming the channel, generation, product and the refused class, nothing
of it runs, and the server keeps answering.
"""

import pytest

from tests.engine.server import DEServer
from tests.fixtures.payloads import os_system, plant
from tests.security.helpers import request, rpc, still_answering
from tests.taskmanager.channels import module

pytestmark = pytest.mark.timeout(240)


def test_a_planted_payload_is_refused_everywhere(tmp_path, db_url):
    channel = {"sources": {"c": module("ConstantSource", schedule=0.5)}, "publishers": {}}
    server = DEServer(tmp_path, db_url, {"steady": channel}).start()
    marker = tmp_path / "owned"
    try:
        server.wait_for_generation("steady", 1, 60)
        assert rpc(server).stop_channel("steady") == "channel steady stopped"
        generation = server.channel("steady")["generation"]
        plant(db_url, "steady", generation, "constant", os_system(marker))

        with pytest.raises(Exception, match=r"posix\.system|os\.system") as refused:
            rpc(server).print_product("constant")
        message = str(refused.value)
        assert "'steady'" in message and f"generation {generation}" in message and "'constant'" in message
        assert "trusted_modules" in message
        with pytest.raises(Exception, match=r"posix\.system|os\.system"):
            # the channel is stopped: its stored products are read with include_stopped
            rpc(server).print_products("table", 50, True)
        for path in ("/api/v1/channels/steady/products/constant", "/api/v1/channels/steady/products"):
            status, _, body = request(server, "GET", path)
            assert status == 500 and "system" in body["error"] and "'constant'" in body["error"], body
        assert not marker.exists()
        still_answering(server)
        # the channel itself refuses it too when it starts again and reads the dataspace
        assert rpc(server).start_channel("steady") == "channel steady started"
        server.wait_for_generation("steady", generation + 1, 60)
        assert not marker.exists()
    finally:
        server.stop()
    assert not marker.exists()
