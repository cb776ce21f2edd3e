"""Publisher status with the reference's API: the board, the product modules consume, a
channel carrying it across generations and restarts, and the readers' table."""

import datetime
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from decisionengine.framework.config.validation import FRAMEWORK_PRODUCTS, ChannelValidationError
from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import PUBLISHER_STATUS, TaskManager
from decisionengine.framework.util import metrics as util_metrics
from decisionengine.framework.web import presentation
from tests.taskmanager.channels import module, plan_from

STATUS_MODULES = "tests.fixtures.publisher_status_modules"


def status_module(name, **parameters):
    return {"module": STATUS_MODULES, "name": name, "parameters": parameters}


# -- the classes --------------------------------------------------------------------------------


def test_the_reference_import_path_and_classes():
    from decisionengine.framework.taskmanager.PublisherStatus import (
        PublisherState,
        PublisherStatus,
        PublisherStatusBoard,
    )

    assert PublisherState._fields == ("enabled", "duration", "since")
    assert callable(PublisherStatus.is_enabled) and callable(PublisherStatus.state)
    assert callable(PublisherStatusBoard.update) and callable(PublisherStatusBoard.snapshot)
    assert PUBLISHER_STATUS == "publisher_status" and PUBLISHER_STATUS in FRAMEWORK_PRODUCTS


def test_the_reference_board_test():
    """The reference's own test of the board, as it is written there."""
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    board = PublisherStatusBoard(["a", "b"])
    snapshot = board.snapshot()
    a1_enabled, _, a1_since = snapshot.state("a")
    b1_enabled, _, b1_since = snapshot.state("b")
    assert a1_enabled and b1_enabled

    board.update("a", False)

    a2_enabled, _, a2_since = snapshot.state("a")
    b2_enabled, _, b2_since = snapshot.state("b")
    assert not a2_enabled and b2_enabled
    assert a2_since > a1_since
    assert b2_since == b1_since
    assert len(str(snapshot).splitlines()) == 4  # a table: header, rule, a, b

    time.sleep(1.1)
    assert board.snapshot().state("a").duration.seconds >= 1


def test_disable_enable_since_and_duration():
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    board = PublisherStatusBoard(["p", "q"])
    start = board.frozen().state("p").since
    assert board.frozen().is_enabled("p") and board.frozen().is_enabled("q")

    board.update("p", True)  # no change: since stays
    assert board.frozen().state("p").since == start
    board.update("p", False)
    disabled = board.frozen()
    assert not disabled.is_enabled("p") and disabled.state("p").since > start
    board.update("p", False)  # still disabled: since stays
    assert board.frozen().state("p").since == disabled.state("p").since
    board.update("p", True)  # enabled again
    enabled = board.frozen()
    assert enabled.is_enabled("p") and enabled.state("p").since > disabled.state("p").since
    assert board.frozen().state("q").since == start  # the other publisher untouched

    # duration runs from now: it grows while the state stays
    first = enabled.state("p").duration
    time.sleep(0.05)
    assert enabled.state("p").duration >= first + datetime.timedelta(seconds=0.04)
    assert enabled.state("p").duration == pytest.approx(
        datetime.datetime.now() - enabled.state("p").since, abs=datetime.timedelta(seconds=0.05)
    )
    # a frozen status does not follow the board; a snapshot does (as the reference's)
    live = board.snapshot()
    board.update("p", False)
    assert enabled.is_enabled("p") and not live.is_enabled("p")
    with pytest.raises(KeyError, match="not on the status board"):
        board.update("nobody", False)
    with pytest.raises(KeyError):
        enabled.is_enabled("nobody")


@pytest.mark.parametrize(
    ("result", "enabled_after"),
    [
        (False, False),
        (np.bool_(False), False),
        (None, True),  # a publish() without return: most publishers
        (0, True),  # a count, not a verdict
        ("", True),
        (pd.DataFrame(), True),
    ],
)
def test_only_a_boolean_result_changes_the_board(result, enabled_after):
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    board = PublisherStatusBoard(["p"])
    board.record("p", result)
    assert board.frozen().is_enabled("p") is enabled_after


def test_true_enables_again_and_none_keeps_the_state():
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    board = PublisherStatusBoard(["p"])
    assert board.record("p", False) is False
    since = board.frozen().state("p").since
    assert board.record("p", None) is None
    assert not board.frozen().is_enabled("p") and board.frozen().state("p").since == since
    assert board.record("p", np.bool_(True)) is True
    assert board.frozen().is_enabled("p")


