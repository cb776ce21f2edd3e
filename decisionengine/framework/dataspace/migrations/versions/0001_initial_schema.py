"""Initial schema: task manager registry, generations, content-addressed payloads, products.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "taskmanager",
        sa.Column("sequence_id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("taskmanager_id", sa.String(64), nullable=False),
        sa.Column("datestamp", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("taskmanager_id", name="uq_taskmanager_taskmanager_id"),
    )
    op.create_index("ix_taskmanager_name_sequence", "taskmanager", ["name", "sequence_id"])

    op.create_table(
        "generation",
        sa.Column("taskmanager_seq", sa.BigInteger(), nullable=False),
        sa.Column("generation_id", sa.BigInteger(), nullable=False),
        sa.Column("generation_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("taskmanager_seq", "generation_id", name="pk_generation"),
        sa.ForeignKeyConstraint(
            ["taskmanager_seq"],
            ["taskmanager.sequence_id"],
            ondelete="CASCADE",
            name="fk_generation_taskmanager",
        ),
    )
    op.create_index("ix_generation_time", "generation", ["generation_time"])

    op.create_table(
        "payload",
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_payload"),
    )
    if op.get_context().dialect.name == "postgresql":
        # Payloads are already compressed: keep TOAST from trying to compress them again.
        op.execute("ALTER TABLE payload ALTER COLUMN data SET STORAGE EXTERNAL")

    op.create_table(
        "dataproduct",
        sa.Column("taskmanager_seq", sa.BigInteger(), nullable=False),
        sa.Column("generation_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.Column("expiration_time", sa.Double(), nullable=False),
        sa.Column("scheduled_create_time", sa.Double(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("schema_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("generation_time", sa.Double(), nullable=False),
        sa.Column("missed_update_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("taskmanager_seq", "generation_id", "key", name="pk_dataproduct"),
        sa.ForeignKeyConstraint(
            ["taskmanager_seq", "generation_id"],
            ["generation.taskmanager_seq", "generation.generation_id"],
            ondelete="CASCADE",
            name="fk_dataproduct_generation",
        ),
        sa.ForeignKeyConstraint(["payload_hash"], ["payload.hash"], name="fk_dataproduct_payload"),
    )
    op.create_index("ix_dataproduct_payload_hash", "dataproduct", ["payload_hash"])
    op.create_index("ix_dataproduct_key_history", "dataproduct", ["taskmanager_seq", "key", "generation_id"])


def downgrade() -> None:
    op.drop_table("dataproduct")
    op.drop_table("payload")
    op.drop_table("generation")
    op.drop_table("taskmanager")
