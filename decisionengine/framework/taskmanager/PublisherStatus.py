"""Publisher status: which publishers are enabled, since when, and how the last ones ran.

The reference Decision Engine's API, so that its modules run unchanged: a module that
declares ``@consumes(publisher_status=PublisherStatus)`` reads it from the data block and
asks

.. code-block:: python

    status = self.publisher_status(data_block)
    if status.is_enabled("glideinwms_publisher"):
        ...
    elif status.state("glideinwms_publisher").duration.total_seconds() > 600:
        ...  # disabled for ten minutes

A publisher disables itself by returning ``False`` from ``publish()`` and enables itself
again by returning ``True``; ``None`` (what a ``publish()`` without ``return`` gives, that
is most publishers) and any other value change nothing (see :meth:`PublisherStatusBoard.record`
for why).  ``since`` moves only when the state changes; ``duration`` is measured from now.

Three classes, as in the reference:

* :class:`PublisherStatusBoard`: the channel's board (its task manager owns it), updated
  after each publisher has run;
* :class:`PublisherStatus`: what the data block holds as ``publisher_status``; besides
  the reference's questions it carries this generation's details (``ran``, ``succeeded``,
  ``seconds``, ``error`` per publisher) as :attr:`PublisherStatus.details` and
  :meth:`PublisherStatus.to_frame` (what the CLI, the JSON API and the dashboard show);
* :class:`PublisherState`: the answer of :meth:`PublisherStatus.state`.

Times are naive local ``datetime`` as in the reference (``datetime.now()``), so that a
module comparing ``since`` with its own ``datetime.now()`` keeps working.

A stored ``PublisherStatus`` is read back through the DataSpace's restricted unpickler,
which admits this class by name (``allowlist.FRAMEWORK_CLASSES``) because
:meth:`PublisherStatus.__setstate__` accepts plain data only: a payload naming the class
with any other state is refused before a reader sees it.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from tabulate import tabulate

__all__ = ["DETAIL_COLUMNS", "PublisherState", "PublisherStatus", "PublisherStatusBoard"]

#: The per-generation details of each publisher, one row per configured publisher: column -> dtype
DETAIL_DTYPES: dict[str, Any] = {
    "publisher": object,
    "ran": bool,
    "succeeded": object,
    "seconds": float,
    "error": object,
}
DETAIL_COLUMNS = tuple(DETAIL_DTYPES)

#: {publisher: (enabled, since)}: the reference's representation (also what its pickles hold)
StatusMap = Mapping[str, tuple[bool, datetime.datetime]]


class PublisherState(NamedTuple):
    """One publisher's state (the reference's named tuple: unpacks as enabled, duration, since)."""

    #: whether the publisher is enabled
    enabled: bool
    #: how long it has been in this state: now minus ``since``
    duration: datetime.timedelta
    #: when it was last enabled or disabled (the board's creation, if never changed)
    since: datetime.datetime


def details_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The details frame of ``rows`` (one dict per publisher, keyed by DETAIL_COLUMNS), each
    column made in its dtype at once: a frame made from the rows and then converted (pandas 3
    infers Arrow strings first) cost twice as much, at every generation."""
    columns = {column: pd.Series([row[column] for row in rows], dtype=dtype) for column, dtype in DETAIL_DTYPES.items()}
    return pd.DataFrame(columns)


def empty_details() -> pd.DataFrame:
    """A details frame with no rows (a status that has not published yet)."""
    return details_frame([])


def _checked_status(status: Any) -> dict[str, tuple[bool, datetime.datetime]]:
    """``status`` as {name: (enabled, since)}, or ``TypeError`` saying what is wrong.

    Exact types only: the state may come from a payload someone else wrote, and an
    object of another type could answer ``bool()`` or ``-`` with anything it likes."""
    if type(status) not in (dict, types.MappingProxyType):
        raise TypeError(f"publisher status: a dict of publishers expected, not {type(status).__name__}")
    checked: dict[str, tuple[bool, datetime.datetime]] = {}
    for name, entry in status.items():
        if type(name) is not str:
            raise TypeError(f"publisher status: a publisher name must be a str, not {type(name).__name__}")
        if type(entry) is not tuple or len(entry) != 2:
            raise TypeError(f"publisher status of {name!r}: an (enabled, since) pair expected")
        enabled, since = entry
        if type(enabled) not in (bool, np.bool_):
            raise TypeError(f"publisher status of {name!r}: enabled must be a bool, not {type(enabled).__name__}")
        if type(since) is not datetime.datetime:
            raise TypeError(f"publisher status of {name!r}: since must be a datetime, not {type(since).__name__}")
        checked[name] = (bool(enabled), since)
    return checked


