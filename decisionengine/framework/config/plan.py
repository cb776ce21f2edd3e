"""``ChannelPlan``: the validated, immutable description of a channel the task manager runs.

Built by :func:`decisionengine.framework.config.validation.validate_channel`.  Everything
in it has been checked: modules import, parameters follow the policy, every consumed
product has exactly one producer, transforms are in dependency order, the logic engine's
facts read produced products and its actions name publishers.  Plans are picklable
(classes by reference), so a server may hand one to a channel's own process, which then
calls :meth:`ModuleSpec.create` for each module.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.logicengine.policy import PublisherPolicy, publishers_to_run
from decisionengine.framework.util.frozen import FrozenDict


@dataclass(frozen=True)
class ModuleSpec:
    """One module of a validated channel.

    ``parameters`` are the ones the instance receives: the file's, with declared defaults
    filled in and ``channel_name`` set.  ``produces``/``consumes`` are ``{product: type or
    None}`` as read from an instance (so instance-level declarations such as EmptySource's
    count).  ``schedule`` (seconds or a cron string), ``retries`` and ``retry_interval``
    are set for sources only.
    """

    key: str
    kind: str
    module: str
    class_name: str
    cls: type
    parameters: FrozenDict[str, Any]
    produces: FrozenDict[str, Any]
    consumes: FrozenDict[str, Any]
    schedule: float | str | None = None
    retries: int = 0
    retry_interval: float = 0

    def create(self) -> Any:
        """A new instance, given a deep copy of :attr:`parameters`."""
        return self.cls(copy.deepcopy(self.parameters.to_dict()))

    def period(self) -> float:
        """Seconds between a source's acquisitions: its interval, or for a cron schedule the
        gap between its next two firings (what monitoring expects a generation within)."""
        trigger = self.trigger()
        if not isinstance(self.schedule, str):
            return float(self.schedule)
        now = datetime.datetime.now(datetime.UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + datetime.timedelta(seconds=1))
        return (second - first).total_seconds()

    def trigger(self) -> Any:
        """The APScheduler trigger of a source's schedule (interval seconds or crontab)."""
        if self.kind != "source" or self.schedule is None:
            raise ValueError(f"{self.key} is a {self.kind} and has no schedule")
        if isinstance(self.schedule, str):
            from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - only sources need it

            return CronTrigger.from_crontab(self.schedule)
        from apscheduler.triggers.interval import IntervalTrigger  # noqa: PLC0415

        return IntervalTrigger(seconds=self.schedule)


@dataclass(frozen=True)
class ChannelPlan:
    """A validated channel: what to create and in which order to run it.

    ``transforms`` is topologically ordered (a transform comes after every transform whose
    products it consumes).  ``producers`` maps every product to the key of the module
    producing it.  ``publisher_policy`` and :meth:`publishers_to_run` say which publishers
    run after the logic engine.
    """

    name: str
    path: str | None
    sources: FrozenDict[str, ModuleSpec]
    transforms: tuple[ModuleSpec, ...]
    logic_engine: ModuleSpec | None
    publishers: FrozenDict[str, ModuleSpec]
    producers: FrozenDict[str, str]
    publisher_policy: PublisherPolicy
    task_manager: FrozenDict[str, Any]
    warnings: tuple[str, ...]

    def modules(self) -> Iterator[ModuleSpec]:
        """Every module: sources, transforms (in order), the logic engine, publishers."""
        yield from self.sources.values()
        yield from self.transforms
        if self.logic_engine is not None:
            yield self.logic_engine
        yield from self.publishers.values()

    def module(self, key: str) -> ModuleSpec:
        """The module with this key (KeyError naming the channel if none)."""
        for spec in self.modules():
            if spec.key == key:
                return spec
        raise KeyError(f"channel {self.name!r} has no module {key!r}")

    def publishers_to_run(self, fired_actions: Iterable[str] = ()) -> list[str]:
        """Publisher keys to run this generation, given the actions the logic engine fired."""
        return publishers_to_run(self.publisher_policy, self.publishers, fired_actions)

    def upstream_sources(self, product: str) -> frozenset[str]:
        """The source keys a product depends on, through any chain of transforms."""
        seen: set[str] = set()
        pending = [product]
        sources: set[str] = set()
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            producer = self.producers.get(current)
            if producer is None:
                continue
            if producer in self.sources:
                sources.add(producer)
            else:
                pending.extend(self.module(producer).consumes)
        return frozenset(sources)
