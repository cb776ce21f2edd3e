"""Transport: TLS with de-client --url https://..., and a Unix socket whose mode decides who connects."""

import json
import pathlib
import shutil
import socket
import stat
import subprocess
import tempfile

import pytest
import trustme

from tests.cli.run import command
from tests.engine.server import DEServer
from tests.security.helpers import CONTROL_TOKEN, steady_channel

pytestmark = pytest.mark.timeout(240)


def test_tls(tmp_path):
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = DEServer(
        tmp_path,
        f"sqlite:///{tmp_path / 'ds.sqlite'}",
        {"steady": steady_channel()},
        webserver={"ssl_certificate": "server.pem", "ssl_private_key": "server.key", "api_token": CONTROL_TOKEN},
    )
    server.start(wait=False)
    try:
        https = f"https://127.0.0.1:{server.port}"
        ping = command("de-client", "--url", https, "--ca-file", tmp_path / "ca.pem", "--wait", "60", "--ping")
        assert ping.returncode == 0 and ping.stdout == "pong\n", ping.stderr
        stopped = command(
            "de-client", "--url", https, "--ca-file", tmp_path / "ca.pem", "--stop-channel", "steady",
            env={"DE_API_TOKEN": CONTROL_TOKEN},
        )  # fmt: skip
        assert stopped.stdout == "channel steady stopped\n", stopped.stderr
        # the configuration says https: de-client reading it picks the scheme by itself
        status = command("de-client", "--config", tmp_path, "--ca-file", tmp_path / "ca.pem", "--status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["channels"][0]["state"] == "SHUTDOWN"
        untrusted = command("de-client", "--url", https, "--ping")
        assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower()
        assert "Traceback" not in untrusted.stderr
        plain = command("de-client", "--url", f"http://127.0.0.1:{server.port}", "--ping")
        assert plain.returncode == 1 and "Traceback" not in plain.stderr
    finally:
        server.stop()


def test_tls_needs_both_files(tmp_path):
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {}, webserver={"ssl_certificate": "x.pem"})
    server.start(wait=False)
    assert server.process.wait(60) == 2
    assert "TLS needs both ssl_certificate and ssl_private_key" in server.output.read_text()


@pytest.fixture
def socket_dir():
    """A short directory for the socket (a Unix socket path is at most 107 bytes), reachable by
    the unprivileged user the test connects as."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="de-sock-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_unix_socket(tmp_path, socket_dir):
    path = socket_dir / "de.sock"
    server = DEServer(
        tmp_path,
        f"sqlite:///{tmp_path / 'ds.sqlite'}",
        {"steady": steady_channel()},
        server_address=f"unix:{path}",
        webserver={"socket_mode": "0600"},
    )
    server.start(wait=False)
    try:
        url = f"unix:{path}"
        ping = command("de-client", "--url", url, "--wait", "60", "--ping")
        assert ping.stdout == "pong\n", ping.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_ISSOCK(path.stat().st_mode)
        # Local users reach control over the socket: no token configured, as on localhost.
        stopped = command("de-client", "--url", url, "--stop-channel", "steady")
        assert stopped.stdout == "channel steady stopped\n", stopped.stderr
        status = command("de-client", "--config", tmp_path, "--status", "--json")
        assert json.loads(status.stdout)["channels"][0]["state"] == "SHUTDOWN", status.stderr
        followed = command("de-client", "--url", url, "--start-channel", "steady")
        assert followed.returncode == 0, followed.stderr
        # Another user may not connect: the file's mode says so.
        attempt = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); print('connected')"
        other = subprocess.run(
            ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", attempt],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert other.returncode != 0 and "PermissionError" in other.stderr, other
        assert "connected" not in other.stdout
    finally:
        server.stop()
    assert not path.exists()  # removed at a clean stop


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path, socket_dir):
    path = socket_dir / "de.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on: what a killed server leaves
    stale.close()
    first = DEServer(tmp_path / "a", f"sqlite:///{tmp_path / 'a.sqlite'}", {}, server_address=f"unix:{path}")
    first.start(wait=False)
    try:
        assert command("de-client", "--url", f"unix:{path}", "--wait", "60", "--ping").stdout == "pong\n"
        second = DEServer(tmp_path / "b", f"sqlite:///{tmp_path / 'b.sqlite'}", {}, server_address=f"unix:{path}")
        second.start(wait=False)
        assert second.process.wait(60) == 1
        assert "a server answers there" in second.output.read_text()
        assert command("de-client", "--url", f"unix:{path}", "--ping").stdout == "pong\n"
    finally:
        first.stop()
