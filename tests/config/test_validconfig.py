"""ValidConfig and de_std.libsonnet."""

import pytest

from decisionengine.framework.config.ValidConfig import ValidConfig


def test_mapping_over_evaluated_jsonnet(tmp_path):
    path = tmp_path / "c.jsonnet"
    path.write_text("local n = 2; { a: n * 3, b: { c: [1, 2] }, s: 'x' + 'y' }")
    config = ValidConfig(path)
    assert dict(config) == {"a": 6, "b": {"c": [1, 2]}, "s": "xy"}
    assert len(config) == 3 and "a" in config and config.get("zz") is None
    with pytest.raises(TypeError):
        config["a"] = 1
    copy = config.to_dict()
    copy["b"]["c"].append(3)
    assert config["b"]["c"] == [1, 2]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.jsonnet"):
        ValidConfig(tmp_path / "nothere.jsonnet")


def test_bad_content_names_file_and_carries_jsonnet_message(tmp_path):
    path = tmp_path / "bad.jsonnet"
    path.write_text("{ a: }")
    with pytest.raises(RuntimeError) as info:
        ValidConfig(path)
    message = str(info.value)
    assert str(path) in message
    assert "bad.jsonnet:1:6" in message and "Unexpected" in message  # jsonnet's own position and words


def test_runtime_error_in_jsonnet(tmp_path):
    path = tmp_path / "err.jsonnet"
    path.write_text("{ a: error 'custom failure' }")
    with pytest.raises(RuntimeError, match=r"err\.jsonnet.*custom failure"):
        ValidConfig(path)


def test_top_level_must_be_an_object(tmp_path):
    path = tmp_path / "list.jsonnet"
    path.write_text("[1, 2]")
    with pytest.raises(RuntimeError, match="must be an object, not list"):
        ValidConfig(path)


def test_imports_relative_to_the_file(tmp_path):
    (tmp_path / "lib.libsonnet").write_text("{ shared: 42 }")
    path = tmp_path / "main.jsonnet"
    path.write_text("local lib = import 'lib.libsonnet'; { value: lib.shared }")
    assert ValidConfig(path)["value"] == 42


def write(tmp_path, text):
    path = tmp_path / "merged.jsonnet"
    path.write_text("local de_std = import 'de_std.libsonnet';\n" + text)
    return path


A = """{
  sources: { s1: { module: 'm1', parameters: { x: 1 } },
             remote: { module: 'm2', parameters: { source_channel: 'other' } } },
  transforms: { t1: { module: 't' } },
  publishers: { p1: { module: 'p' } },
}"""
B = """{
  sources: { s1: { module: 'm1', parameters: { x: 1 } }, s2: { module: 'm3' } },
  transforms: { t2: { module: 't2' } },
}"""


def test_de_std_merges_blocks(tmp_path):
    path = write(
        tmp_path,
        f"local a = {A}; local b = {B};\n"
        "{ sources: de_std.sources_from([a, b]), transforms: de_std.transforms_from([a, b]),"
        " publishers: de_std.publishers_from([a, b]) }",
    )
    config = ValidConfig(path)
    assert config["sources"] == {"s1": {"module": "m1", "parameters": {"x": 1}}, "s2": {"module": "m3"}}
    assert set(config["transforms"]) == {"t1", "t2"}
    assert config["publishers"] == {"p1": {"module": "p"}}


def test_de_std_skips_sources_reading_another_channel(tmp_path):
    path = write(tmp_path, f"{{ sources: de_std.sources_from([{A}]) }}")
    assert "remote" not in ValidConfig(path)["sources"]


def test_de_std_conflicting_key_fails(tmp_path):
    path = write(
        tmp_path,
        "{ transforms: de_std.transforms_from([{ transforms: { t: { module: 'a' } } },"
        " { transforms: { t: { module: 'b' } } }]) }",
    )
    with pytest.raises(RuntimeError, match="key 't' is defined twice with different values"):
        ValidConfig(path)
