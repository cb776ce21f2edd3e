"""Which live server runs which channel: one deterministic answer every server computes alike.

Every server reads the same membership (:mod:`decisionengine.framework.dataspace.membership`)
and the same channel holders from the database, and calls :func:`assign`; the answers
agree, so no server has to tell another what to do.  While views differ (a heartbeat
in flight), the claim in the database decides: a channel is claimed by one server at a
time, the other retries.

The rules, in order:

1. A channel runs only on a server that offers it (it has the channel's file and wants it
   running) and is not draining; if only draining servers offer it, it stays on one of
   them (a drain cannot move a channel nobody else can run).
2. ``placement.avoid``: never on those servers while another one can run it.
3. ``placement.prefer``: on one of those servers while one of them can run it.
4. Balance: with C channels and S servers, each server gets C // S channels, and
   C % S of them one more.  A channel stays where it runs while its server has room
   (no needless hand-overs); the others go, by a hash of (channel, server), to one of the
   servers with room (so that channels spread evenly, every server agrees, and a channel's
   server does not change each time another channel is claimed); when none has room (placement
   constraints), to the least loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Placement:
    """Servers (by name) a channel prefers or avoids: ``task_manager.placement``."""

    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()


@dataclass(frozen=True)
class Server:
    """A live member, as the balancer needs it."""

    server_id: str
    name: str
    channels: frozenset[str]
    draining: bool = False


@dataclass
class _Loads:
    """Channels given to each server so far, against the balanced quota."""

    servers: list[str]
    total: int
    load: dict[str, int] = field(default_factory=dict)
    extras_used: int = 0

    def __post_init__(self) -> None:
        self.load = dict.fromkeys(self.servers, 0)
        self.base, self.extras = divmod(self.total, max(len(self.servers), 1))

    def has_room(self, server: str) -> bool:
        count = self.load.get(server, 0)
        return count < self.base or (count == self.base and self.extras_used < self.extras)

    def give(self, server: str) -> None:
        if server in self.load and self.load[server] == self.base and self.extras_used < self.extras:
            self.extras_used += 1
        self.load[server] = self.load.get(server, 0) + 1


def _spread(channel: str, server_id: str) -> bytes:
    return hashlib.sha256(f"{channel}\0{server_id}".encode()).digest()


def _candidates(channel: str, servers: list[Server], placement: Placement) -> list[Server]:
    offering = [server for server in servers if channel in server.channels]
    active = [server for server in offering if not server.draining] or offering
    allowed = [server for server in active if server.name not in placement.avoid] or active
    preferred = [server for server in allowed if server.name in placement.prefer]
    return preferred or allowed


def assign(
    channels: Iterable[str],
    servers: Iterable[Server],
    holders: Mapping[str, str | None] | None = None,
    placements: Mapping[str, Placement] | None = None,
) -> dict[str, str | None]:
    """{channel: the server id that should run it, or None when no live server offers it}.

    ``holders``: the server currently holding each channel (kept while it has room).
    """
    members = sorted(servers, key=lambda server: server.server_id)
    holders = holders or {}
    placements = placements or {}
    wanted = sorted(set(channels))
    candidates = {name: _candidates(name, members, placements.get(name, Placement())) for name in wanted}
    balanced = [server.server_id for server in members if not server.draining and server.channels]
    loads = _Loads(balanced, sum(1 for name in wanted if candidates[name]))
    result: dict[str, str | None] = {}
    # the most constrained channels first, so that the free ones fill in around them
    order = sorted(wanted, key=lambda name: (len(candidates[name]), name))
    for name in order:  # first: every channel that may stay where it runs
        holder = holders.get(name)
        if holder in {server.server_id for server in candidates[name]} and loads.has_room(holder):
            loads.give(holder)
            result[name] = holder
    for name in order:  # then: the others, each to the least loaded server that may run it
        if name in result:
            continue
        ids = [server.server_id for server in candidates[name]]
        if not ids:
            result[name] = None
            continue
        roomy = [server_id for server_id in ids if loads.has_room(server_id)]
        if roomy:
            # by hash among the servers with room, not the least loaded: the loads change with
            # every claim that lands (the channel moves to the first loop), and a choice by load
            # then named another server for the channels not yet claimed at nearly every beat
            chosen = min(roomy, key=lambda server_id: _spread(name, server_id))
        else:
            chosen = min(ids, key=lambda server_id: (loads.load.get(server_id, 0), _spread(name, server_id)))
        loads.give(chosen)
        result[name] = chosen
    return result
