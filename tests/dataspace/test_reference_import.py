"""Importing a reference Decision Engine database: faithful, de-duplicated, resumable, checked.

The reference databases are built from the schema description alone
(``tests/fixtures/reference_db.py``), on the same backend as the target: SQLite into
SQLite, PostgreSQL into PostgreSQL.
"""

from __future__ import annotations

import ast
import pickle
import random
import zlib
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.errors import DataSpaceConnectionError
from decisionengine.framework.dataspace.reference_import import (
    BadValue,
    ImportConflictError,
    ReferenceFormatError,
    ReferenceImporter,
    ReferenceSource,
    _parse_wrapper,
    decode_reference_value,
    open_target,
)
from decisionengine.framework.taskmanager.TaskManager import TaskManager
from tests.conftest import global_config
from tests.fixtures.payloads import os_system
from tests.fixtures.reference_db import (
    BASE_TIME,
    Expected,
    ReferenceDatabase,
    build_history,
    encode_pickle_bytes,
    encode_value,
    reference_database_url,
)
from tests.fixtures.trusted_payloads import Reading
from tests.taskmanager.channels import counting_channel, plan_from

TRUSTED = "tests.fixtures.trusted_payloads"


@pytest.fixture
def reference_url(db_url, request, tmp_path):
    yield from reference_database_url(db_url, request, tmp_path)


# -- checking an import -----------------------------------------------------------------------


def assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected)
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(actual, expected)
    else:
        assert actual == expected
        assert type(actual) is type(expected)


def assert_imported(space: DataSpace, expected: Expected) -> None:
    """Every registration, generation and product of ``expected``, value, header and
    metadata, reads back from ``space``; nothing else is there."""
    for channel, registrations in expected.registrations.items():
        found = space.get_taskmanagers(channel)
        assert [(r["taskmanager_id"], r["datestamp"]) for r in found] == registrations
    held = 0
    for (channel, uuid, generation, key), (value, header, metadata) in expected.products.items():
        seq = space.get_taskmanager(channel, uuid)["sequence_id"]
        assert_same(space.get_dataproduct(seq, generation, key), value)
        stored = space.get_header(seq, generation, key)
        assert {name: stored[name] for name in ("taskmanager_id", *header)} == {"taskmanager_id": uuid, **header}
        stored = space.get_metadata(seq, generation, key)
        expected_metadata = {"taskmanager_id": uuid, "generation_id": generation, **metadata}
        assert {name: stored[name] for name in expected_metadata} == expected_metadata
        held += 1
    assert space.storage_stats()["products"] == held


def importer(reference_url: str, space: DataSpace | None, **options: Any) -> ReferenceImporter:
    return ReferenceImporter(ReferenceSource(reference_url), space, **options)


# -- the import --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "1.7"])
def test_import_reads_back_identically(db_url, reference_url, version):
    expected = build_history(reference_url, version)
    with DataSpace(global_config(db_url)) as space:
        report = importer(reference_url, space, batch_rows=10).run()
        assert report.complete and report.bad_total == 0 and not report.stopped
        assert report.source_version == version
        totals = report.totals()
        assert totals["rows"] == totals["products"] == totals["written"] == totals["present"] == 72
        assert totals["missing"] == 0
        assert [t.status for t in report.taskmanagers] == ["ok", "ok", "ok"]
        assert report.batches >= 72 // 10
        assert_imported(space, expected)
        # payloads de-duplicated: the reference stored 72 values, most of them repeats
        assert report.payloads_added == space.storage_stats()["payloads"] < 72 / 2
        assert report.values_decoded < report.rows_read
        # generation ids and times are the reference's
        prices = space.get_taskmanager("prices")["sequence_id"]
        generations = space.get_generations(prices)
        assert [g["generation_id"] for g in generations] == [1, 2, 3, 4, 5]
        assert [g["products"] for g in generations] == [6] * 5
        assert generations[0]["generation_time"] == BASE_TIME + 300 + 2


def test_the_newest_registration_is_the_latest_generation(db_url, reference_url):
    build_history(reference_url)
    with DataSpace(global_config(db_url)) as space:
        importer(reference_url, space).run()
        latest = space.latest_generation("jobs_channel", ["count"])
        assert latest.taskmanager_id == "00000000-0000-4000-8000-000000000002"
        assert (latest.generation_id, latest.products) == (3, {"count": 30})


