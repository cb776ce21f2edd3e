"""When a failed channel is started again by itself.

A channel process that ends in ERROR (a module raised too often, hung past
``module_timeout``, the process exited or was killed) is a fault the server can heal
without a person: it starts the channel again after a delay.  The delay doubles with
each failure in a row (``initial_delay``, 2x, 4x, ... up to ``max_delay``), so that a
channel failing for a lasting reason (a source that is down for an hour) costs a start
every few minutes, not a tight loop; it is back to ``initial_delay`` once the channel has
committed a generation again.

Never restarted: a channel the operator stopped or killed, a channel whose configuration
is invalid (it would fail the same way: fix the file and ``start_channel``), and any
channel while the server is stopping.  Configured in the global file::

    channel_restart: {enabled: true, initial_delay: 1, max_delay: 300}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RestartPolicy:
    enabled: bool = True
    initial_delay: float = 1.0
    max_delay: float = 300.0

    @classmethod
    def from_config(cls, global_config: dict[str, Any]) -> RestartPolicy:
        section = global_config.get("channel_restart") or {}
        return cls(
            enabled=bool(section.get("enabled", cls.enabled)),
            initial_delay=float(section.get("initial_delay", cls.initial_delay)),
            max_delay=float(section.get("max_delay", cls.max_delay)),
        )

    def delay(self, failures_in_a_row: int) -> float:
        """Seconds to wait before the next start, after ``failures_in_a_row`` (>= 1) failures."""
        exponent = max(0, failures_in_a_row - 1)
        if exponent > 60:  # 2**60 * anything exceeds any max_delay
            return self.max_delay
        return min(self.max_delay, self.initial_delay * 2**exponent)
