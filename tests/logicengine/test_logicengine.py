"""LogicEngine evaluation: facts over products, rules, cascades, errors, the de_logicengine_facts product."""

import types

import numpy as np
import pandas as pd
import pytest
import structlog

from decisionengine.framework.logicengine.facts import FACT_ATTRIBUTE, explain
from decisionengine.framework.logicengine.LogicEngine import FACTS_COLUMNS, FACTS_PRODUCT, LogicEngine
from decisionengine.framework.modules.Module import Module


def engine(facts, rules=None):
    return LogicEngine({"facts": facts, "rules": rules or {}, "channel_name": "test"})


@pytest.fixture
def products():
    return {
        "val": 12,
        "vals": pd.Series([10, 20, 30]),
        "b": types.SimpleNamespace(c=10),
        "df": pd.DataFrame({"x": [1, 2, 5, 7], "k": ["a", "a", "b", "b"]}),
        "empty": pd.DataFrame(),
    }


def test_is_a_module_with_declared_products():
    le = engine({"f": "len(df) > 1 and val > 0"})
    assert isinstance(le, Module)
    assert LogicEngine._produces == {FACTS_PRODUCT: pd.DataFrame} == {"de_logicengine_facts": pd.DataFrame}
    assert le._consumes == {"df": None, "val": None}
    assert le.consumed_products == ["df", "val"]


def test_facts_over_products(products):
    le = engine(
        {
            "val_big": "val > 10",
            "sum_big": "vals.sum() > 40",
            "attr": "b.c == 10",
            "has_rows": "not df.empty",
            "is_empty": "empty.empty",
            "long": "len(df) > 3",
            "any_big": "(df.x > 3).any()",
            "all_big": "(df.x > 3).all()",
            "numpy": "np.isclose(df.x.mean(), 3.75)",
            "grouped": "df.groupby('k').x.sum()['b'] == 12",
        }
    )
    assert le.evaluate_facts(products) == {
        "val_big": True,
        "sum_big": True,
        "attr": True,
        "has_rows": True,
        "is_empty": True,
        "long": True,
        "any_big": True,
        "all_big": False,
        "numpy": True,
        "grouped": True,
    }


def test_fact_values_are_python_bools(products):
    values = engine({"f": "df.x.max() > 3", "g": "np.any(df.x > 100)"}).evaluate_facts(products)
    assert values == {"f": True, "g": False}
    assert all(type(v) is bool for v in values.values())


def test_negated_facts_and_rules(products):
    le = engine(
        {"small": "not (val > 100)", "big": "val > 100"},
        {
            "r_not": {"expression": "not big", "actions": ["p_not"], "false_actions": ["p_else"]},
            "r_both": {"expression": "small and not big", "actions": ["p_both"]},
            "r_false": {"expression": "big", "actions": ["never"], "false_actions": ["fallback"]},
        },
    )
    actions, _ = le.evaluate(products)
    assert actions == {"r_not": ["p_not"], "r_both": ["p_both"], "r_false": ["fallback"]}


def test_every_rule_is_in_actions_even_when_nothing_fires(products):
    actions, newfacts = engine({"f": "val < 0"}, {"quiet": {"expression": "f", "actions": ["p"]}}).evaluate(products)
    assert actions == {"quiet": []}
    assert newfacts.empty and list(newfacts.columns) == list(FACTS_COLUMNS)


def test_cascaded_rules_run_in_dependency_order(products):
    # declared in reverse: r3 needs r2's fact, r2 needs r1's fact
    rules = {
        "r3": {"expression": "second and not third_input", "actions": ["final"], "facts": ["third"]},
        "r2": {"expression": "first", "actions": ["middle"], "facts": ["second"]},
        "r1": {"expression": "big", "actions": ["start"], "facts": ["first"]},
        "r0": {"expression": "not big", "false_actions": ["negative"], "facts": ["third_input"]},
    }
    le = engine({"big": "val > 10"}, rules)
    assert [rule.name for rule in le.rule_set.order] == ["r0", "r1", "r2", "r3"]
    actions, newfacts = le.evaluate(products)
    assert actions == {"r0": ["negative"], "r1": ["start"], "r2": ["middle"], "r3": ["final"]}
    assert newfacts.to_dict("records") == [
        {"rule_name": "r0", "fact_name": "third_input", "fact_value": False},
        {"rule_name": "r1", "fact_name": "first", "fact_value": True},
        {"rule_name": "r2", "fact_name": "second", "fact_value": True},
        {"rule_name": "r3", "fact_name": "third", "fact_value": True},
    ]


