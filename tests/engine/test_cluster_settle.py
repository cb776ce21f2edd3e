"""A channel moves only once the balancer names its new server for a while in a row
(engine.cluster.Cluster._settled): on a loaded machine the balancer's answer for a channel in
transit changed at nearly every beat, and servers started and handed it over in turn."""

from __future__ import annotations

import time

from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import SQLAlchemyDS
from decisionengine.framework.engine.cluster import Cluster, ClusterSettings

SETTINGS = ClusterSettings(name="a", heartbeat_interval=0.1, member_timeout=1.0)  # settles in 0.5 s


def cluster(url: str) -> Cluster:
    source = SQLAlchemyDS({"url": url})
    source.create_tables()
    return Cluster(source, SETTINGS, offer=lambda: ([], {}), apply=lambda view: None)


def test_a_channel_moves_only_once_its_new_server_is_named_long_enough(sqlite_url):
    one = cluster(sqlite_url)
    live = {"A", "B"}
    assert one._settled({"x": "A"}, live) == {"x": "A"}  # the first answer is taken as it is
    assert one._settled({"x": "B"}, live) == {"x": "A"}  # flapping: stays
    assert one._settled({"x": "A"}, live) == {"x": "A"}
    assert one._settled({"x": "B"}, live) == {"x": "A"}
    time.sleep(0.6)  # the time that passes is what is tested
    assert one._settled({"x": "B"}, live) == {"x": "B"}  # named B for 0.6 s in a row: moves


def test_a_channel_whose_server_left_moves_at_once_and_gone_channels_are_forgotten(sqlite_url):
    one = cluster(sqlite_url)
    assert one._settled({"x": "A", "y": "A"}, {"A", "B"}) == {"x": "A", "y": "A"}
    assert one._settled({"x": "B", "y": "B"}, {"B"}) == {"x": "B", "y": "B"}  # A is gone
    assert one._settled({"x": None}, {"B"}) == {"x": None}  # nobody offers x any more
    assert set(one._acted) == {"x"} and set(one._proposed) == {"x"}


def test_a_channel_leaves_a_draining_server_at_once(sqlite_url):
    one = cluster(sqlite_url)
    assert one._settled({"x": "A"}, {"A", "B"}) == {"x": "A"}
    assert one._settled({"x": "B"}, {"A", "B"}, {"A"}) == {"x": "B"}
