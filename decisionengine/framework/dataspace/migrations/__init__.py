"""Alembic migrations of the DataSpace schema; applied by :func:`upgrade`."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


#: Alembic's table of the schema's revision (its default name, in the connection's schema)
VERSION_TABLE = "alembic_version"


def current_revision(connection: sa.Connection) -> str | None:
    """The schema's revision, None for a database without one.

    What Alembic's ``MigrationContext.get_current_revision()`` answers, in two plain
    statements: Alembic gets there through the inspector (reflection) and a migration
    context, code that every channel process runs once as it opens its DataSpace, which
    copied about 2 MiB of the fork server's pages into each (see engine/preload.py).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":  # the table the search path finds, as Alembic's check
        exists = connection.exec_driver_sql(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL").scalar()
    elif dialect == "sqlite":
        exists = connection.exec_driver_sql(
            f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{VERSION_TABLE}'"
        ).first()
    else:
        return MigrationContext.configure(connection).get_current_revision()
    if not exists:
        return None
    rows = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").all()
    if len(rows) > 1:  # as Alembic: one revision, one head
        raise RuntimeError(f"version table {VERSION_TABLE!r} has more than one revision: {[row[0] for row in rows]}")
    return rows[0][0] if rows else None


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Bring the schema on ``connection`` to ``revision`` inside the caller's transaction."""
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: sa.Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)
