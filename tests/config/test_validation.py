"""Channel validation: imports, parameter policy, product graph, transform order, logic engine checks."""

import pickle

import pandas as pd
import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from decisionengine.framework.config.channel_file import parse_channel_config
from decisionengine.framework.config.validation import ChannelValidationError, validate_channel
from decisionengine.framework.logicengine.policy import PublisherPolicy
from tests.config.helpers import FIX, LOGIC_ENGINE, logic_engine, publisher, source, transform
from tests.fixtures.modules.SourceNOP import SourceNOP


def plan_of(config, name="chan"):
    return validate_channel(parse_channel_config(config, name, f"/conf/{name}.jsonnet"))


def problems_of(config, name="chan"):
    with pytest.raises(ChannelValidationError) as info:
        plan_of(config, name)
    assert str(info.value).startswith(f"channel {name!r} (/conf/{name}.jsonnet): ")
    return info.value.problems


NOP_CHANNEL = {
    "sources": {"jobs": {"module": f"{FIX}.SourceNOP", "name": "SourceNOP", "schedule": 60}},
    "transforms": {"tr": {"module": f"{FIX}.TransformNOP"}},
    "logicengines": {
        "le": {
            "module": LOGIC_ENGINE,
            "parameters": {
                "facts": {"has_bar": "not bar.empty", "big": "fail_on_error(bar.col2.sum() > 100)"},
                "rules": {"publish": {"expression": "has_bar and not big", "actions": ["pub"], "facts": ["done"]}},
            },
        }
    },
    "publishers": {"pub": {"module": f"{FIX}.PublisherNOP", "parameters": {"destination": "here"}}},
    "task_manager": {"data_TO": 30},
}


def test_valid_channel_plan():
    plan = plan_of(NOP_CHANNEL)
    assert plan.name == "chan" and plan.path == "/conf/chan.jsonnet"
    source_spec = plan.sources["jobs"]
    assert source_spec.cls is SourceNOP and source_spec.class_name == "SourceNOP" and source_spec.kind == "source"
    assert source_spec.parameters == {"channel_name": "chan"}
    assert source_spec.produces == {"foo": pd.DataFrame}
    assert (source_spec.schedule, source_spec.retries, source_spec.retry_interval) == (60, 0, 10)
    assert [t.key for t in plan.transforms] == ["tr"]
    assert plan.transforms[0].class_name == "TransformNOP"  # name left out: the only Transform in the file
    assert plan.logic_engine.class_name == "LogicEngine"
    assert dict(plan.logic_engine.consumes) == {"bar": None}
    assert plan.publishers["pub"].parameters == {"destination": "here", "channel_name": "chan"}
    assert dict(plan.producers) == {"foo": "jobs", "bar": "tr", "de_logicengine_facts": "le"}
    assert plan.publisher_policy is PublisherPolicy.LOGIC_ENGINE
    assert plan.task_manager == {"data_TO": 30}
    assert [m.key for m in plan.modules()] == ["jobs", "tr", "le", "pub"]
    assert plan.upstream_sources("bar") == frozenset({"jobs"})


def test_plan_is_immutable_and_picklable():
    plan = plan_of(NOP_CHANNEL)
    with pytest.raises(AttributeError):
        plan.name = "other"
    with pytest.raises(TypeError):
        plan.sources["x"] = None
    clone = pickle.loads(pickle.dumps(plan))
    assert clone.sources["jobs"].cls is SourceNOP
    assert clone.producers == plan.producers


def test_module_spec_creates_working_instances():
    plan = plan_of(NOP_CHANNEL)
    products = plan.sources["jobs"].create().acquire()
    products.update(plan.transforms[0].create().transform(products))
    engine = plan.logic_engine.create()
    result = engine.evaluate_generation(products)
    assert result.publishers == {"pub"}
    assert plan.publishers_to_run(result.publishers) == ["pub"]
    publisher_instance = plan.publishers["pub"].create()
    publisher_instance.publish(products)
    assert publisher_instance.channel_name == "chan"
    spec = plan.publishers["pub"]
    first, second = spec.create(), spec.create()
    assert first is not second and first.parameters is not second.parameters


def test_source_triggers():
    plan = plan_of({"sources": {"a": source(["x"], schedule=5), "b": source(["y"], schedule="0 * * * *")}})
    assert isinstance(plan.sources["a"].trigger(), IntervalTrigger)
    assert isinstance(plan.sources["b"].trigger(), CronTrigger)


def test_import_error_names_channel_module_key_and_original_message():
    (problem,) = problems_of({"sources": {"vendor": {"module": f"{FIX}.BrokenImport"}}})
    assert problem.startswith(f"sources.vendor: cannot import module '{FIX}.BrokenImport': ImportError:")
    assert "the vendor library is not installed (simulated)" in problem


