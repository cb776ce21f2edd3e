"""Shared fixtures: a real SQLite file and a real (throw-away) PostgreSQL server (and
PgBouncer in front of it, for the tests that need one).

Every storage test takes ``dataspace_config`` (or ``dataspace``), which is
parametrized over both backends.  Without PostgreSQL binaries the PostgreSQL cases
are skipped with a visible reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.testing.pgbouncer import PgBouncer, PgBouncerUnavailable
from decisionengine.testing.postgres import PostgresServer, PostgresUnavailable

SQLALCHEMY_DS = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_database_numbers = itertools.count()


def global_config(url: str, **dataspace: Any) -> dict[str, Any]:
    """A global configuration holding only a dataspace on ``url``."""
    return {
        "dataspace": {
            "datasource": {"module": SQLALCHEMY_DS, "name": "SQLAlchemyDS", "config": {"url": url}},
            **dataspace,
        }
    }


def new_pg_server() -> PostgresServer:
    """A PostgreSQL server of the test's own (not started).

    Missing binaries (README command 2 installs them with scripts/system-packages): in CI
    (``CI=true``) that fails the test; elsewhere the test is skipped with the reason shown.
    """
    try:
        return PostgresServer()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI=true and no PostgreSQL server can be started: {exc}")
        pytest.skip(f"PostgreSQL tests need a server: {exc} (scripts/system-packages installs it)")


@pytest.fixture
def pgbouncer(pg_server: PostgresServer) -> Iterator[Any]:
    """``pgbouncer(pool_mode=..., pool_size=...)`` starts a throw-away PgBouncer in front of
    the test PostgreSQL (stopped at teardown).  No pgbouncer binary: a failure in CI
    (``CI=true``), a skip with the reason elsewhere, as for PostgreSQL."""
    started: list[PgBouncer] = []

    def start(**settings: Any) -> PgBouncer:
        try:
            bouncer = PgBouncer(pg_server, **settings)
        except PgBouncerUnavailable as exc:
            if IN_CI:
                pytest.fail(f"CI=true and no PgBouncer can be started: {exc}")
            pytest.skip(f"PgBouncer tests need pgbouncer: {exc}")
        started.append(bouncer)
        return bouncer.start()

    yield start
    for bouncer in started:
        bouncer.destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = new_pg_server()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database migrated to the newest schema, copied for each test (fast)."""
    url = pg_server.create_database("de_template")
    DataSpace(global_config(url)).close()
    return "de_template"


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    name = f"de_test_{os.getpid()}_{next(_database_numbers)}"
    url = pg_server.create_database(name, template=pg_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'dataspace.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty dataspace database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def dataspace_config(db_url: str) -> dict[str, Any]:
    return global_config(db_url)


@pytest.fixture
def dataspace(dataspace_config: dict[str, Any]) -> Iterator[DataSpace]:
    space = DataSpace(dataspace_config)
    yield space
    space.close()
