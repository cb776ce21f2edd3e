"""Reads at the floor: a generation in one statement, histories in bounded pages.

Round trips are what reads cost at small sizes, so these tests count the statements a
read sends (SQLAlchemy's cursor events, on a real SQLite file and a real PostgreSQL
server), and prove that a long history is read with memory bounded by one page
(tracemalloc's peak while streaming it, against the size of the whole history).
"""

from __future__ import annotations

import contextlib
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.testing.postgres import direct_engine
from tests.conftest import global_config


@contextlib.contextmanager
def statements(space: DataSpace) -> Iterator[list[str]]:
    """The SQL statements ``space`` sends while the block runs."""
    sent: list[str] = []
    engine = space.datasource.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def products_of(tm: str, generation: int, values: dict[str, Any]) -> dict[str, tuple[Any, Header, Metadata]]:
    return {
        key: (value, Header(tm, creator=f"made_{key}"), Metadata(tm, generation_id=generation))
        for key, value in values.items()
    }


@pytest.fixture
def block(dataspace: DataSpace) -> DataBlock:
    """A channel with two generations of three products (a DataFrame among them)."""
    block = DataBlock(dataspace, "reads")
    tm = block.taskmanager_id
    for generation in (1, 2):
        values = {"a": generation, "b": {"g": generation}, "frame": pd.DataFrame({"x": [generation, 2, 3]})}
        dataspace.write_generation(block.sequence_id, generation, products_of(tm, generation, values))
    block.generation_id = 2
    return block


def test_a_generation_or_a_named_subset_is_one_statement(dataspace: DataSpace, block: DataBlock):
    dataspace.get_keys(block.sequence_id, 2)  # the task manager is known from here on
    with statements(dataspace) as sent:
        everything = dataspace.read_generation(block.sequence_id, 2)
        subset = dataspace.read_generation(block.sequence_id, 2, ["b", "not_there", "a"])
        with_headers = dataspace.read_generation(block.taskmanager_id, 1, ["frame"], headers=True)
    assert len(sent) == 3, sent
    assert list(everything) == ["a", "b", "frame"]
    assert everything["b"] == {"g": 2}
    pd.testing.assert_frame_equal(everything["frame"], pd.DataFrame({"x": [2, 2, 3]}))
    assert subset == {"a": 2, "b": {"g": 2}}
    value, header = with_headers["frame"]
    assert value["x"].tolist() == [1, 2, 3]
    assert isinstance(header, Header) and header["creator"] == "made_frame"
    assert header["taskmanager_id"] == block.taskmanager_id
    # get_datablock, the reference's name for it, is the same read
    assert list(dataspace.get_datablock(block.sequence_id, 1)) == ["a", "b", "frame"]


def test_reading_a_generation_names_unknown_task_managers_and_leaves_empty_ones_empty(
    dataspace: DataSpace, block: DataBlock
):
    assert dataspace.read_generation(block.sequence_id, 99) == {}
    assert dataspace.read_generation(block.sequence_id, 2, []) == {}
    with pytest.raises(KeyError, match="no task manager"):
        dataspace.read_generation(block.sequence_id + 1000, 1)
    with pytest.raises(KeyError, match="no task manager"):
        dataspace.read_generation("NO-SUCH-ID", 1, ["a"])


def test_the_latest_generation_with_its_headers_is_one_statement(dataspace: DataSpace, block: DataBlock):
    with statements(dataspace) as sent:
        latest = dataspace.latest_generation("reads")
        subset = dataspace.latest_generation("reads", ["a", "missing"])
        none_held = dataspace.latest_generation("reads", ["missing"])
        bare = dataspace.latest_generation("reads", ())
        unknown = dataspace.latest_generation("no_such_channel")
    assert len(sent) == 5, sent
    assert latest is not None and latest.generation_id == 2
    assert list(latest.products) == ["a", "b", "frame"]
    assert {k: h["creator"] for k, h in latest.headers.items()} == {
        "a": "made_a",
        "b": "made_b",
        "frame": "made_frame",
    }
    assert subset is not None and subset.products == {"a": 2} and list(subset.headers) == ["a"]
    assert none_held is not None and none_held.generation_id == 2 and none_held.products == {}
    assert bare is not None and bare.generation_id == 2 and bare.products == {} and bare.headers == {}
    assert unknown is None


def test_latest_holding_looks_one_generation_back_for_a_product_stored_after_the_commit(
    dataspace: DataSpace, block: DataBlock
):
    """publisher_status is stored once a generation's publishers have run: asked for in
    between, the reader gets the generation before's, never "no such product"."""
    tm = block.taskmanager_id
    dataspace.write_generation(block.sequence_id, 2, products_of(tm, 2, {"late": "of 2"}))
    dataspace.write_generation(block.sequence_id, 3, products_of(tm, 3, {"a": 3}))  # "late" not yet
    held = dataspace.latest_holding("reads", "late")
    assert held is not None and held.generation_id == 2 and held.products == {"late": "of 2"}
    assert held.headers["late"]["creator"] == "made_late" and held.generation_time is None
    newest = dataspace.latest_holding("reads", "a")  # the newest holds it: the newest
    assert newest is not None and newest.generation_id == 3 and newest.products == {"a": 3}
    assert newest.generation_time is not None
    # two generations back is not looked at: that product is simply not in the newest
    dataspace.write_generation(block.sequence_id, 4, products_of(tm, 4, {"a": 4}))
    missing = dataspace.latest_holding("reads", "late")
    assert missing is not None and missing.generation_id == 4 and missing.products == {}
    assert dataspace.latest_holding("no_such_channel", "a") is None


