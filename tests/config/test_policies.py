"""Configuration directories and the environment variables that move them."""

import pytest

from decisionengine.framework.config import policies


def test_global_config_filename():
    assert policies.GLOBAL_CONFIG_FILENAME == "decision_engine.jsonnet"


def test_global_config_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path))
    assert policies.global_config_dir() == tmp_path
    (tmp_path / "decision_engine.jsonnet").write_text("{}")
    assert policies.global_config_file() == tmp_path / "decision_engine.jsonnet"


def test_global_config_dir_missing_names_the_directory(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CONFIG_PATH", str(missing))
    with pytest.raises(RuntimeError, match=r"nowhere.*CONFIG_PATH.*does not exist"):
        policies.global_config_dir()


def test_global_config_dir_must_be_a_directory(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("")
    monkeypatch.setenv("CONFIG_PATH", str(file))
    with pytest.raises(RuntimeError, match="is not a directory"):
        policies.global_config_dir()


def test_global_config_dir_default(monkeypatch):
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    monkeypatch.setattr(policies, "DEFAULT_CONFIG_DIR", "/nonexistent/decisionengine")
    with pytest.raises(RuntimeError, match=r"/nonexistent/decisionengine.*the default"):
        policies.global_config_dir()


def test_channel_config_dir_env_wins(tmp_path, monkeypatch):
    channels = tmp_path / "channels"
    channels.mkdir()
    monkeypatch.setenv("CHANNEL_CONFIG_PATH", str(channels))
    assert policies.channel_config_dir({"channels": "/ignored"}) == channels


def test_channel_config_dir_from_global_config(tmp_path, monkeypatch):
    monkeypatch.delenv("CHANNEL_CONFIG_PATH", raising=False)
    assert policies.channel_config_dir({"channels": str(tmp_path)}) == tmp_path
    with pytest.raises(RuntimeError, match=r"missing.*'channels' key"):
        policies.channel_config_dir({"channels": str(tmp_path / "missing")})


def test_channel_config_dir_default_under_global_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CHANNEL_CONFIG_PATH", raising=False)
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"config\.d.*does not exist"):
        policies.channel_config_dir()
    (tmp_path / "config.d").mkdir()
    assert policies.channel_config_dir() == tmp_path / "config.d"
    assert policies.channel_config_dir({"channels": None}) == tmp_path / "config.d"


def test_channel_config_dir_env_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CHANNEL_CONFIG_PATH", str(tmp_path / "gone"))
    with pytest.raises(RuntimeError, match=r"gone.*CHANNEL_CONFIG_PATH"):
        policies.channel_config_dir()
