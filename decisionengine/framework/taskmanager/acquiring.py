"""One scheduled run of a source: its retry policy, its status and its metrics.

A source runs inside its channel's process (:class:`~.TaskManager.TaskManager`) or, when
several channels share it, in a process of its own (:class:`~.shared_source.SourceRunner`).
Either way a scheduled run is the same: up to ``retries + 1`` attempts, each ``acquire``
checked with ``verify_products``, exponential back-off between attempts, and the same
bookkeeping (:class:`SourceStatus`, the ``de_source_*`` metrics) whichever process runs
it, so that operators read one story.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.logicengine.facts import explain
from decisionengine.framework.modules.Module import verify_products
from decisionengine.framework.taskmanager import metrics

#: the longest wait between two attempts of one scheduled run
MAX_RETRY_DELAY = 3600.0


@dataclass
class SourceStatus:
    """What the channel knows about one source."""

    schedule: float | str | None
    deliveries: int = 0
    failures: int = 0
    missed_update_count: int = 0
    last_update: float | None = None
    last_error: str | None = None
    last_acquire_seconds: float | None = None
    expired: bool = False
    #: when the source's failures began (its first failed attempt after its last success);
    #: None while it succeeds.  What an operator asks of a failing source: since when?
    failing_since: float | None = None


@dataclass(frozen=True)
class Acquired:
    """A successful run: the products, when they were acquired and scheduled, how long it took."""

    products: dict[str, Any]
    at: float
    scheduled: float
    took: float


def acquire(
    spec: Any,
    instance: Any,
    call: Callable[[], Any],
    status: SourceStatus,
    *,
    channel: str,
    stop: threading.Event,
    logger: Any,
    report: Callable[[], None],
    describe: Callable[[BaseException], str] = explain,
) -> Acquired | None:
    """Run source ``spec`` once with its retry policy (``call`` runs ``instance.acquire``);
    what it acquired, or None when every attempt failed (counted as a missed update) or
    the channel stopped meanwhile.  ``channel`` labels the metrics."""
    scheduled = time.time()
    for attempt in range(spec.retries + 1):
        if stop.is_set():
            return None
        started = time.monotonic()
        try:
            products = call()
            verify_products(instance, products)
        except Exception as exc:
            reason = describe(exc)
            metrics.SOURCE_ACQUIRES.labels(channel, spec.key, "failure").inc()
            logger.error(
                "source failed",
                source=spec.key,
                attempt=attempt + 1,
                attempts=spec.retries + 1,
                error=reason,
                exc_info=True,
            )
            status.failures += 1
            status.last_error = reason
            if status.failing_since is None:
                status.failing_since = time.time()
            if attempt < spec.retries:
                if stop.wait(min(spec.retry_interval * 2**attempt, MAX_RETRY_DELAY)):
                    return None
                continue
            status.missed_update_count += 1
            metrics.SOURCE_MISSED_UPDATES.labels(channel, spec.key).set(status.missed_update_count)
            report()
            return None
        finally:
            elapsed = time.monotonic() - started
            metrics.SOURCE_ACQUIRE_SECONDS.labels(channel, spec.key).observe(elapsed)
            metrics.REF_SOURCE_ACQUIRE_SECONDS.labels(spec.key).observe(elapsed)
        now = time.time()
        metrics.SOURCE_ACQUIRES.labels(channel, spec.key, "success").inc()
        metrics.REF_SOURCE_LAST_ACQUIRE.labels(spec.key).set(now)
        return Acquired(dict(products), now, scheduled, time.monotonic() - started)
    return None


def delivered(status: SourceStatus, channel: str, key: str, acquired: Acquired) -> None:
    """The run's products are delivered (to the channel, or stored for the consumers)."""
    status.deliveries += 1
    status.last_update = acquired.at
    status.last_acquire_seconds = acquired.took
    status.missed_update_count = 0
    status.failing_since = None
    status.expired = False
    metrics.SOURCE_MISSED_UPDATES.labels(channel, key).set(0)