def test_a_channel_started_after_the_import_continues_the_numbering(db_url, reference_url, tmp_path):
    """de-server reuses a channel's newest registration: its generations go on from the
    newest imported registration's last one."""
    build_history(reference_url)
    with DataSpace(global_config(db_url)) as space:
        importer(reference_url, space).run()
        for channel, newest, last in (
            ("jobs_channel", "00000000-0000-4000-8000-000000000002", 3),
            ("prices", "00000000-0000-4000-8000-000000000001", 5),
        ):
            plan = plan_from(counting_channel(str(tmp_path / f"{channel}.jsonl"), max_generations=1), channel)
            tm = TaskManager(plan, space)
            tm.run()
            assert tm.taskmanager_id == newest
            assert tm.generation_id == last + 1
            generations = space.get_generations(space.get_taskmanager(channel)["sequence_id"])
            assert [g["generation_id"] for g in generations] == list(range(1, last + 2))
            assert "numbers" in space.get_keys(tm.sequence_id, last + 1)


# -- values that cannot be imported ------------------------------------------------------------


def test_bad_values_are_reported_and_skipped(db_url, reference_url, tmp_path):
    marker = tmp_path / "exploited"
    good = pd.DataFrame({"a": [1, 2]})
    with ReferenceDatabase(reference_url) as reference:
        seq = reference.add_taskmanager("chan", "00000000-0000-4000-8000-00000000000a")
        not_a_wrapper = zlib.compress(repr({"value": 1}).encode("latin-1"), 9)
        not_literal = zlib.compress(b"{'pickled': True, 'value': __import__('os')}", 9)
        bomb = zlib.compress(b"{'pickled': False, 'value': {'x': '" + b"a" * (4 << 20) + b"'}}", 9)
        rows = [
            reference.product(seq, 1, "good", good),
            reference.product(seq, 1, "garbage", blob=b"not zlib at all"),
            reference.product(seq, 1, "not_a_wrapper", blob=not_a_wrapper),
            reference.product(seq, 2, "good", good),
            reference.product(seq, 2, "not_literal", blob=not_literal),
            reference.product(seq, 2, "truncated", blob=encode_pickle_bytes(pickle.dumps(good)[:-20])),
            reference.product(seq, 3, "exploit", blob=encode_pickle_bytes(os_system(marker))),
            reference.product(seq, 3, "own_class", Reading("fnal", 1.5)),
            reference.product(seq, 3, "bomb", blob=bomb),
            reference.product(seq, 3, "bad_state", good, state="SLEEPING"),
            reference.product(seq, 4, "only_bad", blob=b"\x00"),
        ]
        reference.add(rows)
        reference.add([reference.product(seq, 4, "no_header", good)], header=False)
        reference.add([reference.product(seq, 4, "no_metadata", good)], metadata=False)
    with DataSpace(global_config(db_url)) as space:
        report = importer(reference_url, space, max_value_bytes=1 << 20).run()
        assert not marker.exists()
        reasons = {(b.channel, b.generation_id, b.key): b.reason for b in report.bad_products}
        assert set(reasons) == {
            ("chan", 1, "garbage"),
            ("chan", 1, "not_a_wrapper"),
            ("chan", 2, "not_literal"),
            ("chan", 2, "truncated"),
            ("chan", 3, "exploit"),
            ("chan", 3, "own_class"),
            ("chan", 3, "bomb"),
            ("chan", 3, "bad_state"),
            ("chan", 4, "only_bad"),
            ("chan", 4, "no_header"),
            ("chan", 4, "no_metadata"),
        }
        assert "not zlib" in reasons[("chan", 1, "garbage")]
        assert "posix.system" in reasons[("chan", 3, "exploit")]
        assert f"{TRUSTED}.Reading" in reasons[("chan", 3, "own_class")]
        assert "trusted_modules" in reasons[("chan", 3, "own_class")]
        assert "more than" in reasons[("chan", 3, "bomb")]
        assert "SLEEPING" in reasons[("chan", 3, "bad_state")]
        assert "no header row" in reasons[("chan", 4, "no_header")]
        assert "no metadata row" in reasons[("chan", 4, "no_metadata")]
        assert report.complete and report.bad_total == 11
        (chan,) = report.taskmanagers
        assert (chan.products, chan.present, chan.bad, chan.status) == (13, 2, 11, "ok, bad values skipped")
        seq = space.get_taskmanager("chan")["sequence_id"]
        assert [g["generation_id"] for g in space.get_generations(seq)] == [1, 2]
        pd.testing.assert_frame_equal(space.get_dataproduct(seq, 2, "good"), good)


