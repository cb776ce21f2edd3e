"""Scale-out benchmark: several de-servers balance many channels on one PostgreSQL.

Run:  .venv/bin/python benchmarks/scale.py [--servers 4] [--channels 200] [--schedule 10] [--measure 60]

One throw-away PostgreSQL with ``max_connections = 100`` (its default) and no pooler; N
de-servers with the same C channel files (benchmarks/noop_modules.py: 3 sources, 3
transforms, 2 publishers, tiny products; each source every ``--schedule`` seconds).
Printed, all from this one run:

* ownership per server once all are up, after the last server stops (SIGTERM) and after it
  comes back, with the seconds each rebalance took (target: within 30 s);
* the most connections PostgreSQL had open at once (sampled from ``pg_stat_activity``
  every 0.2 s) against ``max_connections``, how many connections PostgreSQL refused, and how
  many channel waits for one of their server's connection slots timed out (starvation:
  the channel reports the database unreachable and retries); target: none of either;
* generations per second over the measuring window, and generation start latency (from
  the last source delivery a generation needs to its start) p50/p95;
* PSS per channel process (proportional set size: shared pages counted once across the
  processes sharing them), and whether the host's KSM merged their identical pages (the
  servers ask for it, ``channel_memory_merging``; the host decides), with ksmd's CPU;
  with ``--memory-settle S``, again S seconds after the last rebalance;
* how long channels waited for a connection slot and held one (p50/p95/p99 as histogram
  bucket bounds, from the servers' ``/metrics`` at the end: the servers still running,
  their channels since each server's start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tabulate import tabulate

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from benchmarks import ksm  # noqa: E402
from benchmarks.noop_modules import channel  # noqa: E402
from decisionengine.framework.engine import memory_merging  # noqa: E402
from decisionengine.testing.postgres import free_port, running_server  # noqa: E402

#: PostgreSQL refusing a connection (max_connections reached)
CONNECTION_ERRORS = ("too many clients", "remaining connection slots")
#: a channel process that waited longer than its wait for one of its server's connection slots
#: (it reports the database unreachable and retries): starvation, counted apart
SLOT_WAITS = ("no database connection slot came free",)


@contextlib.contextmanager
def keep_or_remove(keep: str | None) -> Iterator[str]:
    """The servers' directory: ``keep`` (made, kept afterwards) or a temporary one."""
    if keep:
        pathlib.Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="de-scale-") as tmp:
        yield tmp


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plain_engine(url: str) -> sa.Engine:
    """An engine for the benchmark's own queries (no pool: one connection while it runs)."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=sa.pool.NullPool)


def ksm_state() -> str:
    """Whether the host's KSM merges the channels' identical pages (``channel_memory_merging``)."""
    if not ksm.available():
        return "no KSM on this kernel"
    if ksm.read("run") != 1:
        return "host KSM stopped"
    return f"host KSM running, pages_to_scan {ksm.read('pages_to_scan')}"


def pss_bytes(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class Server:
    """One de-server process with every channel file; its name is its cluster server_name."""

    def __init__(
        self,
        root: pathlib.Path,
        name: str,
        url: str,
        channels: int,
        schedule: float,
        log_level: str = "WARNING",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.root = root / name
        self.port = free_port()
        config_dir = self.root / "config.d"
        config_dir.mkdir(parents=True)
        for i in range(channels):
            (config_dir / f"noop{i:03d}.jsonnet").write_text(json.dumps(channel(schedule, owner=f"noop{i:03d}")))
        (self.root / "decision_engine.jsonnet").write_text(
            json.dumps(
                {
                    "server_address": ["127.0.0.1", self.port],
                    "logger": {
                        "log_file": str(self.root / "logs" / "de.log"),
                        "log_level": log_level,
                        "global_channel_log_level": log_level,
                    },
                    "dataspace": {
                        "datasource": {"config": {"url": url}},
                        "reaper_start_delay_seconds": 3600,
                        **(settings or {}).get("dataspace", {}),
                    },
                    "cluster": {"server_name": name, **(settings or {}).get("cluster", {})},
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.output = open(self.root / "de-server.out", "ab")  # noqa: SIM115 - kept open while the server runs
        self.process = subprocess.Popen(
            [sys.executable, "-m", "decisionengine.framework.cli.de_server", "--config", str(self.root)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )

    def rpc(self) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2", allow_none=True)

    def status(self) -> dict[str, Any]:
        return json.loads(self.rpc().status("json"))

    def answers(self) -> bool:
        try:
            return self.rpc().ping() == "pong"
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(180)
        self.output.close()

    def connection_errors(self, needles: tuple[str, ...] = CONNECTION_ERRORS) -> int:
        text = ""
        for path in [self.root / "de-server.out", *sorted((self.root / "logs").glob("*.log*"))]:
            if path.exists():
                text += path.read_text(errors="replace")
        return sum(text.count(needle) for needle in needles)


class ConnectionSampler(threading.Thread):
    """The most connections open at once, from ``pg_stat_activity`` (client backends only)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(
            url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=sa.pool.NullPool
        )
        self.most = 0
        self.by_kind: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        query = sa.text(
            "SELECT CASE WHEN application_name LIKE 'de-channel:%' THEN 'channel processes' "
            "ELSE 'servers and others' END AS kind, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' GROUP BY 1"
        )
        # autocommit: pg_stat_activity is a snapshot taken once per transaction
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self.stopped.wait(0.2):
                rows = dict(conn.execute(query).all())
                total = sum(rows.values())
                if total > self.most:
                    self.most = total
                    self.by_kind = rows

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
        self.engine.dispose()