def test_missing_module_and_class():
    problems = problems_of(
        {
            "sources": {"gone": {"module": "no.such.module"}},
            "transforms": {"t": {"module": f"{FIX}.TransformNOP", "name": "Nope"}},
        }
    )
    assert problems[0].startswith("sources.gone: cannot import module 'no.such.module': ModuleNotFoundError: No module")
    assert problems[1] == f"transforms.t: module '{FIX}.TransformNOP' has no class 'Nope'"


def test_class_of_the_wrong_kind():
    (problem,) = problems_of({"transforms": {"t": {"module": f"{FIX}.SourceNOP", "name": "SourceNOP"}}})
    assert "is not a transform" in problem and problem.startswith("transforms.t: ")


def test_name_left_out_needs_exactly_one_class():
    (problem,) = problems_of({"sources": {"s": {"module": f"{FIX}.TwoSources"}}})
    assert "must define exactly one source class; found 2 (FirstSource, SecondSource)" in problem
    plan = plan_of({"sources": {"s": {"module": f"{FIX}.TwoSources", "name": "SecondSource"}}})
    assert plan.sources["s"].produces == {"two": int}


def test_constructor_failure_is_reported():
    (problem,) = problems_of({"sources": {"s": {"module": f"{FIX}.FailingConstructor"}}})
    assert "sources.s: constructing" in problem
    assert "ValueError: cannot reach the batch system (simulated)" in problem


# -- parameter policy ---------------------------------------------------------------------------

TYPED = f"{FIX}.TypedParameters"


def typed(parameters):
    return {"sources": {"s": {"module": TYPED, "parameters": parameters}}}


def test_parameters_defaults_filled_and_int_accepted_for_float():
    plan = plan_of(typed({"name": "n", "ratio": 2}))
    assert plan.sources["s"].parameters == {
        "name": "n",
        "ratio": 2,
        "count": 3,
        "tags": ["a"],
        "flag": False,
        "channel_name": "chan",
    }


def test_missing_required_parameter_is_a_warning_as_in_the_reference():
    plan = plan_of(typed({}))
    assert (
        "sources.s: parameter 'name' (str) of TypedParameters has no default and is not set in channel 'chan': "
        "the module is built without it"
    ) in plan.warnings
    assert "name" not in plan.sources["s"].parameters


def test_missing_required_parameter_is_an_error_with_strict_parameters():
    with pytest.raises(ChannelValidationError) as info:
        validate_channel(parse_channel_config(typed({}), "chan", "/conf/chan.jsonnet"), strict_parameters=True)
    assert info.value.problems == [
        "sources.s: parameter 'name' is required by TypedParameters (str) (strict_parameters is set)"
    ]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"ratio": "high"}, "parameter 'ratio': expected float, got \"high\" (str)"),
        ({"count": 2.5}, "parameter 'count': expected int, got 2.5 (float)"),
        ({"count": True}, "parameter 'count': expected int, got true (bool)"),
        ({"tags": "a"}, "parameter 'tags': expected list, got \"a\" (str)"),
        ({"flag": 1}, "parameter 'flag': expected bool, got 1 (int)"),
    ],
)
def test_wrong_parameter_type_is_an_error(parameters, expected):
    assert problems_of(typed({"name": "n", **parameters})) == [f"sources.s: {expected}"]


def test_unknown_parameter_is_a_warning():
    plan = plan_of(typed({"name": "n", "legacy_option": 1}))
    assert "sources.s: parameter 'legacy_option' is not declared by TypedParameters (passed on unchecked)" in (
        plan.warnings
    )
    assert plan.sources["s"].parameters["legacy_option"] == 1


def test_channel_name_is_set_by_the_framework():
    plan = plan_of(typed({"name": "n", "channel_name": "wrong"}))
    assert plan.sources["s"].parameters["channel_name"] == "chan"
    assert any("'channel_name' is set by the framework" in w for w in plan.warnings)


def test_undeclared_parameters_are_not_checked_for_classes_declaring_none():
    plan = plan_of({"sources": {"s": {"module": f"{FIX}.SourceNOP", "parameters": {"anything": 1}}}})
    assert plan.warnings == ()


# -- product graph --------------------------------------------------------------------------------


def test_product_consumed_but_produced_by_nobody():
    problems = problems_of(
        {
            "sources": {"s": source(["a"])},
            "transforms": {"t": transform(["a", "ghost"], ["b"])},
            "publishers": {"p": publisher(["b", "phantom"])},
        }
    )
    assert problems == [
        "transforms.t consumes product 'ghost', which no module of the channel produces",
        "publishers.p consumes product 'phantom', which no module of the channel produces",
    ]


def test_product_produced_by_two_modules():
    problems = problems_of({"sources": {"s1": source(["a", "b"]), "s2": source(["b"])}, "transforms": {}})
    assert problems == ["product 'b' is produced by 2 modules: sources.s1, sources.s2"]


