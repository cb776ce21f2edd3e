"""The server's probe of its DataSpace database: size, reachability, errors (in this process's registry)."""

import pytest
from prometheus_client import REGISTRY

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.engine.database_probe import DatabaseProbe
from tests.conftest import global_config, new_pg_server


def sample(name):
    return REGISTRY.get_sample_value(name)


def test_the_probe_reports_the_size_of_a_sqlite_dataspace(sqlite_url):
    space = DataSpace(global_config(sqlite_url))
    try:
        DatabaseProbe(space).probe()
        assert sample("de_dataspace_up") == 1
        assert sample("de_dataspace_size_bytes") == space.storage_stats()["database_bytes"] > 0
    finally:
        space.close()


@pytest.mark.postgresql
@pytest.mark.timeout(120)
def test_the_probe_sees_postgresql_go_away_and_come_back():
    server = new_pg_server()
    server.start()
    space = DataSpace(
        global_config(
            server.url("postgres"),
        )
    )
    probe = DatabaseProbe(space)
    try:
        probe.probe()
        assert sample("de_dataspace_up") == 1 and sample("de_dataspace_size_bytes") > 1_000_000
        errors = sample("de_dataspace_errors_total")
        server.stop("fast")
        probe.probe()
        probe.probe()
        assert sample("de_dataspace_up") == 0
        assert sample("de_dataspace_errors_total") == errors + 2
        server.start()
        probe.probe()
        assert sample("de_dataspace_up") == 1
    finally:
        space.close()
        server.destroy()