def slot_histograms(servers: list[Server]) -> dict[str, dict[float, float]]:
    """{"wait"|"hold": {bucket upper bound: cumulative count}} of the connection slots, summed
    over the live servers (each sums its channel processes)."""
    summed: dict[str, dict[float, float]] = {"wait": {}, "hold": {}}
    for server in servers:
        if server.process is None or server.process.poll() is not None:
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=60) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            kind = family.name.removeprefix("de_connection_slot_").removesuffix("_seconds")
            if kind not in summed or not family.name.startswith("de_connection_slot_"):
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    summed[kind][bound] = summed[kind].get(bound, 0.0) + sample.value
    return summed


def quantile_bound(buckets: dict[float, float], q: float) -> str:
    """The upper bound of the bucket holding the q-quantile (``<= 0.5 s``), from cumulative counts."""
    if not buckets or not buckets.get(float("inf")):
        return "-"
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return f"<= {bound:g} s" if bound != float("inf") else "> last bucket"
    return "-"


def holdings(servers: list[Server]) -> dict[str, int]:
    """{server name: channels it holds}, from the first server that answers (its ``cluster``
    method: the whole status of hundreds of channels, asked twice a second, would load it)."""
    for server in servers:
        if server.process is None or server.process.poll() is not None:
            continue
        try:
            cluster = json.loads(server.rpc().cluster("json"))
        except OSError:
            continue
        return {member["name"]: len(member["holding"]) for member in cluster["members"]}
    return {}


def wait_balanced(servers: list[Server], live: list[Server], channels: int, limit: float) -> float:
    """Seconds until the live servers hold every channel, each its rounded share."""
    started = time.monotonic()
    base, extra = divmod(channels, len(live))
    want = sorted([base + 1] * extra + [base] * (len(live) - extra))
    last: dict[str, int] = {}
    while time.monotonic() - started < limit:
        last = holdings(servers)
        if sorted(last.get(server.name, 0) for server in live) == want and sum(last.values()) == channels:
            return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError(f"not balanced within {limit:g} s: {last}")


def channel_statuses(servers: list[Server]) -> list[dict[str, Any]]:
    """Each running channel's status, from the server whose process runs it."""
    found = []
    for server in servers:
        if server.process is None or server.process.poll() is not None:
            continue
        found += [c for c in server.status()["channels"] if c.get("process_alive") and not c.get("standby")]
    return found


def settle_memory(servers: list[Server], seconds: float) -> dict[str, float]:
    """Mean PSS and KSM-merged MiB per channel process after ``seconds`` more of running
    (merging a host's pages takes the kernel several full scans; progress every 30 s)."""
    deadline = time.time() + seconds
    while True:
        pids = [c["pid"] for c in channel_statuses(servers) if c.get("pid")]
        pss = statistics.mean(pss_bytes(pid) for pid in pids) / 2**20
        merged = statistics.mean(memory_merging.merged_bytes(pid) or 0 for pid in pids) / 2**20
        if time.time() >= deadline:
            return {"pss": pss, "merged": merged}
        log(f"memory: {pss:.1f} MiB PSS per channel, {merged:.1f} merged ({deadline - time.time():.0f} s to go)")
        time.sleep(min(30, max(0.0, deadline - time.time())))


