"""de-server's command line: clear one-line errors for what an operator gets wrong."""

import json
import os
import socket
import subprocess
import sys

import pytest

from decisionengine.framework.cli.de_server import _claim_pidfile
from decisionengine.testing.postgres import free_port
from tests.engine.server import REPO


def de_server(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "decisionengine.framework.cli.de_server", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def config_dir(tmp_path, port):
    (tmp_path / "config.d").mkdir()
    (tmp_path / "decision_engine.jsonnet").write_text(
        json.dumps(
            {
                "server_address": ["127.0.0.1", port],
                "dataspace": {"datasource": {"config": {"url": f"sqlite:///{tmp_path}/ds.sqlite"}}},
            }
        )
    )
    return tmp_path


def test_missing_configuration_directory(tmp_path):
    result = de_server("--config", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.startswith("de-server: ")
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_invalid_global_configuration(tmp_path):
    (tmp_path / "decision_engine.jsonnet").write_text('{ logger: { max_backup_count: "x" } }')
    result = de_server("--config", str(tmp_path))
    assert result.returncode == 2
    assert "logger.max_backup_count" in result.stderr
    assert "Traceback" not in result.stderr


def test_address_in_use(tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = de_server("--config", str(config_dir(tmp_path, port)))
    assert result.returncode == 1
    # without a log file the server's log goes to stderr too; the error is one line of its own
    assert (
        f"de-server: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(is another de-server running? set server_address or --port)"
    ) in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_pidfile_naming_a_live_process(tmp_path):
    pidfile = tmp_path / "de.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    result = de_server("--config", str(config_dir(tmp_path, free_port())), "--pidfile", str(pidfile))
    assert result.returncode == 1
    assert f"names a running process ({os.getpid()})" in result.stderr
    assert pidfile.read_text().strip() == str(os.getpid())  # left alone


def test_pidfile_naming_a_dead_process_is_taken_over(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile = tmp_path / "de.pid"
    pidfile.write_text(f"{gone.pid}\n")  # what a killed server leaves
    assert _claim_pidfile(str(pidfile)) == gone.pid  # reported, so that the server logs it
    assert pidfile.read_text().strip() == str(os.getpid())
    assert _claim_pidfile(str(tmp_path / "new.pid")) is None


def test_help_has_examples():
    result = de_server("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--state-dir" in result.stdout


def test_a_busy_port_is_found_before_anything_is_created(tmp_path):
    """A second server started by mistake leaves no state directory, database or pidfile."""
    port = free_port()
    config = config_dir(tmp_path, port)
    state = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = de_server("--config", str(config), "--state-dir", str(state), "--pidfile", str(tmp_path / "de.pid"))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not state.exists()
    assert not (tmp_path / "ds.sqlite").exists()
    assert not (tmp_path / "de.pid").exists()


@pytest.mark.parametrize("extra", [[], ["--port", "0"]])
def test_server_address_must_be_host_and_port(tmp_path, extra):
    (tmp_path / "config.d").mkdir()
    (tmp_path / "decision_engine.jsonnet").write_text("{ server_address: 'localhost' }")
    result = de_server("--config", str(tmp_path), *extra)
    assert result.returncode == 2
    assert result.stderr.startswith("de-server: ")
    assert "server_address: expected [host, port] with a non-empty host string and an integer port" in result.stderr
    assert "does not resolve" not in result.stderr and "Traceback" not in result.stderr
