"""de-server behind PgBouncer, with real servers, a real PgBouncer and a real PostgreSQL.

What README "Scaling out" claims, and no more:

* session pooling: the servers and their channel processes all connect through PgBouncer;
  the cluster works (liveness lock, ``LISTEN``, claims, a ``kill -9`` taken over), every
  generation is committed once, and the connections stay within the connection budget;
* transaction pooling: for channel processes only (``dataspace.channel_url``); their
  connections share PgBouncer's few server connections, and every generation is
  committed once.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from decisionengine.testing.waiting import eventually
from tests.engine.server import DEServer
from tests.engine.test_cluster import channels, wait_for_shares
from tests.faults.integrity import assert_whole

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgresql]

CLUSTER = {"heartbeat_interval": 0.5, "member_timeout": 5}
#: a server's own pool on PostgreSQL (sql_engine's defaults): pool_size 4 + max_overflow 4
SERVER_POOL = 4 + 4


class PoolSampler:
    """Samples PgBouncer's ``SHOW POOLS`` / ``SHOW CLIENTS`` for one database in a thread."""

    def __init__(self, bouncer: Any, database: str) -> None:
        self.bouncer = bouncer
        self.database = database
        self.most_clients = self.most_servers = self.samples = 0
        self.modes: set[str] = set()
        self.applications: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PoolSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        console = self.bouncer.console()
        try:
            while not self._stop.wait(0.02):
                self._sample(console)
        finally:
            console.close()

    def _sample(self, console: Any) -> None:
        for pool in self.bouncer.show("POOLS", console):
            if pool["database"] != self.database:
                continue
            self.modes.add(pool["pool_mode"])
            clients = pool["cl_active"] + pool["cl_waiting"]
            servers = sum(pool[k] for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
            self.most_clients = max(self.most_clients, clients)
            self.most_servers = max(self.most_servers, servers)
        for client in self.bouncer.show("CLIENTS", console):
            if client["database"] == self.database:
                self.applications.add(client["application_name"])
        self.samples += 1

    def __str__(self) -> str:
        return (
            f"{self.samples} samples: at most {self.most_clients} clients and {self.most_servers} "
            f"server connections at once, pool_mode {sorted(self.modes)}"
        )


def generations(servers: list[DEServer]) -> dict[str, int]:
    """{channel: the newest generation any server reports}."""
    newest: dict[str, int] = {}
    for one in servers:
        for status in one.status()["channels"]:
            newest[status["channel"]] = max(newest.get(status["channel"], 0), status.get("generation") or 0)
    return newest


def wait_for_generations(servers: list[DEServer], wanted: dict[str, int], timeout: float = 60) -> None:
    seen: dict[str, int] = {}

    def reached() -> bool:
        seen.clear()
        seen.update(generations(servers))
        return all(seen.get(name, 0) >= number for name, number in wanted.items())

    eventually(reached, timeout, what=lambda: f"generations {wanted}, saw {seen}")


def test_a_cluster_runs_through_pgbouncer_in_session_pooling_mode(tmp_path_factory, pg_url, pgbouncer):
    """Two servers and their channels, every connection through PgBouncer (session pooling)."""
    bouncer = pgbouncer(pool_mode="session", pool_size=40)
    url = bouncer.url_for(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    root = tmp_path_factory.mktemp("records")
    names = [f"s{i}" for i in range(4)]
    configs = channels(root, names)
    slots = 2
    dataspace = {"datasource": {"config": {"url": url}}, "reaper_start_delay_seconds": 3600}
    servers = {
        name: DEServer(
            tmp_path_factory.mktemp(name),
            url,
            configs,
            cluster={"server_name": name, **CLUSTER},
            dataspace={**dataspace, "channel_connections": slots},
        )
        for name in ("a", "b")
    }
    a, b = servers["a"], servers["b"]
    try:
        with PoolSampler(bouncer, database) as sampler:
            a.start()
            b.start()
            wait_for_shares(a, {"a": 2, "b": 2}, "two servers through PgBouncer")
            wait_for_generations([a, b], dict.fromkeys(names, 3))
            before = generations([a, b])
            wait_for_generations([a, b], {name: number + 3 for name, number in before.items()})
        print(f"\nsession pooling, 2 servers: {sampler}; clients {sorted(sampler.applications)}")
        assert sampler.modes == {"session"}
        assert any(app.startswith("de-channel:") for app in sampler.applications), sampler.applications
        budget = 2 * (slots + SERVER_POOL)
        assert sampler.most_clients <= budget, f"more than the budget of {budget}: {sampler}"
        assert sampler.most_servers <= budget, f"more than the budget of {budget}: {sampler}"
        assert sampler.samples > 20

        # a killed server's session goes back to PgBouncer's pool, which resets it (DISCARD ALL
        # drops its advisory locks): its liveness lock must not outlive it
        killed = time.monotonic()
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(10)
        took = wait_for_shares(a, {"a": 4}, "server b killed", limit=CLUSTER["member_timeout"] + 10)
        print(f"a took every channel {took:.1f} s after b's kill -9 ({time.monotonic() - killed:.1f} s)")
        before = generations([a])
        wait_for_generations([a], {name: number + 2 for name, number in before.items()})
    finally:
        for one in servers.values():
            one.stop()
    for name in names:
        assert_whole(pg_url, name, root / f"{name}.jsonl", repeats=True)


def test_channel_processes_go_through_pgbouncer_in_transaction_pooling_mode(tmp_path_factory, pg_url, pgbouncer):
    """The server on PostgreSQL directly, its channels through PgBouncer (transaction pooling)
    with two server connections for six busy channels holding up to six client connections."""
    bouncer = pgbouncer(pool_mode="transaction", pool_size=2)
    database = pg_url.rsplit("/", 1)[1]
    root = tmp_path_factory.mktemp("records")
    names = [f"t{i}" for i in range(6)]
    configs = channels(root, names)
    for channel in configs.values():
        for source in channel["sources"].values():
            source["schedule"] = 0.05
    one = DEServer(
        tmp_path_factory.mktemp("pooled"),
        pg_url,
        configs,
        dataspace={
            "datasource": {"config": {"url": pg_url}},
            "channel_url": bouncer.url_for(pg_url),
            "reaper_start_delay_seconds": 3600,
            "channel_connections": 6,
        },
    )
    try:
        one.start()
        with PoolSampler(bouncer, database) as sampler:
            wait_for_generations([one], dict.fromkeys(names, 1))
            before = generations([one])
            wait_for_generations([one], {name: number + 10 for name, number in before.items()})
        print(f"\ntransaction pooling, 6 channels: {sampler}")
        assert not [c for c in one.status()["channels"] if c["state"] not in ("STEADY", "ACTIVE")]
    finally:
        one.stop()
    assert sampler.modes == {"transaction"}
    assert {f"de-channel:{name}" for name in names} <= sampler.applications, sampler.applications
    assert sampler.most_servers <= 2, str(sampler)
    # the channels' connections did share the two server connections
    assert sampler.most_clients > 2, str(sampler)
    for name in names:
        assert_whole(pg_url, name, root / f"{name}.jsonl", repeats=True)