def test_transform_cycle_names_modules_and_products():
    (problem,) = problems_of(
        {
            "sources": {"s": source(["a"])},
            "transforms": {"t1": transform(["a", "c"], ["b"]), "t2": transform(["b"], ["c"])},
        }
    )
    assert problem.startswith("transforms form a cycle")
    assert "t1 consumes 'c' from t2" in problem and "t2 consumes 'b' from t1" in problem


def test_transform_consuming_its_own_product_is_a_cycle():
    (problem,) = problems_of({"transforms": {"t": transform(["x"], ["x"])}})
    assert "cycle t -> t" in problem


def test_transforms_ordered_topologically():
    plan = plan_of(
        {
            "sources": {"s": source(["a"])},
            "transforms": {
                "last": transform(["c", "b"], ["d"]),
                "middle": transform(["b"], ["c"]),
                "first": transform(["a"], ["b"]),
                "independent": transform(["a"], ["e"]),
            },
        }
    )
    order = [t.key for t in plan.transforms]
    assert order.index("first") < order.index("middle") < order.index("last")
    assert order == ["first", "independent", "middle", "last"]  # file order among ready transforms
    products = plan.sources["s"].create().acquire()
    for spec in plan.transforms:
        products.update(spec.create().transform(products))
    assert products["d"] == (products["c"] + products["b"]) + 1


def test_instance_level_products_of_empty_source():
    plan = plan_of(
        {
            "sources": {
                "empty": {
                    "module": "decisionengine.framework.modules.EmptySource",
                    "parameters": {"data_product_name": "placeholder"},
                }
            },
            "publishers": {"p": publisher(["placeholder"])},
        }
    )
    assert plan.producers == {"placeholder": "empty"}
    assert plan.sources["empty"].produces == {"placeholder": pd.DataFrame}


# -- logic engine in a channel ------------------------------------------------------------------------


def test_fact_reading_an_unknown_product():
    (problem,) = problems_of(
        {
            "sources": {"s": source(["a"])},
            "logicengines": {"le": logic_engine({"f": "a > 0 and missing_product.empty"}, {})},
        }
    )
    assert problem == "logicengines.le: fact 'f' reads product 'missing_product', which no module produces"


def test_bad_fact_expression_stops_the_channel():
    (problem,) = problems_of(
        {"sources": {"s": source(["a"])}, "logicengines": {"le": logic_engine({"f": "__import__('os')"}, {})}}
    )
    assert problem.startswith("logicengines.le: constructing ")
    assert "fact 'f'" in problem


def test_action_must_name_a_publisher():
    (problem,) = problems_of(
        {
            "sources": {"s": source(["a"])},
            "logicengines": {"le": logic_engine({"f": "a > 0"}, {"r": {"expression": "f", "actions": ["nope"]}})},
            "publishers": {"p": publisher(["a"])},
        }
    )
    assert problem == (
        "logicengines.le: rule 'r' fires action 'nope', which is not a publisher of the channel (publishers: p)"
    )


def test_publisher_never_fired_is_a_warning():
    plan = plan_of(
        {
            "sources": {"s": source(["a"])},
            "logicengines": {"le": logic_engine({"f": "a > 0"}, {"r": {"expression": "f", "actions": ["p1"]}})},
            "publishers": {"p1": publisher(["a"]), "p2": publisher(["a"])},
        }
    )
    assert "logicengines.le: no rule fires publisher(s) p2: they will never run" in plan.warnings


def test_publisher_policies():
    base = {"sources": {"s": source(["a"])}, "publishers": {"p1": publisher(["a"]), "p2": publisher(["a"])}}
    all_plan = plan_of(base)
    assert all_plan.publisher_policy is PublisherPolicy.ALL and all_plan.logic_engine is None
    assert all_plan.publishers_to_run() == ["p1", "p2"]
    none_plan = plan_of({**base, "logicengines": {}})
    assert none_plan.publisher_policy is PublisherPolicy.NONE
    assert none_plan.publishers_to_run(["p1"]) == []


def test_publishers_read_logic_engine_facts_only_with_a_logic_engine():
    with_engine = {
        "sources": {"s": source(["a"])},
        "logicengines": {"le": logic_engine({"f": "a > 0"}, {"r": {"expression": "f", "actions": ["p"]}})},
        "publishers": {"p": publisher(["de_logicengine_facts"])},
    }
    assert plan_of(with_engine).producers["de_logicengine_facts"] == "le"
    without = {"sources": {"s": source(["a"])}, "publishers": {"p": publisher(["de_logicengine_facts"])}}
    assert problems_of(without) == [
        "publishers.p consumes product 'de_logicengine_facts', which no module of the channel produces"
    ]


def test_a_module_editing_its_config_does_not_change_the_plan():
    entry = {"module": f"{FIX}.DirectProduces", "name": "ConfigEditingSource", "parameters": {"value": 5}}
    spec = plan_of({"sources": {"s": entry}}).sources["s"]
    assert spec.parameters["value"] == 5
    assert spec.create().acquire() == {"edited": 5}
    assert spec.create().acquire() == {"edited": 5}