def _checked_details(details: Any) -> pd.DataFrame | None:
    if details is None:
        return None
    if type(details) is not pd.DataFrame:
        raise TypeError(f"publisher status details: a DataFrame expected, not {type(details).__name__}")
    missing = [column for column in DETAIL_COLUMNS if column not in details.columns]
    if missing:
        raise ValueError(f"publisher status details: columns {missing} missing")
    return details


class PublisherStatus:
    """The ``publisher_status`` product: each publisher's enabled state and, for the
    generation it was stored with, how its publishers ran.

    Built by :meth:`PublisherStatusBoard.snapshot`; constructing one from a mapping
    ``{name: (enabled, since)}`` works too (the reference's constructor).
    """

    # what an instance made without its state (a hostile pickle can do that) answers:
    # nothing, rather than an AttributeError in a reader
    _status: Mapping[str, tuple[bool, datetime.datetime]] = types.MappingProxyType({})
    _details: pd.DataFrame | None = None

    def __init__(self, status_snapshot: StatusMap, details: pd.DataFrame | None = None) -> None:
        if type(status_snapshot) is dict:
            self._status = status_snapshot  # shared, as the reference's: a live view of a board
            _checked_status(status_snapshot)
        else:
            self._status = _checked_status(dict(status_snapshot))
        self._details = _checked_details(details)

    # -- the reference's API --------------------------------------------------------------

    def is_enabled(self, publisher_name: str) -> bool:
        """Whether ``publisher_name`` is enabled (``KeyError`` for an unknown publisher)."""
        return self._status[publisher_name][0]

    def state(self, publisher_name: str) -> PublisherState:
        """``publisher_name``'s state, its ``duration`` measured from now."""
        enabled, since = self._status[publisher_name]
        return PublisherState(enabled=enabled, duration=_now(since) - since, since=since)

    #: the name this method had in early releases of the reference
    status = state

    def __str__(self) -> str:
        return tabulate([(k, *v) for k, v in self._status.items()], headers=["Publisher", "Enabled", "Since"])

    def __repr__(self) -> str:
        states = ", ".join(f"{name}={'enabled' if enabled else 'disabled'}" for name, (enabled, _) in self.items())
        return f"PublisherStatus({states})"

    # -- ours -----------------------------------------------------------------------------

    @property
    def publishers(self) -> list[str]:
        """The publishers the board knows (the channel's, in configuration order)."""
        return list(self._status)

    def items(self) -> list[tuple[str, tuple[bool, datetime.datetime]]]:
        """``[(name, (enabled, since))]``."""
        return list(self._status.items())

    @property
    def details(self) -> pd.DataFrame:
        """The generation's publishers: one row each with ``publisher``, ``ran``,
        ``succeeded`` (None when it did not run), ``seconds`` and ``error`` (what
        ``publisher_status`` was before it answered the reference's API).  No rows in a
        status that was not stored after publishing (what modules read during a generation
        describes the previous one's board only)."""
        return empty_details() if self._details is None else self._details

    def to_frame(self) -> pd.DataFrame:
        """The details with each publisher's ``enabled`` and ``since`` after them: one row
        per publisher of the details or the board (what operators are shown)."""
        details = self.details
        names = list(dict.fromkeys([*details["publisher"].tolist(), *self._status]))
        frame = details.set_index("publisher").reindex(names)
        frame.index.name = "publisher"
        frame["enabled"] = [self._status[name][0] if name in self._status else None for name in names]
        frame["since"] = [self._status[name][1] if name in self._status else None for name in names]
        frame = frame.reset_index()
        frame["ran"] = frame["ran"].fillna(False).astype(bool)
        for column in ("succeeded", "error"):  # None, not NaN, for a publisher without details
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        return frame.astype({"publisher": object, "enabled": object})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublisherStatus):
            return NotImplemented
        return dict(self._status) == dict(other._status) and self.details.equals(other.details)

    __hash__ = None  # type: ignore[assignment]

    # -- pickling: plain data in, checked on the way back ----------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"_status": dict(self._status), "_details": self._details}

    def __setstate__(self, state: Any) -> None:
        """Rebuild from a pickle's state: ``{"_status": {name: (bool, datetime)},
        "_details": DataFrame or None}`` (the reference's pickles hold ``_status`` only).
        Anything else raises (the reader reports the payload as corrupt); unknown keys of
        a newer version are ignored, never set as attributes."""
        if type(state) is not dict:
            raise TypeError(f"publisher status: a dict state expected, not {type(state).__name__}")
        self._status = _checked_status(state.get("_status", {}))
        self._details = _checked_details(state.get("_details"))


