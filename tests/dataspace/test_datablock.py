"""DataBlock and DataSpace product storage, on a SQLite file and on PostgreSQL."""

import datetime
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace, DataSpaceExistsError
from decisionengine.framework.dataspace.errors import CorruptPayloadError, DataSpaceError
from tests.conftest import global_config

VALUES = {
    "frame": pd.DataFrame(
        {"i": np.arange(1000), "f": np.linspace(0.0, 1.0, 1000), "s": [f"r{i}" for i in range(1000)]}
    ),
    "mapping": {"jobs": 12, "sites": ["a", "b"], "nested": {"x": 1.5}},
    "array": np.arange(60, dtype=np.float32).reshape(3, 4, 5),
    "nothing": None,
}


def assert_same(expected, actual):
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected)
        assert actual.dtype == expected.dtype
    else:
        assert actual == expected


@pytest.fixture
def block(dataspace):
    return DataBlock(dataspace, "channel_a")


@pytest.mark.parametrize("key", list(VALUES))
def test_round_trip_with_header_and_metadata(dataspace, block, key):
    value = VALUES[key]
    header = Header(
        block.taskmanager_id,
        create_time=1000.0,
        expiration_time=5000.0,
        scheduled_create_time=990.0,
        creator="TheSource",
        schema_id=7,
    )
    metadata = Metadata(
        block.taskmanager_id,
        state="END_CYCLE",
        generation_id=block.generation_id,
        generation_time=1001.5,
        missed_update_count=2,
    )
    block.put(key, value, header, metadata)

    assert_same(value, block[key])
    assert_same(value, block.get(key))
    assert key in block and block.keys() == [key]
    assert dict(block.get_header(key)) == dict(header)
    assert dict(block.get_metadata(key)) == dict(metadata)
    # a fresh block on the same task manager reads the same thing from the database
    again = DataBlock(dataspace, "channel_a", block.taskmanager_id)
    assert again.generation_id == block.generation_id
    assert_same(value, again[key])
    assert dict(again.get_header(key)) == dict(header)


def test_default_metadata_names_the_generation(block):
    block.put("k", 1, Header(block.taskmanager_id))
    metadata = block.get_metadata("k")
    assert metadata["generation_id"] == block.generation_id
    assert metadata["taskmanager_id"] == block.taskmanager_id
    assert metadata["state"] == "NEW"


def test_put_replaces_a_product(block):
    block.put("k", {"v": 1}, Header(block.taskmanager_id))
    block.put("k", {"v": 2}, Header(block.taskmanager_id, creator="second"))
    assert block["k"] == {"v": 2}
    assert block.get_header("k")["creator"] == "second"
    assert block.keys() == ["k"]


def test_unknown_keys(dataspace, block):
    block.put("known", 1, Header(block.taskmanager_id))
    with pytest.raises(KeyError, match="'unknown'"):
        block["unknown"]
    assert block.get("unknown") is None
    assert block.get("unknown", "fallback") == "fallback"
    assert "unknown" not in block
    with pytest.raises(KeyError, match="'unknown'"):
        block.get_header("unknown")
    with pytest.raises(KeyError, match="'unknown'"):
        block.get_metadata("unknown")
    with pytest.raises(KeyError, match="generation 99"):
        dataspace.get_dataproduct(block.sequence_id, 99, "known")
    with pytest.raises(KeyError, match="no task manager"):
        dataspace.get_dataproduct("NO-SUCH-ID", 1, "known")


def test_header_and_metadata_types_are_checked(block):
    with pytest.raises(TypeError, match="header of product 'k'"):
        block.put("k", 1, {"creator": "x"})
    with pytest.raises(TypeError, match="metadata of product 'k'"):
        block.put("k", 1, Header(block.taskmanager_id), {"state": "NEW"})


