"""The Reaper: retention boundaries, safety limits, payload collection, start/stop."""

import threading
import time

import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.maintain import Reaper, ReaperState
from decisionengine.testing.waiting import eventually

NOW = 2_000_000_000.0
DAY = 86400.0


def reaper_config(dataspace_config, **settings):
    config = {"dataspace": {**dataspace_config["dataspace"], **settings}}
    config["dataspace"].setdefault("retention_interval_in_days", 7)
    return config


def write_generation(block, generation, when, values):
    """One generation, written in one transaction, with generation time ``when``."""
    tm = block.taskmanager_id
    block.generation_id = generation
    with block.transaction():
        for key, value in values.items():
            block.put(key, value, Header(tm, create_time=when), Metadata(tm, generation_time=when))


def generations(dataspace, block):
    return [g["generation_id"] for g in dataspace.get_generations(block.sequence_id)]


def test_class_constants():
    assert Reaper.MIN_RETENTION_INTERVAL_DAYS == 7
    assert Reaper.MIN_SECONDS_BETWEEN_RUNS == 7080


def test_retention_boundaries(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace, clock=lambda: NOW)
    cutoff = NOW - 7 * DAY
    assert reaper.cutoff() == cutoff
    block = DataBlock(dataspace, "chan")
    times = {1: cutoff - 1.0, 2: cutoff - 0.001, 3: cutoff, 4: cutoff + 0.001, 5: cutoff + 1.0, 6: NOW}
    for generation, when in times.items():
        write_generation(block, generation, when, {"value": generation})

    report = reaper.reap()

    # strictly older than the retention interval goes; exactly at it or younger stays
    assert generations(dataspace, block) == [3, 4, 5, 6]
    assert report.generations == 2
    assert report.products == 2
    assert report.payloads == 2
    assert reaper.state is ReaperState.STEADY
    assert reaper.last_report is report


def test_newest_generation_of_each_taskmanager_is_kept(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace, clock=lambda: NOW)
    old = NOW - 400 * DAY
    busy = DataBlock(dataspace, "busy")
    stale = DataBlock(dataspace, "stale")
    for generation in (1, 2, 3):
        write_generation(busy, generation, old + generation, {"x": generation})
    write_generation(busy, 4, NOW, {"x": 4})
    write_generation(stale, 1, old, {"y": 1})
    write_generation(stale, 2, old + 1, {"y": 2})

    report = reaper.reap()

    assert generations(dataspace, busy) == [4]
    assert generations(dataspace, stale) == [2]  # old, but its newest: kept
    assert report.per_taskmanager == {"busy": 3, "stale": 1}
    assert dataspace.get_dataproduct(stale.sequence_id, 2, "y") == 2


def test_payloads_still_referenced_are_kept(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace, clock=lambda: NOW)
    block = DataBlock(dataspace, "chan")
    shared = {"catalogue": list(range(1000))}
    write_generation(block, 1, NOW - 30 * DAY, {"shared": shared, "only_old": "gone soon"})
    write_generation(block, 2, NOW, {"shared": shared, "only_new": "stays"})
    assert dataspace.storage_stats()["payloads"] == 3

    report = reaper.reap()

    assert report.payloads == 1  # "gone soon"
    assert dataspace.storage_stats()["payloads"] == 2
    assert dataspace.get_dataproduct(block.sequence_id, 2, "shared") == shared


def test_unreferenced_payloads_are_swept(dataspace, dataspace_config):
    """A product replaced in place leaves its old payload behind; the Reaper removes it."""
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace, clock=lambda: NOW)
    block = DataBlock(dataspace, "chan")
    block.put("k", "first value", Header(block.taskmanager_id))
    block.put("k", "second value", Header(block.taskmanager_id))
    assert dataspace.storage_stats()["payloads"] == 2
    report = reaper.reap()
    assert report.generations == 0 and report.payloads == 1
    assert block["k"] == "second value"


def test_dry_run_removes_nothing_and_predicts_the_real_run(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config, reaper_batch_size=3), dataspace=dataspace, clock=lambda: NOW)
    block = DataBlock(dataspace, "chan")
    for generation in range(1, 21):
        when = NOW - (14 - generation) * DAY  # ages 13 days down to -6
        write_generation(block, generation, when, {"n": generation, "same": "shared", "big": "x" * generation * 100})
    before = dataspace.storage_stats()

    preview = reaper.reap(dry_run=True)

    assert dataspace.storage_stats() == before
    assert preview.dry_run
    real = reaper.reap()
    assert (preview.generations, preview.products, preview.payloads, preview.payload_bytes) == (
        real.generations,
        real.products,
        real.payloads,
        real.payload_bytes,
    )
    assert real.generations == 6  # generations 1..6 are older than 7 days
    assert real.batches >= 2
    after = dataspace.storage_stats()
    assert before["payload_bytes"] - after["payload_bytes"] == real.payload_bytes


