"""DataSpace configuration errors and unreachable databases."""

import pytest

from decisionengine.framework.dataspace.datasources.sql_engine import create_engine
from decisionengine.framework.dataspace.dataspace import (
    DataSpace,
    DataSpaceConfigurationError,
    DataSpaceConnectionError,
)
from decisionengine.testing.postgres import free_port
from tests.conftest import SQLALCHEMY_DS, global_config


def test_missing_dataspace_key():
    with pytest.raises(DataSpaceConfigurationError, match="missing dataspace information"):
        DataSpace({})
    with pytest.raises(DataSpaceConfigurationError, match="missing dataspace information"):
        DataSpace({"dataspace": None})


def test_dataspace_key_must_be_a_dictionary():
    with pytest.raises(DataSpaceConfigurationError, match="dataspace key must correspond to a dictionary"):
        DataSpace({"dataspace": "sqlite:///x"})


@pytest.mark.parametrize(
    "dataspace",
    [
        {"datasource": {"module": SQLALCHEMY_DS, "name": "SQLAlchemyDS"}},
        {"datasource": {"module": SQLALCHEMY_DS, "config": {}}},
        {"datasource": {"name": "SQLAlchemyDS", "config": {}}},
        {"retention_interval_in_days": 7},
    ],
)
def test_invalid_dataspace_configuration(dataspace):
    with pytest.raises(DataSpaceConfigurationError, match="Invalid dataspace configuration"):
        DataSpace({"dataspace": dataspace})


def test_datasource_module_that_does_not_import():
    config = {"dataspace": {"datasource": {"module": "no.such.module", "name": "X", "config": {}}}}
    with pytest.raises(DataSpaceConfigurationError, match=r"'no\.such\.module' cannot be imported"):
        DataSpace(config)


def test_datasource_name_that_is_not_a_datasource():
    config = {"dataspace": {"datasource": {"module": SQLALCHEMY_DS, "name": "Nope", "config": {}}}}
    with pytest.raises(DataSpaceConfigurationError, match="'Nope' is not a DataSource class"):
        DataSpace(config)


def test_missing_url():
    config = {"dataspace": {"datasource": {"module": SQLALCHEMY_DS, "name": "SQLAlchemyDS", "config": {}}}}
    with pytest.raises(DataSpaceConfigurationError, match="needs a 'url'"):
        DataSpace(config)


def test_unsupported_database():
    with pytest.raises(DataSpaceConfigurationError, match="url"):
        DataSpace(global_config("oracle://u:p@host/db"))


def test_engine_option_that_does_not_exist(tmp_path):
    config = global_config(f"sqlite:///{tmp_path}/x.sqlite")
    config["dataspace"]["datasource"]["config"]["pool_sizee"] = 3
    with pytest.raises(DataSpaceConfigurationError, match="pool_sizee"):
        DataSpace(config)


def test_unknown_codec(tmp_path):
    config = global_config(f"sqlite:///{tmp_path}/x.sqlite")
    config["dataspace"]["datasource"]["config"]["codec"] = "lz5"
    with pytest.raises(DataSpaceConfigurationError, match="codec"):
        DataSpace(config)


def test_pool_settings_are_passed_through(pg_url):
    config = global_config(pg_url)
    config["dataspace"]["datasource"]["config"].update(pool_size=3, max_overflow=1, pool_recycle=60, echo=False)
    space = DataSpace(config)
    try:
        pool = space.datasource.engine.pool
        assert pool.size() == 3
        assert pool._max_overflow == 1
        assert pool._recycle == 60
    finally:
        space.close()


def test_unreachable_postgresql_names_the_url_with_password_masked():
    url = f"postgresql://deuser:s3cr3t-pw@127.0.0.1:{free_port()}/decisionengine"
    with pytest.raises(DataSpaceConnectionError) as info:
        DataSpace(global_config(url))
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert "postgresql://deuser:***@127.0.0.1" in message
    assert "/decisionengine" in message


def test_unreachable_sqlite_file_names_the_url(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/de.sqlite"
    with pytest.raises(DataSpaceConnectionError, match=r"no/such/dir/de\.sqlite"):
        DataSpace(global_config(url))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url):
    space = DataSpace(global_config(sqlite_url))
    try:
        with space.datasource.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        space.close()


@pytest.mark.postgresql
def test_a_postgresql_url_stays_on_psycopg2_whatever_sqlalchemy_defaults_to(pg_url):
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which we do not install; 2.0 to psycopg2."""
    assert pg_url.startswith("postgresql://")
    engine = create_engine({"url": pg_url})
    try:
        assert engine.dialect.driver == "psycopg2"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("select 1").scalar() == 1
    finally:
        engine.dispose()