def test_duplicate_moves_the_block_to_the_next_generation(dataspace, block):
    tm = block.taskmanager_id
    block.put("a", VALUES["frame"], Header(tm))
    block.put("b", {"x": 1}, Header(tm))
    n = block.generation_id

    copy = block.duplicate()

    assert copy.generation_id == n
    assert block.generation_id == n + 1
    assert block.keys() == ["a", "b"] == copy.keys()
    assert_same(VALUES["frame"], block["a"])
    assert block.get_metadata("a")["generation_id"] == n + 1
    assert copy.get_metadata("a")["generation_id"] == n
    # the new generation is independent of the old one
    block.put("b", {"x": 2}, Header(tm))
    assert block["b"] == {"x": 2}
    assert copy["b"] == {"x": 1}
    assert dataspace.get_last_generation_id("channel_a", tm) == n + 1


def test_duplicate_copies_no_payload_bytes(dataspace, block):
    block.put("big", VALUES["frame"], Header(block.taskmanager_id))
    before = dataspace.storage_stats()
    for _ in range(5):
        block.duplicate()
    after = dataspace.storage_stats()
    assert after["payloads"] == before["payloads"] == 1
    assert after["payload_bytes"] == before["payload_bytes"]
    assert after["products"] == 6
    assert after["generations"] == 6


def test_unchanged_products_share_one_payload(dataspace):
    tm_a = DataBlock(dataspace, "a")
    tm_b = DataBlock(dataspace, "b")
    frame = VALUES["frame"]
    for block in (tm_a, tm_b):
        block.put("jobs", frame.copy(), Header(block.taskmanager_id))
        block.put("other", frame.copy(), Header(block.taskmanager_id))
    assert dataspace.storage_stats()["payloads"] == 1


def test_duplicate_refuses_to_overwrite_or_invent_generations(dataspace, block):
    block.put("a", 1, Header(block.taskmanager_id))
    dataspace.duplicate_datablock(block.sequence_id, 1, 2)
    with pytest.raises(DataSpaceExistsError, match="generation 2"):
        dataspace.duplicate_datablock(block.sequence_id, 1, 2)
    with pytest.raises(KeyError, match="no generation 7"):
        dataspace.duplicate_datablock(block.sequence_id, 7, 8)


def test_get_last_generation_id(dataspace):
    with pytest.raises(KeyError, match="no task manager named 'nobody'"):
        dataspace.get_last_generation_id("nobody")
    block = DataBlock(dataspace, "chan")
    assert dataspace.get_last_generation_id("chan") == 0  # registered, nothing written yet
    assert block.generation_id == 1
    block.put("a", 1, Header(block.taskmanager_id))
    assert dataspace.get_last_generation_id("chan") == 1
    block.duplicate()
    block.duplicate()
    assert dataspace.get_last_generation_id("chan") == 3
    assert dataspace.get_last_generation_id("chan", block.taskmanager_id) == 3
    with pytest.raises(KeyError):
        dataspace.get_last_generation_id("chan", "OTHER-ID")


def test_taskmanager_registry_newest_wins(dataspace):
    first = dataspace.store_taskmanager("chan", "ID-1", datestamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    second = dataspace.store_taskmanager("chan", "ID-2")
    other = dataspace.store_taskmanager("other", "ID-3")
    assert first < second < other

    newest = dataspace.get_taskmanager("chan")
    assert newest["taskmanager_id"] == "ID-2"
    assert newest["sequence_id"] == second
    assert newest["name"] == "chan"
    assert isinstance(newest["datestamp"], datetime.datetime) and newest["datestamp"].tzinfo is not None
    older = dataspace.get_taskmanager("chan", "ID-1")
    assert older["sequence_id"] == first
    assert older["datestamp"] == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    assert [t["taskmanager_id"] for t in dataspace.get_taskmanagers()] == ["ID-1", "ID-2", "ID-3"]
    assert [t["taskmanager_id"] for t in dataspace.get_taskmanagers("chan")] == ["ID-1", "ID-2"]
    recent = dataspace.get_taskmanagers(start_time=datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC))
    assert [t["taskmanager_id"] for t in recent] == ["ID-2", "ID-3"]
    assert [t["taskmanager_id"] for t in dataspace.get_taskmanagers(end_time=time.time() - 3600)] == ["ID-1"]

    # registering again is idempotent; the same id under another name is refused
    assert dataspace.store_taskmanager("chan", "ID-1") == first
    with pytest.raises(DataSpaceExistsError, match="ID-1"):
        dataspace.store_taskmanager("renamed", "ID-1")
    with pytest.raises(KeyError, match="'nobody'"):
        dataspace.get_taskmanager("nobody")


