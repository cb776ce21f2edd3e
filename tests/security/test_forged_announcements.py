"""Announcements read from a shared PostgreSQL are hostile: a forged or malformed shared-source
announcement (NOTIFY on the generations channel) is ignored, and the server and its channels
go on as if it had not been sent."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import GENERATIONS_CHANNEL
from decisionengine.testing.postgres import direct_engine
from decisionengine.testing.waiting import eventually
from tests.engine.server import DEServer
from tests.engine.test_shared_sources import shared_channel, source_row

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(300)]

FORGED = [
    "not json at all",
    json.dumps(["source", "jobs"]),
    json.dumps({"source": "jobs", "server_id": "elsewhere", "delivery": {"generation": "1", "taskmanager_seq": 1}}),
    json.dumps(
        {"source": "jobs", "server_id": "elsewhere", "delivery": {"generation": 10**9, "taskmanager_seq": None}}
    ),
    json.dumps({"source": "jobs", "server_id": "elsewhere", "delivery": "rm -rf /"}),
    json.dumps({"source": "jobs", "server_id": "elsewhere", "failing": ["not", "a", "dict"]}),
    json.dumps({"source": "jobs", "server_id": "elsewhere", "failing": {"missed_update_count": "many"}}),
    json.dumps({"source": "unknown", "server_id": "elsewhere", "failing": {"last_error": "forged"}}),
    json.dumps({"source": {"nested": 1}, "server_id": "elsewhere", "delivery": {}}),
]


def test_forged_shared_source_announcements_are_ignored(tmp_path, pg_url):
    channels = {name: shared_channel(tmp_path, f"{name}.jsonl") for name in ("alpha", "beta")}
    server = DEServer(tmp_path, pg_url, channels).start()
    engine = direct_engine(pg_url)
    try:
        server.wait_for_generation("alpha", 2)
        server.wait_for_generation("beta", 2)
        with engine.begin() as conn:
            for payload in FORGED:
                conn.execute(sa.select(sa.func.pg_notify(GENERATIONS_CHANNEL, payload)))
        eventually(
            lambda: server.log().count("ignored a malformed shared source announcement") >= 4,
            30,
            what="the malformed announcements logged as ignored",
        )
        # nothing changed: no channel shows the source failing, both go on committing
        before = {name: server.channel(name)["generation"] for name in channels}
        for name in channels:
            server.wait_for_generation(name, before[name] + 2)
            assert not server.channel(name)["failing_sources"]
        assert source_row(server)["state"] == "STEADY"
        assert server.rpc().ping() == "pong"
    finally:
        engine.dispose()
        assert server.stop() == 0
