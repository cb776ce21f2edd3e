"""The TaskManager in-process: generations, failures, retries, publishers, restarts."""

import json
import threading
import time

import pandas as pd
import pytest

from decisionengine.framework.dataspace.datablock import DataBlock
from decisionengine.framework.taskmanager.settings import TaskManagerSettings
from decisionengine.framework.taskmanager.states import InvalidTransition, State, StateMachine
from decisionengine.framework.taskmanager.TaskManager import DECISION, FACT_VALUES, PUBLISHER_STATUS, TaskManager
from decisionengine.testing.waiting import eventually
from tests.taskmanager.channels import counting_channel, module, plan_from


def run_channel(plan, dataspace, timeout=30, **kwargs):
    """Run a task manager in a thread until it ends (it must be configured to end)."""
    snapshots = []
    tm = TaskManager(plan, dataspace, reporter=snapshots.append, **kwargs)
    thread = threading.Thread(target=tm.run)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        tm.stop()
        thread.join(10)
        pytest.fail(f"channel did not finish in {timeout} s: {tm.status()}")
    return tm, snapshots


def run_until(plan, dataspace, reached, timeout=10):
    """Run a task manager until ``reached(tm)``, then stop it (TimeoutError if it never is)."""
    tm = TaskManager(plan, dataspace)
    thread = threading.Thread(target=tm.run)
    thread.start()
    try:
        eventually(lambda: reached(tm), timeout, what=lambda: f"the condition; status {tm.status()}")
    finally:
        tm.stop()
        thread.join(10)
    return tm


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_generations_store_every_product(dataspace, tmp_path):
    record = tmp_path / "published.jsonl"
    plan = plan_from(counting_channel(str(record), max_generations=3), "counting")
    tm, snapshots = run_channel(plan, dataspace)

    assert tm.state.state is State.SHUTDOWN
    assert tm.generation_id == 3
    assert dataspace.get_last_generation_id("counting") == 3
    block = DataBlock(dataspace, "counting", tm.taskmanager_id, generation_id=3)
    assert set(block.keys()) == {
        "numbers",
        "doubled",
        "total",
        "de_logicengine_facts",
        FACT_VALUES,
        PUBLISHER_STATUS,
        DECISION,
    }
    n = int(block["numbers"]["n"].iloc[0])
    assert block["total"] == 2 * (0 + 1 + 2)
    assert list(block["doubled"]["x"]) == [0, 2, 4]
    facts = block["de_logicengine_facts"]
    assert list(facts.columns) == ["rule_name", "fact_name", "fact_value"]
    assert facts.to_dict("records") == [{"rule_name": "publish", "fact_name": "published", "fact_value": True}]
    status = block[PUBLISHER_STATUS].details
    assert status.to_dict("records")[0]["publisher"] == "recorder"
    assert bool(status["ran"].iloc[0]) and status["succeeded"].iloc[0] is True
    # headers say who made what; metadata the generation
    assert block.get_header("numbers")["creator"] == "counter"
    assert block.get_header("total")["creator"] == "summer"
    assert block.get_metadata("total")["generation_id"] == 3
    assert block.get_metadata("total")["state"] == "END_CYCLE"
    # the publisher ran once per generation, then was shut down
    published = records(record)
    assert [r.get("total") for r in published[:3]] == [6, 6, 6]
    assert published[-1] == {"shutdown": True, "pid": published[0]["pid"]}
    assert n >= 3
    # states reported in order
    seen = list(dict.fromkeys(s["state"] for s in snapshots))
    assert seen == ["BOOT", "ACTIVE", "STEADY", "SHUTTINGDOWN", "SHUTDOWN"]


def test_restart_continues_generation_numbering(dataspace, tmp_path):
    record = tmp_path / "published.jsonl"
    plan = plan_from(counting_channel(str(record), max_generations=2), "restarting")
    first, _ = run_channel(plan, dataspace)
    second, _ = run_channel(plan, dataspace)
    assert first.taskmanager_id == second.taskmanager_id
    assert second.generation_id == 4
    assert [g["generation_id"] for g in dataspace.get_generations(second.sequence_id)] == [1, 2, 3, 4]


def test_failing_transform_fails_the_generation_and_the_channel_goes_on(dataspace, tmp_path):
    record = tmp_path / "published.jsonl"
    raw = counting_channel(str(record), max_generations=3)
    raw["transforms"]["doubler"]["parameters"]["fail_on"] = [2]
    tm, _ = run_channel(plan_from(raw, "flaky_transform"), dataspace)

    assert tm.state.state is State.SHUTDOWN
    assert tm.failed_generations == 1
    outcomes = [(r.generation_id, r.outcome) for r in tm.history]
    assert outcomes == [(1, "committed"), (2, "failed"), (2, "committed"), (3, "committed")]
    failed = tm.history[1]
    assert failed.module == "doubler"
    assert "cannot double generation with n=2" in failed.error
    # nothing of the failed attempt (acquire number 2) is stored: generation 2 holds a later acquire
    block = DataBlock(dataspace, "flaky_transform", tm.taskmanager_id, generation_id=2)
    assert int(block["numbers"]["n"].iloc[0]) >= 3


