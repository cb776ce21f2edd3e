"""DataSpace benchmark: our storage path against bare-table floors, on SQLite and PostgreSQL.

Run:  .venv/bin/python benchmarks/dataspace.py [--quick] [--backend sqlite|postgresql|both]

Everything is measured in one run on this machine and printed as ratios:

* write one generation of 10 DataFrame products (1k, 10k, 100k rows x 10 mixed
  float/int columns) through ``DataBlock.transaction()`` vs. the floor: pickle +
  compress with the same codec + one executemany into a bare table.  The reference
  codec (pickle + zlib level 9, what older data is stored as) is a second baseline;
* read the latest full generation vs. the floor for reads (select the 10 blobs,
  decompress, unpickle);
* 100 ``duplicate()`` generations of a 10k-row block: database bytes added per
  generation, as a share of one generation's payload size;
* the Reaper deleting 1,000 expired generations while a writer process keeps writing:
  the writer's longest stall (vs. its longest write with no Reaper running);
* product reads through the restricted unpickler (the allow-list every payload is read
  through, with its structure checks) vs. plain ``pickle.loads`` on the same payloads: 10
  DataFrames of 1k, 10k, 100k rows x 7 mixed columns (float, int, str, bool, datetime with
  a time zone, category, nullable Int64), unpickling alone and as a read decodes them
  (zstandard + unpickle).  Target: at most 1.05x.  The two are timed in alternation and
  the ratio is the median of the per-round ratios, so that other load on the machine
  affects both sides alike.  ``--part unpickling`` runs this part alone (no database).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from decisionengine.framework.dataspace import codecs, unpickling
from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.testing.postgres import running_server

DS_MODULE = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"
PRODUCTS = 10
DAY = 86400.0


def config_for(url: str) -> dict[str, Any]:
    return {"dataspace": {"datasource": {"module": DS_MODULE, "name": "SQLAlchemyDS", "config": {"url": url}}}}


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """10 columns, half float, half int, different content for every seed."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(5):
        columns[f"f{i}"] = rng.normal(size=rows).round(3)
        columns[f"i{i}"] = rng.integers(0, 1000, size=rows)
    return pd.DataFrame(columns)


def make_generation(rows: int, seed: int) -> dict[str, pd.DataFrame]:
    return {f"product_{p}": make_frame(rows, seed * 100 + p) for p in range(PRODUCTS)}


