"""A server whose own heartbeats come late (an overloaded machine or database) does not take
the others for dead because theirs come late too: that moved channels and booted processes,
which added to the overload (the cluster thrashed in benchmarks/scale.py)."""

from __future__ import annotations

import time

from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import SQLAlchemyDS
from decisionengine.framework.dataspace.membership import Membership

MEMBER_TIMEOUT = 1.0


def open_source(url: str) -> SQLAlchemyDS:
    source = SQLAlchemyDS({"url": url})
    source.create_tables()
    return source


def names(membership: Membership) -> list[str]:
    return [member.name for member in membership.look()[0]]


def test_late_heartbeats_are_judged_only_while_this_server_keeps_its_own_beat(db_url):
    a = Membership(open_source(db_url), "a", member_timeout=MEMBER_TIMEOUT)
    b = Membership(open_source(db_url), "b", member_timeout=MEMBER_TIMEOUT)
    try:
        a.beat([], False)
        b.beat([], False)
        assert names(a) == ["a", "b"] or sorted(names(a)) == ["a", "b"]
        # b beats no more (it hangs) and a's next beat comes late too: an overloaded machine;
        # the passing of time is what is tested here
        time.sleep(MEMBER_TIMEOUT * 1.3)
        a.beat([], False)
        assert a.lagging
        assert sorted(names(a)) == ["a", "b"]  # b's late beat may be the same overload
        a.beat([], False)  # a keeps its beat again
        assert not a.lagging
        assert sorted(names(a)) == ["a"]  # now b's heartbeat, still late, counts
        b.beat([], False)  # b comes back: it joins again
        assert sorted(names(a)) == ["a", "b"]
    finally:
        a.leave()
        b.leave()