def test_resume_carries_known_publishers_and_starts_new_ones_enabled():
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    old = PublisherStatusBoard(["kept", "gone"])
    old.update("kept", False)
    stored = old.frozen()
    board = PublisherStatusBoard.resume(["kept", "new"], stored)
    status = board.frozen()
    assert status.publishers == ["kept", "new"]
    assert not status.is_enabled("kept") and status.state("kept").since == stored.state("kept").since
    assert status.is_enabled("new")


def test_details_and_the_table_operators_see():
    from decisionengine.framework.taskmanager.PublisherStatus import DETAIL_COLUMNS, PublisherStatusBoard

    board = PublisherStatusBoard(["a", "b"])
    board.update("b", False)
    details = pd.DataFrame(
        [
            {"publisher": "a", "ran": True, "succeeded": False, "seconds": 0.5, "error": "RuntimeError: no"},
            {"publisher": "b", "ran": False, "succeeded": None, "seconds": None, "error": None},
        ]
    )
    status = board.frozen(details)
    assert status.details is details
    table = status.to_frame()
    assert list(table.columns) == [*DETAIL_COLUMNS, "enabled", "since"]
    rows = table.to_dict("records")
    assert rows[0]["ran"] and rows[0]["succeeded"] is False and rows[0]["error"] == "RuntimeError: no"
    assert rows[0]["enabled"] is True and rows[1]["enabled"] is False
    assert board.frozen().details.empty and list(board.frozen().details.columns) == list(DETAIL_COLUMNS)
    assert presentation.displayed(status).equals(table)
    old_format = details.copy()
    assert presentation.displayed(old_format) is old_format  # stored before the board: shown as it is


# -- modules in the reference's style ------------------------------------------------------------


def test_reference_style_modules_read_the_status_from_a_data_block(tmp_path):
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard
    from tests.fixtures.publisher_status_modules import (
        GatedPublisher,
        StatusWatchingTransform,
        SwitchingPublisher,
    )

    record = tmp_path / "switch.jsonl"
    gated_record = tmp_path / "gated.jsonl"
    switch = SwitchingPublisher({"results": [False], "record": str(record), "channel_name": "c"})
    gated = GatedPublisher({"gate": "switch", "record": str(gated_record), "channel_name": "c"})
    watcher = StatusWatchingTransform({"publisher": "switch", "channel_name": "c"})
    board = PublisherStatusBoard(["switch", "gated"])
    numbers = pd.DataFrame({"n": [1]})

    block = {"publisher_status": board.frozen(), "numbers": numbers}  # tests pass plain dicts
    board.record("switch", switch.publish(block))
    gated.publish(block)
    assert watcher.transform(block)["publisher_seen"]["note"].tolist() == ["enabled"]

    block = {"publisher_status": board.frozen(), "numbers": numbers}
    gated.publish(block)
    seen = watcher.transform(block)["publisher_seen"]
    assert seen["enabled"].tolist() == [False] and seen["note"].iloc[0].startswith("disabled for")
    assert [json.loads(line)["acted"] for line in gated_record.read_text().splitlines()] == [True, False]
    assert json.loads(record.read_text().splitlines()[0])["returned"] is False
    with pytest.raises(TypeError, match="expected PublisherStatus"):
        watcher.transform({"publisher_status": pd.DataFrame()})


def test_a_channel_may_consume_publisher_status_but_not_produce_it():
    raw = {
        "sources": {"counter": module("CountingSource", schedule=0.2)},
        "transforms": {"watcher": status_module("StatusWatchingTransform", publisher="switch")},
        "logicengines": {
            "le": {
                "module": "decisionengine.framework.logicengine.LogicEngine",
                "name": "LogicEngine",
                "parameters": {
                    "facts": {"on": "publisher_status.is_enabled('switch')"},
                    "rules": {"go": {"expression": "on", "actions": ["switch"]}},
                },
            }
        },
        "publishers": {"switch": status_module("SwitchingPublisher")},
    }
    plan = plan_from(raw, "consumer")  # nothing produces it: the framework provides it
    assert plan.module("watcher").consumes["publisher_status"].__name__ == "PublisherStatus"
    forging = dict(raw, transforms={"forger": status_module("ForgingTransform")})
    with pytest.raises(ChannelValidationError, match="produces 'publisher_status', which the framework provides"):
        plan_from(forging, "forging")


