"""Alembic environment: always run online, on the connection the DataSpace hands over."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "DataSpace migrations run on a connection given by the DataSpace "
        "(decisionengine.framework.dataspace.migrations.upgrade), not from the alembic command line"
    )

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