def test_consecutive_failures_put_the_channel_in_error(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_consecutive_failures=3)
    raw["transforms"]["doubler"]["parameters"]["fail_on"] = list(range(1, 100))
    tm, snapshots = run_channel(plan_from(raw, "always_failing"), dataspace)

    assert tm.state.state is State.ERROR
    assert tm.consecutive_failures == 3
    assert "3 consecutive failed generations" in tm.last_error
    assert "doubler" in tm.history[-1].module
    assert snapshots[-1]["state"] == "ERROR"
    assert dataspace.get_last_generation_id("always_failing") == 0
    assert records(tmp_path / "r.jsonl") == [{"shutdown": True, "pid": records(tmp_path / "r.jsonl")[0]["pid"]}]


def test_wrongly_typed_transform_output_fails_naming_the_module(dataspace, tmp_path):
    raw = {
        "sources": {"counter": module("CountingSource", schedule=0.2)},
        "transforms": {"wrong": module("WrongTypeTransform")},
        "publishers": {},
        "task_manager": {"max_consecutive_failures": 1},
    }
    tm, _ = run_channel(plan_from(raw, "wrong_types"), dataspace)
    assert tm.state.state is State.ERROR
    assert tm.history[-1].module == "wrong"
    assert "'wrong': expected int, got str" in tm.history[-1].error


def test_source_retries_with_backoff_then_delivers(dataspace, tmp_path):
    counter = tmp_path / "calls"
    raw = {
        "sources": {
            "flaky": {
                **module("FlakySource", fail_times=2, counter_file=str(counter)),
                "schedule": 60,
                "retries": 3,
                "retry_interval": 0.05,
            },
        },
        "publishers": {},
        "task_manager": {"max_generations": 1},
    }
    started = time.monotonic()
    tm, _ = run_channel(plan_from(raw, "retrying"), dataspace)
    elapsed = time.monotonic() - started
    assert tm.state.state is State.SHUTDOWN
    status = tm.sources["flaky"]
    assert status.failures == 2 and status.deliveries == 1 and status.missed_update_count == 0
    assert elapsed >= 0.05 + 0.1  # backoff doubled: 0.05 s then 0.1 s
    assert dataspace.get_dataproduct(tm.sequence_id, 1, "flaky") == 3


def test_source_that_keeps_failing_misses_updates(dataspace, tmp_path):
    counter = tmp_path / "calls"
    raw = {
        "sources": {
            "flaky": {
                **module("FlakySource", counter_file=str(counter)),
                "schedule": 0.1,
                "retries": 1,
                "retry_interval": 0.01,
            },
            "steady": module("ConstantSource", schedule=0.1),
        },
        "publishers": {},
    }
    tm = run_until(plan_from(raw, "missing"), dataspace, lambda tm: tm.sources["flaky"].missed_update_count >= 3)
    status = tm.sources["flaky"]
    assert status.missed_update_count >= 3
    assert "ConnectionError: upstream unavailable" in status.last_error
    # a generation needs every source at least once: none ran
    assert tm.generation_id == 0
    assert tm.state.state is State.SHUTDOWN


def test_source_with_undeclared_products_misses_its_update(dataspace):
    raw = {"sources": {"liar": module("UndeclaredProductSource", schedule=0.1)}, "publishers": {}}
    tm = run_until(plan_from(raw, "liar"), dataspace, lambda tm: tm.sources["liar"].missed_update_count >= 1)
    assert "not declared: 'surprise'" in tm.sources["liar"].last_error
    assert tm.generation_id == 0


def test_failing_publisher_is_recorded_and_the_data_kept(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_generations=2, max_consecutive_failures=5)
    raw["publishers"]["recorder"]["parameters"]["fail"] = True
    tm, _ = run_channel(plan_from(raw, "publish_fails"), dataspace)
    assert tm.state.state is State.SHUTDOWN
    assert [r.outcome for r in tm.history] == ["publish_failed", "publish_failed"]
    block = DataBlock(dataspace, "publish_fails", tm.taskmanager_id, generation_id=2)
    status = block[PUBLISHER_STATUS].details.to_dict("records")[0]
    assert status["ran"] and status["succeeded"] is False
    assert "the outside world said no" in status["error"]
    assert block["total"] == 6


def test_logic_engine_decides_which_publishers_run(dataspace, tmp_path):
    record = tmp_path / "r.jsonl"
    raw = counting_channel(str(record), max_generations=2)
    raw["logicengines"]["le"]["parameters"]["rules"]["publish"]["expression"] = "big"  # total 6: never big
    tm, _ = run_channel(plan_from(raw, "quiet"), dataspace)
    assert [r for r in records(record) if "total" in r] == []
    block = DataBlock(dataspace, "quiet", tm.taskmanager_id, generation_id=2)
    assert not block[PUBLISHER_STATUS].details["ran"].iloc[0]
    facts = block["de_logicengine_facts"]
    assert facts.to_dict("records") == [{"rule_name": "publish", "fact_name": "published", "fact_value": False}]