def test_datablock_registry_helpers(dataspace):
    block = DataBlock(dataspace, "chan", taskmanager_id="FIXED-ID")
    assert block.get_taskmanager("chan")["taskmanager_id"] == "FIXED-ID"
    seq = block.store_taskmanager("chan2", "SECOND")
    assert block.get_taskmanager("chan2", "SECOND")["sequence_id"] == seq
    # a block opened on an existing task manager reuses its registration
    assert DataBlock(dataspace, "chan", taskmanager_id="FIXED-ID").sequence_id == block.sequence_id


def test_mark_expired(dataspace, block):
    tm = block.taskmanager_id
    block.put("a", 1, Header(tm))
    block.put("b", 2, Header(tm, expiration_time=time.time() + 3600))
    assert not block.is_expired()
    assert not block.is_expired("a")

    block.mark_expired(time.time() + 60)
    assert not block.is_expired()
    block.mark_expired(time.time() - 1)
    assert block.is_expired("a") and block.is_expired("b") and block.is_expired()

    later = block.duplicate()  # expiry travels with the product rows
    assert later.is_expired("a")
    dataspace.mark_expired(block.sequence_id, block.generation_id, "a", time.time() + 600)
    assert not block.is_expired("a")
    assert block.is_expired()  # b still is
    with pytest.raises(KeyError):
        dataspace.mark_expired(block.sequence_id, 99, None, 0)


def test_mark_demented_expires_products_of_the_latest_generation(dataspace, block):
    block.put("a", 1, Header(block.taskmanager_id))
    block.put("b", 1, Header(block.taskmanager_id))
    dataspace.mark_demented(block.sequence_id, ["a"])
    assert block.is_expired("a")
    assert not block.is_expired("b")


def test_delete_latest_and_all_generations(dataspace, block):
    block.put("a", VALUES["frame"], Header(block.taskmanager_id))
    block.duplicate()
    block.put("b", {"only": "in gen 2"}, Header(block.taskmanager_id))
    block.duplicate()
    assert dataspace.get_last_generation_id("channel_a") == 3

    assert dataspace.delete(block.sequence_id) == 1
    assert dataspace.get_last_generation_id("channel_a") == 2
    assert dataspace.get_datablock(block.sequence_id, 2)["b"] == {"only": "in gen 2"}
    assert dataspace.get_keys(block.sequence_id, 2) == ["a", "b"]

    assert dataspace.delete(block.sequence_id, all_generations=True) == 2
    assert dataspace.get_last_generation_id("channel_a") == 0
    stats = dataspace.storage_stats()
    assert stats["products"] == 0 and stats["payloads"] == 0 and stats["generations"] == 0
    assert dataspace.get_taskmanager("channel_a")["sequence_id"] == block.sequence_id  # still registered


def test_get_datablock_and_dataproducts(dataspace, block):
    tm = block.taskmanager_id
    block.put("a", {"gen": 1}, Header(tm))
    block.put("b", [1, 2], Header(tm))
    block.duplicate()
    block.put("a", {"gen": 2}, Header(tm))

    assert dataspace.get_datablock(block.sequence_id, 1) == {"a": {"gen": 1}, "b": [1, 2]}
    assert dataspace.get_datablock(tm, 2) == {"a": {"gen": 2}, "b": [1, 2]}
    history = block.get_dataproducts("a")
    assert [(p["generation_id"], p["value"]) for p in history] == [(1, {"gen": 1}), (2, {"gen": 2})]
    # as the reference: taskmanager_id is the sequence id; the UUID is under taskmanager_uuid
    assert all(p["taskmanager_id"] == block.sequence_id and p["key"] == "a" for p in history)
    assert all(p["taskmanager_uuid"] == tm for p in history)
    assert len(block.get_dataproducts()) == 4


