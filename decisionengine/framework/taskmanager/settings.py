"""The ``task_manager`` block of a channel file: how a channel runs.

::

    task_manager: {
      max_generations: 10,            // stop (SHUTDOWN) after this many generations; default: run forever
      max_consecutive_failures: 5,    // go to ERROR after this many failed generations in a row
      module_timeout: 600,            // seconds a module call may take before the server kills the channel
      data_lifetime: 1800,            // seconds a source's products stay valid (their expiration_time)
      history: 20,                    // generations kept in the channel's status
      standby_retry: 1,               // seconds between attempts to take over a channel another server owns
      placement: {                    // servers (cluster.server_name) to run on, while they are alive
        prefer: ["de-1"],             //   on one of these when one of them runs
        avoid: ["de-3"],              //   never on these while another server can run the channel
      },
    }

Keys of older installations (``data_TO``...) are accepted and reported as unused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decisionengine.framework.dataspace.datablock import Header

KNOWN_LEGACY_KEYS = {"data_TO"}


@dataclass(frozen=True)
class TaskManagerSettings:
    max_generations: int | None = None
    max_consecutive_failures: int = 5
    module_timeout: float = 600.0
    data_lifetime: float = float(Header.default_data_lifetime)
    history: int = 20
    standby_retry: float = 1.0
    #: server names the channel prefers / avoids (``placement``; see engine.balance)
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(
        cls, block: Mapping[str, Any] | None, channel: str = "", path: str | None = None
    ) -> TaskManagerSettings:
        """Settings from a channel's ``task_manager`` block; ValueError naming the key (and the
        channel and its file, when given) if invalid."""
        block = dict(block or {})
        where = "task_manager"
        if channel:
            where = f"channel {channel!r}{f' ({path})' if path else ''}: task_manager"
        values: dict[str, Any] = {}
        for key, kind, minimum, nullable in (
            ("max_generations", int, 1, True),
            ("max_consecutive_failures", int, 1, False),
            ("module_timeout", float, 0.001, False),
            ("data_lifetime", float, 0, False),
            ("history", int, 0, False),
            ("standby_retry", float, 0.01, False),
        ):
            if key not in block:
                continue
            value = block.pop(key)
            if value is None and nullable:
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
                raise ValueError(
                    f"{where}.{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
                )
            if value < minimum:
                raise ValueError(f"{where}.{key}: must be at least {minimum}, got {value!r}")
            values[key] = kind(value)
        if "placement" in block:
            values.update(_placement(block.pop("placement"), f"{where}.placement"))
        warnings = tuple(f"{where}.{key} is not used by this decision engine" for key in sorted(block))
        return cls(**values, warnings=warnings)


def _placement(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """``placement: {prefer: [names], avoid: [names]}``; ValueError naming the key if invalid."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object with prefer and/or avoid, got {value!r}")
    unknown = sorted(set(value) - {"prefer", "avoid"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (expected prefer, avoid)")
    result = {}
    for key in ("prefer", "avoid"):
        names = value.get(key, [])
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"{where}.{key}: expected a list of server names, got {names!r}")
        result[key] = tuple(names)
    overlap = sorted(set(result["prefer"]) & set(result["avoid"]))
    if overlap:
        raise ValueError(f"{where}: {', '.join(overlap)} both preferred and avoided")
    return result
