"""The global configuration schema: defaults, errors naming the key path, unused-key warnings."""

import pytest

from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.global_config import (
    DEFAULT_DATASOURCE_MODULE,
    load_global_config,
    validate_global_config,
)

WEBSERVER_DEFAULTS = {
    "api_token": None,
    "api_token_file": None,
    "read_token": None,
    "read_token_file": None,
    "allowed_hosts": [],
    "thread_pool": 30,
    "max_event_streams": 10,
    "ssl_certificate": None,
    "ssl_private_key": None,
    "socket_mode": "0660",
    "query_timeout": 5,
    "query_memory_mb": 1024,
    "query_workers": 2,
}


def problems_of(config):
    with pytest.raises(ConfigError) as info:
        validate_global_config(config, "/etc/decisionengine/decision_engine.jsonnet")
    assert str(info.value).startswith("/etc/decisionengine/decision_engine.jsonnet: ")
    return info.value.problems


def test_defaults_fill_an_empty_config():
    config, warnings = validate_global_config({})
    assert warnings == []
    assert config["server_address"] == ["localhost", 8888]
    assert config["shutdown_timeout"] == 10
    assert config["channels"] is None
    assert config["logger"]["log_level"] == "INFO"
    assert config["logger"]["file_rotate_by"] == "size"
    assert config["logger"]["max_backup_count"] == 6
    datasource = config["dataspace"]["datasource"]
    assert (
        datasource["module"]
        == DEFAULT_DATASOURCE_MODULE
        == "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"
    )
    assert datasource["name"] == "SQLAlchemyDS"
    assert datasource["config"]["url"].startswith("sqlite:///")
    assert config["dataspace"]["retention_interval_in_days"] == 365
    assert config["dataspace"]["reaper_batch_size"] == 100
    assert config["dataspace"]["trusted_modules"] == []
    assert config["webserver"] == WEBSERVER_DEFAULTS


def test_values_are_kept_and_normalized():
    config, _ = validate_global_config(
        {
            "server_address": ["0.0.0.0", 9000.0],
            "logger": {"log_level": "debug", "file_rotate_by": "time", "rotation_time_unit": "midnight"},
            "dataspace": {
                "datasource": {"config": {"url": "postgresql://u@h/db", "pool_size": 5, "isolation_level": "x"}},
                "retention_interval_in_days": 30,
            },
            "webserver": {"api_token": "secret", "theme": "dark"},
        }
    )
    assert config["server_address"] == ["0.0.0.0", 9000]
    assert config["logger"]["log_level"] == "DEBUG"
    assert config["logger"]["rotation_time_unit"] == "midnight"
    assert config["dataspace"]["datasource"]["config"] == {
        "url": "postgresql://u@h/db",
        "pool_size": 5,
        "isolation_level": "x",  # engine options pass through
    }
    assert config["webserver"] == {**WEBSERVER_DEFAULTS, "api_token": "secret", "theme": "dark"}


