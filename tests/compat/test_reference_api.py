"""The reference Decision Engine's API behaviours (issue 13, part 1), one test per behaviour.

Scripts and modules written against the reference call these the reference's way; where
this framework offers more (named fields, notes, warnings), the reference's answer holds too.
"""

from __future__ import annotations

import datetime
import json
import logging
import multiprocessing
import os
import pickle
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import structlog

from decisionengine.framework.config import policies
from decisionengine.framework.config.global_config import load_global_config
from decisionengine.framework.dataspace import migrations
from decisionengine.framework.dataspace.datablock import (
    DataBlock,
    Header,
    HeaderRow,
    Metadata,
    MetadataRow,
    compress,
    decompress,
)
from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import SQLAlchemyDS
from decisionengine.framework.dataspace.dataspace import (
    DataSpace,
    DataSpaceConfigurationError,
    DataSpaceConnectionError,
    DataSpaceError,
)
from decisionengine.framework.dataspace.maintain import Reaper
from decisionengine.framework.logicengine.LogicEngine import LogicEngine
from decisionengine.framework.modules import Module, Publisher, Source, Transform
from decisionengine.framework.modules.EmptySource import EmptySource
from decisionengine.framework.modules.Module import verify_products
from decisionengine.framework.taskmanager.states import State
from decisionengine.testing.postgres import direct_engine
from tests.conftest import global_config
from tests.taskmanager.channels import counting_channel, plan_from
from tests.taskmanager.test_taskmanager import run_channel

# -- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A database with no schema at all (PostgreSQL: a fresh database, not the migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"de_compat_{os.getpid()}_{time.monotonic_ns()}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


def tables(url: str) -> set[str]:
    engine = direct_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _construct(url: str, barrier: Any) -> None:
    barrier.wait(30)
    SQLAlchemyDS({"url": url}).close()


def products_block(dataspace: DataSpace, name: str = "chan") -> DataBlock:
    block = DataBlock(dataspace, name)
    tm = block.taskmanager_id
    block.put("b", {"gen": 1}, Header(tm, create_time=1000.0, creator="first"))
    block.put("a", [1, 2], Header(tm, create_time=1001.0, creator="second"))
    return block


# -- the data source -----------------------------------------------------------------------------------


def test_datasource_built_directly_creates_or_upgrades_its_schema(empty_url):
    source = SQLAlchemyDS({"url": empty_url})
    try:
        assert source.schema_revision() == migrations.head_revision()
        seq = source.store_taskmanager("chan", "T1")  # usable at once, as the reference's
        assert source.get_taskmanager("chan")["sequence_id"] == seq
    finally:
        source.close()
    again = SQLAlchemyDS({"url": empty_url})  # idempotent: the schema is current, the data kept
    assert again.get_taskmanager("chan")["taskmanager_id"] == "T1"
    again.close()


