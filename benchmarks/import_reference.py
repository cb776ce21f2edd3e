"""Reference import benchmark: rows per second of ``de-dataspace import-reference``, as a
ratio to simply reading the same reference rows, on SQLite and PostgreSQL.

Run:  .venv/bin/python benchmarks/import_reference.py [--rows 20000] [--backend sqlite|postgresql|both]

The reference database is built in the reference's schema and encoding
(``tests/fixtures/reference_db.py``): 4 channels, each restarted once (two registrations),
10 products per generation, as a channel of the reference stores them: every product's
full value in every generation, whether it changed or not.  The products (size in rows,
how often the value changes):

    jobs 1000 rows (every generation), demand 200 (every generation), slots 300 (every
    2nd), prices 50 (every 5th), resources 500 (every 10th), facts 3 (every generation),
    publisher_status 2 (every generation), counts dict (every generation), config dict
    (never), limits dict (never)

Measured in one run on the same machine, each on a fresh copy:

* **raw read**: ``SELECT`` of every ``dataproduct`` row (value included), streamed;
* **batched read**: the importer's reading alone (batches of generations, with their
  header and metadata rows), no decoding or writing;
* **import**: the whole import into an empty DataSpace on the same backend.

The figure is import rows/s and its ratio to the raw read.  The PostgreSQL server is the
test suite's throw-away one (fsync off): a production server's commits cost more (one per
generation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decisionengine.framework.dataspace.datasources.sql_engine import create_engine
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.reference_import import ReferenceImporter, ReferenceSource
from decisionengine.testing.postgres import running_server
from tests.fixtures.reference_db import ReferenceDatabase, encode_value, reference_tables

DS_MODULE = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"
CHANNELS = 4
REGISTRATIONS = 2
#: product -> (rows, change every N generations); None rows: a dict
PRODUCTS: dict[str, tuple[int | None, int | None]] = {
    "jobs": (1000, 1),
    "demand": (200, 1),
    "slots": (300, 2),
    "prices": (50, 5),
    "resources": (500, 10),
    "facts": (3, 1),
    "publisher_status": (2, 1),
    "counts": (None, 1),
    "config": (None, None),
    "limits": (None, None),
}


def config_for(url: str) -> dict[str, Any]:
    return {"dataspace": {"datasource": {"module": DS_MODULE, "name": "SQLAlchemyDS", "config": {"url": url}}}}


def frame(rows: int, version: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed * 1_000_003 + version)
    return pd.DataFrame(
        {
            "site": rng.choice(["fnal", "cern", "desy", "ral", "in2p3"], rows),
            "entry": [f"entry_{i % 97}" for i in range(rows)],
            "idle": rng.integers(0, 10_000, rows),
            "running": rng.integers(0, 10_000, rows),
            "load": rng.random(rows),
            "price": rng.random(rows) * 3,
            "updated": pd.to_datetime(1_690_000_000 + version * 300, unit="s", utc=True),
        }
    )


def value_of(name: str, version: int, channel: int) -> Any:
    rows, _every = PRODUCTS[name]
    if rows is None:
        if name == "counts":
            return {"version": version, "per_site": {s: version * i for i, s in enumerate(["fnal", "cern", "desy"])}}
        return {"name": name, "channel": channel, "sites": ["fnal", "cern", "desy"], "limit": 1000.0}
    return frame(rows, version, hash((name, channel)) % 10_000)


def build_reference(url: str, rows: int) -> int:
    """A reference database of about ``rows`` product rows; returns the exact count.

    Each distinct value is encoded once (zlib level 9, as the reference did: the slow
    part of building) and stored again for every generation it lasts, as the reference did.
    """
    generations = max(1, rows // (CHANNELS * REGISTRATIONS * len(PRODUCTS)))
    written = 0
    current: dict[tuple[str, int], tuple[int, bytes]] = {}
    with ReferenceDatabase(url) as reference:
        for channel in range(CHANNELS):
            for restart in range(REGISTRATIONS):
                seq = reference.add_taskmanager(f"channel_{channel}")
                batch = []
                for generation in range(1, generations + 1):
                    absolute = restart * generations + generation
                    for name, (_rows, every) in PRODUCTS.items():
                        version = 0 if every is None else absolute // every
                        known = current.get((name, channel))
                        if known is None or known[0] != version:
                            known = current[(name, channel)] = (version, encode_value(value_of(name, version, channel)))
                        when = 1_690_000_000 + absolute * 300
                        batch.append(reference.product(seq, generation, name, blob=known[1], time=when))
                    if len(batch) >= 500:
                        reference.add(batch)
                        written += len(batch)
                        batch = []
                reference.add(batch)
                written += len(batch)
    return written


def copy_reference(source_url: str, target_url: str) -> None:
    """The same reference rows in another database (building them again would take as long)."""
    ReferenceDatabase(target_url).close()
    source = create_engine({"url": source_url, "read_only": True})
    target = create_engine({"url": target_url})
    tables = reference_tables()
    with source.connect() as reading, target.begin() as writing:
        for table in tables.sorted_tables:
            result = reading.execution_options(stream_results=True, yield_per=500).execute(sa.select(table))
            for chunk in result.mappings().partitions(500):
                writing.execute(sa.insert(table), [dict(row) for row in chunk])
    source.dispose()
    target.dispose()


def raw_read(url: str) -> tuple[int, int]:
    """Every dataproduct row, value included, streamed: rows and value bytes."""
    engine = create_engine({"url": url, "read_only": True})
    rows = size = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(
            sa.text("SELECT taskmanager_id, generation_id, key, value FROM dataproduct")
        )
        for row in result:
            rows += 1
            size += len(row[3])
    engine.dispose()
    return rows, size


def batched_read(url: str) -> int:
    with ReferenceSource(url) as source:
        return sum(source.read_all())


def timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def run_backend(name: str, reference_url: str, target_url: str, built: int) -> list[list[Any]]:
    (raw_rows, raw_bytes), raw_seconds = timed(lambda: raw_read(reference_url))
    batched_rows, batched_seconds = timed(lambda: batched_read(reference_url))
    space = DataSpace(config_for(target_url))
    try:
        report, import_seconds = timed(lambda: ReferenceImporter(ReferenceSource(reference_url), space).run())
        stats = space.storage_stats()
        again, rerun_seconds = timed(lambda: ReferenceImporter(ReferenceSource(reference_url), space).run())
    finally:
        space.close()
    assert raw_rows == batched_rows == built == report.rows_read
    assert report.complete and again.products_written == 0
    raw_rate = raw_rows / raw_seconds
    import_rate = report.rows_read / import_seconds
    print(
        f"[{name}] {raw_bytes / 1e6:,.0f} MB of reference values; imported into {stats['payloads']:,} payloads "
        f"({stats['payload_bytes'] / 1e6:,.1f} MB) for {stats['products']:,} products; "
        f"{report.values_decoded:,} values decoded (the rest repeated one)",
        flush=True,
    )
    return [
        [name, "raw read (SELECT every row)", raw_rows, f"{raw_seconds:.2f}", f"{raw_rate:,.0f}", "1", "1"],
        [
            name,
            "batched read (importer, no decode)",
            batched_rows,
            f"{batched_seconds:.2f}",
            f"{batched_rows / batched_seconds:,.0f}",
            f"{(batched_rows / batched_seconds) / raw_rate:.4f}",
            f"{raw_rate / (batched_rows / batched_seconds):,.1f}",
        ],
        [
            name,
            "import (decode + write)",
            report.rows_read,
            f"{import_seconds:.2f}",
            f"{import_rate:,.0f}",
            f"{import_rate / raw_rate:.4f}",
            f"{raw_rate / import_rate:,.1f}",
        ],
        [name, "re-run (nothing left to copy)", built, f"{rerun_seconds:.2f}", "", "", ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="reference rows to build (default 20000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory(prefix="de-import-bench-") as scratch:
        reference = f"sqlite:///{scratch}/reference.sqlite"
        print(f"building a reference database of about {args.rows:,} rows ...", flush=True)
        built, seconds = timed(lambda: build_reference(reference, args.rows))
        print(f"built {built:,} rows in {seconds:.0f} s", flush=True)
        if args.backend in ("sqlite", "both"):
            table += run_backend("sqlite", reference, f"sqlite:///{scratch}/dataspace.sqlite", built)
        if args.backend in ("postgresql", "both"):
            with running_server() as server:
                copy = server.create_database("reference")
                copy_reference(reference, copy)
                table += run_backend("postgresql", copy, server.create_database("dataspace"), built)
    print()
    print(
        tabulate(
            table, headers=["backend", "what", "rows", "seconds", "rows/s", "rate / raw read", "raw read is N x faster"]
        )
    )


if __name__ == "__main__":
    main()
