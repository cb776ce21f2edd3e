"""Live events for subscribers (the SSE stream, the dashboard, ``de-client --follow``).

:class:`EventHub` fans events out to subscribers, each with a bounded queue: a slow or
vanished subscriber loses its oldest events instead of holding anybody up.

Where generation events come from, without polling the database:

* PostgreSQL: a channel process sends ``NOTIFY`` inside the transaction that writes the
  generation (delivered exactly at commit); :class:`GenerationListener` ``LISTEN``\\s on a
  connection of its own.  Every server sharing the database hears every channel's
  generations, wherever it runs.
* SQLite (and state changes everywhere): the channel process reports to the server over
  its event queue after the commit, and the server publishes from there.

Events of one generation may arrive by both ways; :meth:`EventHub.generation` publishes
each (channel, generation) once.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.util.logger import get_logger

CLOSED = object()


@dataclass(frozen=True)
class Event:
    name: str  # "generation" | "state"
    data: dict[str, Any]

    @property
    def channel(self) -> str | None:
        return self.data.get("channel")


class Subscription:
    """One subscriber's queue; iterate to receive events (None on a keep-alive timeout)."""

    def __init__(self, hub: EventHub, channel: str | None, size: int) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: queue.Queue[Any] = queue.Queue(size)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.channel is not None and event.channel != self.channel:
            return
        self._put(event)

    def _put(self, item: Any) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()  # drop the oldest: the newest matters most
                    self.dropped += 1

    def close(self) -> None:
        self._put(CLOSED)

    def events(self, keepalive: float) -> Iterator[Event | None]:
        """Events as they come; None every ``keepalive`` seconds of silence; ends when closed."""
        try:
            while True:
                try:
                    item = self.queue.get(timeout=keepalive)
                except queue.Empty:
                    yield None
                    continue
                if item is CLOSED:
                    return
                yield item
        finally:
            self.hub.unsubscribe(self)


class EventHub:
    """Publishes events to every subscription; never blocks the publisher."""

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._closed = False

    @typing.overload
    def subscribe(self, channel: str | None = None) -> Subscription: ...

    @typing.overload
    def subscribe(self, channel: str | None, limit: int) -> Subscription | None: ...

    def subscribe(self, channel: str | None = None, limit: int | None = None) -> Subscription | None:
        """A new subscription; None when ``limit`` subscriptions are open already."""
        subscription = Subscription(self, channel, self.queue_size)
        with self._lock:
            if limit is not None and len(self._subscriptions) >= limit:
                return None
            if self._closed:
                subscription.close()
            else:
                self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def publish(self, event: Event) -> None:
        with self._lock:
            targets = list(self._subscriptions)
        for subscription in targets:
            subscription.offer(event)

    def generation(self, data: dict[str, Any]) -> None:
        """Publish a committed generation, once per (channel, generation)."""
        channel, number = data.get("channel"), data.get("generation")
        if channel is None or number is None:
            return
        with self._lock:
            if self._generations.get(channel, 0) >= number:
                return
            self._generations[channel] = number
        self.publish(Event("generation", data))

    def last_generation(self, channel: str) -> int | None:
        """The newest generation of ``channel`` announced as committed, if any was heard."""
        with self._lock:
            return self._generations.get(channel)

    def state(self, channel: str, state: str, since: float | None) -> None:
        self.publish(Event("state", {"channel": channel, "state": state, "since": since}))

    def close(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            self._closed = True
            targets = list(self._subscriptions)
        for subscription in targets:
            subscription.close()


class GenerationListener:
    """Hears the generations every process commits, when the data source can tell
    (PostgreSQL ``LISTEN``/``NOTIFY``), and keeps listening across database outages."""

    def __init__(
        self,
        dataspace: Any,
        hub: EventHub,
        on_cluster: Callable[[dict[str, Any]], None] | None = None,
        on_source: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.dataspace = dataspace
        self.hub = hub
        #: told of announcements about the cluster (a server joined or left), not generations
        self.on_cluster = on_cluster
        #: told of what shared sources announce (a delivery, a failure), not generations
        self.on_source = on_source
        self.logger = get_logger().bind(module="events")
        self._stop = threading.Event()
        #: set while a database connection listens (every commit from then on is heard)
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="generation-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _listening(self, lost: bool) -> None:
        self.listening.set()
        if lost:
            self.logger.info("generation listener listening again")

    def _announced(self, announcement: dict[str, Any]) -> None:
        if "cluster" in announcement:
            if self.on_cluster is not None:
                self.on_cluster(announcement)
            return
        if "source" in announcement:
            if self.on_source is not None:
                self.on_source(announcement)
            return
        self.hub.generation(announcement)

    def _run(self) -> None:
        delay = 1.0
        lost = False
        while not self._stop.is_set():
            try:
                connected = functools.partial(self._listening, lost)
                if not self.dataspace.watch_generations(self._announced, self._stop, connected):
                    return  # this data source cannot notify: channel reports are enough
                delay = 1.0
            except Exception as exc:  # the database went away: listen again when it is back
                lost = True
                self.listening.clear()
                self.logger.warning("generation listener lost its connection", error=str(exc), retry=delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)