def test_without_logic_engine_every_publisher_runs(dataspace, tmp_path):
    record = tmp_path / "r.jsonl"
    raw = counting_channel(str(record), max_generations=2)
    del raw["logicengines"]
    run_channel(plan_from(raw, "no_le"), dataspace)
    assert len([r for r in records(record) if "total" in r]) == 2


def test_empty_logic_engine_block_runs_no_publisher(dataspace, tmp_path):
    record = tmp_path / "r.jsonl"
    raw = counting_channel(str(record), max_generations=2)
    raw["logicengines"] = {}
    run_channel(plan_from(raw, "le_off"), dataspace)
    assert [r for r in records(record) if "total" in r] == []


def test_expired_source_data_is_stored_marked_expired(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_generations=1, data_lifetime=0)
    # One delivery only: a second one (after 0.2 s) would be fresh again and clear the flag.
    raw["sources"]["counter"]["schedule"] = 3600
    tm, _ = run_channel(plan_from(raw, "expiring"), dataspace)
    block = DataBlock(dataspace, "expiring", tm.taskmanager_id, generation_id=1)
    assert block.is_expired("numbers")
    assert tm.sources["counter"].expired


def test_a_generation_starts_as_soon_as_the_source_delivers(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_generations=1)
    raw["sources"]["counter"]["schedule"] = 3600
    tm = TaskManager(plan_from(raw, "prompt"), dataspace)
    started = time.monotonic()
    thread = threading.Thread(target=tm.run)
    thread.start()
    thread.join(20)
    delivered = tm.sources["counter"].last_update
    generation = tm.history[-1]
    assert generation.outcome == "committed"
    assert generation.started - delivered < 0.25
    assert time.monotonic() - started < 15


def test_idle_channel_uses_no_cpu(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"))
    raw["sources"]["counter"]["schedule"] = 3600
    tm = TaskManager(plan_from(raw, "idle"), dataspace)
    thread = threading.Thread(target=tm.run)
    thread.start()
    assert tm.state.wait_for(State.STEADY, 20)
    time.sleep(0.3)
    cpu = time.process_time()
    time.sleep(2)
    used = time.process_time() - cpu
    tm.stop()
    thread.join(10)
    assert used < 0.05, f"an idle channel used {used:.3f} s of CPU in 2 s"


def test_cron_schedule_is_accepted(dataspace):
    raw = {"sources": {"c": module("ConstantSource", schedule="*/5 * * * *")}, "publishers": {}}
    plan = plan_from(raw, "cron")
    assert type(plan.sources["c"].trigger()).__name__ == "CronTrigger"


def test_module_that_cannot_be_created_puts_the_channel_in_error(dataspace):
    raw = {"sources": {"c": module("ConstantSource", schedule=1)}, "publishers": {}}
    plan = plan_from(raw, "boot_fails")
    tm = TaskManager(plan, dataspace)
    object.__setattr__(plan.sources["c"], "parameters", None)  # create() now fails
    assert tm.run() is State.ERROR
    assert "boot failed" in tm.last_error


def test_settings_are_validated():
    assert TaskManagerSettings.from_config({}).max_generations is None
    settings = TaskManagerSettings.from_config({"max_generations": 3, "data_TO": 60}, "chan")
    assert settings.max_generations == 3
    assert settings.warnings == ("channel 'chan': task_manager.data_TO is not used by this decision engine",)
    with pytest.raises(ValueError, match=r"task_manager\.max_generations: expected an integer"):
        TaskManagerSettings.from_config({"max_generations": "lots"}, "chan")
    with pytest.raises(ValueError, match=r"task_manager\.module_timeout: must be at least"):
        TaskManagerSettings.from_config({"module_timeout": 0}, "chan")


def test_state_machine_refuses_impossible_transitions():
    machine = StateMachine()
    machine.set(State.ACTIVE)
    with pytest.raises(InvalidTransition, match="ACTIVE to OFFLINE"):
        machine.set(State.OFFLINE)
    assert State.parse("steady") is State.STEADY
    with pytest.raises(ValueError, match="unknown channel state 'RUNNING'"):
        State.parse("RUNNING")


def test_transforms_see_the_products_of_earlier_transforms(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_generations=1)
    tm, _ = run_channel(plan_from(raw, "chain"), dataspace)
    block = DataBlock(dataspace, "chain", tm.taskmanager_id, generation_id=1)
    assert isinstance(block["doubled"], pd.DataFrame)
    assert block["total"] == int(block["doubled"]["x"].sum())


def test_every_fact_value_is_stored(dataspace, tmp_path):
    raw = counting_channel(str(tmp_path / "r.jsonl"), max_generations=1)
    tm, _ = run_channel(plan_from(raw, "facts"), dataspace)
    values = DataBlock(dataspace, "facts", tm.taskmanager_id, generation_id=1)[FACT_VALUES]
    assert values.to_dict("records") == [
        {"fact_name": "big", "fact_value": False},
        {"fact_name": "has_numbers", "fact_value": True},
    ]
