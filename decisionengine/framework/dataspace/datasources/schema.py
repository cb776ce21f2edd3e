"""Tables of the SQL data source (SQLAlchemy Core).

The shape is chosen for the two questions a channel asks all the time:

* "latest generation of task manager T": the primary key of ``generation`` is
  (taskmanager_seq, generation_id), so ``max(generation_id)`` is one index lookup;
* "product K of generation G": the primary key of ``dataproduct`` is
  (taskmanager_seq, generation_id, key).

A product row holds its header and metadata fields and the content hash of its
payload.  Payloads are stored once in ``payload`` however many generations reference
them, so duplicating a generation or re-storing an unchanged product costs one small
row, not the product's bytes.

The tables are created and changed only by the Alembic migrations in
``decisionengine/framework/dataspace/migrations``; this module describes the schema
at the head revision for the queries.
"""

from __future__ import annotations

import sqlalchemy as sa

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Epoch = sa.Double()

metadata = sa.MetaData()

taskmanager = sa.Table(
    "taskmanager",
    metadata,
    sa.Column("sequence_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("taskmanager_id", sa.String(64), nullable=False, unique=True),
    sa.Column("datestamp", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_taskmanager_name_sequence", "name", "sequence_id"),
)

generation = sa.Table(
    "generation",
    metadata,
    sa.Column(
        "taskmanager_seq",
        sa.BigInteger(),
        sa.ForeignKey("taskmanager.sequence_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("generation_id", sa.BigInteger(), primary_key=True),
    sa.Column("generation_time", Epoch, nullable=False),
    sa.Index("ix_generation_time", "generation_time"),
)

payload = sa.Table(
    "payload",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("raw_size", sa.BigInteger(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)

dataproduct = sa.Table(
    "dataproduct",
    metadata,
    sa.Column("taskmanager_seq", sa.BigInteger(), primary_key=True),
    sa.Column("generation_id", sa.BigInteger(), primary_key=True),
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("payload_hash", sa.LargeBinary(32), sa.ForeignKey("payload.hash"), nullable=False),
    # header
    sa.Column("create_time", Epoch, nullable=False),
    sa.Column("expiration_time", Epoch, nullable=False),
    sa.Column("scheduled_create_time", Epoch, nullable=False),
    sa.Column("creator", sa.Text(), nullable=False),
    sa.Column("schema_id", sa.BigInteger(), nullable=True),
    # metadata
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("generation_time", Epoch, nullable=False),
    sa.Column("missed_update_count", sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(
        ["taskmanager_seq", "generation_id"],
        ["generation.taskmanager_seq", "generation.generation_id"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_dataproduct_payload_hash", "payload_hash"),
    # one product's history across generations
    sa.Index("ix_dataproduct_key_history", "taskmanager_seq", "key", "generation_id"),
)

#: who may write a channel's generations: the epoch grows with every new owner, and every
#: generation write checks it in its own transaction (fencing; see ``claim_channel``)
channel_owner = sa.Table(
    "channel_owner",
    metadata,
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("epoch", sa.BigInteger(), nullable=False),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("claimed_at", Epoch, nullable=False),
    #: the server whose channel process holds the channel; NULL once released.  A server
    #: missing from ``server_member`` holds nothing (see ``dataspace.membership``)
    sa.Column("server_id", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("name", name="pk_channel_owner"),
)

#: the live servers sharing this DataSpace: each writes its heartbeat every second or so;
#: the channels each offers to run are a JSON list (see ``dataspace.membership``)
server_member = sa.Table(
    "server_member",
    metadata,
    sa.Column("server_id", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("host", sa.Text(), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", Epoch, nullable=False),
    sa.Column("heartbeat_at", Epoch, nullable=False),
    sa.Column("draining", sa.Boolean(), nullable=False),
    sa.Column("channels", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("server_id", name="pk_server_member"),
)

HEADER_COLUMNS = ("create_time", "expiration_time", "scheduled_create_time", "creator", "schema_id")
METADATA_COLUMNS = ("state", "generation_time", "missed_update_count")