def test_wrong_type_names_key_path():
    assert problems_of({"logger": {"max_backup_count": "x"}}) == [
        'logger.max_backup_count: expected an integer, got "x"'
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"server_address": "localhost:8888"}, "server_address: expected [host, port] with a non-empty host"),
        ({"server_address": ["h", 70000]}, "server_address: expected [host, port]"),
        ({"logger": {"file_rotate_by": "day"}}, 'logger.file_rotate_by: expected one of "size", "time", got "day"'),
        ({"logger": {"rotation_time_interval": 0}}, "logger.rotation_time_interval: expected an integer >= 1, got 0"),
        ({"logger": {"log_level": 3}}, "logger.log_level: expected a string, got 3"),
        ({"logger": "verbose"}, 'logger: expected an object, got "verbose"'),
        ({"shutdown_timeout": "10"}, 'shutdown_timeout: expected a number, got "10"'),
        ({"channels": 5}, "channels: expected a string or null, got 5"),
        ({"dataspace": {"datasource": {"config": {"url": 5}}}}, "dataspace.datasource.config.url: expected a string"),
        ({"dataspace": {"datasource": {"config": {"pool_size": "big"}}}}, "dataspace.datasource.config.pool_size"),
        (
            {"dataspace": {"retention_interval_in_days": 1}},
            "dataspace.retention_interval_in_days: expected a number >= 7",
        ),
        ({"dataspace": {"reaper_run_interval": 60}}, "dataspace.reaper_run_interval: expected a number >= 7080"),
        ({"dataspace": {"reaper_batch_size": 0}}, "dataspace.reaper_batch_size: expected an integer >= 1"),
        ({"dataspace": {"trusted_modules": "mymodule"}}, "dataspace.trusted_modules: expected a list of a module name"),
        (
            {"dataspace": {"trusted_modules": ["mychannel.sources", "subprocess"]}},
            "dataspace.trusted_modules[1]: expected a module name (dotted identifiers), not of the standard library",
        ),
        ({"dataspace": {"trusted_modules": ["pandas.io"]}}, "dataspace.trusted_modules[0]: expected a module name"),
        ({"dataspace": {"trusted_modules": ["my module"]}}, "dataspace.trusted_modules[0]: expected a module name"),
        ({"webserver": {"api_token": 12}}, "webserver.api_token: expected a string or null, got 12"),
        ({"webserver": {"query_timeout": 0}}, "webserver.query_timeout: expected a number >= 0.1 and <= 3600, got 0"),
        ({"webserver": {"query_memory_mb": 8}}, "webserver.query_memory_mb: expected an integer >= 64, got 8"),
        ({"webserver": {"query_workers": 0}}, "webserver.query_workers: expected an integer >= 1 and <= 64, got 0"),
    ],
)
def test_errors_name_key_and_expectation(config, expected):
    problems = problems_of(config)
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_trusted_modules_are_kept():
    config, _ = validate_global_config({"dataspace": {"trusted_modules": ["mychannel", "acme.models"]}})
    assert config["dataspace"]["trusted_modules"] == ["mychannel", "acme.models"]


def test_all_problems_reported_together():
    problems = problems_of({"logger": {"max_file_size": -1, "log_level": "LOUD"}, "shutdown_timeout": None})
    assert len(problems) == 3


def test_unknown_keys_are_warnings_not_errors():
    config, warnings = validate_global_config(
        {"broker_url": "redis://localhost:6379/0", "exchange_name": "hepcloud", "logger": {"structlog_file": "x"}},
        "de.jsonnet",
    )
    assert "broker_url" not in config and "exchange_name" not in config
    assert sorted(warnings) == [
        "de.jsonnet: broker_url: unused key (not a decision engine setting; ignored)",
        "de.jsonnet: exchange_name: unused key (not a decision engine setting; ignored)",
        "de.jsonnet: logger.structlog_file: unused key (not a decision engine setting; ignored)",
    ]


def test_load_from_directory_file_and_env(tmp_path, monkeypatch):
    (tmp_path / "decision_engine.jsonnet").write_text(
        "{ server_address: ['localhost', 9999], broker_url: 'redis://x', shutdown_timeout: 3 }"
    )
    config, warnings = load_global_config(tmp_path)
    assert config["server_address"] == ["localhost", 9999]
    assert len(warnings) == 1 and "broker_url" in warnings[0]
    assert load_global_config(tmp_path / "decision_engine.jsonnet")[0] == config
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path))
    assert load_global_config()[0]["shutdown_timeout"] == 3


def test_load_reports_file_for_bad_values(tmp_path):
    path = tmp_path / "decision_engine.jsonnet"
    path.write_text("{ logger: { max_backup_count: 'x' } }")
    with pytest.raises(ConfigError, match=r"decision_engine\.jsonnet: logger\.max_backup_count: expected an integer"):
        load_global_config(path)


def test_load_missing_and_invalid(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_global_config(tmp_path)
    (tmp_path / "decision_engine.jsonnet").write_text("{")
    with pytest.raises(RuntimeError, match=r"decision_engine\.jsonnet: invalid jsonnet"):
        load_global_config(tmp_path)


def test_relative_channels_directory_is_relative_to_the_global_file(tmp_path):
    (tmp_path / "decision_engine.jsonnet").write_text("{ channels: 'config.d' }")
    assert load_global_config(tmp_path)[0]["channels"] == str(tmp_path.resolve() / "config.d")
    (tmp_path / "decision_engine.jsonnet").write_text("{ channels: '/srv/channels' }")
    assert load_global_config(tmp_path)[0]["channels"] == "/srv/channels"
