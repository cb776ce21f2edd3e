"""A throw-away PgBouncer in front of a throw-away PostgreSQL, for tests.

PgBouncer, like PostgreSQL, is started as the ``postgres`` user when we run as root
(``runuser -u postgres -- ...``), with its configuration under /tmp where that user can
reach it (a pytest tmp dir is 0700 root).  Every client is trusted (``auth_type = trust``,
as the throw-away PostgreSQL trusts every local connection), so any user name in the URL
works.  ``pool_mode`` is PgBouncer's: ``session``, ``transaction`` or ``statement``.  The
admin console (database ``pgbouncer``) answers ``SHOW POOLS`` / ``SHOW CLIENTS`` /
``SHOW SERVERS`` to the connecting user: :meth:`PgBouncer.show`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from decisionengine.testing.postgres import PG_USER, PostgresServer, free_port


class PgBouncerUnavailable(RuntimeError):
    """No pgbouncer binary on this machine."""


def find_pgbouncer() -> str:
    """The pgbouncer binary: $DE_PGBOUNCER, Debian's /usr/sbin/pgbouncer, or PATH."""
    for candidate in (os.environ.get("DE_PGBOUNCER"), "/usr/sbin/pgbouncer", shutil.which("pgbouncer")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PgBouncerUnavailable(
        "pgbouncer not found: install the Debian package pgbouncer (scripts/system-packages) or set DE_PGBOUNCER"
    )


class PgBouncer:
    """One PgBouncer on a free local port, pooling every database of ``postgres``."""

    def __init__(
        self,
        postgres: PostgresServer,
        pool_mode: str = "session",
        pool_size: int = 20,
        max_client_conn: int = 500,
        **settings: Any,
    ) -> None:
        self.binary = find_pgbouncer()
        self.postgres = postgres
        self.pool_mode = pool_mode
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="de-pgbouncer-", dir="/tmp"))
        self.config = self.base / "pgbouncer.ini"
        self.log_file = self.base / "pgbouncer.log"
        self.pid_file = self.base / "pgbouncer.pid"
        self.as_root = os.geteuid() == 0
        self.user = postgres.user
        (self.base / "userlist.txt").write_text(f'"{self.user}" ""\n')
        options = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": str(self.base),
            "auth_type": "trust",
            "auth_file": str(self.base / "userlist.txt"),
            "admin_users": self.user,
            "stats_users": self.user,
            "pool_mode": pool_mode,
            "default_pool_size": pool_size,
            "min_pool_size": 0,
            "reserve_pool_size": 0,
            "max_client_conn": max_client_conn,
            "server_reset_query": "DISCARD ALL",
            "logfile": str(self.log_file),
            "pidfile": str(self.pid_file),
            **settings,
        }
        lines = [
            "[databases]",
            f"* = host=127.0.0.1 port={postgres.port} user={self.user}",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in options.items()),
        ]
        self.config.write_text("\n".join(lines) + "\n")
        if self.as_root:
            user = pwd.getpwnam(PG_USER)
            for path in (self.base, *self.base.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> PgBouncer:
        command = [self.binary, str(self.config)]
        if self.as_root:
            command = ["runuser", "-u", PG_USER, "--", *command]
        self.process = subprocess.Popen(
            command, cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}: {self.log()}")
            try:
                self.show("VERSION")
                return self
            except Exception as exc:  # not listening yet (psycopg2.OperationalError)
                if time.monotonic() >= deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not answer within {timeout:g} s: {exc}\n{self.log()}") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # runuser passes the signal on; pgbouncer exits at once on SIGINT ("safe shutdown"
        # waits for clients), SIGTERM ("immediate shutdown")
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url_for(self, direct_url: str) -> str:
        """``direct_url`` (a URL of the PostgreSQL behind) through this PgBouncer."""
        return self.url(direct_url.rsplit("/", 1)[1])

    def console(self) -> Any:
        """A connection to the admin console (psycopg2, autocommit: the console refuses BEGIN)."""
        import psycopg2  # noqa: PLC0415

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer", connect_timeout=5)
        conn.autocommit = True
        return conn

    def show(self, what: str, console: Any = None) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (``console``, or a connection of its own), as
        rows of {column: value}."""
        conn = console if console is not None else self.console()
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"SHOW {what}")
                columns = [column.name for column in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            if console is None:
                conn.close()