def test_a_data_block_reads_several_products_in_one_round_trip(dataspace: DataSpace, block: DataBlock):
    block.attach("board", "attached", Header(block.taskmanager_id))
    dataspace.get_keys(block.sequence_id, 2)
    with statements(dataspace) as sent:
        read = block.read(["frame", "a", "board", "missing"])
    assert len(sent) == 1, sent
    assert list(read) == ["frame", "a", "board"]
    assert read["board"] == "attached"
    with block.transaction():
        block.put("a", "pending", Header(block.taskmanager_id))
        everything = block.read()
    assert everything["a"] == "pending" and everything["b"] == {"g": 2} and everything["board"] == "attached"
    with statements(dataspace) as sent:
        assert block.read(["board"]) == {"board": "attached"}  # all in memory: no statement
    assert sent == []


def write_history(space: DataSpace, name: str, generations: int, payload_bytes: int) -> DataBlock:
    """``generations`` generations, each with a distinct incompressible ``blob`` and a small ``n``."""
    block = DataBlock(space, name)
    tm = block.taskmanager_id
    batch = [(g, products_of(tm, g, {"blob": os.urandom(payload_bytes), "n": g})) for g in range(1, generations + 1)]
    space.write_generations(block.sequence_id, batch)
    return block


def peak_while(consume: Any) -> int:
    """tracemalloc's peak (bytes above the start) while ``consume()`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def test_a_long_history_streams_with_memory_bounded_by_one_page(dataspace: DataSpace):
    generations, payload = 150, 32 * 1024
    block = write_history(dataspace, "long", generations, payload)
    history = generations * payload  # 4.9 MB of payloads
    datasource = dataspace.datasource
    seen: list[int] = []

    def stream_one_key() -> None:
        for item in datasource.iter_products(block.sequence_id, "blob", page_size=10):
            assert len(item["value"]) == payload
            seen.append(item["generation_id"])

    streamed = peak_while(stream_one_key)
    assert seen == list(range(1, generations + 1))  # every generation, in order, once

    # a page is bounded by bytes as well as by products
    byte_pages: list[str] = []

    def stream_every_key_by_bytes() -> None:
        for item in datasource.iter_products(block.sequence_id, page_size=1000, page_bytes=4 * payload):
            byte_pages.append(item["key"])

    by_bytes = peak_while(stream_every_key_by_bytes)
    assert byte_pages == ["blob", "n"] * generations

    rows: list[tuple[int, str]] = []
    datasource.history_page_rows = 20  # what get_dataproducts reads a page at a time
    reference_rows = peak_while(
        lambda: rows.extend((r["generation_id"], r["key"]) for r in dataspace.iter_dataproducts(block.sequence_id))
    )
    # ordered as get_dataproducts: by generation, then by creation within one
    assert len(rows) == 2 * generations and rows[:2] == [(1, "blob"), (1, "n")]

    whole = peak_while(lambda: dataspace.get_dataproducts(block.sequence_id, "blob"))
    assert whole > history  # the list holds every value: what streaming avoids
    # one page of 10 payloads (a page's compressed bytes and decoded values, with room for
    # the driver's buffers), never the history
    assert 25 * payload < history / 5
    assert streamed < 25 * payload, (streamed, history)
    assert by_bytes < 25 * payload, (by_bytes, history)
    assert reference_rows < 25 * payload, (reference_rows, history)


def test_a_history_page_is_a_bounded_number_of_rows_and_repeated_payloads_decode_once(dataspace: DataSpace):
    block = DataBlock(dataspace, "dups")
    tm = block.taskmanager_id
    dataspace.write_generation(block.sequence_id, 1, products_of(tm, 1, {"k": [1, 2, 3], "m": "x"}))
    for generation in range(1, 7):
        dataspace.duplicate_datablock(block.sequence_id, generation, generation + 1)
    fetched: list[int] = []
    engine = dataspace.datasource.engine

    def count_rows(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: Any) -> None:
        if "LIMIT" in statement.upper():
            fetched.append(statement.upper().count("LIMIT"))

    sa.event.listen(engine, "after_cursor_execute", count_rows)
    try:
        items = list(dataspace.datasource.iter_products(block.sequence_id, page_size=3))
    finally:
        sa.event.remove(engine, "after_cursor_execute", count_rows)
    assert [(i["generation_id"], i["key"]) for i in items] == [(g, k) for g in range(1, 8) for k in ("k", "m")]
    assert len(fetched) == 5  # 14 products, 3 a page: one LIMIT query a page
    # a duplicated generation's payload is fetched and decoded once, not once per generation
    ks = [i["value"] for i in items if i["key"] == "k"]
    assert all(v is ks[0] for v in ks)


@pytest.mark.postgresql
def test_a_read_survives_a_dropped_pooled_connection(pg_url: str):
    """Pooled connections used a moment ago are not pinged; one the server dropped is
    replaced and the read tried again, so the caller never sees it."""
    space = DataSpace(global_config(pg_url))
    block = DataBlock(space, "dropped")
    block.put("a", 1, Header(block.taskmanager_id))
    assert block["a"] == 1  # the pool now holds a connection that was just used
    killer = direct_engine(pg_url)
    with killer.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    killer.dispose()
    assert killed >= 1
    assert space.read_generation(block.sequence_id, block.generation_id) == {"a": 1}
    assert space.latest_generation("dropped").products == {"a": 1}
    space.close()
