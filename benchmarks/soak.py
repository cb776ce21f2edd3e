"""Soak benchmark: channels on PostgreSQL for N minutes, with faults injected at random.

Run:  .venv/bin/python benchmarks/soak.py [--minutes 10] [--channels 4] [--seed 1]

Two de-servers share one PostgreSQL DataSpace (one owns each channel, the other waits in
standby).  Every 15-45 s one fault, chosen at random:

* ``channel kill -9``: a channel process is killed;
* ``channel hang``: a transform sleeps past ``module_timeout`` (the server kills it);
* ``channel raise``: a transform raises until the channel goes to ERROR (two failed generations);
* ``channel exit``: a transform kills its interpreter (``os._exit``);
* ``server SIGTERM`` / ``server kill -9``: a server goes (and is started again);
* ``database outage``: PostgreSQL stops for 3-8 s and starts again.

Nobody repairs anything: recovery is the servers' own (restarting channels, retrying
commits, standby take-over).  Printed at the end: faults injected and survived (the
affected channels commit again within 60 s), recovery time per kind (p50 / p95 / max: from
the kill, from the database's return, or, for a fault in a module, from the end of the
fault once it has brought the channel down, to the affected channels' first generation
newer than the last one committed at that moment; for a server fault, from the signal to
every channel's first generation newer than the last one committed once the server's
process is gone), generations lost or numbered twice (must be 0), publisher actions on
generations that were not committed (must be 0), actions repeated for a generation
(allowed: at least once, when a process was killed between a commit and its status), and
the memory of the server processes after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from typing import Any

import sqlalchemy as sa
from tabulate import tabulate

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from decisionengine.framework.dataspace.datasources.sql_engine import create_engine  # noqa: E402
from decisionengine.testing.postgres import PostgresServer, free_port  # noqa: E402

MODULES = "benchmarks.soak_modules"
CHANNEL_FAULTS = ("channel kill -9", "channel hang", "channel raise", "channel exit")
SERVER_FAULTS = ("server SIGTERM", "server kill -9")
KINDS = (*CHANNEL_FAULTS, *SERVER_FAULTS, "database outage")
SURVIVED_WITHIN = 60.0


def channel_file(name: str, root: pathlib.Path) -> dict[str, Any]:
    return {
        "sources": {"numbers": {"module": MODULES, "name": "SoakSource", "parameters": {}, "schedule": 1}},
        "transforms": {
            "total": {
                "module": MODULES,
                "name": "SoakTransform",
                "parameters": {"fault_file": str(root / f"{name}.fault")},
            }
        },
        "publishers": {
            "recorder": {
                "module": MODULES,
                "name": "SoakPublisher",
                "parameters": {"record": str(root / f"{name}.jsonl")},
            }
        },
        "task_manager": {"module_timeout": 3, "max_consecutive_failures": 2},
    }


class Server:
    """One de-server process (started again after each fault that ends it)."""

    def __init__(self, root: pathlib.Path, url: str, channels: list[str], shared: pathlib.Path) -> None:
        self.root = root
        self.port = free_port()
        (root / "config.d").mkdir(parents=True, exist_ok=True)
        for name in channels:
            (root / "config.d" / f"{name}.jsonnet").write_text(json.dumps(channel_file(name, shared)))
        (root / "decision_engine.jsonnet").write_text(
            json.dumps(
                {
                    "server_address": ["127.0.0.1", self.port],
                    "logger": {"log_file": str(root / "logs" / "decision_engine.log")},
                    "shutdown_timeout": 10,
                    "dataspace": {"datasource": {"config": {"url": url}}, "reaper_start_delay_seconds": 3600},
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.root / "de-server.out", "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "decisionengine.framework.cli.de_server", "--config", str(self.root)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.rpc().ping() == "pong":
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server on port {self.port} did not start")

    def rpc(self) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2", allow_none=True)

    def channels(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.rpc().status("json"))["channels"]
        except OSError:
            return []

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(120)

    def pss_mib(self) -> float:
        if self.process is None or self.process.poll() is not None:
            return 0.0
        return sum(pss(pid) for pid in tree(self.process.pid)) / 2**20


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def pss(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watcher:
    """Follows every channel's last committed generation in the database."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.engine = create_engine({"url": url, "pool_pre_ping": True})
        self.channels = channels
        self.latest: dict[str, int] = dict.fromkeys(channels, 0)
        #: per channel, the seconds of the last recovery measured (the slowest is the recovery)
        self.last_times: dict[str, float] = {}
        self.changed_at: dict[str, float] = dict.fromkeys(channels, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    QUERY = sa.text(
        "SELECT t.name, max(g.generation_id) FROM generation g JOIN taskmanager t "
        "ON t.sequence_id = g.taskmanager_seq GROUP BY t.name"
    )

    def committed_now(self, limit: float = 30.0) -> dict[str, int]:
        """Each channel's last committed generation, read now (retried while the database is away).

        Read after a fault is injected, so that a generation committed before the fault but
        not yet seen by the polling thread is never counted as a recovery.
        """
        deadline = time.monotonic() + limit
        while True:
            try:
                with self.engine.connect() as conn:
                    return {name: generation or 0 for name, generation in conn.execute(self.QUERY).all()}
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rows = self.committed_now(0).items()
            except Exception:
                continue  # the database is away
            now = time.monotonic()
            for name, generation in rows:
                if generation and generation > self.latest.get(name, 0):
                    self.latest[name] = generation
                    self.changed_at[name] = now

    def wait_for_progress(self, names: list[str], since: float, limit: float) -> float | None:
        """Seconds from ``since`` until every one of ``names`` committed a generation newer than
        the last one committed now; None if that takes longer than ``limit``."""
        baseline = self.committed_now()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if all(self.latest[name] > baseline.get(name, 0) for name in names):
                self.last_times = {name: round(self.changed_at[name] - since, 2) for name in names}
                return max(self.changed_at[name] for name in names) - since
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.engine.dispose()


def last_failure_at(servers: list[Server], channel: str) -> float:
    """When a server last saw the channel's process fail (0: never)."""
    return max(
        (
            (status.get("last_failure") or {}).get("at") or 0.0
            for server in servers
            for status in server.channels()
            if status["channel"] == channel
        ),
        default=0.0,
    )


def owner_of(servers: list[Server], channel: str) -> tuple[Server, dict[str, Any]] | None:
    for server in servers:
        for status in server.channels():
            if status["channel"] == channel and not status.get("standby") and status.get("pid"):
                return server, status
    return None


def inject(kind: str, servers: list[Server], channels: list[str], database: PostgresServer, shared: pathlib.Path,
           watcher: Watcher, rng: random.Random) -> tuple[float | None, list[str]]:  # fmt: skip
    """Inject one fault; (recovery seconds or None if not recovered, channels affected)."""
    if kind in CHANNEL_FAULTS:
        name = rng.choice(channels)
        found = owner_of(servers, name)
        if found is None:
            return None, [name]
        _, status = found
        if kind == "channel kill -9":
            injected = time.monotonic()
            os.kill(status["pid"], signal.SIGKILL)
            return watcher.wait_for_progress([name], injected, SURVIVED_WITHIN), [name]
        # a fault in a module: recovery counts from the moment the fault ends, once it has
        # brought the channel down (ERROR: too many failures, the hang watchdog, the exit)
        before = last_failure_at(servers, name)
        (shared / f"{name}.fault").write_text(kind.removeprefix("channel "))
        deadline = time.monotonic() + 30
        while last_failure_at(servers, name) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        (shared / f"{name}.fault").write_text("")
        if last_failure_at(servers, name) <= before:
            return None, [name]  # never brought the channel down: counted as not survived
        healed = time.monotonic()
        return watcher.wait_for_progress([name], healed, SURVIVED_WITHIN), [name]
    if kind in SERVER_FAULTS:
        server = rng.choice(servers)
        injected = time.monotonic()
        server.stop(signal.SIGKILL if kind == "server kill -9" else signal.SIGTERM)  # returns once it is gone
        recovered = watcher.wait_for_progress(channels, injected, SURVIVED_WITHIN)
        server.start()  # back, as standby for whatever the other server took
        return recovered, list(channels)
    # database outage
    database.stop("fast")
    time.sleep(rng.uniform(3, 8))
    database.start()
    back = time.monotonic()
    return watcher.wait_for_progress(channels, back, SURVIVED_WITHIN), list(channels)


def integrity(url: str, channels: list[str], shared: pathlib.Path) -> dict[str, int]:
    engine = create_engine({"url": url})
    lost = duplicated = uncommitted = repeated = committed_total = 0
    try:
        with engine.connect() as conn:
            for name in channels:
                numbers = [
                    row[0]
                    for row in conn.execute(
                        sa.text(
                            "SELECT g.generation_id FROM generation g JOIN taskmanager t "
                            "ON t.sequence_id = g.taskmanager_seq WHERE t.name = :n ORDER BY 1"
                        ),
                        {"n": name},
                    )
                ]
                committed_total += len(numbers)
                duplicated += len(numbers) - len(set(numbers))
                lost += (max(numbers) - len(set(numbers))) if numbers else 0
                record = shared / f"{name}.jsonl"
                keys = [json.loads(line)["key"] for line in record.read_text().splitlines()] if record.exists() else []
                generations = {int(key.split(":")[1]) for key in keys}
                uncommitted += len(generations - set(numbers))
                repeated += len(keys) - len(set(keys))
    finally:
        engine.dispose()
    return {
        "generations committed": committed_total,
        "generations lost (gaps)": lost,
        "generations numbered twice": duplicated,
        "actions on uncommitted generations": uncommitted,
        "actions repeated (at least once)": repeated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warm-up", type=float, default=30, help="seconds before the first fault")
    parser.add_argument("--kinds", default=",".join(KINDS), help="the faults to inject, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories (logs) and say where")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",")]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"--kinds: unknown {unknown}; choose from {list(KINDS)}")
    rng = random.Random(args.seed)
    names = [f"soak{i}" for i in range(args.channels)]
    database = PostgresServer()
    database.start()
    url = database.url("postgres")
    directory = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="de-soak-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="de-soak-")
    )
    with directory as tmp:
        if args.keep:
            print(f"servers' directories: {tmp}", file=sys.stderr, flush=True)
        root = pathlib.Path(tmp)
        shared = root / "shared"
        shared.mkdir()
        servers = [Server(root / f"server{i}", url, names, shared) for i in range(2)]
        watcher = None
        recoveries: dict[str, list[float]] = collections.defaultdict(list)
        failed: collections.Counter[str] = collections.Counter()
        injected: collections.Counter[str] = collections.Counter()
        try:
            for server in servers:
                server.start()
            watcher = Watcher(url, names)
            print(f"warming up for {args.warm_up:g} s ...", file=sys.stderr, flush=True)
            time.sleep(args.warm_up)
            memory_start = sum(server.pss_mib() for server in servers)
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                time.sleep(rng.uniform(15, 45))
                kind = rng.choice(kinds)
                injected[kind] += 1
                seconds, _ = inject(kind, servers, names, database, shared, watcher, rng)
                if seconds is None:
                    failed[kind] += 1
                    print(f"  {kind}: NOT recovered within {SURVIVED_WITHIN:g} s", file=sys.stderr, flush=True)
                else:
                    recoveries[kind].append(seconds)
                    detail = f" {watcher.last_times}" if len(watcher.last_times) > 1 else ""
                    print(f"  {kind}: recovered in {seconds:.2f} s{detail}", file=sys.stderr, flush=True)
            memory_end = sum(server.pss_mib() for server in servers)
        finally:
            for server in servers:
                server.stop()
            if watcher is not None:
                watcher.stop()
        result = integrity(url, names, shared)
        database.destroy()

    rows = []
    for kind in KINDS:
        times = sorted(recoveries[kind])
        rows.append(
            [
                kind,
                injected[kind],
                injected[kind] - failed[kind],
                f"{statistics.median(times):.2f}" if times else "-",
                f"{times[min(len(times) - 1, int(0.95 * len(times)))]:.2f}" if times else "-",
                f"{max(times):.2f}" if times else "-",
            ]
        )
    print(f"\n== soak: {args.channels} channels, 2 servers, PostgreSQL, {args.minutes:g} min, seed {args.seed}")
    print(tabulate(rows, headers=["fault", "injected", "survived", "p50 s", "p95 s", "max s"]))
    print()
    print(tabulate(list(result.items()), tablefmt="plain"))
    print(f"memory of both servers' processes: {memory_start:.0f} MiB after warm-up, {memory_end:.0f} MiB at the end")
    bad = result["generations lost (gaps)"] + result["generations numbered twice"]
    bad += result["actions on uncommitted generations"] + sum(failed.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
