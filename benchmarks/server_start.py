"""Server start benchmark: what a de-server start costs with its fork server forked at boot, in one run.

Run:  .venv/bin/python benchmarks/server_start.py [--starts 6]

Starts de-server (one channel of the no-op modules, SQLite in a temp directory) ``--starts``
times each way, alternating, and stops it after the channel's first generation:

* baseline: ``DE_FORK_SERVER_AT_BOOT=0``, the fork server started as a new interpreter that
  imports the framework again, beside de-server's own imports (how every server started
  before ``engine/fork_at_boot.py``);
* forked: the fork server forked from de-server once it has imported the framework.

For each: CPU seconds the whole machine spent from the start to the server's exit (run it
on an otherwise idle machine: every process counts, this script's own polling included),
seconds until the server answers and until the first generation committed (medians), and
the ratios forked / baseline.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

from tabulate import tabulate

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.noop_modules import channel  # noqa: E402
from decisionengine.framework.engine.fork_at_boot import FORK_AT_BOOT_ENV  # noqa: E402
from tests.engine.server import DEServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WAYS = {"baseline": "0", "forked": "1"}


def busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def one_start(way: str) -> tuple[float, float, float]:
    """(CPU s, s to serving, s to the first generation) of one start and stop."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="de-start-"))
    server = DEServer(root, f"sqlite:///{root}/dataspace.db", {"noop": channel(3600)})
    server.env[FORK_AT_BOOT_ENV] = WAYS[way]
    cpu, began = busy_cpu_seconds(), time.monotonic()
    server.start()
    serving = time.monotonic() - began
    server.wait_for_generation("noop", 1, 120)
    first = time.monotonic() - began
    code = server.stop()
    if code != 0:
        raise SystemExit(f"de-server ({way}) exited with {code}: {server.output.read_text()[-2000:]}")
    return busy_cpu_seconds() - cpu, serving, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=6, help="starts of each way (alternating)")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {way: [] for way in WAYS}
    for number in range(args.starts):
        for way in WAYS:
            runs[way].append(one_start(way))
            cpu, serving, first = runs[way][-1]
            print(
                f"  start {number + 1}/{args.starts} {way}: {cpu:.2f} s CPU, serving {serving:.2f} s, "
                f"first generation {first:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    medians = {way: [statistics.median(run[i] for run in runs[way]) for i in range(3)] for way in WAYS}
    rows = [[way, *(f"{value:.2f}" for value in medians[way])] for way in WAYS]
    ratios = (forked / baseline for forked, baseline in zip(medians["forked"], medians["baseline"], strict=True))
    rows.append(["ratio forked / baseline", *(f"{ratio:.2f}" for ratio in ratios)])
    print(tabulate(rows, headers=["fork server", "CPU s per start", "s to serving", "s to 1st generation"]))


if __name__ == "__main__":
    main()