def test_datasources_built_directly_by_processes_starting_together_migrate_once(empty_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    processes = [ctx.Process(target=_construct, args=(empty_url, barrier)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    source = SQLAlchemyDS({"url": empty_url})
    assert source.schema_revision() == migrations.head_revision()
    source.close()


def test_datasource_read_only_use_never_creates(empty_url):
    if empty_url.startswith("sqlite"):
        path = empty_url.removeprefix("sqlite:///")
        for option in ({"read_only": True}, {"create": False}):
            with pytest.raises(DataSpaceConnectionError, match=r"fresh\.sqlite"):
                SQLAlchemyDS({"url": empty_url, **option})
            assert not os.path.exists(path)
        return
    for option in ({"read_only": True}, {"create": False}):
        with pytest.raises(DataSpaceError, match="holds no DataSpace"):
            SQLAlchemyDS({"url": empty_url, **option})
    assert tables(empty_url) == set()


def test_get_header_and_get_metadata_answer_the_reference_rows(dataspace):
    block = products_block(dataspace)
    tm, seq = block.taskmanager_id, block.sequence_id
    for source in (dataspace, dataspace.datasource):
        header = source.get_header(seq, 1, "b")
        assert isinstance(header, tuple) and isinstance(header, HeaderRow)
        assert tuple(header[:4]) == (tm, seq, 1, "b")
        assert header[4] == 1000.0 and header[5] == 1000.0 + Header.default_data_lifetime
        assert header[7] == "first" and header[8] is None and len(header) == 9
        assert header["creator"] == header.creator == "first"  # also by field name, as before
        assert dict(header)["taskmanager_id"] == tm
        metadata = source.get_metadata(seq, 1, "b")
        assert isinstance(metadata, MetadataRow) and len(metadata) == 7
        assert tuple(metadata[:5]) == (tm, seq, 1, "b", "NEW")
        assert isinstance(metadata[5], float) and metadata[6] == 0
        assert metadata["state"] == "NEW" and metadata.generation_id == 1
        assert pickle.loads(pickle.dumps(header)) == header
    # the DataBlock still gives Header and Metadata
    assert isinstance(block.get_header("b"), Header) and block.get_header("b")["creator"] == "first"
    fresh = DataBlock(dataspace, "chan", tm, generation_id=1)
    assert isinstance(fresh.get_header("a"), Header)
    header = fresh.get_header("a")
    assert (header["taskmanager_id"], header["create_time"], header["creator"]) == (tm, 1001.0, "second")
    assert set(header) == Header.required_keys
    assert isinstance(fresh.get_metadata("a"), Metadata) and fresh.get_metadata("a")["generation_id"] == 1


def test_get_dataproducts_answers_the_reference_rows_in_insertion_order(dataspace):
    block = products_block(dataspace)
    block.duplicate()
    block.put("a", [3], Header(block.taskmanager_id, create_time=2000.0))
    rows = dataspace.get_dataproducts(block.sequence_id)
    assert [(r["taskmanager_id"], r["generation_id"], r["key"], r["value"]) for r in rows] == [
        (block.sequence_id, 1, "b", {"gen": 1}),
        (block.sequence_id, 1, "a", [1, 2]),
        (block.sequence_id, 2, "b", {"gen": 1}),
        (block.sequence_id, 2, "a", [3]),
    ]
    assert {r["taskmanager_uuid"] for r in rows} == {block.taskmanager_id}  # richer fields, other names
    assert [r["value"] for r in dataspace.datasource.get_dataproducts(block.sequence_id, "a")] == [[1, 2], [3]]
    assert dataspace.get_dataproducts(block.sequence_id + 1000) == []
    assert dataspace.get_dataproducts("NO-SUCH-TASKMANAGER", "a") == []


def test_get_taskmanagers_accepts_datetimes_epoch_seconds_and_iso_text(dataspace):
    utc = datetime.UTC
    dataspace.store_taskmanager("chan", "EARLY", datetime.datetime(2021, 3, 21, 10, 0, tzinfo=utc))
    dataspace.store_taskmanager("chan", "LATE", datetime.datetime(2021, 3, 21, 12, 0, tzinfo=utc))

    def ids(start: Any, end: Any = None) -> list[str]:
        return [t["taskmanager_id"] for t in dataspace.get_taskmanagers("chan", start, end)]

    eleven = datetime.datetime(2021, 3, 21, 11, 0, tzinfo=utc)
    assert ids(eleven) == ["LATE"]
    assert ids(eleven.replace(tzinfo=None)) == ["LATE"]  # naive means UTC
    assert ids(eleven.timestamp()) == ["LATE"]
    assert ids("2021-03-21 11:00:00") == ["LATE"]
    assert ids("2021-03-21T11:00:00Z") == ["LATE"]
    assert ids("2021-03-21 11:30:00+02:00") == ["EARLY", "LATE"]  # 09:30 UTC
    assert ids("2021-03-21 09:00:00", "2021-03-21 11:00:00") == ["EARLY"]
    assert ids(None, str(eleven.timestamp())) == ["EARLY"]
    with pytest.raises(ValueError, match="ISO-8601"):
        dataspace.get_taskmanagers("chan", "yesterday")


def test_store_taskmanager_accepts_name_or_taskmanager_name_and_a_datetime_datestamp(dataspace):
    stamp = datetime.datetime(2022, 5, 1, 8, 30, tzinfo=datetime.UTC)
    first = dataspace.store_taskmanager(name="one", taskmanager_id="ID-1", datestamp=stamp)
    second = dataspace.store_taskmanager(taskmanager_name="two", taskmanager_id="ID-2", datestamp=stamp)
    third = dataspace.datasource.store_taskmanager(name="three", taskmanager_id="ID-3")
    fourth = dataspace.datasource.store_taskmanager(taskmanager_name="four", taskmanager_id="ID-4")
    fifth = DataBlock(dataspace, "x").store_taskmanager(name="five", taskmanager_id="ID-5")
    assert len({first, second, third, fourth, fifth}) == 5
    assert dataspace.get_taskmanager("one")["datestamp"] == stamp
    assert dataspace.get_taskmanager("two", "ID-2")["datestamp"] == stamp
    with pytest.raises(TypeError, match="two different names"):
        dataspace.store_taskmanager(name="a", taskmanager_id="ID-6", taskmanager_name="b")


def test_datablock_with_only_a_sequence_id_opens_that_task_manager(dataspace):
    block = products_block(dataspace)
    reopened = DataBlock(dataspace, "chan", sequence_id=block.sequence_id)
    assert reopened.taskmanager_id == block.taskmanager_id
    assert reopened.generation_id == 1
    assert reopened["a"] == [1, 2]
    with pytest.raises(KeyError, match="sequence id"):
        DataBlock(dataspace, "other_channel", sequence_id=block.sequence_id)


def test_delete_data_older_than_refuses_days_not_above_zero(dataspace):
    block = products_block(dataspace)
    block.duplicate()
    for days in (0, -1, 0.0):
        with pytest.raises(ValueError, match="greater than 0"):
            dataspace.datasource.delete_data_older_than(days)
    assert dataspace.get_last_generation_id("chan") == 2
    assert dataspace.get_datablock(block.sequence_id, 1)  # nothing was deleted
    assert dataspace.datasource.delete_data_older_than(1).generations == 0


def test_compress_and_decompress_are_the_reference_text_helpers():
    assert compress({"a": 1}) == zlib.compress(b"{'a': 1}", 9)
    assert decompress(compress({"a": 1})) == "{'a': 1}"
    assert decompress(compress("caf\xe9")) == "caf\xe9"  # latin-1
    assert decompress(b"never compressed") == "never compressed"
    assert isinstance(decompress(compress(3)), str)


# -- modules -------------------------------------------------------------------------------------------


def test_module_base_classes_carry_empty_produces_and_consumes():
    for base in (Module.Module, Source.Source, Transform.Transform, Publisher.Publisher):
        assert base._produces == {} and base._consumes == {}
        assert type(base._produces) is dict and type(base._consumes) is dict

    class Quiet(Publisher.Publisher):
        def publish(self, data_block: Any) -> None:
            if not self._consumes:  # what real publishers do
                return

    Quiet({}).publish({})

    @Transform.consumes(a=int)
    @Transform.produces(b=int)
    class Decorated(Transform.Transform):
        pass

    assert Decorated._consumes == {"a": int} and Decorated._produces == {"b": int}
    assert Transform.Transform._consumes == {} and Module.Module._produces == {}  # the bases are untouched
    assert LogicEngine({"facts": {}})._produces == {"de_logicengine_facts": pd.DataFrame}


def test_empty_source_without_data_product_name_names_the_parameter():
    with pytest.raises(RuntimeError, match="data_product_name"):
        EmptySource({"channel_name": "c"})
    with pytest.raises(RuntimeError, match="data_product_name"):
        EmptySource({})
    assert EmptySource({"data_product_name": "x"}).acquire()["x"].empty


def test_decorator_and_verify_products_messages_keep_the_reference_wording():
    for decorate, kind in ((Source.produces, "produces"), (Transform.consumes, "consumes")):
        with pytest.raises(RuntimeError) as info:

            @decorate(a=int)
            @decorate(b=int)
            class Twice(Transform.Transform):
                pass

        assert str(info.value).startswith(f"@{kind} has already been called")
        assert "Twice" in str(info.value)  # ours follows: which class

    # the reference merges stacked @supports_config (it never raised for them)
    @Source.supports_config(Source.Parameter("x", default=1))
    @Source.supports_config(Source.Parameter("y", default=1))
    class Configured(Source.Source):
        pass

    assert sorted(Configured._supported_config) == ["x", "y"]

    @Source.produces(a=int, b=int)
    class Three(Source.Source):
        pass

    for data, sentence in (
        ({"a": 1}, "The following products were not produced"),
        ({"a": 1, "b": 2, "c": 3}, "The following products were not declared"),
        ({"a": 1, "b": "x"}, "The following products have the wrong types"),
    ):
        with pytest.raises(RuntimeError) as info:
            verify_products(Three({}), data)
        assert str(info.value).startswith(sentence)
        assert "Three" in str(info.value)


# -- the logic engine ----------------------------------------------------------------------------------


def test_logic_engine_produces_and_consumes_as_the_reference():
    engine = LogicEngine(
        {
            "facts": {"big": "jobs.n.sum() > 10", "cheap": "prices.cost.min() < 1 and len(jobs) > 0"},
            "rules": {"r": {"expression": "big and cheap", "actions": ["p"]}},
            "channel_name": "c",
        }
    )
    assert engine.produces() == ["actions", "newfacts"]
    assert sorted(engine.consumes()) == ["jobs", "prices"]


def test_logic_engine_without_facts_rules_and_channel_name_is_a_key_error():
    with pytest.raises(KeyError, match="facts"):
        LogicEngine({})
    with pytest.raises(KeyError, match="facts"):
        LogicEngine({"rules": {}, "channel_name": "c"})


def test_failing_fact_raises_the_original_exception_with_an_explanation_note():
    engine = LogicEngine({"facts": {"f": "vals[5] > 0"}, "rules": {}, "channel_name": "c"})
    with pytest.raises(IndexError) as info:
        engine.evaluate_facts({"vals": [1, 2]})
    (note,) = info.value.__notes__
    assert "fact 'f' (vals[5] > 0) failed" in note and "vals: list" in note

    engine = LogicEngine({"facts": {"f": "missing.empty"}, "rules": {}, "channel_name": "c"})
    with pytest.raises(NameError) as info:
        engine.evaluate({})
    assert "product 'missing' is not in the data block" in info.value.__notes__[0]


def test_failing_fact_is_reported_clearly_by_the_channel(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_consecutive_failures=1)
    raw["logicengines"]["le"]["parameters"]["facts"]["indexed"] = "numbers.n.iloc[100] > 0"
    tm, _ = run_channel(plan_from(raw, "failing_fact"), dataspace)
    assert tm.state.state is State.ERROR
    error = tm.history[-1].error
    assert error.startswith("IndexError: ")
    assert "fact 'indexed' (numbers.n.iloc[100] > 0) failed; product values: numbers: DataFrame" in error


def test_rule_may_declare_a_new_fact_named_like_a_fact_the_first_definition_wins():
    with structlog.testing.capture_logs() as logs:
        engine = LogicEngine(
            {
                "facts": {"f": "x > 1"},
                "rules": {
                    "set_f": {"expression": "not f", "actions": ["a"], "facts": ["f", "other"]},
                    "read_f": {"expression": "f", "actions": ["b"]},
                },
                "channel_name": "c",
            }
        )
    assert any("already a fact" in str(log.get("warning")) for log in logs if log["log_level"] == "warning")
    assert "already a fact" in engine.config_warnings[0]
    actions, newfacts = engine.evaluate({"x": 5})
    assert actions == {"set_f": [], "read_f": ["b"]}  # read_f reads the fact f (True), not the rule's False
    assert newfacts.to_dict("records") == [{"rule_name": "set_f", "fact_name": "other", "fact_value": False}]
    # a channel with such a rule loads, and its validation reports the warning
    raw = counting_channel("unused.jsonl")
    raw["logicengines"]["le"]["parameters"]["rules"]["alarm"]["facts"] = ["big"]
    plan = plan_from(raw, "shadowing")
    assert any(
        "logicengines.le: rule 'alarm' declares new fact 'big', which is already a fact" in w for w in plan.warnings
    )


def test_fact_with_a_syntax_error_raises_syntax_error():
    with pytest.raises(SyntaxError) as info:
        LogicEngine({"facts": {"f": "x >"}, "rules": {}, "channel_name": "c"})
    assert "fact 'f'" in str(info.value) and "invalid syntax" in str(info.value)
    with pytest.raises(SyntaxError):
        LogicEngine({"facts": {"f": "x > 1"}, "rules": {"r": {"expression": "f and"}}, "channel_name": "c"})


# -- configuration -------------------------------------------------------------------------------------


def test_global_config_dir_returns_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path))
    assert policies.global_config_dir() == tmp_path
    assert isinstance(policies.global_config_dir(), type(tmp_path))


def test_channel_config_dir_of_a_parent_wins(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "config.d").mkdir()
    monkeypatch.setenv("CHANNEL_CONFIG_PATH", str(elsewhere))
    assert policies.channel_config_dir() == elsewhere
    assert policies.channel_config_dir(tmp_path) == tmp_path / "config.d"
    assert policies.channel_config_dir(str(tmp_path)) == tmp_path / "config.d"
    with pytest.raises(RuntimeError, match=r"config\.d"):
        policies.channel_config_dir(elsewhere)


def test_global_config_file_names_the_missing_file(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match=r"decision_engine\.jsonnet.*does not exist"):
        policies.global_config_file(tmp_path)
    monkeypatch.setenv("CONFIG_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        policies.global_config_file()
    (tmp_path / "decision_engine.jsonnet").write_text("{}")
    assert policies.global_config_file() == tmp_path / "decision_engine.jsonnet"
    assert policies.global_config_file(tmp_path) == tmp_path / "decision_engine.jsonnet"


def test_reaper_without_retention_interval_is_a_configuration_error(sqlite_url, tmp_path):
    with pytest.raises(DataSpaceConfigurationError, match="retention_interval_in_days"):
        Reaper(global_config(sqlite_url))
    # the server's path: its global configuration is completed with the defaults first
    (tmp_path / "decision_engine.jsonnet").write_text(
        json.dumps({"dataspace": {"datasource": {"config": {"url": sqlite_url}}}})
    )
    config, _warnings = load_global_config(tmp_path)
    reaper = Reaper(config)
    assert reaper.retention_interval == 365
    reaper.dataspace.close()


# -- logging -------------------------------------------------------------------------------------------


@pytest.fixture
def structlog_unconfigured() -> Iterator[None]:
    """structlog as a library user finds it: never configured (restored afterwards)."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def test_library_use_logs_through_the_standard_logging_module(structlog_unconfigured, caplog, capsys):
    caplog.set_level(logging.INFO, logger="decisionengine")
    engine = LogicEngine(
        {"facts": {"f": "fail_on_error(x.missing > 1)"}, "rules": {}, "channel_name": "library_channel"}
    )
    engine.evaluate_facts({"x": 1})
    Source.Source({"channel_name": "library_channel"}).logger.info("hello from a module", count=3)
    records = [r for r in caplog.records if r.name == "decisionengine"]
    assert any(r.levelno == logging.WARNING and "fact failed and is False" in r.getMessage() for r in records)
    hello = next(r for r in records if "hello from a module" in r.getMessage())
    assert "count=3" in hello.getMessage() and "channel='library_channel'" in hello.getMessage()
    assert hello.structlog_event["class_name"] == "Source"
    assert "hello from a module" not in capsys.readouterr().out  # not printed to stdout
