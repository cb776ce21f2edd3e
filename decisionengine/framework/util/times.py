"""Reading the times people type: ``2h`` ago, ``2026-11-01T12:00``, epoch seconds."""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TIME_HELP = "a duration ago such as 30m, 2h, 3d, 1w, or an ISO time such as 2026-11-01T12:00"


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds from a duration ago (``45s``, ``30m``, ``2h``, ``3d``, ``1w``) or an ISO
    time (local time when it names no offset).  ValueError names what was given."""
    now = datetime.datetime.now().timestamp() if now is None else now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use {TIME_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()