# -- a real channel --------------------------------------------------------------------------------


def switching_channel(record, **task_manager):
    """A source, a transform watching publisher 'switch', and two publishers: 'switch'
    returns False, None, True (then None), 'quiet' returns None always."""
    return {
        "sources": {"counter": module("CountingSource", schedule=0.2)},
        "transforms": {"watcher": status_module("StatusWatchingTransform", publisher="switch")},
        "publishers": {
            "switch": status_module("SwitchingPublisher", results=[False, None, True], record=str(record)),
            "quiet": status_module("SwitchingPublisher"),
        },
        "task_manager": task_manager,
    }


def run(plan, dataspace, timeout=60):
    tm = TaskManager(plan, dataspace)
    thread = threading.Thread(target=tm.run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), tm.status()
    assert tm.state.state is State.SHUTDOWN, tm.status()
    return tm


def stored(dataspace, name, tm, generation, key=PUBLISHER_STATUS):
    return DataBlock(dataspace, name, tm.taskmanager_id, generation_id=generation)[key]


def test_a_channel_carries_the_board_across_generations_and_restarts(dataspace, tmp_path):
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatus

    record = tmp_path / "switch.jsonl"
    plan = plan_from(switching_channel(record, max_generations=4), "switching")
    tm = run(plan, dataspace)

    boards = [stored(dataspace, "switching", tm, g) for g in range(1, 5)]
    assert all(type(board) is PublisherStatus for board in boards)  # read back through the restricted unpickler
    # stored after the publishers: False disables, None keeps, True enables again
    assert [b.is_enabled("switch") for b in boards] == [False, False, True, True]
    assert boards[0].state("switch").since == boards[1].state("switch").since  # no change, same since
    assert boards[2].state("switch").since > boards[1].state("switch").since
    assert all(b.is_enabled("quiet") for b in boards)  # returns None: never disabled
    assert len({b.state("quiet").since for b in boards}) == 1
    for board in boards:  # the details as before
        details = board.details.set_index("publisher")
        assert details.loc["switch", "ran"] and details.loc["switch", "succeeded"] is True
        assert details.loc["quiet", "seconds"] >= 0 and details.loc["quiet", "error"] is None

    # the modules of generation n read the board as generation n-1 stored it
    seen = [stored(dataspace, "switching", tm, g, "publisher_seen").iloc[0] for g in range(1, 5)]
    assert [bool(s["enabled"]) for s in seen] == [True, False, False, True]
    for before, later in zip(boards, seen[1:], strict=False):
        assert later["since"] == before.state("switch").since.isoformat()
    published = [json.loads(line) for line in record.read_text().splitlines()]
    assert [p["returned"] for p in published] == [False, None, True, None]
    assert [p["seen"]["switch"]["enabled"] for p in published] == [True, False, False, True]
    assert [p["seen"]["switch"]["since"] for p in published] == [s["since"] for s in seen]
    if not os.environ.get(util_metrics.MULTIPROC_ENV):  # one process: its own registry answers
        found = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(util_metrics.render_metrics()[0].decode())
            for sample in family.samples
        }
        assert found[("de_publisher_enabled", (("channel", "switching"), ("publisher", "switch")))] == 1
        assert found[("de_publisher_enabled", (("channel", "switching"), ("publisher", "quiet")))] == 1
    # publisher_status is not stored with the generation's commit: stored means "published"
    assert PUBLISHER_STATUS not in DataBlock(dataspace, "switching", tm.taskmanager_id, generation_id=4)._committed

    # a restart carries on from the last stored board (not "every publisher enabled now")
    again = run(plan_from(switching_channel(record, max_generations=1), "switching"), dataspace)
    assert again.generation_id == 5
    seen5 = stored(dataspace, "switching", again, 5, "publisher_seen").iloc[0]
    assert bool(seen5["enabled"]) and seen5["since"] == boards[3].state("switch").since.isoformat()
    fifth = stored(dataspace, "switching", again, 5)
    assert not fifth.is_enabled("switch")  # its publisher started over with False
    if not os.environ.get(util_metrics.MULTIPROC_ENV):
        families = text_string_to_metric_families(util_metrics.render_metrics()[0].decode())
        enabled = {
            s.labels["publisher"]: s.value
            for f in families
            for s in f.samples
            if s.name == "de_publisher_enabled" and s.labels["channel"] == "switching"
        }
        assert enabled == {"switch": 0, "quiet": 1}
    assert fifth.state("quiet").since == boards[3].state("quiet").since