def test_a_value_refused_once_is_imported_after_its_module_is_trusted(db_url, reference_url):
    with ReferenceDatabase(reference_url) as reference:
        seq = reference.add_taskmanager("chan")
        reference.add(
            [reference.product(seq, g, "reading", Reading("fnal", g)) for g in (1, 2)]
            + [reference.product(seq, g, "count", g) for g in (1, 2, 3)]
        )
    with DataSpace(global_config(db_url)) as space:
        first = importer(reference_url, space).run()
        assert first.bad_total == 2 and first.taskmanagers[0].present == 3
    with DataSpace(global_config(db_url, trusted_modules=[TRUSTED])) as space:
        second = importer(reference_url, space).run()
        (chan,) = second.taskmanagers
        assert (chan.written, chan.bad, chan.present, chan.status) == (2, 0, 5, "ok")
        seq = space.get_taskmanager("chan")["sequence_id"]
        assert space.get_dataproduct(seq, 2, "reading") == Reading("fnal", 2)


def test_duplicated_rows_of_a_17_reference_are_counted_and_the_last_kept(db_url, reference_url):
    with ReferenceDatabase(reference_url, "1.7") as reference:
        seq = reference.add_taskmanager("chan")
        reference.add([reference.product(seq, 1, "x", {"v": 1}), reference.product(seq, 1, "same", {"s": 0})])
        reference.add([reference.product(seq, 1, "x", {"v": 2}), reference.product(seq, 1, "same", {"s": 0})])
        reference.add([reference.product(seq, 2, "x", {"v": 3})])
    with DataSpace(global_config(db_url)) as space:
        report = importer(reference_url, space).run()
        (chan,) = report.taskmanagers
        assert (chan.rows, chan.products, chan.duplicates, chan.present, chan.status) == (5, 3, 2, 3, "ok")
        duplicates = {(d.generation_id, d.key): (d.copies, d.identical) for d in report.duplicates}
        assert duplicates == {(1, "x"): (2, False), (1, "same"): (2, True)}
        seq = space.get_taskmanager("chan")["sequence_id"]
        assert space.get_dataproduct(seq, 1, "x") == {"v": 2}


def test_registrations_without_products_are_skipped_and_a_repeated_id_kept_apart(db_url, reference_url):
    with ReferenceDatabase(reference_url) as reference:
        first = reference.add_taskmanager("chan", "00000000-0000-4000-8000-0000000000aa")
        again = reference.add_taskmanager("chan", "00000000-0000-4000-8000-0000000000aa")
        reference.add_taskmanager("chan", "00000000-0000-4000-8000-0000000000bb")  # started, never wrote
        reference.add([reference.product(first, 1, "x", {"v": 1}), reference.product(again, 1, "x", {"v": 2})])
    with DataSpace(global_config(db_url)) as space:
        report = importer(reference_url, space).run()
        assert report.complete
        assert [s["reason"] for s in report.skipped_taskmanagers] == ["no products"]
        ids = [r["taskmanager_id"] for r in space.get_taskmanagers("chan")]
        assert ids == ["00000000-0000-4000-8000-0000000000aa", f"00000000-0000-4000-8000-0000000000aa#{again}"]
        assert space.latest_generation("chan").products == {"x": {"v": 2}}


# -- resuming ------------------------------------------------------------------------------------


