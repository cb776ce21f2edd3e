"""Metrics of the server process itself (channels export their own from their processes).

The Reaper's figures are read from the Reaper when Prometheus scrapes, by a collector
added to the registry that ``/metrics`` renders; nothing has to be counted twice.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from decisionengine.framework.engine import memory_merging
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


class ProcessMemoryCollector(Collector):
    """de_channel_memory_bytes{channel_name,kind} and de_source_memory_bytes{source_name,kind}, read
    from ``/proc`` when Prometheus scrapes: ``pss`` (each page shared by n processes counted 1/n),
    ``private`` (pages of this process alone) and ``merged`` (pages the kernel's KSM merged with
    identical ones; see :mod:`.memory_merging`).  What an idle channel costs, as it is measured in
    ``benchmarks/engine.py``."""

    def __init__(self, processes: Callable[[], list[tuple[str, str, int]]]) -> None:
        self.processes = processes

    def collect(self) -> Iterator[Any]:
        families = {
            kind: GaugeMetricFamily(
                prefixed(f"{kind}_memory_bytes"),
                f"Memory of a {kind} process: pss, private, and merged by the kernel (KSM)",
                labels=[f"{kind}_name", "kind"],
            )
            for kind in ("channel", "source")
        }
        for kind, name, pid in self.processes():
            memory = process_memory(pid)
            if memory is None:  # ended since it was listed
                continue
            for which, value in memory.items():
                families[kind].add_metric([name, which], value)
        yield from families.values()


def process_memory(pid: int) -> dict[str, int] | None:
    """{pss, private, merged} of process ``pid`` in bytes (merged only where the kernel tells); None if gone."""
    try:
        lines = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, value, *_ = line.split()
        fields[key.rstrip(":")] = int(value) * 1024
    memory = {"pss": fields.get("Pss", 0), "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}
    merged = memory_merging.merged_bytes(pid)
    if merged is not None:
        memory["merged"] = merged
    return memory


def render(reaper: Any, processes: Callable[[], list[tuple[str, str, int]]] = list) -> tuple[bytes, str]:
    """Every process's metrics (multiprocess directory) plus the Reaper's and the memory of ``processes``."""
    from prometheus_client import REGISTRY  # noqa: PLC0415 - the default registry, single-process mode

    directory = multiprocess_dir()
    registry = CollectorRegistry()
    registry.register(ReaperCollector(reaper))
    registry.register(ProcessMemoryCollector(processes))
    if directory is not None:
        SettledFilesCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
