"""Facts get resource limits: bounded exponents, shifts and repetitions, checked when the channel loads.

Each case pairs a fact over the limit (refused, naming the construct and the bound) with
its neighbour within the limit (still accepted and evaluated): the limits must not cost
the operator any fact that stays small.
"""

import time

import pandas as pd
import pytest

from decisionengine.framework.config.validation import ChannelValidationError
from decisionengine.framework.logicengine.facts import explain
from decisionengine.framework.logicengine.limits import ResourceLimitError
from decisionengine.framework.logicengine.LogicEngine import LogicEngine, LogicEngineConfigError
from tests.taskmanager.channels import LOGIC_ENGINE, module, plan_from


def engine(facts):
    return LogicEngine({"facts": facts, "rules": {}, "channel_name": "test"})


@pytest.fixture
def products():
    return {
        "val": 12,
        "vals": pd.Series([10, 20, 30]),
        "names": pd.Series(["ab", "c", "def"]),
        "items": [1, 2],
        "fmt": "%0999999999d",
    }


@pytest.mark.parametrize(
    ("over", "reason", "within", "value"),
    [
        ("val ** 65 > 1", "the exponent of ** must be a literal number between -64 and 64", "val ** 64 > 1", True),
        ("val ** val > 1", "the exponent of ** must be a literal number", "val ** 2 == 144", True),
        ("2 ** 10 ** 10 > 1", "not '10 ** 10'", "2 ** 10 == 1024", True),
        ("val ** -65 > 0", "between -64 and 64", "val ** (1 / 2) > 3", True),
        ("(val ** 8) ** 9 > 1", "a power of a power may raise to at most 64", "(val ** 8) ** 8 > 1", True),
        ("1 << 65 > 0", "the right operand of << must be a literal integer between 0 and 64", "1 << 64 > 0", True),
        ("1 << val > 0", "the right operand of <<", "1 << 3 == 8", True),
        ("'a' * 10**10 == ''", "may only be repeated by a literal count (at most 1000)", "'a' * 3 == 'aaa'", True),
        ("[0] * 1001 == []", "repeats 1001 times; at most 1000", "len([0] * 1000) == 1000", True),
        ("len(('ab' * 1000) * 1000) > 0", "would make 2000000", "len(('a' * 1000) * 1000) > 0", True),
        ("'%01001d' % val == ''", "field width or precision of 1001", "'%05d' % val == '00012'", True),
        (
            "'%*d' % (5, val) == ''",
            "may not take a field width or precision from its arguments",
            "'%d' % 1 == '1'",
            True,
        ),
        (
            "vals.repeat(10**10).empty",
            "'repeats' of repeat() must be a literal number",
            "vals.repeat(2).size == 6",
            True,
        ),
        ("str(val).center(10**9) == ''", "'width' of center()", "str(val).center(4) == ' 12 '", True),
        ("names.str.zfill(10**9).empty", "'width' of zfill()", "names.str.zfill(3).iloc[1] == '00c'", True),
        ("vals.pow(100).sum() > 0", "'other' of pow()", "vals.pow(2).sum() == 1400", True),
    ],
)
def test_resource_limits_refuse_at_load_and_keep_the_neighbour(products, over, reason, within, value):
    with pytest.raises(LogicEngineConfigError) as info:
        engine({"big": over})
    assert "fact 'big'" in str(info.value) and reason in str(info.value)
    assert engine({"small": within}).evaluate_facts(products) == {"small": value}


@pytest.mark.parametrize(
    ("fact", "reason", "small"),
    [
        ("(names * n).empty", "repeats 1000000000 times; at most 1000", False),
        ("len(items * n) > 0", "repeating a list: repeats 1000000000 times", True),
        ("(n * names).empty", "repeating a Series", False),
        ("(fmt * n) % 1 == ''", "field width or precision of 999999999", None),
    ],
)
def test_repetition_known_only_from_the_values_is_refused_while_evaluating(products, fact, reason, small):
    started = time.monotonic()
    with pytest.raises(ResourceLimitError) as info:
        engine({"f": fact}).evaluate_facts({**products, "n": 10**9 if small is not None else 1})
    assert reason in str(info.value)
    assert "fact 'f'" in explain(info.value)
    assert time.monotonic() - started < 1.0  # refused, not attempted
    if small is not None:  # the same fact with a small count runs as before
        assert engine({"f": fact}).evaluate_facts({**products, "n": 2}) == {"f": small}


def test_guards_refuse_repetitions_and_leave_numbers_alone(products):
    facts = {
        "numbers": "(vals * 10**9).sum() == 60 * 10**9",
        "remainder": "(vals % 7).tolist() == [3, 6, 2]",
        "strings": "(names * 2).tolist() == ['abab', 'cc', 'defdef']",
        "list": "items * 2 == [1, 2, 1, 2]",
        "format": "'%s-%d' % ('a', val) == 'a-12'",
        "repeated": "fail_on_error((names * n).empty)",
    }
    result = engine(facts).evaluate_generation({**products, "n": 10**9})
    assert result.facts == {**dict.fromkeys(facts, True), "repeated": False}
    assert "ResourceLimitError: repeating a Series: repeats 1000000000 times" in result.suppressed_errors["repeated"]


def test_an_over_limit_fact_stops_the_channel_when_it_loads():
    channel = {
        "sources": {"c": module("ConstantSource", schedule=1)},
        "logicengines": {
            "le": {
                "module": LOGIC_ENGINE,
                "name": "LogicEngine",
                "parameters": {"facts": {"huge": "constant ** 10**10 > 1"}, "rules": {}},
            }
        },
        "publishers": {},
    }
    with pytest.raises(ChannelValidationError) as info:
        plan_from(channel)
    assert "fact 'huge'" in str(info.value) and "the exponent of ** must be a literal number" in str(info.value)
    channel["logicengines"]["le"]["parameters"]["facts"]["huge"] = "constant ** 2 > 1"
    assert plan_from(channel) is not None