def test_cascade_propagates_false(products):
    rules = {
        "r1": {"expression": "big", "facts": ["first"]},
        "r2": {"expression": "first", "actions": ["p"], "false_actions": ["q"], "facts": ["second"]},
    }
    actions, newfacts = engine({"big": "val > 1000"}, rules).evaluate(products)
    assert actions == {"r1": [], "r2": ["q"]}
    assert newfacts["fact_value"].tolist() == [False, False]


def test_logicengine_facts_product(products):
    le = engine({"f": "val > 1"}, {"r": {"expression": "f", "actions": ["pub"], "facts": ["n1", "n2"]}})
    result = le.evaluate_generation(products)
    frame = result.facts_frame
    assert list(frame.columns) == ["rule_name", "fact_name", "fact_value"]
    assert frame.dtypes["fact_value"] == np.dtype(bool)
    assert frame.to_dict("records") == [
        {"rule_name": "r", "fact_name": "n1", "fact_value": True},
        {"rule_name": "r", "fact_name": "n2", "fact_value": True},
    ]
    assert result.publishers == frozenset({"pub"})
    assert result.facts == {"f": True}
    assert result.new_facts == {"n1": True, "n2": True}
    assert result.actions == {"r": ["pub"]}


def test_fact_error_names_fact_and_product_types(products):
    # the original exception, explained in a note (see tests/compat/test_reference_api.py)
    le = engine({"ok": "val > 1", "broken": "df.x.sum() > vals.missing_attribute"})
    with pytest.raises(AttributeError) as info:
        le.evaluate_facts(products)
    message = explain(info.value)
    assert getattr(info.value, FACT_ATTRIBUTE) == "broken"
    assert message.startswith("AttributeError: ")
    assert "fact 'broken' (df.x.sum() > vals.missing_attribute) failed" in message
    assert "product values: df: DataFrame, vals: Series" in message


def test_ambiguous_truth_value_is_an_error(products):
    with pytest.raises(ValueError, match=r"ambiguous") as info:
        engine({"series": "df.x > 1"}).evaluate_facts(products)
    assert "fact 'series'" in explain(info.value)


def test_missing_product_is_named(products):
    with pytest.raises(NameError) as info:
        engine({"f": "absent.empty"}).evaluate_facts(products)
    assert "product 'absent' is not in the data block" in explain(info.value)
    assert "absent: <missing>" in explain(info.value)


def test_fail_on_error_makes_the_fact_false(products):
    le = engine(
        {
            "safe": "fail_on_error(df.x.sum() > vals.missing_attribute)",
            "safe_missing": "fail_on_error(absent.x > 1)",
            "safe_true": "fail_on_error(val > 1)",
        },
        {"r": {"expression": "not safe and safe_true", "actions": ["p"]}},
    )
    with structlog.testing.capture_logs() as logs:
        result = le.evaluate_generation(products)
    assert result.facts == {"safe": False, "safe_missing": False, "safe_true": True}
    assert result.actions == {"r": ["p"]}
    assert set(result.suppressed_errors) == {"safe", "safe_missing"}
    assert "AttributeError" in result.suppressed_errors["safe"]
    assert "product 'absent' is not in the data block" in result.suppressed_errors["safe_missing"]
    assert {log["fact"] for log in logs if log["log_level"] == "warning"} == {"safe", "safe_missing"}


def test_expressions_do_not_see_builtins(products):
    # a product name that shadows nothing: builtins such as print/open are simply not there
    le = engine({"f": "print_ > 0"})
    with pytest.raises(NameError) as info:
        le.evaluate_facts(products)
    assert "product 'print_' is not in the data block" in explain(info.value)


def test_functions_win_over_products_with_the_same_name(products):
    assert engine({"f": "len(df) == 4"}).evaluate_facts({**products, "len": "not a function"}) == {"f": True}


def test_evaluation_works_on_a_datablock(tmp_path):
    from decisionengine.framework.dataspace.datablock import DataBlock
    from decisionengine.framework.dataspace.dataspace import DataSpace

    dataspace = DataSpace(
        {
            "dataspace": {
                "datasource": {
                    "module": "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
                    "name": "SQLAlchemyDS",
                    "config": {"url": f"sqlite:///{tmp_path / 'de.sqlite'}"},
                }
            }
        }
    )
    block = DataBlock(dataspace, "chan")
    block["jobs"] = pd.DataFrame({"idle": [3, 4]})
    le = engine({"busy": "jobs.idle.sum() > 5", "safe": "fail_on_error(gone.empty)"}, {"r": {"expression": "busy"}})
    assert le.evaluate_facts(block) == {"busy": True, "safe": False}
    dataspace.close()
