"""A throw-away PostgreSQL server for tests and benchmarks.

PostgreSQL refuses to run as root, and our CI and sessions run as root: the server is
then started as the ``postgres`` user (``runuser -u postgres -- ...``), with its data
directory under /tmp where that user can reach it (a pytest tmp dir is 0700 root).
Durability is switched off (fsync, synchronous_commit, full_page_writes): the data is
thrown away with the server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_USER = "postgres"


def direct_engine(url: str) -> Any:
    """An SQLAlchemy engine on a test database, outside the DataSpace (to look at or
    tamper with what the servers wrote): psycopg2, which we ship (SQLAlchemy 2.1 would
    pick psycopg 3 for ``postgresql://``), and no pool, so nothing stays connected."""
    import sqlalchemy as sa  # noqa: PLC0415 (the PostgreSQL server helpers need no SQLAlchemy)

    return sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg2"), poolclass=sa.pool.NullPool)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """The directory holding initdb/pg_ctl: $DE_PG_BIN, Debian's 15, any Debian version, or PATH."""
    candidates = [os.environ.get("DE_PG_BIN"), "/usr/lib/postgresql/15/bin"]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
        "postgresql-15 or set DE_PG_BIN"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a free local port."""

    def __init__(self, port: int | None = None, max_connections: int = 200) -> None:
        self.max_connections = max_connections
        self.bin_dir = find_bin_dir()
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="de-pg-", dir="/tmp"))
        self.data_dir = self.base / "data"
        self.log_file = self.base / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self.user = PG_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", PG_USER, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd="/tmp")

    def start(self) -> PostgresServer:
        if not self.data_dir.exists():
            self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        result = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_file), "-w", "start", check=False
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stdout}{result.stderr}\n{log}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        )
        return result.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {template}" if template else ""
        for attempt in range(20):
            try:
                self.psql(f'CREATE DATABASE "{name}"{clause}')
                break
            except subprocess.CalledProcessError as exc:
                # A template still in use by a closing connection: try again shortly.
                if "being accessed by other users" not in exc.stderr or attempt == 19:
                    raise
                time.sleep(0.1)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_server(max_connections: int = 200) -> Iterator[PostgresServer]:
    server = PostgresServer(max_connections=max_connections)
    try:
        yield server.start()
    finally:
        server.destroy()
