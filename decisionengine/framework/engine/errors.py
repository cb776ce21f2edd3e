"""What the engine refuses, as exceptions the web layer turns into its error shapes."""

from __future__ import annotations

from collections.abc import Iterable


class EngineError(Exception):
    """A request the engine cannot carry out; nothing was changed."""


class ChannelNotFound(EngineError, LookupError):
    """No channel of that name is known."""

    def __init__(self, channel: str, known: Iterable[str] = ()) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"no channel {channel!r}; channels are {names}")
        self.channel = channel


class ChannelConflict(EngineError):
    """The channel is not in a state that allows the request (already running, bad file...)."""
