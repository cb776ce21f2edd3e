"""Module files run as scripts (``python -m ...``): tested through real subprocesses."""

import json
import pathlib
import subprocess
import sys

import _gojsonnet
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = "tests.fixtures.modules.SourceWithSampleConfigNOP"


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_no_option_prints_nothing_and_exits_zero():
    result = run_module(SAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_import_does_not_run_the_cli(monkeypatch, capsys):
    import importlib.util

    monkeypatch.setattr(sys, "argv", ["pytest", "--describe", "--config-template"])
    path = REPO / "tests" / "fixtures" / "modules" / "SourceNOP.py"
    spec = importlib.util.spec_from_file_location("fresh_copy_of_SourceNOP", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs Source.describe(SourceNOP) with CLI options in argv
    assert module.SourceNOP.__module__ == "fresh_copy_of_SourceNOP"
    assert capsys.readouterr().out == ""


def test_describe_prints_products_and_parameters():
    result = run_module(SAMPLE, "--describe")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SourceWithSampleConfigNOP (source, module tests.fixtures.modules.SourceWithSampleConfigNOP)" in out
    assert "produces:\n  foo: DataFrame" in out
    assert "consumes: (none)" in out
    assert "multiplier (int, default: 1)" in out


def test_describe_transform_shows_consumes():
    result = run_module("tests.fixtures.modules.TransformNOP", "--describe")
    assert result.returncode == 0, result.stderr
    assert "consumes:\n  foo: DataFrame" in result.stdout
    assert "produces:\n  bar: DataFrame" in result.stdout


def test_config_template_is_valid_jsonnet_naming_module_and_class():
    result = run_module(SAMPLE, "--config-template")
    assert result.returncode == 0, result.stderr
    config = json.loads(_gojsonnet.evaluate_snippet("template", result.stdout))
    entry = config["sources"]["SourceWithSampleConfigNOP"]
    assert entry["module"] == SAMPLE
    assert entry["name"] == "SourceWithSampleConfigNOP"
    assert entry["parameters"] == {"multiplier": 1}
    assert entry["schedule"] == 300


def test_config_template_marks_required_parameters():
    result = run_module("decisionengine.framework.modules.EmptySource", "--config-template")
    assert result.returncode == 0, result.stderr
    assert '"data_product_name": null,  // required, str' in result.stdout
    publisher = run_module("tests.fixtures.modules.PublisherNOP", "--config-template")
    config = json.loads(_gojsonnet.evaluate_snippet("template", publisher.stdout))
    assert config["publishers"]["PublisherNOP"]["parameters"] == {"destination": "nowhere"}
    assert "schedule" not in config["publishers"]["PublisherNOP"]


def test_acquire_with_sample_config():
    result = run_module(SAMPLE, "-s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "foo:"
    assert "value1" in result.stdout and "1.0" in result.stdout  # 0.5 * multiplier 2


def test_sample_option_only_where_a_sample_config_exists():
    result = run_module("tests.fixtures.modules.SourceNOP", "-s")
    assert result.returncode == 2
    assert "unrecognized arguments: -s" in result.stderr


def test_acquire_with_channel_file(tmp_path):
    channel = tmp_path / "mychannel.jsonnet"
    entry = {"module": SAMPLE, "name": "SourceWithSampleConfigNOP", "parameters": {"multiplier": 10}}
    channel.write_text(json.dumps({"sources": {"s1": entry}}))
    result = run_module(SAMPLE, "-c", str(channel))
    assert result.returncode == 0, result.stderr
    assert "foo:" in result.stdout and "5.0" in result.stdout  # 0.5 * 10


def test_acquire_with_channel_file_without_the_module(tmp_path):
    channel = tmp_path / "other.jsonnet"
    channel.write_text("{ sources: {} }")
    result = run_module(SAMPLE, "--acquire-with-config", str(channel))
    assert result.returncode == 1
    assert "no source with module" in result.stderr


@pytest.mark.parametrize("option", ["-c", "-s"])
def test_source_options_absent_for_transforms(option):
    result = run_module("tests.fixtures.modules.TransformNOP", option, "x")
    assert result.returncode == 2


def test_describe_shows_instance_level_products_through_the_sample_config():
    result = run_module("decisionengine.framework.modules.EmptySource", "--describe")
    assert result.returncode == 0, result.stderr
    assert "produces: (set by the instance; shown for the sample config)\n  placeholder: DataFrame" in result.stdout


def test_acquire_with_channel_file_applies_the_parameter_policy(tmp_path):
    channel = tmp_path / "defaults.jsonnet"
    entry = {"module": SAMPLE, "parameters": {}}  # name left out, multiplier from its default (1)
    channel.write_text(json.dumps({"sources": {"s1": entry}}))
    result = run_module(SAMPLE, "-c", str(channel))
    assert result.returncode == 0, result.stderr
    assert "0.5" in result.stdout
    channel.write_text(json.dumps({"sources": {"s1": {"module": SAMPLE, "parameters": {"multiplier": "x"}}}}))
    result = run_module(SAMPLE, "-c", str(channel))
    assert result.returncode == 1
    assert "parameter 'multiplier': expected int" in result.stderr
