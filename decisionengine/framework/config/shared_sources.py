"""Sources known by name across the server: which channels share one, and which disagree.

As in the reference Decision Engine 2.0, a source is identified server-wide by its key in
the ``sources`` block (``sources: {jobs: {...}}`` is source ``jobs`` in every channel that
names it).  Channels naming the same source with the *same configuration* share one
running source; a channel naming it with another configuration is refused, with an error
naming the channel, the source and the keys that differ.

"Same configuration" compares what decides what the source acquires and when, as the
channel file gives it after jsonnet evaluation (:data:`IDENTITY_KEYS`): ``module``,
``name`` (the class; a left-out ``name`` matches any, since it then resolves to the only
source class of the module), ``parameters`` (every key, compared as values: ``1`` and
``1.0`` are equal, dict order does not count), ``schedule``, ``retries`` and
``retry_interval``.  Framework-set values (``channel_name``, declared defaults) are not
part of it: they are filled in later and would make every pair differ.

Which channel is refused is deterministic: at server start channels are taken in order
of their names and the later one is refused; a channel started later is checked against
the channels the server already knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.config.channel_file import ChannelConfig, ModuleEntry

#: what "the same configuration" of a source compares
IDENTITY_KEYS = ("module", "name", "parameters", "schedule", "retries", "retry_interval")


def identity(entry: ModuleEntry) -> dict[str, Any]:
    """The configuration of a source entry that must agree between channels sharing it."""
    return {key: getattr(entry, key) for key in IDENTITY_KEYS}


def differences(mine: ModuleEntry, theirs: ModuleEntry) -> list[tuple[str, Any, Any]]:
    """(key path, this value, the other value) for every key of :data:`IDENTITY_KEYS` that
    differs (``parameters`` key by key: ``parameters.collector``)."""
    found: list[tuple[str, Any, Any]] = []
    for key in IDENTITY_KEYS:
        a, b = getattr(mine, key), getattr(theirs, key)
        if key == "name" and (a is None or b is None):
            continue
        if key == "parameters":
            for name in sorted(set(a) | set(b)):
                if a.get(name, _MISSING) != b.get(name, _MISSING):
                    found.append((f"parameters.{name}", a.get(name, _MISSING), b.get(name, _MISSING)))
        elif a != b:
            found.append((key, a, b))
    return found


class _Missing:
    def __repr__(self) -> str:
        return "(not set)"


_MISSING = _Missing()


@dataclass(frozen=True)
class SourceConflict:
    """A channel names a source another channel configures differently."""

    channel: str
    source: str
    other_channel: str
    differences: tuple[tuple[str, Any, Any], ...]
    mine: dict[str, Any]
    theirs: dict[str, Any]

    def __str__(self) -> str:
        keys = "; ".join(f"{path}: {a!r} here, {b!r} in {self.other_channel!r}" for path, a, b in self.differences)
        return (
            f"channel {self.channel!r} not loaded: source {self.source!r} is already configured by channel "
            f"{self.other_channel!r} with another configuration ({keys}). Sources are known by name across "
            f"the server: give one of them another name to keep two different sources. "
            f"This configuration: {self.mine}; the configuration in use: {self.theirs}"
        )


def conflicts_of(config: ChannelConfig, known: Iterable[ChannelConfig]) -> list[SourceConflict]:
    """The sources of ``config`` that a channel of ``known`` configures differently."""
    by_key: dict[str, tuple[str, ModuleEntry]] = {}
    for other in known:
        if other.name == config.name:
            continue
        for key, entry in other.sources.items():
            by_key.setdefault(key, (other.name, entry))
    found = []
    for key, entry in config.sources.items():
        if key not in by_key:
            continue
        other_name, other_entry = by_key[key]
        diff = differences(entry, other_entry)
        if diff:
            found.append(
                SourceConflict(config.name, key, other_name, tuple(diff), identity(entry), identity(other_entry))
            )
    return found


def split_conflicting(
    configs: Mapping[str, ChannelConfig],
) -> tuple[dict[str, ChannelConfig], dict[str, list[SourceConflict]]]:
    """Take channels in name order; a channel whose source disagrees with one taken before
    it is refused.  Returns (accepted {name: config}, refused {name: conflicts})."""
    accepted: dict[str, ChannelConfig] = {}
    refused: dict[str, list[SourceConflict]] = {}
    for name in sorted(configs):
        found = conflicts_of(configs[name], accepted.values())
        if found:
            refused[name] = found
        else:
            accepted[name] = configs[name]
    return accepted, refused


def shared_keys(config: ChannelConfig, known: Iterable[ChannelConfig]) -> frozenset[str]:
    """The sources of ``config`` that another channel of ``known`` also names (with the same
    configuration, once conflicts are refused): they run shared, in a process of their own."""
    others = {key for other in known if other.name != config.name for key in other.sources}
    return frozenset(key for key in config.sources if key in others)
