"""Metrics of the server process itself (channels export their own from their processes).

The Reaper's figures are read from the Reaper when Prometheus scrapes, by a collector
added to the registry that ``/metrics`` renders; nothing has to be counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from decisionengine.framework.util.metrics import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    SettledFilesCollector,
    multiprocess_dir,
    prefixed,
)

SERVER_UP = Gauge("server_up", "1 while the decision engine server runs", multiprocess_mode="livemax")
DATASPACE_UP = Gauge(
    "dataspace_up",
    "1 while the server reaches its DataSpace database (probed periodically)",
    multiprocess_mode="livemin",
)
DATASPACE_ERRORS = Counter("dataspace_errors", "Probes of the DataSpace database by the server that failed")
DATASPACE_BYTES = Gauge(
    "dataspace_size_bytes",
    "Size of the DataSpace database (SQLite: pages in use; PostgreSQL: pg_database_size), where the backend tells",
    multiprocess_mode="livemax",
)


class ReaperCollector(Collector):
    """de_reaper_runs_total, de_reaper_failures_total, de_reaper_removed_total{kind}, de_reaper_active,
    de_reaper_state{state}."""

    def __init__(self, reaper: Any) -> None:
        self.reaper = reaper

    def collect(self) -> Iterator[Any]:
        runs = CounterMetricFamily(prefixed("reaper_runs"), "Reaper passes completed")
        runs.add_metric([], self.reaper.runs)
        yield runs
        failures = CounterMetricFamily(prefixed("reaper_failures"), "Reaper passes that failed")
        failures.add_metric([], self.reaper.failures)
        yield failures
        removed = CounterMetricFamily(prefixed("reaper_removed"), "What the Reaper removed", labels=["kind"])
        for kind in ("generations", "products", "payloads", "payload_bytes"):
            removed.add_metric([kind], getattr(self.reaper.removed, kind))
        yield removed
        active = GaugeMetricFamily(prefixed("reaper_active"), "1 while a Reaper pass runs")
        active.add_metric([], 1 if self.reaper.state.value == "ACTIVE" else 0)
        yield active
        state = GaugeMetricFamily(
            prefixed("reaper_state"), "1 for the state the Reaper is in (ERROR: its last pass failed)", labels=["state"]
        )
        current = self.reaper.state
        for each in type(current):
            state.add_metric([each.value], 1 if each is current else 0)
        yield state


def render(reaper: Any) -> tuple[bytes, str]:
    """Every process's metrics (multiprocess directory) plus the Reaper's."""
    from prometheus_client import REGISTRY  # noqa: PLC0415 - the default registry, single-process mode

    directory = multiprocess_dir()
    registry = CollectorRegistry()
    if directory is not None:
        SettledFilesCollector(registry, path=directory)
        registry.register(ReaperCollector(reaper))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(_with(registry, ReaperCollector(reaper))), CONTENT_TYPE_LATEST


def _with(registry: CollectorRegistry, collector: Collector) -> CollectorRegistry:
    registry.register(collector)
    return registry
