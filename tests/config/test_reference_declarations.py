"""Declarations read as the reference Decision Engine reads them (issue 15, item 1).

The modules are in ``tests/fixtures/reference_style_modules.py``, written in the
reference's style.  Every test here failed on the code before: a missing parameter was an
error, stacked ``@supports_config`` raised, a float default for an ``int`` raised, and
modules without declarations (or without ``publish``) were accepted.
"""

import warnings

import pytest

from decisionengine.framework.config.channels import load_channels
from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.global_config import validate_global_config
from decisionengine.framework.modules import Source
from decisionengine.framework.modules.parameter import ParameterDefaultWarning
from decisionengine.framework.modules.Source import Parameter
from tests.config.helpers import write_channel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ParameterDefaultWarning)  # its float default: tested below
    from tests.fixtures import reference_style_modules as ref

MODULES = "tests.fixtures.reference_style_modules"


def entry(name, **parameters):
    return {"module": MODULES, "name": name, "parameters": parameters}


def good_channel(**source_parameters):
    """LinesSource -> CountLines -> RecordCount, every publisher runs (no logic engine)."""
    return {
        "sources": {"lines": {**entry("LinesSource", **source_parameters), "schedule": 60}},
        "transforms": {"count": entry("CountLines")},
        "publishers": {"record": entry("RecordCount", record="/dev/null")},
    }


@pytest.fixture
def config_d(tmp_path):
    directory = tmp_path / "config.d"
    directory.mkdir()
    return directory


# -- parameters ------------------------------------------------------------------------------------


def test_parameter_without_default_left_out_loads_the_channel_with_a_warning(config_d):
    write_channel(config_d, "lines", good_channel())
    loaded = load_channels(config_d)
    assert loaded.failures == {}
    plan = loaded.plans["lines"]
    (warning,) = [w for w in plan.warnings if "'filename'" in w]
    # names the channel, the module (key and class) and the parameter
    assert warning.startswith("sources.lines: parameter 'filename' (str) of LinesSource")
    assert "channel 'lines'" in warning
    assert "filename" not in plan.sources["lines"].parameters
    # the module runs without it, as in the reference
    source = plan.sources["lines"].create()
    assert list(source.acquire()["lines"]["text"]) == ["line 0", "line 1", "line 2"]


def test_strict_parameters_makes_a_missing_parameter_an_error(config_d):
    write_channel(config_d, "lines", good_channel())
    write_channel(config_d, "complete", good_channel(filename="/etc/hostname"))
    loaded = load_channels(config_d, global_config={"strict_parameters": True})
    assert list(loaded.plans) == ["complete"]
    reason = loaded.failures["lines"].reason
    assert "channel 'lines'" in reason
    assert "sources.lines: parameter 'filename' is required by LinesSource (str) (strict_parameters is set)" in reason


def test_strict_parameters_is_a_global_setting_defaulting_to_false():
    assert validate_global_config({})[0]["strict_parameters"] is False
    assert validate_global_config({"strict_parameters": True})[0]["strict_parameters"] is True
    with pytest.raises(ConfigError, match="strict_parameters: expected true or false"):
        validate_global_config({"strict_parameters": "yes"})


def test_stacked_supports_config_merges_the_declarations():
    assert list(ref.LinesSource._supported_config) == ["prefix", "retries", "filename"]

    @Source.supports_config(Parameter("a", default=1))
    @Source.supports_config(Parameter("a", default=2), Parameter("b", type=str))
    class Stacked(Source.Source):
        pass

    assert Stacked._supported_config["a"].default == 1  # the outer decorator, applied last, wins
    assert Stacked._supported_config["b"].required
    assert Source.Source.__dict__.get("_supported_config") is None  # the base is untouched


def test_float_default_of_an_int_parameter_is_converted_with_a_warning():
    with pytest.warns(ParameterDefaultWarning, match=r"parameter 'retries': default 2\.5 \(float\) converted") as seen:

        @Source.supports_config(Parameter("retries", type=int, default=2.5))
        class Converted(Source.Source):
            pass

    assert seen[0].filename == __file__  # points at the declaration
    assert Converted._supported_config["retries"].default == 2
    assert ref.LinesSource._supported_config["retries"].default == 2
    assert isinstance(ref.LinesSource._supported_config["retries"].default, int)


def test_converted_default_is_a_warning_of_every_channel_using_the_module(config_d):
    write_channel(config_d, "lines", good_channel(filename="/etc/hostname"))
    plan = load_channels(config_d).plans["lines"]
    assert (
        "sources.lines: parameter 'retries': default 2.0 (float) converted to the declared type int: 2 "
        "(declared by LinesSource)"
    ) in plan.warnings
    assert plan.sources["lines"].parameters["retries"] == 2


