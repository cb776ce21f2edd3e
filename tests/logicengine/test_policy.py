"""Channel-level logic engine policy: which publishers run."""

import pytest

from decisionengine.framework.logicengine.policy import (
    LogicEnginePolicyError,
    PublisherPolicy,
    logic_engine_key,
    publisher_policy,
    publishers_to_run,
)

PUBLISHERS = ["p1", "p2", "p3"]


def test_no_logicengines_key_runs_every_publisher():
    assert publisher_policy({"publishers": {}}) is PublisherPolicy.ALL
    assert publishers_to_run(PublisherPolicy.ALL, PUBLISHERS, ["p2"]) == PUBLISHERS


def test_empty_block_runs_none():
    assert publisher_policy({"logicengines": {}}) is PublisherPolicy.NONE
    assert publishers_to_run(PublisherPolicy.NONE, PUBLISHERS, ["p1"]) == []


def test_one_engine_runs_fired_publishers_in_channel_order():
    config = {"logicengines": {"le": {"module": "m"}}}
    assert logic_engine_key(config) == "le"
    assert publisher_policy(config) is PublisherPolicy.LOGIC_ENGINE
    assert publishers_to_run(PublisherPolicy.LOGIC_ENGINE, PUBLISHERS, ["p3", "p1", "unknown"]) == ["p1", "p3"]


def test_more_than_one_engine_is_an_error_naming_them():
    with pytest.raises(LogicEnginePolicyError, match="at most one logic engine, found 2: 'le1', 'le2'"):
        publisher_policy({"logicengines": {"le1": {}, "le2": {}}})
