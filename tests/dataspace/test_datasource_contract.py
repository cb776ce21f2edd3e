"""The DataSource contract: every registered data source, on every database it supports.

A DataSpace only ever calls the methods of :class:`DataSource`; these tests call them the
same way, so a second backend is done when it is registered (entry point group
``decisionengine.datasources``), given its test databases in ``TEST_DATABASES`` below, and
passes this file.  A registered data source with no test databases fails
``test_every_registered_datasource_is_tested``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from decisionengine.framework.dataspace.datablock import Header, Metadata
from decisionengine.framework.dataspace.datasource import DataSource, Fence, LatestGeneration
from decisionengine.framework.dataspace.datasources import registered_datasources
from decisionengine.framework.dataspace.errors import DataSpaceConnectionError, DataSpaceExistsError, OwnershipLost
from decisionengine.testing.waiting import eventually

#: {registered name: [(database kind, fixture giving the data source's config)]}
TEST_DATABASES: dict[str, list[tuple[str, Callable[[pytest.FixtureRequest], dict[str, Any]]]]] = {
    "sqlalchemy": [
        ("sqlite", lambda request: {"url": request.getfixturevalue("sqlite_url")}),
        ("postgresql", lambda request: {"url": request.getfixturevalue("pg_url")}),
    ],
}

CASES = [
    pytest.param((name, kind), marks=[pytest.mark.postgresql] if kind == "postgresql" else [], id=f"{name}-{kind}")
    for name in sorted(registered_datasources())
    for kind, _ in TEST_DATABASES.get(name, [])
]


def test_every_registered_datasource_is_tested():
    registered = registered_datasources()
    assert "sqlalchemy" in registered
    untested = sorted(set(registered) - set(TEST_DATABASES))
    assert not untested, f"registered data sources without test databases: {untested}"
    for name, cls in registered.items():
        assert issubclass(cls, DataSource), name


@pytest.fixture(params=CASES)
def source(request: pytest.FixtureRequest) -> Iterator[DataSource]:
    name, kind = request.param
    config = dict(TEST_DATABASES[name])[kind](request)
    datasource = registered_datasources()[name](config)
    datasource.create_tables()
    yield datasource
    datasource.close()


@pytest.fixture
def reopen(source: DataSource) -> Callable[..., DataSource]:
    """Another data source on the same database (another process, as far as it knows)."""
    opened: list[DataSource] = []

    def open_again(**extra: Any) -> DataSource:
        other = type(source)({**dict(source.config), **extra})
        opened.append(other)
        return other

    yield open_again
    for other in opened:
        other.close()


def header(tm_id: str, create_time: float | None = None, lifetime: float = 3600) -> Header:
    now = create_time if create_time is not None else time.time()
    return Header(tm_id, create_time=now, expiration_time=now + lifetime, scheduled_create_time=now, creator="t")


def metadata(tm_id: str, generation: int, when: float | None = None) -> Metadata:
    return Metadata(tm_id, generation_id=generation, generation_time=when if when is not None else time.time())


def write(source: DataSource, seq: int, tm_id: str, generation: int, when: float | None = None, **values: Any) -> None:
    products = {key: (value, header(tm_id, when), metadata(tm_id, generation, when)) for key, value in values.items()}
    source.write_generation(seq, generation, products)


# -- the schema and the registry of task managers -------------------------------------------------


def test_create_tables_is_idempotent(source, reopen):
    source.create_tables()
    reopen().create_tables()
    assert "dataproduct" in source.get_schema()


def test_task_manager_registry(source):
    first = source.store_taskmanager("alpha", "A1", time.time() - 100)
    assert isinstance(first, int)
    assert source.store_taskmanager("alpha", "A1") == first  # the same registration again
    second = source.store_taskmanager("alpha", "A2")
    assert second != first
    with pytest.raises(DataSpaceExistsError):
        source.store_taskmanager("beta", "A1")
    assert source.get_taskmanager("alpha")["taskmanager_id"] == "A2"  # the newest registration
    assert source.get_taskmanager("alpha", "A1")["sequence_id"] == first
    with pytest.raises(KeyError):
        source.get_taskmanager("nobody")
    names = [(t["name"], t["taskmanager_id"]) for t in source.get_taskmanagers()]
    assert names == [("alpha", "A1"), ("alpha", "A2")]
    assert [t["taskmanager_id"] for t in source.get_taskmanagers("alpha", start_time=time.time() - 50)] == ["A2"]
    assert [t["taskmanager_id"] for t in source.get_taskmanagers("alpha", end_time=time.time() - 50)] == ["A1"]


# -- writing and reading one generation ------------------------------------------------------------


def test_write_and_read_a_generation(source):
    seq = source.store_taskmanager("ch", "T1")
    assert source.get_last_generation_id("ch") == 0
    frame = pd.DataFrame({"x": [1, 2, 3]})
    write(source, seq, "T1", 1, frame=frame, number=7)
    assert source.get_last_generation_id("ch") == 1
    assert source.get_last_generation_id("ch", "T1") == 1
    assert source.last_generation(seq) == 1
    assert source.last_generation("T1") == 1
    assert source.get_keys(seq, 1) == ["frame", "number"]
    pd.testing.assert_frame_equal(source.get_dataproduct(seq, 1, "frame"), frame)
    block = source.get_datablock(seq, 1)
    assert set(block) == {"frame", "number"} and block["number"] == 7
    assert source.get_header(seq, 1, "number")["creator"] == "t"
    assert source.get_metadata(seq, 1, "number")["generation_id"] == 1
    with pytest.raises(KeyError):
        source.get_dataproduct(seq, 1, "missing")
    with pytest.raises(KeyError):
        source.get_last_generation_id("nobody")


def test_a_generation_that_cannot_be_stored_leaves_nothing(source):
    seq = source.store_taskmanager("ch", "T1")
    write(source, seq, "T1", 1, kept=1)
    with pytest.raises(Exception, match=r"(?i)pickl|lock"):
        write(source, seq, "T1", 2, fine=2, broken=threading.Lock())
    assert source.get_last_generation_id("ch") == 1
    assert source.get_generations(seq)[-1]["generation_id"] == 1


def test_insert_and_update(source):
    seq = source.store_taskmanager("ch", "T1")
    source.insert(seq, 1, "k", "first", header("T1"), metadata("T1", 1))
    source.update(seq, 1, "k", "second", header("T1"), metadata("T1", 1))
    assert source.get_dataproduct(seq, 1, "k") == "second"
    assert [row["value"] for row in source.get_dataproducts(seq, "k")] == ["second"]


def test_duplicate_copies_rows_not_payloads(source):
    seq = source.store_taskmanager("ch", "T1")
    write(source, seq, "T1", 1, big=pd.DataFrame({"x": range(1000)}))
    before = source.storage_stats()
    source.duplicate_datablock(seq, 1, 2)
    after = source.storage_stats()
    pd.testing.assert_frame_equal(source.get_dataproduct(seq, 2, "big"), source.get_dataproduct(seq, 1, "big"))
    if before:  # backends that report storage must not store the payload twice
        assert after["payloads"] == before["payloads"]
        assert after["products"] == before["products"] + 1


def test_mark_expired(source):
    seq = source.store_taskmanager("ch", "T1")
    write(source, seq, "T1", 1, a=1, b=2)
    source.mark_expired(seq, 1, "a", 123.0)
    assert source.get_header(seq, 1, "a")["expiration_time"] == 123.0
    assert source.get_header(seq, 1, "b")["expiration_time"] != 123.0
    source.mark_expired(seq, 1, None, 456.0)
    assert {source.get_header(seq, 1, k)["expiration_time"] for k in "ab"} == {456.0}


# -- the latest generation, generations and histories ----------------------------------------------


def test_latest_generation(source):
    assert source.get_latest_generation("ch") is None  # unknown channel
    seq = source.store_taskmanager("ch", "T1")
    assert source.get_latest_generation("ch") is None  # no generation yet
    write(source, seq, "T1", 1, a=1, b="one")
    write(source, seq, "T1", 2, a=2, b="two", when=time.time() + 1)
    latest = source.get_latest_generation("ch")
    assert isinstance(latest, LatestGeneration)
    assert (latest.channel, latest.taskmanager_id, latest.sequence_id, latest.generation_id) == ("ch", "T1", seq, 2)
    assert latest.products == {"a": 2, "b": "two"}
    assert source.get_latest_generation("ch", ()).products == {}
    assert source.get_latest_generation("ch", ["b", "nothing"]).products == {"b": "two"}
    # A newer registration of the channel is what "latest" means, as for get_last_generation_id.
    newer = source.store_taskmanager("ch", "T2")
    write(source, newer, "T2", 1, a=10)
    latest = source.get_latest_generation("ch")
    assert (latest.taskmanager_id, latest.generation_id, latest.products) == ("T2", 1, {"a": 10})


def test_generations_and_histories(source):
    seq = source.store_taskmanager("ch", "T1")
    start = time.time() - 1000
    for generation in (1, 2, 3):
        write(source, seq, "T1", generation, when=start + 100 * generation, n=generation, other="x")
    generations = source.get_generations(seq)
    assert [g["generation_id"] for g in generations] == [1, 2, 3]
    assert [g["products"] for g in generations] == [2, 2, 2]
    assert [g["generation_id"] for g in source.get_generations(seq, since=start + 150)] == [2, 3]
    history = list(source.iter_products(seq, "n"))
    assert [(h["generation_id"], h["value"]) for h in history] == [(1, 1), (2, 2), (3, 3)]
    assert {"taskmanager_id", "sequence_id", "generation_time", "key", "header"} <= set(history[0])
    window = list(source.iter_products(seq, "n", since=start + 150, until=start + 250))
    assert [h["generation_id"] for h in window] == [2]
    assert len(list(source.iter_products(seq))) == 6


# -- deleting ---------------------------------------------------------------------------------------


def test_delete_latest_and_all(source):
    seq = source.store_taskmanager("ch", "T1")
    for generation in (1, 2, 3):
        write(source, seq, "T1", generation, n=generation)
    assert source.delete(seq) == 1
    assert source.get_last_generation_id("ch") == 2
    assert source.delete(seq, all_generations=True) == 2
    assert source.get_last_generation_id("ch") == 0
    assert source.get_taskmanager("ch")["sequence_id"] == seq  # the registration stays


def test_reap_dry_run_matches_the_real_pass(source):
    seq = source.store_taskmanager("ch", "T1")
    old = time.time() - 30 * 86400
    for generation in (1, 2, 3):
        write(source, seq, "T1", generation, when=old + generation, n=generation)
    write(source, seq, "T1", 4, n=4)
    cutoff = time.time() - 86400
    preview = source.reap(cutoff, 10, dry_run=True)
    assert source.get_last_generation_id("ch") == 4 and len(source.get_generations(seq)) == 4
    report = source.reap(cutoff, 10)
    assert (report.generations, report.products) == (preview.generations, preview.products) == (3, 3)
    assert [g["generation_id"] for g in source.get_generations(seq)] == [4]


# -- fencing: a stale owner cannot write ------------------------------------------------------------


def test_a_stale_fence_cannot_write(source, reopen):
    seq = source.store_taskmanager("ch", "T1")
    first = source.claim_channel("ch", "host-a:1")
    write(source, seq, "T1", 1, n=1)
    products = {"n": (2, header("T1"), metadata("T1", 2))}
    source.write_generation(seq, 2, products, fence=Fence("ch", first))
    second = reopen().claim_channel("ch", "host-b:2")
    if first == second == 0:
        return  # this data source cannot fence (allowed, and documented)
    assert second > first
    with pytest.raises(OwnershipLost, match="host-b:2"):
        source.write_generation(seq, 3, {"n": (3, header("T1"), metadata("T1", 3))}, fence=Fence("ch", first))
    assert source.get_last_generation_id("ch") == 2  # nothing of the refused write
    source.write_generation(seq, 3, {"n": (3, header("T1"), metadata("T1", 3))}, fence=Fence("ch", second))
    assert source.get_last_generation_id("ch") == 3
    with pytest.raises(OwnershipLost):
        source.write_generation(seq, 4, products, fence=Fence("other-channel", second))


# -- processes working together --------------------------------------------------------------------


def test_channel_lock_is_exclusive(source, reopen):
    first, second = source.channel_lock("owned"), reopen().channel_lock("owned")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert eventually(second.acquire, 10, what="the second lock after the first was released")
    second.release()


def test_watch_generations_hears_commits_or_says_it_cannot(source, reopen):
    heard: list[dict[str, Any]] = []
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def watch() -> None:
        outcome["supported"] = source.watch_generations(heard.append, stop)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    writer = reopen()
    seq = writer.store_taskmanager("ch", "T1")
    try:
        watcher.join(0.5)
        if watcher.is_alive():  # it listens: every commit must be heard, with what was announced
            for generation in (1, 2):
                products = {"n": (generation, header("T1"), metadata("T1", generation))}
                writer.write_generation(seq, generation, products, announce={"channel": "ch", "generation": generation})
            eventually(lambda: len(heard) >= 2, 10, what=lambda: f"two announcements, heard {heard}")
            assert [h["generation"] for h in heard] == [1, 2]
    finally:
        stop.set()
        watcher.join(10)
    assert not watcher.is_alive()
    assert outcome["supported"] in (True, False)


def test_read_only_never_creates(source, tmp_path):
    if source.get_schema() and "sqlite" in str(source.config.get("url", "")):
        with pytest.raises(DataSpaceConnectionError, match=r"typo\.sqlite"):
            type(source)({"url": f"sqlite:///{tmp_path / 'typo.sqlite'}", "read_only": True})
        assert not (tmp_path / "typo.sqlite").exists()
    reader = type(source)({**dict(source.config), "read_only": True})
    reader.create_tables()  # checks the schema, changes nothing
    seq = source.store_taskmanager("ch", "T1")
    write(source, seq, "T1", 1, n=1)
    assert reader.get_latest_generation("ch").products == {"n": 1}
    with pytest.raises(Exception, match=r"(?i)read.?only|readonly"):
        reader.store_taskmanager("other", "T9")
    reader.close()