def test_default_that_cannot_be_converted_is_an_error_naming_the_parameter():
    with pytest.raises(RuntimeError, match=r"parameter 'count'.*'int' conflicts.*'many'"):
        Parameter("count", type=int, default="many")
    with pytest.raises(RuntimeError, match=r"parameter 'names'"):
        Parameter("names", type=list[str], default=3)  # no conversion to a generic type


# -- declarations the reference requires ------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "key", "class_name", "missing"),
    [
        ("sources", "lines", "SourceWithoutProduces", "declares no products it produces (missing @Source.produces"),
        ("transforms", "count", "TransformWithoutConsumes", "declares no products it consumes"),
        ("transforms", "count", "TransformWithoutProduces", "declares no products it produces"),
        ("transforms", "count", "TransformWithoutTransform", "does not define transform(self, data_block)"),
        ("publishers", "record", "PublisherWithoutConsumes", "declares no products it consumes"),
        ("publishers", "record", "PublisherWithoutPublish", "does not define publish(self, data_block)"),
    ],
)
def test_module_missing_a_declaration_refuses_its_channel_and_not_the_others(config_d, block, key, class_name, missing):
    broken = good_channel(filename="/etc/hostname")
    broken[block][key] = {**broken[block][key], "name": class_name, "parameters": {}}
    write_channel(config_d, "broken", broken)
    write_channel(config_d, "fine", good_channel(filename="/etc/hostname"))
    loaded = load_channels(config_d)
    assert list(loaded.plans) == ["fine"]
    reason = loaded.failures["broken"].reason
    assert f"{block}.{key} ({MODULES}.{class_name}): " in reason  # the channel key and the class
    assert missing in reason


def test_publish_inherited_from_a_site_base_class_counts(config_d):
    channel = good_channel(filename="/etc/hostname")
    channel["publishers"]["record"] = entry("InheritsPublish")
    write_channel(config_d, "inherits", channel)
    assert list(load_channels(config_d).plans) == ["inherits"]


def test_declarations_set_on_the_instance_count(config_d):
    """EmptySource names its product in __init__: validation reads the instance."""
    channel = {
        "sources": {"empty": {"module": "decisionengine.framework.modules.EmptySource", "parameters": {}}},
        "publishers": {"record": entry("RecordCount")},
    }
    channel["sources"]["empty"]["parameters"]["data_product_name"] = "line_count"
    write_channel(config_d, "empty", channel)
    assert list(load_channels(config_d).plans) == ["empty"]


# -- channels combined from fragments ---------------------------------------------------------------


def test_channel_from_three_levels_of_fragments_omitting_a_parameter(config_d):
    """site defaults -> a group's pipeline -> the channel file, merged with de_std."""
    (config_d / "site.libsonnet").write_text(
        "{\n"
        f"  sources: {{ lines: {{ module: '{MODULES}', name: 'LinesSource', parameters: {{ prefix: 'job' }},"
        " schedule: 60 } },\n"
        "}\n"
    )
    (config_d / "group.libsonnet").write_text(
        "local de_std = import 'de_std.libsonnet';\n"
        "local site = import 'site.libsonnet';\n"
        "{\n"
        "  sources: de_std.sources_from([site]),\n"
        f"  transforms: {{ count: {{ module: '{MODULES}', name: 'CountLines' }} }},\n"
        "}\n"
    )
    write_channel(
        config_d,
        "combined",
        "local de_std = import 'de_std.libsonnet';\n"
        "local group = import 'group.libsonnet';\n"
        f"local mine = {{ publishers: {{ record: {{ module: '{MODULES}', name: 'RecordCount' }} }} }};\n"
        "{\n"
        "  sources: de_std.sources_from([group]),\n"
        "  transforms: de_std.transforms_from([group]),\n"
        "  publishers: de_std.publishers_from([group, mine]),\n"
        "}\n",
    )
    loaded = load_channels(config_d)
    assert loaded.failures == {}
    plan = loaded.plans["combined"]
    assert [t.key for t in plan.transforms] == ["count"] and list(plan.publishers) == ["record"]
    assert plan.sources["lines"].parameters["prefix"] == "job"
    missing = [w for w in plan.warnings if "not set in channel 'combined'" in w]
    assert [w.split(":")[0] for w in missing] == ["sources.lines", "publishers.record"]
    assert "'filename'" in missing[0] and "'record'" in missing[1]
    strict = load_channels(config_d, global_config={"strict_parameters": True})
    assert "strict_parameters is set" in strict.failures["combined"].reason