floor_meta = sa.MetaData()
floor_table = sa.Table(
    "bench_floor",
    floor_meta,
    sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


class Floor:
    """The bare-table baseline: pickle, compress, one executemany; select, decompress, unpickle."""

    def __init__(self, engine: sa.Engine, codec: str) -> None:
        self.engine = engine
        self.codec = codecs.get(codec)
        floor_meta.drop_all(engine)
        floor_meta.create_all(engine)
        self.generation = 0

    def write(self, products: dict[str, Any]) -> None:
        self.generation += 1
        rows = [
            {"generation": self.generation, "key": k, "data": self.codec.encode(codecs.pickle_bytes(v))}
            for k, v in products.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(floor_table.insert(), rows)

    def read_latest(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(floor_table.c.key, floor_table.c.data).where(floor_table.c.generation == self.generation)
            ).all()
        return {k: pickle.loads(self.codec.decode(bytes(d))) for k, d in rows}


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_write_read(space: DataSpace, sizes: list[tuple[int, int]]) -> list[list[Any]]:
    engine = space.datasource.engine
    rows = []
    for size, repeat in sizes:
        block = DataBlock(space, f"bench_{size}")
        tm = block.taskmanager_id
        generations = iter(range(1, 10_000))
        # distinct data for each write: no path may profit from deduplication here
        inputs = [make_generation(size, seed) for seed in range(repeat + 1)]

        def ours(
            inputs_iter: Iterator[dict[str, Any]],
            block: DataBlock = block,
            tm: str = tm,
            generations: Iterator[int] = generations,
        ) -> None:
            products = next(inputs_iter)
            block.generation_id = next(generations)
            with block.transaction():
                for key, value in products.items():
                    block.put(key, value, Header(tm), Metadata(tm))

        ours_inputs = iter(inputs)
        ours(ours_inputs)  # warm-up
        t_ours = timed(lambda it=ours_inputs: ours(it), repeat)

        floors = {}
        for codec in ("zstd", "zlib"):
            floor = Floor(engine, codec)
            floor_inputs = iter(inputs)
            floor.write(next(floor_inputs))
            floors[codec] = (floor, timed(lambda f=floor, it=floor_inputs: f.write(next(it)), repeat))
        zstd_floor, t_floor = floors["zstd"]
        _, t_zlib = floors["zlib"]

        # reads: the latest full generation
        def read_ours(b: DataBlock = block) -> dict[str, Any]:
            last = space.get_last_generation_id(b.name, b.taskmanager_id)
            return space.get_datablock(b.sequence_id, last)

        # same content on both sides
        floor_latest = Floor(engine, "zstd")
        floor_latest.write(inputs[-1])
        assert set(read_ours()) == set(floor_latest.read_latest())
        t_read = timed(read_ours, max(repeat, 5))
        t_read_floor = timed(floor_latest.read_latest, max(repeat, 5))
        payload = sum(len(codecs.encode(v)) for v in inputs[0].values())
        rows.append(
            [
                f"{size:,} rows",
                f"{payload / 1e6:.2f}",
                f"{t_ours * 1e3:.1f}",
                f"{t_floor * 1e3:.1f}",
                f"{t_ours / t_floor:.2f}x",
                f"{t_zlib * 1e3:.1f}",
                f"{t_zlib / t_ours:.1f}x",
                f"{t_read * 1e3:.1f}",
                f"{t_read_floor * 1e3:.1f}",
                f"{t_read / t_read_floor:.2f}x",
            ]
        )
        del zstd_floor
    floor_meta.drop_all(engine)
    return rows


def bench_duplicate(space: DataSpace, generations: int) -> list[Any]:
    block = DataBlock(space, "bench_duplicate")
    tm = block.taskmanager_id
    products = make_generation(10_000, seed=4242)
    with block.transaction():
        for key, value in products.items():
            block.put(key, value, Header(tm), Metadata(tm))
    payload = sum(len(codecs.encode(v)) for v in products.values())
    before = space.storage_stats()["database_bytes"]
    for _ in range(generations):
        block.duplicate()
    after = space.storage_stats()["database_bytes"]
    per_generation = (after - before) / generations
    return [f"{generations}", f"{payload / 1e6:.2f} MB", f"{per_generation:,.0f} B", f"{per_generation / payload:.3%}"]


def _writer(url: str, stop: Any, latencies: Any, ready: Any) -> None:
    """A channel-like writer: small generations, one transaction each, as fast as it can."""
    space = DataSpace(config_for(url))
    block = DataBlock(space, "bench_live_writer")
    tm = block.taskmanager_id
    frame = make_frame(200, seed=1)
    generation = 0
    ready.set()
    while not stop.is_set():
        generation += 1
        block.generation_id = generation
        started = time.perf_counter()
        with block.transaction():
            for p in range(PRODUCTS):
                block.put(f"p{p}", frame.assign(g=generation, p=p), Header(tm), Metadata(tm))
        latencies.put(time.perf_counter() - started)
        time.sleep(0.005)
    space.close()


def _drain(queue: Any) -> list[float]:
    out = []
    with contextlib.suppress(Exception):
        while True:
            out.append(queue.get_nowait())
    return out


def bench_reaper(space: DataSpace, url: str, generations: int) -> list[Any]:
    old = DataBlock(space, "bench_expired")
    tm = old.taskmanager_id
    now = time.time()
    for generation in range(1, generations + 2):
        old.generation_id = generation
        when = now - 30 * DAY if generation <= generations else now
        with old.transaction():
            for p in range(PRODUCTS):
                old.put(f"p{p}", make_frame(100, generation * 100 + p), Header(tm), Metadata(tm, generation_time=when))

    ctx = multiprocessing.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    latencies = ctx.Queue()
    writer = ctx.Process(target=_writer, args=(url, stop, latencies, ready))
    writer.start()
    ready.wait(60)
    time.sleep(1.0)
    quiet = _drain(latencies)  # the writer alone
    started = time.perf_counter()
    report = space.reap(now - 7 * DAY, batch_size=100)
    reap_seconds = time.perf_counter() - started
    time.sleep(0.2)
    stop.set()
    writer.join(30)
    during = _drain(latencies)
    assert report.generations == generations, report
    return [
        f"{report.generations:,}",
        f"{reap_seconds:.2f} s",
        f"{report.batches}",
        f"{len(during)}",
        f"{max(quiet) * 1e3:.1f} ms",
        f"{max(during) * 1e3:.1f} ms",
        f"{statistics.median(during) * 1e3:.1f} ms",
    ]


def make_mixed_frame(rows: int, seed: int) -> pd.DataFrame:
    """7 columns of the dtypes channels store: float, int, str, bool, datetime with a time
    zone, category, nullable Int64."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "load": rng.normal(size=rows).round(3),
            "cores": rng.integers(0, 1000, size=rows),
            "site": rng.choice(["alpha", "beta", "gamma", "delta"], size=rows),
            "idle": rng.integers(0, 2, size=rows).astype(bool),
            "seen": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400, size=rows), unit="s"),
            "kind": pd.Categorical(rng.choice(["cpu", "gpu", "mem"], size=rows)),
            "slots": pd.array(rng.integers(0, 100, size=rows), dtype="Int64"),
        }
    )


def paired(floor: Callable[[], Any], ours: Callable[[], Any], rounds: int) -> tuple[float, float, float]:
    """(median floor time, median ours time, median of the per-round ratios ours/floor),
    timing the two in alternation (each first every other round)."""
    floor_times, our_times, ratios = [], [], []
    for round_ in range(rounds):
        pair = {}
        for name, fn in (("floor", floor), ("ours", ours)) if round_ % 2 == 0 else (("ours", ours), ("floor", floor)):
            gc.collect()
            started = time.perf_counter()
            fn()
            pair[name] = time.perf_counter() - started
        floor_times.append(pair["floor"])
        our_times.append(pair["ours"])
        ratios.append(pair["ours"] / pair["floor"])
    return statistics.median(floor_times), statistics.median(our_times), statistics.median(ratios)


def bench_unpickling(sizes: list[tuple[int, int]]) -> list[list[Any]]:
    """Reads of the same payloads through the restricted unpickler and plain pickle.loads."""
    zstd = codecs.get("zstd")
    rows = []
    for size, rounds in sizes:
        raws = [codecs.pickle_bytes(make_mixed_frame(size, seed)) for seed in range(PRODUCTS)]
        blobs = [zstd.encode(raw) for raw in raws]
        # same result both ways, and everything imported and cached before timing
        for raw, blob in zip(raws, blobs, strict=True):
            pd.testing.assert_frame_equal(codecs.decode(blob), pickle.loads(raw))

        def plain_unpickle(raws: list[bytes] = raws) -> None:
            for raw in raws:
                pickle.loads(raw)

        def our_unpickle(raws: list[bytes] = raws) -> None:
            for raw in raws:
                unpickling.loads(raw)

        def plain_read(blobs: list[bytes] = blobs) -> None:
            for blob in blobs:
                pickle.loads(zstd.decode(blob))

        def our_read(blobs: list[bytes] = blobs) -> None:
            for blob in blobs:
                codecs.decode(blob)

        t_plain, t_ours, unpickle_ratio = paired(plain_unpickle, our_unpickle, rounds)
        t_plain_read, t_our_read, read_ratio = paired(plain_read, our_read, rounds)
        rows.append(
            [
                f"{size:,} rows",
                f"{sum(map(len, raws)) / 1e6:.2f}",
                f"{t_plain * 1e3:.2f}",
                f"{t_ours * 1e3:.2f}",
                f"{unpickle_ratio:.3f}x",
                f"{t_plain_read * 1e3:.2f}",
                f"{t_our_read * 1e3:.2f}",
                f"{read_ratio:.3f}x",
            ]
        )
    return rows


def print_unpickling(rows: list[list[Any]]) -> None:
    print(f"\n== payload reads of {PRODUCTS} mixed DataFrames: restricted unpickler vs pickle.loads (median ms)")
    print(
        tabulate(
            rows,
            headers=[
                "size",
                "pickled MB",
                "pickle.loads",
                "restricted",
                "ratio (<=1.05x)",
                "read: zstd + pickle.loads",
                "zstd + restricted",
                "ratio (<=1.05x)",
            ],
        )
    )


def run_backend(name: str, url: str, quick: bool) -> dict[str, Any]:
    space = DataSpace(config_for(url))
    sizes = [(1_000, 10), (10_000, 5), (100_000, 2)] if quick else [(1_000, 30), (10_000, 10), (100_000, 4)]
    results = {
        "write_read": bench_write_read(space, sizes),
        "duplicate": bench_duplicate(space, 100),
        "reaper": bench_reaper(space, url, 1_000),
    }
    space.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--part", choices=["all", "storage", "unpickling"], default="all")
    args = parser.parse_args()

    if args.part in ("all", "unpickling"):
        print("benchmarking the restricted unpickler ...", file=sys.stderr, flush=True)
        sizes = (
            [(1_000, 100), (10_000, 40), (100_000, 10)] if args.quick else [(1_000, 400), (10_000, 150), (100_000, 40)]
        )
        print_unpickling(bench_unpickling(sizes))
    if args.part == "unpickling":
        return
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="de-bench-") as tmp:
        if args.backend in ("sqlite", "both"):
            print("benchmarking SQLite ...", file=sys.stderr, flush=True)
            results["SQLite"] = run_backend("sqlite", f"sqlite:///{tmp}/bench.sqlite", args.quick)
        if args.backend in ("postgresql", "both"):
            print("benchmarking PostgreSQL ...", file=sys.stderr, flush=True)
            with running_server() as server:
                results["PostgreSQL"] = run_backend("postgresql", server.create_database("bench"), args.quick)

    for backend, result in results.items():
        print(f"\n== {backend}: one generation of {PRODUCTS} DataFrames x 10 columns (median ms)")
        print(
            tabulate(
                result["write_read"],
                headers=[
                    "size",
                    "payload MB (zstd)",
                    "write ours",
                    "write floor",
                    "ours/floor (<=1.5x)",
                    "write zlib-9 ref",
                    "ref/ours",
                    "read ours",
                    "read floor",
                    "ours/floor (<=1.5x)",
                ],
            )
        )
        print(f"\n== {backend}: duplicate() of a 10k-row block")
        print(tabulate([result["duplicate"]], headers=["generations", "payload", "added/generation", "share (<2%)"]))
        print(f"\n== {backend}: Reaper deleting expired generations while a writer writes")
        print(
            tabulate(
                [result["reaper"]],
                headers=[
                    "generations",
                    "reap time",
                    "batches",
                    "writes during",
                    "longest write, no reaper",
                    "longest write (<250 ms)",
                    "median write",
                ],
            )
        )


if __name__ == "__main__":
    main()