class CrashingImporter(ReferenceImporter):
    """Loses the database when it writes its batch number ``batches`` + 1."""

    def __init__(self, *args: Any, batches: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.left = batches

    def _write_batch(self, *args: Any) -> int:
        if self.left == 0:
            raise DataSpaceConnectionError("injected: the database went away")
        self.left -= 1
        return super()._write_batch(*args)


def test_an_interrupted_import_continues_where_it_stopped(db_url, reference_url):
    expected = build_history(reference_url)
    with DataSpace(global_config(db_url)) as space:
        crashing = CrashingImporter(ReferenceSource(reference_url), space, batches=6, batch_rows=7)
        with pytest.raises(DataSpaceConnectionError, match="injected"):
            crashing.run()
        assert space.storage_stats()["products"] == 6 * 6
        report = importer(reference_url, space, batch_rows=7).run()
        assert report.complete
        assert report.products_written == 72 - 36
        assert [t.resume_after for t in report.taskmanagers] == [4, 2, 0]
        assert_imported(space, expected)
        again = importer(reference_url, space).run()
        assert again.complete and again.products_written == 0 and again.rows_read == 0


def test_an_import_in_slices_never_writes_a_product_twice(db_url, reference_url):
    expected = build_history(reference_url)
    with ReferenceDatabase(reference_url) as reference:  # one bad value to carry along
        seq = reference.add_taskmanager("broken")
        reference.add([reference.product(seq, 1, "bad", blob=b"junk"), reference.product(seq, 2, "ok", 1)])
    written = []
    runs = 0
    with DataSpace(global_config(db_url)) as space:
        while True:
            runs += 1
            report = importer(reference_url, space, batch_rows=6, max_batches=2).run()
            written.append(report.products_written)
            if not report.stopped:
                break
            assert not report.complete
            assert runs < 20
        assert report.complete
        assert runs > 3
        assert sum(written) == 72 + 1
        broken = report.taskmanagers[-1]
        assert (broken.channel, broken.present, broken.bad, broken.status) == ("broken", 1, 1, "ok, bad values skipped")
        assert space.storage_stats()["products"] == 72 + 1
        for channel in expected.registrations:
            for registration in space.get_taskmanagers(channel):
                keys = [(p["generation_id"], p["key"]) for p in space.iter_products(registration["sequence_id"])]
                assert len(keys) == len(set(keys))


# -- dry run, conflicts, wrong databases ----------------------------------------------------------


def test_a_dry_run_writes_nothing(db_url, reference_url, tmp_path):
    build_history(reference_url)
    source_rows = ReferenceDatabase(reference_url).count("dataproduct")
    if db_url.startswith("sqlite"):
        missing = tmp_path / "not-yet.sqlite"
        assert open_target(global_config(f"sqlite:///{missing}"), dry_run=True) is None
        report = importer(reference_url, None, dry_run=True).run()
        assert not missing.exists()
        assert report.totals()["rows_to_copy"] == 72 and report.totals()["present"] == 0
    with DataSpace(global_config(db_url)) as space:
        importer(reference_url, space, batch_rows=12, max_batches=2).run()
        before = space.storage_stats()
    target = open_target(global_config(db_url), dry_run=True)
    assert target.datasource.config["read_only"] is True
    try:
        plan = importer(reference_url, target, dry_run=True).run()
        assert plan.dry_run and not plan.complete and plan.products_written == 0
        assert plan.totals()["present"] == 24
        assert plan.totals()["rows_to_copy"] == 72 - 24
        assert [t.resume_after for t in plan.taskmanagers] == [4, 0, 0]
    finally:
        target.close()
    with DataSpace(global_config(db_url)) as space:
        assert space.storage_stats() == before
    assert ReferenceDatabase(reference_url).count("dataproduct") == source_rows


def test_a_channel_with_history_of_its_own_is_not_imported_over(db_url, reference_url):
    build_history(reference_url)
    with DataSpace(global_config(db_url)) as space:
        block = DataBlock(space, "prices")
        block.put("mine", 1, Header(block.taskmanager_id))
        before = space.storage_stats()
        with pytest.raises(ImportConflictError, match="'prices' already has history"):
            importer(reference_url, space).run()
        assert space.storage_stats() == before
        plan = importer(reference_url, space, dry_run=True).run()
        assert len(plan.conflicts) == 1
        report = importer(reference_url, space, channels=["jobs_channel"]).run()
        assert report.complete and [t.channel for t in report.taskmanagers] == ["jobs_channel", "jobs_channel"]


def test_a_dataspace_of_ours_is_not_a_reference(db_url, tmp_path):
    DataSpace(global_config(db_url)).close()
    with pytest.raises(ReferenceFormatError, match="DataSpace of this decision engine"):
        ReferenceSource(db_url)
    empty = tmp_path / "empty.sqlite"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(ReferenceFormatError, match="no table"):
        ReferenceSource(f"sqlite:///{empty}")


# -- decoding and batching ------------------------------------------------------------------------


def test_values_decode_as_literal_eval_reads_them():
    """The fast path for pickled values gives exactly what ``ast.literal_eval`` gives."""
    rng = random.Random(7)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(2000)]
    samples += [b"'", b'"', b"'\"", b"\\", b"\\'", b"\\x00'", b"\x80\x05"]
    for raw in samples:
        text = repr({"pickled": True, "value": raw})
        assert _parse_wrapper(text) == ast.literal_eval(text) == {"pickled": True, "value": raw}
    crafted = "{'pickled': True, 'value': b'abc', 'x': b'def'}"
    assert _parse_wrapper(crafted) == ast.literal_eval(crafted)
    with pytest.raises(BadValue, match="not a"):
        decode_reference_value(zlib.compress(crafted.encode("latin-1")))
    assert decode_reference_value(encode_value({"a": [1, (2, 3)], "b": None})) == {"a": [1, (2, 3)], "b": None}
    assert decode_reference_value(encode_value(42)) == 42
    inner_bomb = encode_pickle_bytes(zlib.compress(b"\x80\x05" + b"N" * (8 << 20), 9))
    with pytest.raises(BadValue, match="the pickle decompresses to more than"):
        decode_reference_value(inner_bomb, max_bytes=1 << 20)