def measure(servers: list[Server], seconds: float) -> dict[str, Any]:
    before = {c["channel"]: c.get("generation") or 0 for c in channel_statuses(servers)}
    started = time.time()
    time.sleep(seconds)
    statuses = channel_statuses(servers)
    elapsed = time.time() - started
    generations = sum((c.get("generation") or 0) - before.get(c["channel"], 0) for c in statuses)
    latencies = [
        record["trigger_latency"]
        for c in statuses
        for record in c.get("history") or ()
        if record.get("trigger_latency") is not None and record.get("started", 0) >= started
    ]
    pss = [pss_bytes(c["pid"]) for c in statuses if c.get("pid")]
    merged = [memory_merging.merged_bytes(c["pid"]) or 0 for c in statuses if c.get("pid")]
    ordered = sorted(latencies) or [float("nan")]
    return {
        "generations_per_second": generations / elapsed,
        "latency_p50_ms": statistics.median(ordered) * 1e3,
        "latency_p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1e3,
        "latency_samples": len(latencies),
        "pss_per_channel_mib": statistics.mean(pss) / 2**20 if pss else float("nan"),
        "merged_per_channel_mib": statistics.mean(merged) / 2**20 if merged else float("nan"),
        "channel_processes": len(pss),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--schedule", type=float, default=10.0, help="seconds between acquisitions of each source")
    parser.add_argument("--measure", type=float, default=60.0, help="seconds of steady running measured")
    parser.add_argument(
        "--log-level", default="WARNING", help="the servers' log level (INFO shows every cluster assignment)"
    )
    parser.add_argument("--limit", type=float, default=30.0, help="a rebalance slower than this fails the run")
    parser.add_argument("--keep", metavar="DIR", help="keep the servers' configs and logs under DIR (default: removed)")
    parser.add_argument("--channel-connections", type=int, help="dataspace.channel_connections (default: the server's)")
    parser.add_argument("--max-starting", type=int, help="cluster.max_starting (default: the server's)")
    parser.add_argument(
        "--memory-settle",
        type=float,
        default=0,
        help="after the rebalances, run this many seconds more and measure PSS per channel again "
        "(time for the host's KSM, if it runs, to merge the channels' pages)",
    )
    args = parser.parse_args()
    settings: dict[str, Any] = {"dataspace": {}, "cluster": {}}
    if args.channel_connections is not None:
        settings["dataspace"]["channel_connections"] = args.channel_connections
    if args.max_starting is not None:
        settings["cluster"]["max_starting"] = args.max_starting

    results: list[list[Any]] = []
    failures: list[str] = []
    began, ksmd_began = time.time(), ksm.ksmd_cpu_seconds()
    with running_server(max_connections=100) as database, keep_or_remove(args.keep) as tmp:
        database.psql("CREATE DATABASE scale")
        url = database.url("scale")
        max_connections = int(database.psql("SHOW max_connections").strip())
        sampler = ConnectionSampler(url)
        sampler.start()
        servers = [
            Server(pathlib.Path(tmp), f"de-{i + 1}", url, args.channels, args.schedule, args.log_level, settings)
            for i in range(args.servers)
        ]
        try:
            log(f"starting {args.servers} servers with {args.channels} channels each ...")
            started = time.monotonic()
            for server in servers:
                server.start()
            for server in servers:
                while not server.answers():
                    if server.process.poll() is not None:
                        raise RuntimeError(f"{server.name} exited: see {server.root / 'de-server.out'}")
                    time.sleep(0.5)
            log(f"all servers answer after {time.monotonic() - started:.1f} s; waiting for the balance ...")
            took = wait_balanced(servers, servers, args.channels, 600)
            results.append(["after start", json.dumps(holdings(servers)), f"{took:.1f}"])
            log(f"balanced {took:.1f} s after every server answered: {holdings(servers)}")

            log(f"measuring {args.measure:g} s of steady running ...")
            steady = measure(servers, args.measure)

            leaving = servers[-1]
            log(f"stopping {leaving.name} ...")
            leaving.stop()
            took = wait_balanced(servers, servers[:-1], args.channels, 300)
            results.append([f"after {leaving.name} stopped", json.dumps(holdings(servers)), f"{took:.1f}"])
            if took > args.limit:
                failures.append(f"rebalance after a stop took {took:.1f} s")
            log(f"rebalanced in {took:.1f} s: {holdings(servers)}")

            log(f"starting {leaving.name} again ...")
            leaving.start()
            while not leaving.answers():
                time.sleep(0.2)
            took = wait_balanced(servers, servers, args.channels, 300)
            results.append([f"after {leaving.name} came back", json.dumps(holdings(servers)), f"{took:.1f}"])
            if took > args.limit:
                failures.append(f"rebalance after a join took {took:.1f} s")
            log(f"rebalanced in {took:.1f} s: {holdings(servers)}")
            settled = settle_memory(servers, args.memory_settle) if args.memory_settle > 0 else None
            states: dict[str, int] = {}
            for status in channel_statuses(servers):
                states[status["state"]] = states.get(status["state"], 0) + 1
            slots = slot_histograms(servers)
        finally:
            for server in servers:
                try:
                    server.stop()
                except Exception as exc:  # report, and stop the others
                    failures.append(f"{server.name} did not stop: {exc}")
            sampler.stop()
        errors = sum(server.connection_errors() for server in servers)
        slot_waits = sum(server.connection_errors(SLOT_WAITS) for server in servers)
        engine = plain_engine(url)
        with engine.connect() as conn:
            gaps = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT taskmanager_seq, count(*) AS n, max(generation_id) AS top "
                    "FROM generation GROUP BY taskmanager_seq) AS g WHERE n <> top"
                )
            ).scalar()
            committed = conn.execute(sa.text("SELECT count(*) FROM generation")).scalar()
        engine.dispose()

    print(f"\n{args.servers} servers, {args.channels} channels, sources every {args.schedule:g} s, one PostgreSQL")
    print(tabulate(results, headers=["ownership", "channels held per server", "rebalance s"], tablefmt="simple"))
    print()
    rows = [
        ["connections open at most", f"{sampler.most} of max_connections {max_connections} ({sampler.by_kind})"],
        ["connections PostgreSQL refused", errors],
        ["connection slot waits over 30 s", slot_waits],
        *(
            [
                f"connection slot {kind} p50 / p95 / p99 ({int(slots[kind].get(float('inf'), 0))} {kind}s)",
                " / ".join(quantile_bound(slots[kind], q) for q in (0.5, 0.95, 0.99)),
            ]
            for kind in ("wait", "hold")
        ),
        ["generations per second", f"{steady['generations_per_second']:.1f}"],
        ["generation start latency p50 / p95 ms", f"{steady['latency_p50_ms']:.1f} / {steady['latency_p95_ms']:.1f}"],
        ["latency samples", steady["latency_samples"]],
        [
            "PSS per channel process MiB",
            f"{steady['pss_per_channel_mib']:.1f} ({steady['channel_processes']} processes; {ksm_state()}; "
            f"{steady['merged_per_channel_mib']:.1f} MiB per channel merged so far)",
        ],
        *(
            [
                [
                    f"PSS per channel process MiB {args.memory_settle:g} s later",
                    f"{settled['pss']:.1f} ({settled['merged']:.1f} MiB per channel merged)",
                ]
            ]
            if settled
            else []
        ),
        [
            "ksmd CPU % of a core over the run",
            f"{100 * (ksm.ksmd_cpu_seconds() - ksmd_began) / (time.time() - began):.1f}",
        ],
        ["channel states at the end", json.dumps(states)],
        ["generations committed / channels with a gap or repeat", f"{committed} / {gaps}"],
    ]
    print(tabulate(rows, tablefmt="plain"))
    if sampler.most >= max_connections - 3:
        failures.append("connections reached max_connections")
    if errors:
        failures.append(f"PostgreSQL refused {errors} connections")
    if slot_waits:
        failures.append(f"{slot_waits} channel waits for a connection slot timed out")
    if gaps:
        failures.append(f"{gaps} channels with a gap or a repeated generation number")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
