"""The balanced assignment every server of a cluster computes alike (engine.balance)."""

import collections

import pytest

from decisionengine.framework.engine.balance import Placement, Server, assign


def servers(*names, channels, draining=()):
    return [Server(f"id-{name}", name, frozenset(channels), name in draining) for name in names]


def loads(result):
    return collections.Counter(result.values())


@pytest.mark.parametrize(("channels", "count"), [(1, 1), (4, 3), (7, 3), (200, 4), (5, 5), (3, 5)])
def test_each_server_gets_its_share_rounded(channels, count):
    names = [f"c{i:03d}" for i in range(channels)]
    members = servers(*(f"s{i}" for i in range(count)), channels=names)
    result = assign(names, members)
    assert set(result) == set(names) and None not in result.values()
    shares = [loads(result).get(member.server_id, 0) for member in members]
    assert max(shares) - min(shares) <= 1, shares
    assert sum(shares) == channels


def test_the_answer_does_not_depend_on_the_order_servers_are_listed():
    names = [f"c{i}" for i in range(10)]
    members = servers("a", "b", "c", channels=names)
    assert assign(names, members) == assign(reversed(names), list(reversed(members)))


def test_channels_stay_where_they_run_while_their_server_has_room():
    names = [f"c{i}" for i in range(6)]
    holders = dict.fromkeys(names[:3], "id-a") | dict.fromkeys(names[3:], "id-b")
    result = assign(names, servers("a", "b", channels=names), holders)
    assert result == holders  # already balanced: nothing moves


def test_a_joining_server_takes_only_its_share_from_the_others():
    names = [f"c{i}" for i in range(6)]
    holders = dict.fromkeys(names[:3], "id-a") | dict.fromkeys(names[3:], "id-b")
    result = assign(names, servers("a", "b", "c", channels=names), holders)
    assert sorted(loads(result).values()) == [2, 2, 2]
    moved = [name for name in names if result[name] != holders[name]]
    assert len(moved) == 2 and all(result[name] == "id-c" for name in moved)


def test_a_draining_server_gets_nothing_unless_no_other_server_offers_the_channel():
    names = ["shared", "only-on-a"]
    members = [
        Server("id-a", "a", frozenset(names), draining=True),
        Server("id-b", "b", frozenset({"shared"})),
    ]
    assert assign(names, members) == {"shared": "id-b", "only-on-a": "id-a"}


def test_a_channel_no_server_offers_is_given_to_none():
    assert assign(["lonely"], servers("a", channels=["other"])) == {"lonely": None}


def test_placement_prefers_and_avoids_live_servers_only():
    names = ["pinned", "shy", "free1", "free2"]
    members = servers("a", "b", channels=names)
    placements = {"pinned": Placement(prefer=("b",)), "shy": Placement(avoid=("a",))}
    result = assign(names, members, placements=placements)
    assert result["pinned"] == "id-b" and result["shy"] == "id-b"
    # the preferred (or the only allowed) server gone: run elsewhere rather than not at all
    alone = assign(names, servers("a", channels=names), placements=placements)
    assert alone["pinned"] == "id-a" and alone["shy"] == "id-a"


def test_preferences_win_over_balance_and_the_rest_fill_around_them():
    names = [f"p{i}" for i in range(3)] + [f"f{i}" for i in range(3)]
    placements = {name: Placement(prefer=("a",)) for name in names[:3]}
    result = assign(names, servers("a", "b", channels=names), placements=placements)
    assert all(result[name] == "id-a" for name in names[:3])
    assert all(result[name] == "id-b" for name in names[3:])
