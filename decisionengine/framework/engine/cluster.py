"""This server as one member of a cluster sharing a DataSpace: heartbeat, balance, hand-over.

A thread writes this server's heartbeat every ``cluster.heartbeat_interval`` seconds
(:mod:`decisionengine.framework.dataspace.membership`), reads the live members and who
holds each channel, computes the balanced assignment (:mod:`.balance`) and asks the
engine to apply it: start the channels given to this server, hand over the others (the
channel process finishes its generation, releases the channel and exits; the new owner
claims it with the next epoch and numbers generations on).

Shared sources acquired once for the cluster (:mod:`.shared_sources`) are offered and
assigned the same way, under their task manager names (``de-source:<key>``), balanced
among the servers that offer them apart from the channels (a source does not take a
channel's place in a server's share).

While the database cannot be reached nothing is rebalanced: the channels keep running
where they are (each retries the database on its own), and the server tells the
operator.  A lone server is a cluster of one: every channel is its own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.dataspace.dataspace import SHARED_SOURCE_PREFIX
from decisionengine.framework.dataspace.membership import Member, Membership
from decisionengine.framework.engine.balance import Placement, Server, assign
from decisionengine.framework.util.logger import get_logger

#: heartbeat intervals the balancer must name a channel's new server in a row before it moves
#: (see Cluster._settled)
SETTLE_BEATS = 3
_NOTHING = object()


@dataclass(frozen=True)
class ClusterSettings:
    """The global file's ``cluster`` block."""

    name: str
    heartbeat_interval: float = 1.0
    member_timeout: float = 10.0
    #: channel processes booting at once on this server (the rest start at later beats)
    max_starting: int = 16

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClusterSettings:
        block = config.get("cluster") or {}
        return cls(
            name=block.get("server_name") or socket.gethostname(),
            heartbeat_interval=float(block.get("heartbeat_interval", 1.0)),
            member_timeout=float(block.get("member_timeout", 10.0)),
            max_starting=int(block.get("max_starting", 16)),
        )


@dataclass(frozen=True)
class View:
    """What the last successful look at the cluster found."""

    members: tuple[Member, ...]
    holders: dict[str, str | None]
    assignment: dict[str, str | None]
    at: float


#: (channels offered, placements) of this server, asked at every beat
Offer = Callable[[], tuple[list[str], dict[str, Placement]]]
#: told the assignment (channel -> server id or None) and the view it came from
Apply = Callable[[View], None]


