"""The schema is created and changed only by Alembic migrations."""

import multiprocessing

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from decisionengine.framework.dataspace import migrations
from decisionengine.framework.dataspace.datasources import schema
from decisionengine.framework.dataspace.dataspace import DataSpace
from tests.conftest import global_config


def test_new_database_is_at_the_head_revision(dataspace):
    assert dataspace.datasource.schema_revision() == migrations.head_revision()


def test_migrations_produce_exactly_the_schema_the_queries_use(dataspace):
    with dataspace.datasource.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []


def test_downgrade_and_upgrade(dataspace):
    engine = dataspace.datasource.engine
    with engine.begin() as conn:
        migrations.downgrade(conn, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    with engine.begin() as conn:
        migrations.upgrade(conn)
    assert {"taskmanager", "generation", "payload", "dataproduct"} <= set(sa.inspect(engine).get_table_names())


def test_opening_an_existing_database_keeps_its_data(dataspace_config):
    first = DataSpace(dataspace_config)
    first.store_taskmanager("kept", "ID-KEPT")
    first.close()
    second = DataSpace(dataspace_config)
    assert second.get_taskmanager("kept")["taskmanager_id"] == "ID-KEPT"
    second.close()


def _open(config, barrier):
    barrier.wait(30)
    DataSpace(config).close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def empty_db_url(request, tmp_path):
    """A database with no schema at all (PostgreSQL: not copied from the migrated template)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    server = request.getfixturevalue("pg_server")
    url = server.create_database("de_fresh_for_race")
    request.addfinalizer(lambda: server.drop_database("de_fresh_for_race"))
    return url


def test_processes_starting_together_migrate_once(empty_db_url):
    config = global_config(empty_db_url)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    processes = [ctx.Process(target=_open, args=(config, barrier)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    space = DataSpace(config)
    assert space.datasource.schema_revision() == migrations.head_revision()
    space.close()
