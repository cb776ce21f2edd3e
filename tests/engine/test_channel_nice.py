"""Channel processes yield the CPU to the server and the database (global ``channel_nice``):
a real de-server, its channel process's niceness read from /proc."""

from __future__ import annotations

import os

import pytest

from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(120)


def niceness(pid: int) -> int:
    # field 19 of /proc/<pid>/stat, counted after the command name (which may hold spaces)
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize(("setting", "added"), [(None, 10), (3, 3), (0, 0)])
def test_channel_processes_run_at_the_configured_niceness(tmp_path, sqlite_url, setting, added):
    extra = {} if setting is None else {"channel_nice": setting}
    server = DEServer(tmp_path, sqlite_url, {"counting": counting_channel(str(tmp_path / "c.jsonl"))}, **extra)
    server.start()
    try:
        status = server.wait_for(
            lambda s: any(c.get("pid") and c.get("process_alive") for c in s["channels"]),
            what="the channel process runs",
        )
        pid = next(c["pid"] for c in status["channels"] if c.get("pid"))
        assert niceness(pid) == niceness(server.process.pid) + added
        assert niceness(server.process.pid) == os.nice(0)  # the server itself is not lowered
    finally:
        server.stop()
