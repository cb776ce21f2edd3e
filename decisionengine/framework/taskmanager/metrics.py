"""Prometheus metrics a channel exports (names get the ``de_`` prefix from util.metrics)."""

from __future__ import annotations

from decisionengine.framework.util.metrics import Counter, Gauge, Histogram

CHANNEL_STATE = Gauge(
    "channel_state",
    "1 for the state a channel is in, 0 for the others",
    ["channel", "state"],
    multiprocess_mode="livemax",
)
GENERATIONS = Counter("generations", "Generations run, by outcome", ["channel", "outcome"])
GENERATION_SECONDS = Histogram(
    "generation_duration_seconds",
    "Wall time of a generation, from its start to its commit",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAST_GENERATION = Gauge(
    "channel_generation_id", "The last committed generation of a channel", ["channel"], multiprocess_mode="livemax"
)
SOURCE_ACQUIRE_SECONDS = Histogram(
    "source_acquire_seconds",
    "Wall time of a source's acquire()",
    ["channel", "source"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)
SOURCE_ACQUIRES = Counter("source_acquires", "Source acquire() calls, by status", ["channel", "source", "status"])
SOURCE_MISSED_UPDATES = Gauge(
    "source_missed_updates",
    "Scheduled updates a source has missed in a row",
    ["channel", "source"],
    multiprocess_mode="livemax",
)
PUBLISHER_FAILURES = Counter("publisher_failures", "Publisher publish() calls that raised", ["channel", "publisher"])
PUBLISHER_ENABLED = Gauge(
    "publisher_enabled",
    "1 while a publisher is enabled on its channel's status board, 0 once its publish() returned False",
    ["channel", "publisher"],
    multiprocess_mode="livemax",
)
DATABASE_UP = Gauge(
    "channel_database_up",
    "1 while a channel reaches its DataSpace database, 0 while it waits for it to come back",
    ["channel"],
    multiprocess_mode="livemin",
)
OWNER = Gauge(
    "channel_owner",
    "1 while this process owns the channel (0: standby, waiting for another owner to go)",
    ["channel"],
    multiprocess_mode="livemax",
)