def test_iter_products_since_a_time(dataspace, block):
    tm = block.taskmanager_id
    for generation, when in enumerate([1000.0, 2000.0, 3000.0], start=1):
        block.generation_id = generation
        block.put("n", generation, Header(tm), Metadata(tm, generation_time=when))
    values = [(p["generation_id"], p["value"]) for p in dataspace.iter_products(tm, "n", since=2000.0)]
    assert values == [(2, 2), (3, 3)]
    assert [g["generation_time"] for g in dataspace.get_generations(tm)] == [1000.0, 2000.0, 3000.0]


def test_transaction_commits_all_products_at_once(dataspace, block):
    tm = block.taskmanager_id
    with block.transaction():
        block.put("a", 1, Header(tm))
        block.put("b", 2, Header(tm))
        # visible to the block itself, not yet to the database
        assert block["a"] == 1 and block.keys() == ["a", "b"]
        assert dataspace.get_keys(block.sequence_id, block.generation_id) == []
    assert dataspace.get_keys(block.sequence_id, block.generation_id) == ["a", "b"]


def test_failed_transaction_writes_nothing(dataspace, block):
    tm = block.taskmanager_id
    block.put("a", "generation 1", Header(tm))
    block.duplicate()
    with pytest.raises(RuntimeError, match="module failed"), block.transaction():
        block.put("a", "generation 2", Header(tm))
        raise RuntimeError("module failed")
    assert block["a"] == "generation 1"  # the duplicate's copy, untouched


def test_unpicklable_product_fails_the_whole_generation_write(dataspace, block):
    tm = block.taskmanager_id
    block.put("a", "kept", Header(tm))
    next_generation = DataBlock(dataspace, "channel_a", tm, generation_id=2)
    with pytest.raises(Exception, match="'bad' cannot be stored"), next_generation.transaction():
        next_generation.put("good", 1, Header(tm))
        next_generation.put("bad", lambda: None, Header(tm))
    assert dataspace.get_last_generation_id("channel_a") == 1
    assert block["a"] == "kept"


def test_database_failure_mid_write_leaves_previous_generation_intact(dataspace, block):
    """A real error from the database in the middle of a generation write (a trigger
    refusing one product row) rolls the whole write back."""
    engine = dataspace.datasource.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON dataproduct WHEN NEW.key = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned product'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                "IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poisoned product'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON dataproduct FOR EACH ROW EXECUTE FUNCTION poison()"
            )
    tm = block.taskmanager_id
    block.put("frame", VALUES["frame"], Header(tm))
    stats_before = dataspace.storage_stats()

    nxt = DataBlock(dataspace, "channel_a", tm, generation_id=2)
    with pytest.raises(Exception, match="poisoned product"), nxt.transaction():
        nxt.put("frame", VALUES["frame"].iloc[:10], Header(tm))
        nxt.put("poison", 1, Header(tm))

    assert dataspace.get_last_generation_id("channel_a") == 1
    assert_same(VALUES["frame"], block["frame"])
    after = dataspace.storage_stats()
    assert {k: after[k] for k in ("generations", "products", "payloads")} == {
        k: stats_before[k] for k in ("generations", "products", "payloads")
    }


def test_corrupt_payload_names_taskmanager_generation_and_key(dataspace, block):
    block.put("jobs", VALUES["frame"], Header(block.taskmanager_id))
    with dataspace.datasource.engine.begin() as conn:
        conn.execute(sa.text("UPDATE payload SET data = :data"), {"data": b"\x28\xb5\x2f\xfd garbage"})
    with pytest.raises(CorruptPayloadError) as info:
        block["jobs"]
    message = str(info.value)
    assert "'jobs'" in message
    assert "generation 1" in message
    assert "channel_a" in message and block.taskmanager_id in message


def test_insert_and_update_are_strict(dataspace, block):
    tm = block.taskmanager_id
    dataspace.insert(block.sequence_id, 1, "k", 1, Header(tm), Metadata(tm))
    with pytest.raises(DataSpaceExistsError, match="'k'"):
        dataspace.insert(block.sequence_id, 1, "k", 2, Header(tm), Metadata(tm))
    dataspace.update(block.sequence_id, 1, "k", 3, Header(tm), Metadata(tm))
    assert dataspace.get_dataproduct(tm, 1, "k") == 3
    with pytest.raises(KeyError, match="'absent'"):
        dataspace.update(block.sequence_id, 1, "absent", 3, Header(tm), Metadata(tm))