class Cluster:
    """The membership thread of one server."""

    def __init__(self, datasource: Any, settings: ClusterSettings, offer: Offer, apply: Apply) -> None:
        self.settings = settings
        self.membership = Membership(datasource, settings.name, settings.member_timeout)
        self.server_id = self.membership.server_id
        self.offer = offer
        self.apply = apply
        self.draining = False
        self.view: View | None = None
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self.logger = get_logger().bind(module="cluster", server=settings.name, server_id=self.server_id)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one beat at a time (the thread, a drain, the first beat)
        #: the newest view the heartbeat thread handed to the applier thread
        self._pending: tuple[int, View] | None = None
        self._beats = 0  # views made so far (under _lock)
        self._applied = 0  # the number of the last view applied (under _apply_lock)
        self._pending_lock = threading.Lock()
        self._apply_wake = threading.Event()
        self._apply_lock = threading.Lock()  # one apply at a time
        self._applier: threading.Thread | None = None
        #: channel -> (the server the balancer names for it, since when): see _settled
        self._proposed: dict[str, tuple[str | None, float]] = {}
        #: channel -> the server this server acts on (under _lock)
        self._acted: dict[str, Any] = {}
        #: how long the last apply took (seconds; the cluster status shows it)
        self.last_apply_seconds: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """One beat now (so that a lone server starts its channels at once), then the threads."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="cluster", daemon=True)
        self._thread.start()
        self._applier = threading.Thread(target=self._apply_latest, name="cluster-apply", daemon=True)
        self._applier.start()

    def stop(self) -> None:
        """Leave the cluster: the others take this server's channels as they are released."""
        self._stop.set()
        self._wake.set()
        self._apply_wake.set()
        for thread in (self._thread, self._applier):
            if thread is not None:
                thread.join(5)
        self.membership.leave()
        self.logger.info("left the cluster")

    def poke(self) -> None:
        """Beat now rather than at the next interval (a drain, a channel started or stopped)."""
        self._wake.set()

    def _run(self) -> None:
        """Heartbeat and look every interval; what to do is handed to the applier thread.

        Applying can take long on a loaded machine (it starts up to ``max_starting`` channel
        processes); a heartbeat that waited for it came later than ``member_timeout`` and
        the others took this server for dead, took its channels, and it took them back at
        its next beat: the cluster thrashed instead of settling."""
        while not self._stop.is_set():
            self._wake.wait(self.settings.heartbeat_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.beat(wait=False)

    def _apply_latest(self) -> None:
        """Apply the newest view handed over (views that came meanwhile are skipped: each
        is the whole assignment)."""
        while not self._stop.is_set():
            self._apply_wake.wait()
            self._apply_wake.clear()
            with self._pending_lock:
                pending, self._pending = self._pending, None
            if pending is not None and not self._stop.is_set():
                self._apply(*pending)

    def _apply(self, number: int, view: View) -> None:
        """Apply the view of beat ``number``, unless a later beat's was applied already (a
        drain's beat applies at once, while the applier may still hold an older view)."""
        with self._apply_lock:
            if number <= self._applied:
                return
            self._applied = number
            started = time.monotonic()
            try:
                self.apply(view)
            except Exception:  # applying must never stop the cluster's threads
                self.logger.exception("could not apply the cluster assignment")
            self.last_apply_seconds = time.monotonic() - started

    # -- one beat --------------------------------------------------------------------------------

    def beat(self, *, wait: bool = True) -> View | None:
        """Heartbeat, look, balance, apply.  Returns the view, or None when the database failed.

        ``wait``: apply before returning (a drain, the first beat); else hand the view to the
        applier thread and return at once (the heartbeat thread)."""
        with self._lock:
            started = time.monotonic()
            channels, placements = self.offer()
            offered = time.monotonic()
            try:
                joined = self.membership.beat(channels, self.draining)
                beaten = time.monotonic()
                members, holders = self.membership.look()
                looked = time.monotonic()
            except Exception as exc:
                self._unreachable(exc)
                return None
            if joined:
                self.logger.info("joined the cluster", members=[member.name for member in members])
            self._reachable()
            known = sorted({name for member in members for name in member.channels} | set(channels))
            servers = [Server(m.server_id, m.name, frozenset(m.channels), m.draining) for m in members]
            sources = [name for name in known if is_source(name)]
            assignment = assign([name for name in known if not is_source(name)], servers, holders, placements)
            assignment.update(assign(sources, servers, holders, {}))
            assignment = self._settled(
                assignment, {m.server_id for m in members}, {m.server_id for m in members if m.draining}
            )
            view = View(members=tuple(members), holders=holders, assignment=assignment, at=time.time())
            self._beats += 1
            number = self._beats
            previous, self.view = self.view, view
            if previous is None or _summary(previous) != _summary(view):
                mine = sorted(name for name, server in view.assignment.items() if server == self.server_id)
                self.logger.info(
                    "cluster assignment",
                    members=[f"{m.name}{' (draining)' if m.draining else ''}" for m in members],
                    channels_here=len(mine),
                    channels_total=len(view.assignment),
                )
            took = time.monotonic() - started
            if took > self.settings.member_timeout / 4:
                self.logger.warning(
                    "slow cluster heartbeat: the others take this server for dead after member_timeout",
                    seconds=round(took, 3),
                    member_timeout=self.settings.member_timeout,
                    offer=round(offered - started, 3),
                    heartbeat=round(beaten - offered, 3),
                    look=round(looked - beaten, 3),
                )
        if wait:
            self._apply(number, view)
        else:
            with self._pending_lock:
                self._pending = (number, view)
            self._apply_wake.set()
        return view

    def _settled(
        self, assignment: dict[str, str | None], live: set[str], draining: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, str | None]:
        """The assignment this server acts on: a channel moves only once the balancer has
        named its new server for :data:`SETTLE_BEATS` heartbeat intervals in a row (and at
        least half ``member_timeout``: a channel process boots in seconds on a loaded machine).

        A channel that no server holds (one in transit) goes to the least loaded server,
        and the loads change as channels are claimed: on a loaded machine the balancer named
        another server at nearly every beat, each started and handed over the channel in
        turn, and the cluster never settled.  A channel whose server left or drains moves at
        once, and one no server offers any more is nobody's at once."""
        now = time.monotonic()
        settle = max(SETTLE_BEATS * self.settings.heartbeat_interval, self.settings.member_timeout / 2)
        acted: dict[str, str | None] = {}
        for name, target in assignment.items():
            proposed = self._proposed.get(name)
            if proposed is None or proposed[0] != target:
                proposed = self._proposed[name] = (target, now)
            current = self._acted.get(name, _NOTHING)
            if (
                current is _NOTHING
                or current == target
                or target is None  # nobody offers it any more
                or current not in live
                or current in draining  # a drain moves everything at once
                or now - proposed[1] >= settle
            ):
                self._acted[name] = target
            acted[name] = self._acted[name]
        for gone in set(self._acted) - set(assignment):
            del self._acted[gone]
            self._proposed.pop(gone, None)
        return acted

    def _unreachable(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            self.logger.error(
                "cannot reach the database for the cluster heartbeat; channels stay where they run",
                error=self.last_error,
            )

    def _reachable(self) -> None:
        if self.unreachable_since is not None:
            self.logger.info(
                "cluster heartbeat works again", unreachable_seconds=round(time.time() - self.unreachable_since, 3)
            )
        self.unreachable_since = None
        self.last_error = None

    # -- what operators see -------------------------------------------------------------------------

    def member_name(self, server_id: str | None) -> str | None:
        """The name of a live member (None for no server, the id itself for a dead one)."""
        if server_id is None:
            return None
        view = self.view
        for member in view.members if view else ():
            if member.server_id == server_id:
                return member.name
        return server_id

    def status(self) -> dict[str, Any]:
        view = self.view
        assignment = view.assignment if view else {}
        holders = view.holders if view else {}
        members = []
        for member in view.members if view else ():
            members.append(
                {
                    **member.as_dict(),
                    "this_server": member.server_id == self.server_id,
                    "channels": [name for name in member.channels if not is_source(name)],
                    "assigned": sorted(
                        name for name, sid in assignment.items() if sid == member.server_id and not is_source(name)
                    ),
                    "holding": sorted(
                        name for name, sid in holders.items() if sid == member.server_id and not is_source(name)
                    ),
                    "sources": sorted(
                        name[len(SHARED_SOURCE_PREFIX) :]
                        for name, sid in holders.items()
                        if sid == member.server_id and is_source(name)
                    ),
                }
            )
        return {
            "server_id": self.server_id,
            "server_name": self.settings.name,
            "draining": self.draining,
            "heartbeat_interval": self.settings.heartbeat_interval,
            "member_timeout": self.settings.member_timeout,
            "viewed_at": view.at if view else None,
            "database_unreachable_since": self.unreachable_since,
            "last_apply_seconds": self.last_apply_seconds,
            "last_error": self.last_error,
            "members": members,
        }


def is_source(name: str) -> bool:
    """Whether a name the cluster balances is a shared source's (not a channel's)."""
    return name.startswith(SHARED_SOURCE_PREFIX)


def _summary(view: View) -> tuple[Any, ...]:
    return (
        tuple((m.server_id, m.draining, m.channels) for m in view.members),
        tuple(sorted(view.assignment.items(), key=lambda item: item[0])),
    )
