"""Servers sharing a DataSpace know each other: the ``server_member`` table, and which
server's channel process holds each channel (``channel_owner.server_id``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_member",
        sa.Column("server_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("channels", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("server_id", name="pk_server_member"),
    )
    with op.batch_alter_table("channel_owner") as batch:
        batch.add_column(sa.Column("server_id", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_owner") as batch:
        batch.drop_column("server_id")
    op.drop_table("server_member")
