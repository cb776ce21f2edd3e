"""Prometheus metrics a channel exports (names get the ``de_`` prefix from util.metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from decisionengine.framework.util.metrics import Counter, Gauge, Histogram

#: every outcome a generation can have (GENERATIONS' ``outcome`` label)
OUTCOMES = ("committed", "publish_failed", "failed")

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
LAST_GENERATION_TIME = Gauge(
    "channel_last_generation_timestamp_seconds",
    "Unix time of the channel's last committed generation (of its start, until it has committed one)",
    ["channel"],
    multiprocess_mode="livemax",
)
SCHEDULE = Gauge(
    "channel_schedule_seconds",
    "How often the channel's sources deliver new data (the shortest of their schedules): a generation "
    "is expected about this often",
    ["channel"],
    multiprocess_mode="livemax",
)
DATABASE_ERRORS = Counter(
    "channel_database_errors",
    "Times a channel found its DataSpace database unreachable (each outage counts once)",
    ["channel"],
)


def initialize_channel(channel: str, sources: Iterable[str], publishers: Iterable[str]) -> None:
    """Export every counter of a channel at 0 from its start.

    A labelled counter appears only once its labels are first used: without this the first
    failure would be the series' first sample, and ``rate()``/``increase()`` (dashboards,
    alerts) would never see it rise.
    """
    for outcome in OUTCOMES:
        GENERATIONS.labels(channel, outcome)
    for source in sources:
        for status in ("success", "failure"):
            SOURCE_ACQUIRES.labels(channel, source, status)
    for publisher in publishers:
        PUBLISHER_FAILURES.labels(channel, publisher)
    DATABASE_ERRORS.labels(channel)


# -- the reference Decision Engine 2.0's source metrics, under its names and labels ------------
# ``source_name`` is the source's key, which names one source across the server (shared
# sources).  de_source_acquire_seconds already exists above with labels channel and
# source: the reference's samples (label source_name) join that family, so a query for
# either kind selects by its labels.  It is kept out of the in-process registry (which
# refuses a second metric of one name); in the server's multiprocess mode it is exported
# with the rest.
REFERENCE_SOURCE_STATES = {
    "BOOT": 0,
    "IDLE": 1,
    "ACTIVE": 2,
    "STEADY": 3,
    "SHUTTINGDOWN": 4,
    "SHUTDOWN": 5,
    "OFFLINE": 6,
    "ERROR": 7,
}
REF_SOURCE_STATUS = Gauge(
    "de_source_status",
    "State of a source, as the reference's numbers: 0 BOOT, 2 ACTIVE, 3 STEADY, 5 SHUTDOWN, 6 OFFLINE, 7 ERROR",
    ["source_name"],
    multiprocess_mode="livemax",
)
REF_SOURCE_LAST_ACQUIRE = Gauge(
    "de_source_last_acquire_timestamp_seconds",
    "Last time a source successfully ran its acquire function",
    ["source_name"],
    multiprocess_mode="max",
)
REF_SOURCE_ACQUIRE_SECONDS = Histogram(
    "de_source_acquire_seconds",
    "How long it took to acquire the source data",
    ["source_name"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
    registry=None,
)
