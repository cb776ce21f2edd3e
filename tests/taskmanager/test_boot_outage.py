"""A channel that starts while its database is away waits for it (to claim the channel, to
register), as a running channel does; it does not fail (a failed start would wait for an
automatic restart, up to minutes later)."""

import threading

import pytest

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import TaskManager
from decisionengine.testing.waiting import eventually
from tests.conftest import global_config, new_pg_server
from tests.taskmanager.channels import counting_channel, plan_from

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(120)]


def test_a_channel_booting_during_an_outage_waits_and_then_runs(tmp_path):
    database = new_pg_server()
    database.start()
    try:
        url = database.url("postgres")
        dataspace = DataSpace(global_config(url))  # the schema exists; then the database goes
        database.stop("fast")
        plan = plan_from(counting_channel(str(tmp_path / "published.jsonl")), "patient")
        manager = TaskManager(plan, dataspace, server_id="test-server")
        thread = threading.Thread(target=manager.run, daemon=True)
        thread.start()
        eventually(lambda: manager.database_unreachable_since is not None, 30, what="the outage seen at boot")
        assert manager.state.state is State.BOOT and thread.is_alive()
        assert "database unreachable since" in (manager.last_error or "")

        database.start()
        eventually(lambda: manager.generation_id >= 2, 60, what="generations once the database is back")
        assert manager.database_unreachable_since is None and manager.state.state is not State.ERROR
        manager.stop()
        thread.join(30)
        assert manager.state.state is State.SHUTDOWN
        dataspace.close()
    finally:
        database.destroy()
