"""Channel states and the transitions between them.

::

    BOOT ──► ACTIVE ──► STEADY ◄─┐        (STEADY after the first committed generation)
      ▲        │          │  └───┘
      └────────┴──────────┘                (back to BOOT, in standby, when another server
      │        │          │                 took the channel over; ACTIVE when it is back)
      │        ▼          ▼
      │     SHUTTINGDOWN ──► SHUTDOWN      (stop requested, or the configured number of
      │        ▲                             generations done)
      └──► ERROR ◄── ACTIVE / STEADY        (modules cannot be created, too many
                                             consecutive failed generations, the process
                                             died or a module hung: set by the server)
    OFFLINE: configured but not running (never started, or removed from service)

A channel that is SHUTDOWN, ERROR or OFFLINE can be started again (back to BOOT).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable


class State(enum.Enum):
    BOOT = "BOOT"
    ACTIVE = "ACTIVE"
    STEADY = "STEADY"
    OFFLINE = "OFFLINE"
    SHUTTINGDOWN = "SHUTTINGDOWN"
    SHUTDOWN = "SHUTDOWN"
    ERROR = "ERROR"

    @classmethod
    def parse(cls, name: str) -> State:
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(f"unknown channel state {name!r}; states are {', '.join(s.name for s in cls)}") from None


RUNNING = frozenset({State.BOOT, State.ACTIVE, State.STEADY, State.SHUTTINGDOWN})
FINISHED = frozenset({State.SHUTDOWN, State.ERROR, State.OFFLINE})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.BOOT: frozenset({State.ACTIVE, State.SHUTTINGDOWN, State.ERROR}),
    # back to BOOT: ownership passed to another process; the channel waits in standby
    State.ACTIVE: frozenset({State.STEADY, State.SHUTTINGDOWN, State.ERROR, State.BOOT}),
    State.STEADY: frozenset({State.SHUTTINGDOWN, State.ERROR, State.BOOT}),
    State.SHUTTINGDOWN: frozenset({State.SHUTDOWN, State.ERROR}),
    State.SHUTDOWN: frozenset({State.BOOT, State.OFFLINE}),
    State.ERROR: frozenset({State.BOOT, State.OFFLINE}),
    State.OFFLINE: frozenset({State.BOOT}),
}


class InvalidTransition(RuntimeError):
    pass


class StateMachine:
    """The current state, guarded transitions, and waiting for a change (no polling)."""

    def __init__(self, initial: State = State.BOOT, on_change: Callable[[State, State], None] | None = None) -> None:
        self._state = initial
        self._changed = threading.Condition()
        self._on_change = on_change
        self.since = time.time()

    @property
    def state(self) -> State:
        return self._state

    def set(self, new: State) -> None:
        """Move to ``new``; :class:`InvalidTransition` if the diagram above does not allow it."""
        with self._changed:
            old = self._state
            if new is old:
                return
            if new not in TRANSITIONS[old]:
                raise InvalidTransition(f"a channel cannot go from {old.name} to {new.name}")
            self._state = new
            self.since = time.time()
            self._changed.notify_all()
        if self._on_change is not None:
            self._on_change(old, new)

    def wait_while(self, states: State | Iterable[State], timeout: float | None = None) -> bool:
        """Block while the state is one of ``states``; False on timeout."""
        waiting = {states} if isinstance(states, State) else set(states)
        with self._changed:
            return self._changed.wait_for(lambda: self._state not in waiting, timeout)

    def wait_for(self, states: State | Iterable[State], timeout: float | None = None) -> bool:
        """Block until the state is one of ``states``; False on timeout."""
        wanted = {states} if isinstance(states, State) else set(states)
        with self._changed:
            return self._changed.wait_for(lambda: self._state in wanted, timeout)