def test_batches_are_bounded_by_rows_and_bytes(reference_url):
    with ReferenceDatabase(reference_url) as reference:
        seq = reference.add_taskmanager("chan")
        reference.add(
            [reference.product(seq, g, f"k{k}", {"g": g, "pad": "x" * 1000}) for g in range(1, 21) for k in range(3)]
        )
    with ReferenceSource(reference_url) as source:
        by_rows = source.generation_ranges(seq, 0, max_rows=7, max_bytes=1 << 30)
        assert [(r.first, r.last, r.rows) for r in by_rows][:2] == [(1, 2, 6), (3, 4, 6)]
        assert sum(r.rows for r in by_rows) == 60
        by_bytes = source.generation_ranges(seq, 0, max_rows=1000, max_bytes=1)
        assert len(by_bytes) == 20  # at least one generation per batch
        assert source.generation_ranges(seq, 18, 1000, 1 << 30)[0].first == 19


def test_write_generations_is_one_transaction_and_stores_a_repeated_value_once(dataspace):
    block = DataBlock(dataspace, "bulk")
    tm = block.taskmanager_id
    frame = pd.DataFrame({"a": range(100)})

    def generation(number: int, state: str = "END_CYCLE") -> tuple[int, dict[str, Any]]:
        metadata = Metadata(tm, generation_id=number, generation_time=BASE_TIME + number)
        metadata.data["state"] = state
        return number, {"frame": (frame, Header(tm), metadata), "n": (number, Header(tm), metadata)}

    with pytest.raises(ValueError, match="invalid state"):
        dataspace.write_generations(block.sequence_id, [generation(1), generation(2), generation(3, "BROKEN")])
    assert dataspace.get_generations(block.sequence_id) == []
    before = dataspace.storage_stats()["payloads"]
    dataspace.write_generations(block.sequence_id, [generation(g) for g in (1, 2, 3)])
    assert [g["generation_id"] for g in dataspace.get_generations(block.sequence_id)] == [1, 2, 3]
    assert dataspace.storage_stats()["payloads"] - before == 1 + 3  # the frame once, each number
    dataspace.write_generations(block.sequence_id, [generation(3)])  # again: replaced, not duplicated
    assert dataspace.storage_stats()["products"] == 6
    pd.testing.assert_frame_equal(dataspace.get_dataproduct(block.sequence_id, 2, "frame"), frame)
    assert dataspace.get_dataproduct(block.sequence_id, 3, "n") == 3
