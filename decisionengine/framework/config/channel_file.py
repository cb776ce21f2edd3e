"""The structure of one channel file (before any module is imported).

A channel file evaluates to an object with:

``sources``, ``transforms``, ``publishers``
    maps ``key -> {module, name, parameters}``; sources also take ``schedule`` (seconds, a
    positive number, or a cron string such as ``"*/5 * * * *"``; default 300), ``retries``
    (default 0) and ``retry_interval`` (seconds, default 10);
``logicengines``
    the same map for the (at most one) logic engine; absent means "run every publisher",
    empty means "run none" (see :mod:`decisionengine.framework.logicengine.policy`);
``channel_name``
    optional, overrides the channel's name (the file name without ``.jsonnet``);
``task_manager``
    optional settings passed through to the task manager.

``name`` may be left out of a module entry when its file defines exactly one class of the
expected kind (resolved during validation).  Unknown keys are warnings, not errors: older
channel files carry keys this engine does not use.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.schema import Custom, Int, MapOf, Number, Obj, Str, check
from decisionengine.framework.config.ValidConfig import evaluate_jsonnet
from decisionengine.framework.logicengine.policy import LogicEnginePolicyError, logic_engine_key

#: block name -> module kind
BLOCKS = {"sources": "source", "transforms": "transform", "logicengines": "logicengine", "publishers": "publisher"}
DEFAULT_SCHEDULE = 300
DEFAULT_RETRIES = 0
DEFAULT_RETRY_INTERVAL = 10


def is_cron(value: Any) -> bool:
    """A five-field crontab expression APScheduler understands."""
    if not isinstance(value, str) or len(value.split()) != 5:
        return False
    try:
        CronTrigger.from_crontab(value)
    except ValueError:
        return False
    return True


def _is_schedule(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value > 0
    return is_cron(value)


_PARAMETERS = Obj({}, default={}, extra="keep")
_MODULE_FIELDS = {"module": Str(), "name": Str(optional=True), "parameters": _PARAMETERS}
MODULE_SCHEMA = Obj(_MODULE_FIELDS)
SOURCE_SCHEMA = Obj(
    {
        **_MODULE_FIELDS,
        "schedule": Custom(
            'a number of seconds > 0 or a cron string such as "*/5 * * * *"', _is_schedule, DEFAULT_SCHEDULE
        ),
        "retries": Int(DEFAULT_RETRIES, minimum=0),
        "retry_interval": Number(DEFAULT_RETRY_INTERVAL, minimum=0),
    }
)
CHANNEL_SCHEMA = Obj(
    {
        "sources": MapOf(SOURCE_SCHEMA, default={}),
        "transforms": MapOf(MODULE_SCHEMA, default={}),
        "logicengines": MapOf(MODULE_SCHEMA, optional=True, nullable=True),
        "publishers": MapOf(MODULE_SCHEMA, default={}),
        "channel_name": Str(optional=True),
        "task_manager": Obj({}, default={}, extra="keep"),
    }
)


@dataclass(frozen=True)
class ModuleEntry:
    """One module of a channel file, as written (``name`` None when left out)."""

    block: str
    key: str
    module: str
    name: str | None
    parameters: dict[str, Any]
    schedule: float | str | None = None
    retries: int = DEFAULT_RETRIES
    retry_interval: float = DEFAULT_RETRY_INTERVAL

    @property
    def kind(self) -> str:
        return BLOCKS[self.block]

    @property
    def path(self) -> str:
        """The entry's key path in the file, e.g. ``sources.jobs``."""
        return f"{self.block}.{self.key}"


@dataclass(frozen=True)
class ChannelConfig:
    """A structurally valid channel file.

    ``logicengines`` is None when the file has no ``logicengines`` key (policy: every
    publisher runs), an empty dict when the block is empty (no publisher runs).
    """

    name: str
    path: str | None
    sources: dict[str, ModuleEntry]
    transforms: dict[str, ModuleEntry]
    logicengines: dict[str, ModuleEntry] | None
    publishers: dict[str, ModuleEntry]
    task_manager: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    def entries(self) -> list[ModuleEntry]:
        """Every module entry: sources, transforms, logic engines, publishers."""
        blocks = (self.sources, self.transforms, self.logicengines or {}, self.publishers)
        return [entry for block in blocks for entry in block.values()]


def _entries(block: str, raw: Mapping[str, Any] | None) -> dict[str, ModuleEntry]:
    entries = {}
    for key, spec in (raw or {}).items():
        entries[key] = ModuleEntry(
            block=block,
            key=key,
            module=spec["module"],
            name=spec.get("name"),
            parameters=dict(spec.get("parameters") or {}),
            schedule=spec.get("schedule"),
            retries=spec.get("retries", DEFAULT_RETRIES),
            retry_interval=spec.get("retry_interval", DEFAULT_RETRY_INTERVAL),
        )
    return entries


def parse_channel_config(raw: Any, name: str, path: str | None = None) -> ChannelConfig:
    """Check an evaluated channel configuration; :class:`ConfigError` lists every problem."""
    normalized, report = check(CHANNEL_SCHEMA, raw)
    problems = list(report.problems)
    if not problems:
        keys: dict[str, str] = {}
        for block in BLOCKS:
            for key in normalized.get(block) or {}:
                if key in keys:
                    problems.append(f"{block}.{key}: module key {key!r} is also used in {keys[key]}")
                else:
                    keys[key] = block
        try:
            logic_engine_key(normalized)
        except LogicEnginePolicyError as exc:
            problems.append(f"logicengines: {exc}")
    if problems:
        raise ConfigError(path or f"channel {name!r}", problems)
    return ChannelConfig(
        name=normalized.get("channel_name") or name,
        path=path,
        sources=_entries("sources", normalized["sources"]),
        transforms=_entries("transforms", normalized["transforms"]),
        logicengines=None
        if normalized.get("logicengines") is None
        else _entries("logicengines", normalized["logicengines"]),
        publishers=_entries("publishers", normalized["publishers"]),
        task_manager=normalized["task_manager"],
        warnings=tuple(f"{path or name}: {w}" for w in report.warnings),
    )


def read_channel_file(path: str | os.PathLike[str]) -> ChannelConfig:
    """Evaluate and check one channel file; the channel is named after the file unless it says otherwise.

    Raises ``FileNotFoundError``, ``RuntimeError`` (jsonnet error, with jsonnet's message)
    or :class:`ConfigError` (structure: file, key path, what was expected).
    """
    file = pathlib.Path(path)
    raw = evaluate_jsonnet(file)
    if not isinstance(raw, dict):
        raise ConfigError(str(file), [f"(top level): expected an object, got {type(raw).__name__}"])
    return parse_channel_config(raw, file.stem, str(file))
