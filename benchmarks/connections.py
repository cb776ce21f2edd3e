"""Connection benchmark: what a new PostgreSQL connection per generation costs, in one run.

Run:  .venv/bin/python benchmarks/connections.py [--channels 20] [--schedule 2] [--measure 20]

One throw-away PostgreSQL and one de-server (a cluster member, as in ``benchmarks/scale.py``)
with C channels of the no-op modules (benchmarks/noop_modules.py), run twice:

* baseline: ``dataspace.channel_connections`` 8 slots for the C busy channels: a channel
  finds no slot to spare after its generation and gives its connection back, so nearly
  every generation connects anew (what every server did before connections were kept);
* kept: as many slots as channels plus a few: connections stay open between generations.

For each, over ``--measure`` seconds of steady running: generations per second, new
PostgreSQL sessions per generation (``pg_stat_database.sessions``), and CPU milliseconds
per generation of PostgreSQL, the de-server and its channel processes (from /proc), with
the ratio kept / baseline.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

from tabulate import tabulate

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from benchmarks.scale import Server, log, plain_engine  # noqa: E402
from decisionengine.testing.postgres import running_server  # noqa: E402
from decisionengine.testing.processes import descendants_of  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of PostgreSQL (its exited backends included), the server, and the
    server's other descendants (fork server, channel processes)."""
    used: dict[int, tuple[str, float, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        used[pid] = (name, own, reaped)

    family = set(descendants_of(server_pid))
    totals = {"postgres": 0.0, "server": 0.0, "channels": 0.0}
    for pid, (name, own, reaped) in used.items():
        if name == "postgres":
            totals["postgres"] += own + reaped  # the postmaster reaps its backends
        elif pid == server_pid:
            totals["server"] += own
        elif pid in family:
            totals["channels"] += own + reaped
    return totals


def sessions(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        return int(conn.exec_driver_sql(query).scalar_one())


def generations(server: Server) -> int:
    return sum(channel.get("generation") or 0 for channel in server.status()["channels"])


def run_once(root: pathlib.Path, name: str, url: str, args: argparse.Namespace, slots: int) -> dict[str, Any]:
    server = Server(
        root,
        name,
        url,
        args.channels,
        args.schedule,
        settings={"dataspace": {"channel_connections": slots}, "cluster": {"heartbeat_interval": 1.0}},
    )
    server.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                channels = server.status()["channels"]
            except OSError:
                channels = []
            if len(channels) == args.channels and all((c.get("generation") or 0) >= 2 for c in channels):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{name}: not every channel ran two generations within 180 s")
        time.sleep(3)  # past the boot
        assert server.process is not None
        engine = plain_engine(url)
        before = (generations(server), sessions(engine), cpu_seconds(server.process.pid), time.monotonic())
        time.sleep(args.measure)
        after = (generations(server), sessions(engine), cpu_seconds(server.process.pid), time.monotonic())
        engine.dispose()
    finally:
        server.stop()
    made = after[0] - before[0]
    if made <= 0:
        raise RuntimeError(f"{name}: no generation in {args.measure:g} s")
    cpu = {kind: 1000 * (after[2][kind] - before[2][kind]) / made for kind in after[2]}
    return {
        "generations_per_second": made / (after[3] - before[3]),
        "sessions_per_generation": (after[1] - before[1]) / made,
        "cpu_ms": cpu,
        "cpu_ms_total": sum(cpu.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--schedule", type=float, default=2.0, help="seconds between acquisitions of each source")
    parser.add_argument("--measure", type=float, default=20.0, help="seconds of steady running measured")
    args = parser.parse_args()
    runs = {"baseline (8 slots)": 8, f"kept ({args.channels + 4} slots)": args.channels + 4}
    results: dict[str, dict[str, Any]] = {}
    with running_server(max_connections=100) as pg, tempfile.TemporaryDirectory(prefix="de-conn-") as tmp:
        for number, (label, slots) in enumerate(runs.items()):
            url = pg.create_database(f"connections_{number}")
            log(f"{label}: {args.channels} channels, sources every {args.schedule:g} s ...")
            results[label] = run_once(pathlib.Path(tmp), f"run-{number}", url, args, slots)
    baseline, kept = results.values()
    rows = []
    for label, result in results.items():
        cpu = result["cpu_ms"]
        rows.append(
            [
                label,
                f"{result['generations_per_second']:.1f}",
                f"{result['sessions_per_generation']:.2f}",
                f"{cpu['postgres']:.1f}",
                f"{cpu['server']:.1f}",
                f"{cpu['channels']:.1f}",
                f"{result['cpu_ms_total']:.1f}",
            ]
        )
    rows.append(
        [
            "ratio kept / baseline",
            "",
            "",
            f"{kept['cpu_ms']['postgres'] / baseline['cpu_ms']['postgres']:.2f}",
            f"{kept['cpu_ms']['server'] / baseline['cpu_ms']['server']:.2f}",
            f"{kept['cpu_ms']['channels'] / baseline['cpu_ms']['channels']:.2f}",
            f"{kept['cpu_ms_total'] / baseline['cpu_ms_total']:.2f}",
        ]
    )
    print(f"\n{args.channels} no-op channels on one de-server, sources every {args.schedule:g} s, one PostgreSQL")
    print(
        tabulate(
            rows,
            headers=[
                "run",
                "generations/s",
                "new connections / generation",
                "PostgreSQL CPU ms / gen",
                "server",
                "channels",
                "total",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