def test_a_board_stored_in_the_format_before_it_starts_a_fresh_board(dataspace, tmp_path):
    """publisher_status stored as a plain DataFrame (by the version before the board): the
    channel starts with every publisher enabled, and readers show the old table."""
    record = tmp_path / "switch.jsonl"
    first = run(plan_from(switching_channel(record, max_generations=1), "upgraded"), dataspace)
    old = pd.DataFrame([{"publisher": "switch", "ran": True, "succeeded": True, "seconds": 0.1, "error": None}])
    header = Header(first.taskmanager_id, creator="taskmanager")
    metadata = Metadata(first.taskmanager_id, state="END_CYCLE", generation_id=1)
    dataspace.write_generation(first.sequence_id, 1, {PUBLISHER_STATUS: (old, header, metadata)})
    assert presentation.displayed(stored(dataspace, "upgraded", first, 1)).equals(old)

    before = datetime.datetime.now()
    again = run(plan_from(switching_channel(record, max_generations=1), "upgraded"), dataspace)
    seen = stored(dataspace, "upgraded", again, 2, "publisher_seen").iloc[0]
    assert bool(seen["enabled"]) and datetime.datetime.fromisoformat(seen["since"]) >= before


def test_a_recovered_generation_publishes_with_the_board_before_it(dataspace, dataspace_config, tmp_path):
    """A generation whose publishers did not finish is published at the next start: its
    publishers read the board the generation before stored, and its board is stored."""
    import sqlalchemy as sa

    from decisionengine.framework.dataspace.datasources.sql_engine import create_engine

    record = tmp_path / "switch.jsonl"
    plan = plan_from(switching_channel(record, max_generations=2), "recovering")
    first = run(plan, dataspace)
    engine = create_engine(dataspace_config["dataspace"]["datasource"]["config"])
    with engine.begin() as conn:  # generation 2's publishers never finished
        conn.execute(
            sa.text("DELETE FROM dataproduct WHERE key = :key AND generation_id = 2 AND taskmanager_seq = :seq"),
            {"key": PUBLISHER_STATUS, "seq": first.sequence_id},
        )
    engine.dispose()
    generation_1 = stored(dataspace, "recovering", first, 1)

    run(plan_from(switching_channel(record, max_generations=1), "recovering"), dataspace)
    published = [json.loads(line) for line in record.read_text().splitlines()]
    recovered = published[2]  # the new process's first call: generation 2 again
    assert recovered["generation"] == 2
    assert recovered["seen"]["switch"]["enabled"] is False
    assert recovered["seen"]["switch"]["since"] == generation_1.state("switch").since.isoformat()
    assert not stored(dataspace, "recovering", first, 2).is_enabled("switch")  # stored again: False again


def test_facts_may_read_the_status(dataspace):
    """A rule that fires a publisher only while it is enabled: once its publish() returned
    False, the logic engine of the next generations does not fire it."""
    raw = {
        "sources": {"counter": module("CountingSource", schedule=0.2)},
        "logicengines": {
            "le": {
                "module": "decisionengine.framework.logicengine.LogicEngine",
                "name": "LogicEngine",
                "parameters": {
                    "facts": {
                        "switch_on": "publisher_status.is_enabled('switch')",
                        "known_for": "publisher_status.state('switch').duration.total_seconds() >= 0",
                    },
                    "rules": {"go": {"expression": "switch_on and known_for", "actions": ["switch"]}},
                },
            }
        },
        "publishers": {"switch": status_module("SwitchingPublisher", results=[False])},
        "task_manager": {"max_generations": 3, "max_consecutive_failures": 1},
    }
    tm = run(plan_from(raw, "gated_by_facts"), dataspace)
    assert [(r.outcome, r.publishers) for r in tm.history] == [
        ("committed", {"switch": True}),
        ("committed", {}),
        ("committed", {}),
    ]
    facts = stored(dataspace, "gated_by_facts", tm, 2, "de_logicengine_fact_values")
    assert dict(zip(facts["fact_name"], facts["fact_value"], strict=True)) == {"switch_on": False, "known_for": True}
    assert not stored(dataspace, "gated_by_facts", tm, 3).details["ran"].any()
