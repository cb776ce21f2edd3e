"""A PostgreSQL server that goes away and comes back: clear errors, nothing lost, recovery."""

import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header
from decisionengine.framework.dataspace.dataspace import DataSpace, DataSpaceConnectionError
from decisionengine.framework.dataspace.maintain import Reaper, ReaperState
from tests.conftest import global_config, new_pg_server

pytestmark = pytest.mark.postgresql


@pytest.fixture
def own_server():
    """A server of this test's own, since the test stops it."""
    server = new_pg_server()
    server.start()
    server.psql("ALTER USER postgres PASSWORD 'hunter2-secret'")
    yield server
    server.destroy()


def test_server_outage_is_reported_and_survived(own_server):
    url = own_server.url("postgres", password="hunter2-secret")
    config = global_config(url, retention_interval_in_days=7)
    space = DataSpace(config)
    block = DataBlock(space, "chan")
    block.put("jobs", {"n": 1}, Header(block.taskmanager_id))
    reaper = Reaper(config, dataspace=space)

    own_server.stop("fast")  # terminates every client connection

    with pytest.raises(DataSpaceConnectionError) as info:
        block.put("jobs", {"n": 2}, Header(block.taskmanager_id))
    message = str(info.value)
    assert "hunter2-secret" not in message
    assert f"postgresql://postgres:***@127.0.0.1:{own_server.port}/postgres" in message
    with pytest.raises(DataSpaceConnectionError):
        block["jobs"]
    with pytest.raises(DataSpaceConnectionError):
        reaper.reap()
    assert reaper.state is ReaperState.ERROR
    assert "DataSpaceConnectionError" in reaper.status()["last_error"]

    own_server.start()

    # the pool reconnects by itself; the write that failed left the stored value intact
    assert block["jobs"] == {"n": 1}
    block.put("jobs", {"n": 3}, Header(block.taskmanager_id))
    assert block["jobs"] == {"n": 3}
    reaper.reap()
    assert reaper.state is ReaperState.STEADY
    assert reaper.status()["last_error"] is None
    space.close()
