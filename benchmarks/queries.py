"""Client query benchmark: evaluation in a worker process against evaluation in-process.

Run:  .venv/bin/python benchmarks/queries.py [--rows 10000] [--repeat 200]

Workload: a ``--rows`` frame of six columns (numbers, strings, datetimes, missing values:
the ``JobsSource`` test product); three queries reading one to three columns.

Measured, interleaved so that drift hits both:

* **in-process**: ``compile_query`` + ``row_mask`` in this process (what the server did
  before queries moved to workers, minus the protection);
* **worker**: ``product_query.select`` through a warm :class:`QueryRunner` worker, i.e.
  the check in the calling thread, pickling the columns the query reads, the worker's
  check and evaluation, the byte reply, and the row selection;
* the pickle alone (dumps + loads of the columns sent) and the first query's cost
  (starting a worker from a fork server that has the server's modules preloaded).

Prints medians; the difference between the two is the price of stopping runaways.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decisionengine.framework.engine.DecisionEngine import channel_context
from decisionengine.framework.web.product_query import select
from decisionengine.framework.web.query_language import compile_query, row_mask
from decisionengine.framework.web.query_runner import QueryLimits, QueryRunner
from tests.fixtures.channel_modules import JobsSource

QUERIES = [
    "cores > 4",
    "cores > 4 and site == 'A'",
    "name.str.contains('99') or submitted.dt.hour == 3",
]


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)

    frame = JobsSource({"rows": args.rows}).acquire()["jobs"]
    runner = QueryRunner(QueryLimits(), context=channel_context())
    try:
        started = time.perf_counter()
        select(frame, None, "id >= 0", runner)
        first = time.perf_counter() - started
        rows = []
        for query in QUERIES:
            inline, worker, pickled = [], [], []
            compiled = compile_query(query, list(frame.columns))
            sent = frame.iloc[:, compiled.positions]
            size = len(pickle.dumps(sent))
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                frame[row_mask(compile_query(query, list(frame.columns)), frame)]
                t1 = time.perf_counter()
                select(frame, None, query, runner)
                t2 = time.perf_counter()
                pickle.loads(pickle.dumps(sent))
                t3 = time.perf_counter()
                inline.append(t1 - t0)
                worker.append(t2 - t1)
                pickled.append(t3 - t2)
            overhead = statistics.median(worker) - statistics.median(inline)
            overhead_ms = f"{overhead * 1000:.3f}"
            rows.append([query, len(compiled.slots), size, _ms(inline), _ms(worker), overhead_ms, _ms(pickled)])
    finally:
        runner.close()
    print(f"{args.rows} rows, {args.repeat} runs each; first query (starts a worker): {first * 1000:.1f} ms")
    headers = ["query", "columns", "pickle bytes", "in-process ms", "worker ms", "overhead ms", "pickle ms"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