def test_get_schema_lists_tables(dataspace):
    schema = dataspace.datasource.get_schema()
    assert {"taskmanager", "generation", "payload", "dataproduct", "header", "metadata"} <= set(schema)
    assert "expiration_time" in schema["header"]
    assert dataspace.datasource.get_schema("metadata") == {"metadata": schema["metadata"]}
    with pytest.raises(KeyError):
        dataspace.datasource.get_schema("nope")


def test_two_dataspaces_share_one_database(dataspace_config):
    first = DataSpace(dataspace_config)
    second = DataSpace(dataspace_config)
    try:
        block = DataBlock(first, "shared")
        block.put("a", {"from": "first"}, Header(block.taskmanager_id))
        assert DataBlock(second, "shared", block.taskmanager_id)["a"] == {"from": "first"}
    finally:
        first.close()
        second.close()


def test_write_retries_when_a_payload_it_meant_to_reuse_was_reaped(dataspace, block, monkeypatch):
    """The race with the Reaper, made deterministic: the write is told a payload is
    stored (as it was a moment before) but it is gone by the time the product row
    references it.  The foreign key refuses the row, and the write looks again."""
    datasource = dataspace.datasource
    real = type(datasource)._existing_payloads
    calls = []

    def stale_then_real(conn, digests):
        calls.append(len(calls))
        return set(digests) if len(calls) == 1 else real(conn, digests)

    monkeypatch.setattr(datasource, "_existing_payloads", stale_then_real)
    block.put("jobs", {"n": 42}, Header(block.taskmanager_id))
    assert len(calls) == 2
    assert block["jobs"] == {"n": 42}
    assert dataspace.storage_stats()["payloads"] == 1


def test_header_times_given_as_numpy_numbers_are_stored_as_numbers(sqlite_url):
    """SQLite's generation write hands its rows to the driver itself: the conversions
    SQLAlchemy would make (``float()`` for a time column) must still happen, or a NumPy
    integer would be stored as its eight bytes."""
    space = DataSpace(global_config(sqlite_url))
    try:
        block = DataBlock(space, "numpy_times")
        tm = block.taskmanager_id
        header = Header(tm, create_time=np.int64(1_000), expiration_time=np.int64(2_000))
        block.put("p", 1, header, Metadata(tm, generation_time=np.int64(1_500)))
        stored = space.get_header(block.sequence_id, block.generation_id, "p")
        assert (stored.create_time, stored.expiration_time) == (1000.0, 2000.0)
        assert isinstance(stored.create_time, float)
        assert space.get_metadata(block.sequence_id, block.generation_id, "p").generation_time == 1500.0
    finally:
        space.close()


def test_a_write_refused_by_sqlite_is_a_dataspace_error(sqlite_url):
    """The SQLite write lock held elsewhere for longer than the busy timeout: the write
    (whose BEGIN and statements go to the driver directly) fails as a DataSpaceError
    naming the database, not with the driver's own exception, and writes nothing."""
    space = DataSpace(global_config(sqlite_url))
    impatient = DataSpace(
        {
            "dataspace": {
                "datasource": {
                    "module": "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
                    "name": "SQLAlchemyDS",
                    "config": {"url": sqlite_url, "busy_timeout": 0.05},
                }
            }
        }
    )
    try:
        block = DataBlock(space, "locked")
        block.put("p", 1, Header(block.taskmanager_id))
        other = DataBlock(impatient, "locked", block.taskmanager_id)
        other.generation_id = 2
        with space.datasource.engine.connect() as holder:
            holder.connection.driver_connection.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(DataSpaceError, match="database is locked") as raised:
                    other.put("p", 2, Header(block.taskmanager_id))
                assert "dataspace.sqlite" in str(raised.value)
            finally:
                holder.connection.driver_connection.execute("ROLLBACK")
        assert space.get_last_generation_id("locked") == 1
    finally:
        impatient.close()
        space.close()
