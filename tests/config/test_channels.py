"""Loading a config.d/ directory: one channel per *.jsonnet file, bad channels reported, good ones loaded."""

import pytest

from decisionengine.framework.config.channels import channel_files, load_channel, load_channels
from tests.config.helpers import publisher, source, transform, write_channel


@pytest.fixture
def config_d(tmp_path):
    directory = tmp_path / "config.d"
    directory.mkdir()
    return directory


def test_one_bad_channel_among_good_ones(config_d):
    write_channel(config_d, "good1", {"sources": {"s": source(["a"])}, "publishers": {"p": publisher(["a"])}})
    write_channel(config_d, "good2", {"sources": {"s": source(["x"])}, "transforms": {"t": transform(["x"], ["y"])}})
    write_channel(config_d, "syntax", "{ sources: ")
    write_channel(config_d, "graph", {"publishers": {"p": publisher(["nothing"])}})
    write_channel(config_d, "imports", {"sources": {"s": {"module": "not.installed.module"}}})
    write_channel(config_d, "structure", {"sources": {"s": {"module": "m", "schedule": -1}}})

    loaded = load_channels(config_d)
    assert sorted(loaded.plans) == ["good1", "good2"]
    assert sorted(loaded.failures) == ["graph", "imports", "structure", "syntax"]
    assert "invalid jsonnet" in loaded.failures["syntax"].reason
    assert loaded.failures["syntax"].path == str(config_d / "syntax.jsonnet")
    assert "publishers.p consumes product 'nothing'" in loaded.failures["graph"].reason
    assert "channel 'imports'" in loaded.failures["imports"].reason
    assert "No module named 'not'" in loaded.failures["imports"].reason
    assert "sources.s.schedule" in loaded.failures["structure"].reason
    assert str(config_d / "structure.jsonnet") in loaded.failures["structure"].reason


def test_only_jsonnet_files_are_channels(config_d):
    write_channel(config_d, "real", {"sources": {"s": source(["a"])}})
    (config_d / "lib.libsonnet").write_text("{ broken")
    (config_d / "data.json").write_text("{ broken")
    (config_d / "real.jsonnet~").write_text("{ broken")
    (config_d / ".hidden.jsonnet").write_text("{ broken")
    (config_d / "real.jsonnet.bak").write_text("{ broken")
    (config_d / "sub.jsonnet").mkdir()
    assert [p.name for p in channel_files(config_d)] == ["real.jsonnet"]
    loaded = load_channels(config_d)
    assert list(loaded.plans) == ["real"] and loaded.failures == {}


def test_channel_files_can_import_shared_libraries_and_de_std(config_d):
    (config_d / "common.libsonnet").write_text(
        "{ sources: { shared: { module: 'tests.fixtures.modules.ConfigurableSource',"
        " parameters: { produces: ['a'] } } } }"
    )
    write_channel(
        config_d,
        "combined",
        "local de_std = import 'de_std.libsonnet';\n"
        "local common = import 'common.libsonnet';\n"
        "{ sources: de_std.sources_from([common]) }",
    )
    loaded = load_channels(config_d)
    assert loaded.failures == {}
    assert list(loaded.plans["combined"].sources) == ["shared"]


def test_channel_name_key_and_duplicates(config_d):
    write_channel(config_d, "a", {"channel_name": "renamed", "sources": {"s": source(["a"])}})
    write_channel(config_d, "b", {"channel_name": "twin"})
    write_channel(config_d, "c", {"channel_name": "twin"})
    loaded = load_channels(config_d)
    assert list(loaded.plans) == ["renamed"]
    assert "used by several files" in loaded.failures["twin"].reason


def test_channel_name_of_a_broken_file_is_not_taken_silently(config_d):
    write_channel(config_d, "broken", "{")
    write_channel(config_d, "other", {"channel_name": "broken"})
    loaded = load_channels(config_d)
    assert loaded.plans == {}
    reason = loaded.failures["broken"].reason
    assert "used by several files" in reason and "invalid jsonnet" in reason


def test_default_directory_from_policies(config_d, monkeypatch):
    write_channel(config_d, "x", {})
    monkeypatch.delenv("CHANNEL_CONFIG_PATH", raising=False)
    monkeypatch.setenv("CONFIG_PATH", str(config_d.parent))
    assert list(load_channels().plans) == ["x"]
    other = config_d.parent / "elsewhere"
    other.mkdir()
    write_channel(other, "y", {})
    assert list(load_channels(global_config={"channels": str(other)}).plans) == ["y"]


def test_missing_directory(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        load_channels(tmp_path / "missing")


def test_load_single_channel(config_d):
    plan = load_channel(write_channel(config_d, "single", {"sources": {"s": source(["a"])}}))
    assert plan.name == "single"