class PublisherStatusBoard:
    """The channel's board: every publisher enabled at the start, then as their
    ``publish()`` calls said.

    The channel's task manager owns it; it is not for modules (they read the
    :class:`PublisherStatus` in the data block).
    """

    def __init__(self, publisher_names: Iterable[str]) -> None:
        now = datetime.datetime.now()
        self._status: dict[str, tuple[bool, datetime.datetime]] = dict.fromkeys(publisher_names, (True, now))

    @classmethod
    def resume(cls, publisher_names: Iterable[str], previous: PublisherStatus | None) -> PublisherStatusBoard:
        """A board for ``publisher_names`` carrying on from ``previous`` (the last stored
        status, e.g. at a restart): a publisher it knows keeps its state and ``since``, a
        new one starts enabled now; publishers no longer configured are dropped."""
        board = cls(publisher_names)
        if previous is not None:
            for name, entry in previous.items():
                if name in board._status:
                    board._status[name] = entry
        return board

    def update(self, publisher_name: str, result_of_publish: Any) -> None:
        """Set ``publisher_name`` enabled or not (``bool(result_of_publish)``); ``since``
        moves only when that changes.  ``KeyError`` for a publisher the board was not made with."""
        if publisher_name not in self._status:
            raise KeyError(f"publisher {publisher_name!r} is not on the status board ({', '.join(self._status)})")
        enabled = bool(result_of_publish)
        if self._status[publisher_name][0] == enabled:
            return
        self._status[publisher_name] = (enabled, datetime.datetime.now())

    def record(self, publisher_name: str, result_of_publish: Any) -> bool | None:
        """What the task manager calls with each ``publish()``'s return value: ``False``
        disables the publisher, ``True`` enables it, anything else (``None`` above all)
        changes nothing.  Returns the state it set, or None.

        Only booleans count because most publishers return nothing (``None``: they must
        stay enabled, as in the reference, which updates the board only on ``False``) and
        some return a count or a frame of what they did, whose truth (``0``, an empty
        frame) says nothing about whether they want to be enabled."""
        if type(result_of_publish) not in (bool, np.bool_):
            return None
        self.update(publisher_name, result_of_publish)
        return bool(result_of_publish)

    def snapshot(self, details: pd.DataFrame | None = None) -> PublisherStatus:
        """A :class:`PublisherStatus` viewing this board (as the reference's: later
        updates show through it), with ``details``; see :meth:`frozen` for a copy."""
        return PublisherStatus(self._status, details)

    def frozen(self, details: pd.DataFrame | None = None) -> PublisherStatus:
        """A :class:`PublisherStatus` of the board as it is now (later updates do not
        show): what a generation's modules read and what is stored."""
        return PublisherStatus(dict(self._status), details)


def _now(since: datetime.datetime) -> datetime.datetime:
    """Now, comparable with ``since`` (naive local, or in ``since``'s zone if it has one)."""
    return datetime.datetime.now(since.tzinfo) if since.tzinfo is not None else datetime.datetime.now()
