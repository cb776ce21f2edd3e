"""DataSpace benchmark: our storage path against bare-table floors, on SQLite and PostgreSQL.

Run:  .venv/bin/python benchmarks/dataspace.py [--quick] [--backend sqlite|postgresql|both]

Everything is measured in one run on this machine and printed as ratios:

* one generation of 10 DataFrame products (1k, 10k, 100k rows x 10 mixed float/int
  columns), ours against the floor (``BareFloor``: a bare table on connections held
  open, no pool checkout, no ping; the same codec, pickle + zstandard; plain
  ``pickle.loads``, so the restricted unpickler's cost is ours to carry, and its share
  is shown in the last column):

  - the whole-generation read (``DataSpace.latest_generation``: what the server, the
    JSON API and ``de-query-tool`` read) vs. one select of the 10 blobs.  Target 1.2x;
  - the per-product API path (``get_dataproduct`` for each product) vs. one select per
    product (target 1.5x), and, for scale, vs. the one select of the whole generation;
  - the transactional write (``DataBlock.transaction()`` with 10 puts) vs. one
    executemany in one transaction.  Target 1.2x.  Zlib level 9 (the reference's codec)
    writing the same generation on the bare table is shown for scale;
  - ``put`` outside a transaction (10 puts, a commit each) vs. ten one-row commits;

  each pair timed in alternation, the ratio the geometric mean of the two orders'
  median per-round ratios (other load on the machine hits both sides alike, and
  whichever runs second paying for the first cancels out), every write with content
  never stored before and, on SQLite, after an untimed WAL checkpoint (both sides share
  the database file, so its WAL: see ``BareFloor.checkpoint``).  ``--part floors`` runs this part alone;
* 100 ``duplicate()`` generations of a 10k-row block: database bytes added per
  generation, as a share of one generation's payload size;
* the Reaper deleting 1,000 expired generations while a writer process keeps writing:
  the writer's longest stall (vs. its longest write with no Reaper running);
* product reads through the restricted unpickler (the allow-list every payload is read
  through, with its structure checks) vs. plain ``pickle.loads`` on the same payloads: 10
  DataFrames of 1k, 10k, 100k rows x 7 mixed columns (float, int, str, bool, datetime with
  a time zone, category, nullable Int64), unpickling alone and as a read decodes them
  (zstandard + unpickle).  Target: at most 1.05x.  The two are timed in alternation and
  the ratio is taken as above, so that other load on the machine affects both sides
  alike.  ``--part unpickling`` runs this part alone (no database).
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
from collections.abc import Callable
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


def floor_table(name: str) -> sa.Table:
    """A bare table for one floor: (generation, key) -> compressed pickle."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class BareFloor:
    """The floor every DataSpace path is measured against: a bare table on connections of
    a plain engine held open for the whole run (no pool checkout, no ping), the same codec
    (pickle + zstandard) and plain ``pickle.loads`` (not the restricted unpickler our reads
    go through: its share is shown separately).  Reads run in autocommit (one statement,
    one round trip), writes in one transaction each."""

    def __init__(self, url: str, codec: str = "zstd") -> None:
        bare = sa.make_url(url)
        if bare.drivername == "postgresql":
            bare = bare.set(drivername="postgresql+psycopg2")  # the driver the DataSpace uses
        self.engine = sa.create_engine(bare)
        if self.engine.dialect.name == "sqlite":

            @sa.event.listens_for(self.engine, "connect")
            def _as_ours(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # what the DataSpace uses with WAL

        self.codec = codecs.get(codec)
        self.table = floor_table(f"bench_floor_{codec}")
        self.table.drop(self.engine, checkfirst=True)
        self.table.create(self.engine)
        self.reader = self.engine.connect()
        self.writer = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            self.reader.connection.dbapi_connection.autocommit = True
        self.generation = 0

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
        self.table.drop(self.engine)
        self.engine.dispose()

    def _rows(self, products: dict[str, Any]) -> list[dict[str, Any]]:
        self.generation += 1
        return [
            {"generation": self.generation, "key": k, "data": self.codec.encode(codecs.pickle_bytes(v))}
            for k, v in products.items()
        ]

    def write(self, products: dict[str, Any]) -> None:
        """One generation: pickle + compress, one executemany, one commit."""
        rows = self._rows(products)
        with self.writer.begin():
            self.writer.execute(self.table.insert(), rows)

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database and empty it, untimed before
        every timed write.  Both sides write to the one database file, so they share one
        WAL, and SQLite checkpoints it in the commit that takes it past 1,000 pages: left
        alone, a 10k-row generation (2.2 MB) makes every second commit pay for the one
        before it, which in alternating rounds is always the same side.  Emptied first,
        each write pays for its own data only (a 100k-row one still checkpoints in its own
        commit).  PostgreSQL: nothing."""
        if self.engine.dialect.name != "sqlite":
            return
        busy, _log, _copied = self.writer.connection.dbapi_connection.execute(
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).fetchone()
        if busy:
            raise RuntimeError("the WAL checkpoint was blocked: a reader kept an old snapshot open")

    def put_each(self, products: dict[str, Any]) -> None:
        """The fair floor of ``put`` outside a transaction: one commit per product."""
        self.generation += 1
        for k, v in products.items():
            row = {"generation": self.generation, "key": k, "data": self.codec.encode(codecs.pickle_bytes(v))}
            with self.writer.begin():
                self.writer.execute(self.table.insert(), [row])

    def read(self, generation: int) -> dict[str, Any]:
        """One select of the generation's blobs, decompressed and unpickled."""
        rows = self.reader.execute(
            sa.select(self.table.c.key, self.table.c.data).where(self.table.c.generation == generation)
        ).all()
        self.reader.rollback()
        return {k: pickle.loads(self.codec.decode(bytes(d))) for k, d in rows}

    def read_each(self, generation: int, keys: list[str]) -> dict[str, Any]:
        """One select per product (the fair floor of reading products one at a time)."""
        out = {}
        for key in keys:
            data = self.reader.execute(
                sa.select(self.table.c.data).where(self.table.c.generation == generation, self.table.c.key == key)
            ).scalar_one()
            self.reader.rollback()
            out[key] = pickle.loads(self.codec.decode(bytes(data)))
        return out


def paired_rounds(
    floor: Callable[[Any], Any],
    ours: Callable[[Any], Any],
    make: Callable[[], Any],
    rounds: int,
    settle: Callable[[], None] | None = None,
) -> tuple[float, float, float]:
    """:func:`paired`, each call given a fresh input from ``make()`` (made untimed), after
    ``settle()`` (untimed: see :meth:`BareFloor.checkpoint`)."""
    floor_times, our_times, ratios = [], [], []
    for round_ in range(rounds):
        order = (("floor", floor), ("ours", ours)) if round_ % 2 == 0 else (("ours", ours), ("floor", floor))
        pair = {}
        for name, fn in order:
            data = make()
            if settle is not None:
                settle()
            gc.collect()
            started = time.perf_counter()
            fn(data)
            pair[name] = time.perf_counter() - started
        floor_times.append(pair["floor"])
        our_times.append(pair["ours"])
        ratios.append(pair["ours"] / pair["floor"])
    return statistics.median(floor_times), statistics.median(our_times), balanced_ratio(ratios)


def balanced_ratio(ratios: list[float]) -> float:
    """The ratio ours/floor of rounds timed in alternating order (floor first in even
    rounds): the geometric mean of the two orders' medians.  Whichever side runs second
    can pay for the first (caches, the allocator, a WAL the first filled), so per-round
    ratios fall in two groups, one per order; a median over both would land on either
    group by chance, while this mean cancels the order out."""
    floor_first, ours_first = ratios[0::2], ratios[1::2]
    if not ours_first:
        return statistics.median(floor_first)
    return (statistics.median(floor_first) * statistics.median(ours_first)) ** 0.5


def _cell(floor: float, ours: float, ratio: float) -> str:
    return f"{ratio:.2f}x ({ours * 1e3:.1f}/{floor * 1e3:.1f})"


def bench_floors(space: DataSpace, url: str, sizes: list[tuple[int, int, int]]) -> list[list[Any]]:
    """Per size: the whole-generation read, the per-product read, the transactional write
    and ``put`` outside a transaction, each against its floor, timed in alternation."""
    floor = BareFloor(url)
    try:
        return [floor_row(space, floor, url, *size) for size in sizes]
    finally:
        floor.close()


def floor_row(
    space: DataSpace, floor: BareFloor, url: str, size: int, write_rounds: int, read_rounds: int
) -> list[Any]:
    block = DataBlock(space, f"floor_{size}")
    tm = block.taskmanager_id
    base = make_generation(size, seed=size)
    made = iter(range(1, 1_000_000))

    def fresh() -> dict[str, Any]:
        # distinct content every call: no path may profit from deduplication here
        n = next(made)
        return {k: v.assign(call=n) for k, v in base.items()}

    def write_ours(products: dict[str, Any]) -> None:
        block.generation_id += 1
        with block.transaction():
            for key, value in products.items():
                block.put(key, value, Header(tm), Metadata(tm))

    def put_ours(products: dict[str, Any]) -> None:
        block.generation_id += 1
        for key, value in products.items():
            block.put(key, value, Header(tm), Metadata(tm))

    write_ours(fresh())  # warm-up, both sides
    floor.write(fresh())
    write = paired_rounds(floor.write, write_ours, fresh, write_rounds, settle=floor.checkpoint)
    zlib_floor = BareFloor(url, "zlib")  # the reference's codec (zdumps), for scale
    try:
        products = fresh()  # once: zlib level 9 takes seconds at 100k rows
        t_zlib = timed(lambda: zlib_floor.write(products), 1)
    finally:
        zlib_floor.close()
    put = paired_rounds(floor.put_each, put_ours, fresh, write_rounds, settle=floor.checkpoint)

    # reads: the same content on both sides, as the newest generation
    latest = fresh()
    write_ours(latest)
    floor.write(latest)
    generation, keys = floor.generation, sorted(latest)
    got = space.latest_generation(block.name)
    assert got is not None and set(got.products) == set(keys) == set(floor.read(generation))
    seq, ours_generation = block.sequence_id, block.generation_id

    def nothing() -> None:
        return None

    whole = paired_rounds(
        lambda _: floor.read(generation), lambda _: space.latest_generation(block.name), nothing, read_rounds
    )

    def each_ours(_: Any) -> dict[str, Any]:
        return {key: space.get_dataproduct(seq, ours_generation, key) for key in keys}

    each = paired_rounds(lambda _: floor.read_each(generation, keys), each_ours, nothing, read_rounds)
    each_vs_one = paired_rounds(lambda _: floor.read(generation), each_ours, nothing, read_rounds)
    # what the restricted unpickler adds to a read (the same blobs, decoded only)
    blobs = [codecs.encode(v) for v in latest.values()]
    zstd = codecs.get("zstd")
    decode = paired(
        lambda: [pickle.loads(zstd.decode(b)) for b in blobs],
        lambda: [codecs.decode(b) for b in blobs],
        read_rounds,
    )
    return [
        f"{size:,}",
        _cell(*whole),
        _cell(*each),
        _cell(*each_vs_one),
        _cell(*write),
        _cell(*put),
        f"{t_zlib / write[1]:.0f}x",
        f"{decode[2]:.2f}x ({(decode[1] - decode[0]) * 1e3:+.2f} ms)",
    ]


FLOOR_HEADERS = [
    "rows/product",
    "generation read (<=1.2x)",
    "per-product reads (<=1.5x)",
    "per-product vs 1 select",
    "transaction write (<=1.2x)",
    "put, no transaction",
    "zlib-9 write/ours",
    "decode: restricted/plain",
]


def print_floors(backend: str, rows: list[list[Any]]) -> None:
    print(
        f"\n== {backend}: {PRODUCTS} DataFrame products x 10 columns, ours vs the floor "
        "(ratio: both orders balanced, see the docstring; median ms ours/floor)"
    )
    print(tabulate(rows, headers=FLOOR_HEADERS))


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
    """(median floor time, median ours time, ratio ours/floor: :func:`balanced_ratio` of
    the per-round ratios), timing the two in alternation (each first every other round)."""
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
    return statistics.median(floor_times), statistics.median(our_times), balanced_ratio(ratios)


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


def run_backend(url: str, quick: bool, part: str) -> dict[str, Any]:
    space = DataSpace(config_for(url))
    # (rows per product, write rounds, read rounds)
    sizes = (
        [(1_000, 10, 30), (10_000, 5, 10), (100_000, 3, 4)]
        if quick
        else [(1_000, 30, 100), (10_000, 12, 30), (100_000, 9, 8)]
    )
    results: dict[str, Any] = {"floors": bench_floors(space, url, sizes)}
    if part != "floors":
        results["duplicate"] = bench_duplicate(space, 100)
        results["reaper"] = bench_reaper(space, url, 1_000)
    space.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--part", choices=["all", "storage", "floors", "unpickling"], default="all")
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
            results["SQLite"] = run_backend(f"sqlite:///{tmp}/bench.sqlite", args.quick, args.part)
        if args.backend in ("postgresql", "both"):
            print("benchmarking PostgreSQL ...", file=sys.stderr, flush=True)
            with running_server() as server:
                results["PostgreSQL"] = run_backend(server.create_database("bench"), args.quick, args.part)

    for backend, result in results.items():
        print_floors(backend, result["floors"])
        if "duplicate" not in result:
            continue
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
