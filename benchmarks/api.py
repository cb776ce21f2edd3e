"""API benchmark: our JSON API against CherryPy serving a static JSON of the same size.

Run:  .venv/bin/python benchmarks/api.py [--seconds 10] [--clients 8]

* requests per second, 8 concurrent clients (keep-alive), for ``GET /api/v1/channels`` and
  for a 10,000-row page of a DataFrame product, each against a bare CherryPy application
  returning the same bytes from memory (the floor).  Target: within 2x of the floor.
* latency from a generation's commit (the time the channel puts in the event) to its
  arrival on the SSE stream.  Target: under 100 ms at the median.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from tabulate import tabulate

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from decisionengine.framework.cli import sse_client as sse  # noqa: E402
from decisionengine.testing.postgres import free_port  # noqa: E402

ROWS = 10_000
BIG_SOURCE = f"""
import numpy as np, pandas as pd
from decisionengine.framework.modules import Source

@Source.produces(big=pd.DataFrame)
class BigSource(Source.Source):
    def acquire(self):
        rng = np.random.default_rng(7)
        return {{"big": pd.DataFrame({{f"c{{i}}": rng.normal(size={ROWS}).round(4) for i in range(10)}})}}
"""


def load(host: str, port: int, path: str, seconds: float, clients: int) -> float:
    """Requests per second of ``clients`` threads, each on one keep-alive connection."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        while time.monotonic() < stop:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                raise RuntimeError(f"{path}: {response.status}")
            counts[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


FLOOR_SERVER = """
import pathlib, sys, cherrypy
directory, port, threads = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bodies = {p.stem: p.read_bytes() for p in directory.glob("*.json")}

class Floor:
    @cherrypy.expose
    def default(self, *path, **_):
        cherrypy.response.headers["Content-Type"] = "application/json"
        return bodies["/".join(path)]

cherrypy.config.update({"environment": "production", "server.socket_host": "127.0.0.1",
                        "server.socket_port": port, "server.thread_pool": threads, "log.screen": False})
cherrypy.quickstart(Floor(), "/")
"""


class Floor:
    """CherryPy returning fixed bytes, in a process of its own like the server: the least
    that serving those bytes costs."""

    def __init__(self, bodies: dict[str, bytes], directory: pathlib.Path, threads: int) -> None:
        self.port = free_port()
        for name, body in bodies.items():
            (directory / f"{name}.json").write_bytes(body)
        self.process = subprocess.Popen(
            [sys.executable, "-c", FLOOR_SERVER, str(directory), str(self.port), str(threads)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                get(self.port, "/channels")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("the floor server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def start_server(root: pathlib.Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (root / "config.d").mkdir()
    (root / "bench_modules.py").write_text(BIG_SOURCE)
    (root / "config.d" / "big.jsonnet").write_text(
        json.dumps(
            {"sources": {"big": {"module": "bench_modules", "name": "BigSource", "schedule": 3600}}, "publishers": {}}
        )
    )
    noop = "benchmarks.noop_modules"
    channel = {
        "sources": {"s": {"module": noop, "name": "Source1", "schedule": 0.2}},
        "publishers": {},
    }
    (root / "config.d" / "ticking.jsonnet").write_text(json.dumps(channel))
    (root / "decision_engine.jsonnet").write_text(
        json.dumps(
            {
                "server_address": ["127.0.0.1", port],
                "logger": {"log_file": str(root / "logs" / "de.log"), "log_level": "WARNING"},
                "dataspace": {"datasource": {"config": {"url": f"sqlite:///{root / 'ds.sqlite'}"}}},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "decisionengine.framework.cli.de_server", "--config", str(root), "--no-reaper"],
        cwd=REPO,
        env={"PYTHONPATH": f"{REPO}:{root}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


def get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return body


def wait_for(port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            channels = json.loads(get(port, "/api/v1/channels"))["channels"]
            if channels and all((c["generation"] or 0) >= 1 for c in channels):
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.5)
    raise TimeoutError("the server's channels made no generation")


def sse_latency(port: int, events: int) -> list[float]:
    latencies = []
    for event in sse.stream(f"http://127.0.0.1:{port}/api/v1/events?channel=ticking", timeout=30):
        if event.name == "generation":
            latencies.append(time.time() - event.json()["time"])
            if len(latencies) >= events:
                break
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="de-bench-api-") as tmp:
        process, port = start_server(pathlib.Path(tmp))
        try:
            wait_for(port)
            page = f"/api/v1/channels/big/products/big?limit={ROWS}"
            bodies = {"channels": get(port, "/api/v1/channels"), "page": get(port, page)}
            assert len(json.loads(bodies["page"])["rows"]) == ROWS
            print("measuring the API ...", file=sys.stderr, flush=True)
            ours = {
                "channels": load("127.0.0.1", port, "/api/v1/channels", args.seconds, args.clients),
                "page": load("127.0.0.1", port, page, args.seconds, args.clients),
            }
            print("measuring SSE latency ...", file=sys.stderr, flush=True)
            latencies = sse_latency(port, args.events)
        finally:
            process.terminate()
            process.wait(60)
        floor_dir = pathlib.Path(tmp) / "floor"
        floor_dir.mkdir()
        floor = Floor(bodies, floor_dir, threads=30)
        try:
            print("measuring the floor ...", file=sys.stderr, flush=True)
            floors = {name: load("127.0.0.1", floor.port, f"/{name}", args.seconds, args.clients) for name in bodies}
        finally:
            floor.stop()

    rows = [
        [
            "GET /api/v1/channels" if name == "channels" else f"GET a {ROWS:,}-row product page",
            f"{len(bodies[name]):,}",
            f"{ours[name]:.0f}",
            f"{floors[name]:.0f}",
            f"{floors[name] / ours[name]:.2f}x",
        ]
        for name in bodies
    ]
    print(f"\n== {args.clients} concurrent clients, {args.seconds:g} s each")
    print(tabulate(rows, headers=["request", "bytes", "ours req/s", "floor req/s", "floor/ours (<=2x)"]))
    print(
        f"\n== commit to SSE event over {len(latencies)} generations: median "
        f"{statistics.median(latencies) * 1e3:.1f} ms, p95 "
        f"{sorted(latencies)[int(0.95 * len(latencies)) - 1] * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms (<100 ms)"
    )


if __name__ == "__main__":
    main()