@pytest.mark.parametrize("days", [0, 6, 6.99, -1])
def test_retention_below_the_minimum_is_refused(dataspace, dataspace_config, days):
    with pytest.raises(ValueError, match="retention_interval_in_days must be at least 7 days"):
        Reaper(reaper_config(dataspace_config, retention_interval_in_days=days), dataspace=dataspace)


def test_settings_refuse_values_below_the_minimum(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace)
    reaper.retention_interval = 7
    with pytest.raises(ValueError, match="at least 7 days"):
        reaper.retention_interval = 3
    assert reaper.retention_interval == 7
    reaper.seconds_between_runs = 7080
    with pytest.raises(ValueError, match="reaper_run_interval must be at least 7080 seconds"):
        reaper.seconds_between_runs = 7079
    with pytest.raises(ValueError, match="must be a number"):
        reaper.retention_interval = "a week"
    with pytest.raises(ValueError, match="reaper_run_interval"):
        Reaper(reaper_config(dataspace_config, reaper_run_interval=60), dataspace=dataspace)


def test_start_and_stop_while_reaping(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config, reaper_batch_size=2), dataspace=dataspace, clock=lambda: NOW)
    block = DataBlock(dataspace, "chan")
    for generation in range(1, 41):
        write_generation(block, generation, NOW - 100 * DAY + generation, {"n": generation})
    assert reaper.state is ReaperState.OFFLINE  # never started

    first_batch = threading.Event()
    may_continue = threading.Event()

    def gate(report):
        first_batch.set()
        may_continue.wait(10)

    reaper.on_batch = gate
    reaper.start(delay=0)
    assert first_batch.wait(10)
    assert reaper.state is ReaperState.ACTIVE

    stopper = threading.Thread(target=reaper.stop)
    stopper.start()
    assert reaper.wait_while(ReaperState.ACTIVE, timeout=10)
    assert reaper.state is ReaperState.SHUTTINGDOWN
    may_continue.set()
    stopper.join(10)

    assert reaper.state is ReaperState.SHUTDOWN
    assert not reaper.thread.is_alive()
    assert reaper.last_report.stopped
    left = generations(dataspace, block)
    assert 1 < len(left) < 40  # stopped part-way, after whole batches only
    assert left == list(range(41 - len(left), 41))
    for generation in left:
        assert dataspace.get_dataproduct(block.sequence_id, generation, "n") == generation

    # and it starts again and finishes the job
    reaper.on_batch = None
    reaper.start(delay=0)
    eventually(lambda: reaper.runs >= 2, 20, what=lambda: f"two Reaper passes, ran {reaper.runs}")
    eventually(lambda: reaper.state is ReaperState.IDLE, 10, what="the Reaper waiting for its next pass (IDLE)")
    reaper.stop()
    assert generations(dataspace, block) == [40]
    assert reaper.state is ReaperState.SHUTDOWN


def test_start_delay_and_stop_before_first_pass(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config), dataspace=dataspace, clock=lambda: NOW)
    reaper.start(delay=3600)
    assert reaper.state is ReaperState.IDLE  # the reference's name for a Reaper waiting for its pass
    assert reaper.status()["next_run"] > time.time() + 3500
    started = time.monotonic()
    reaper.stop()
    assert time.monotonic() - started < 2
    assert reaper.runs == 0
    assert reaper.status()["state"] == "SHUTDOWN"


def test_writers_keep_writing_while_the_reaper_works(dataspace, dataspace_config):
    reaper = Reaper(reaper_config(dataspace_config, reaper_batch_size=5), dataspace=dataspace, clock=lambda: NOW)
    old = DataBlock(dataspace, "old")
    for generation in range(1, 61):
        write_generation(old, generation, NOW - 50 * DAY, {"v": generation, "w": [generation] * 100})
    live = DataBlock(dataspace, "live")
    errors = []
    written = []

    def writer():
        try:
            for generation in range(1, 31):
                write_generation(live, generation, NOW, {"v": generation})
                written.append(generation)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    report = reaper.reap()
    thread.join(30)
    assert errors == []
    assert written == list(range(1, 31))
    assert report.generations == 59
    assert generations(dataspace, live) == list(range(1, 31))
