"""Publishers act only on committed generations, at least once each, with a key they can read."""

import json
import re
import threading
import time

import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.datablock import DataBlock
from decisionengine.framework.dataspace.datasources.sql_engine import create_engine
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import DECISION, PUBLISHER_STATUS, TaskManager
from decisionengine.testing.waiting import eventually
from tests.conftest import global_config
from tests.taskmanager.channels import counting_channel, plan_from


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def published_keys(path):
    return [entry["key"] for entry in records(path) if "key" in entry]


def run(plan, dataspace, timeout=30):
    tm = TaskManager(plan, dataspace)
    thread = threading.Thread(target=tm.run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), tm.status()
    return tm


def stored_decision(dataspace, name, tm, generation):
    return DataBlock(dataspace, name, tm.taskmanager_id, generation_id=generation)[DECISION]


def test_publishers_read_the_key_of_the_committed_generation(dataspace, tmp_path):
    record = tmp_path / "r.jsonl"
    tm = run(plan_from(counting_channel(str(record), max_generations=3), "keyed"), dataspace)
    keys = published_keys(record)
    assert len(keys) == 3 and len(set(keys)) == 3
    for generation, key in enumerate(keys, start=1):
        assert re.fullmatch(rf"keyed:{generation}:[0-9a-f]{{16}}", key), key
        decision = stored_decision(dataspace, "keyed", tm, generation)
        assert decision["idempotency_key"] == key and decision["publishers"] == ["recorder"]
        block = DataBlock(dataspace, "keyed", tm.taskmanager_id, generation_id=generation)
        assert block[PUBLISHER_STATUS].details["succeeded"].tolist() == [True]  # stored after publishing


def refuse_generation(url, generation):
    """A trigger that makes the database refuse the commit of ``generation``."""
    engine = create_engine({"url": url})
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE INSERT ON generation WHEN NEW.generation_id = {generation} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.generation_id = {generation} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON generation FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    engine.dispose()


def test_a_generation_whose_commit_fails_is_never_published(db_url, tmp_path):
    space = DataSpace(global_config(db_url))
    refuse_generation(db_url, 2)
    record = tmp_path / "r.jsonl"
    tm = run(plan_from(counting_channel(str(record), max_consecutive_failures=3), "refused"), space)
    assert tm.state.state is State.ERROR
    assert tm.generation_id == 1 and tm.consecutive_failures == 3
    assert all("refused by the test" in r.error for r in list(tm.history)[1:])
    # the publisher acted for generation 1 only: never for the three attempts at generation 2
    keys = published_keys(record)
    assert keys == [stored_decision(space, "refused", tm, 1)["idempotency_key"]]
    space.close()


def test_a_committed_generation_whose_publishers_did_not_finish_is_published_at_the_next_start(
    dataspace, dataspace_config, tmp_path
):
    record = tmp_path / "r.jsonl"
    plan = plan_from(counting_channel(str(record), max_generations=1), "interrupted")
    first = run(plan, dataspace)
    key = published_keys(record)[0]
    # The process ended between the commit and the publishers' status: what the database holds then.
    engine = create_engine(dataspace_config["dataspace"]["datasource"]["config"])
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM dataproduct WHERE key = :key"), {"key": PUBLISHER_STATUS})
    engine.dispose()

    second = run(plan, dataspace)
    keys = published_keys(record)
    assert keys[:2] == [key, key]  # generation 1 published again, with the same key
    assert keys[2].startswith("interrupted:2:") and len(keys) == 3
    assert second.generation_id == 2 and first.generation_id == 1
    block = DataBlock(dataspace, "interrupted", second.taskmanager_id, generation_id=1)
    assert block[PUBLISHER_STATUS].details["succeeded"].tolist() == [True]


@pytest.mark.postgresql
def test_a_database_outage_heals_by_itself(tmp_path):
    """PostgreSQL stops under a running channel and comes back: the channel keeps acquiring,
    says since when the database is away, and commits again within 5 s of its return; every
    generation is whole and numbered once, and none was published without its commit."""
    from tests.conftest import new_pg_server

    server = new_pg_server()
    server.start()
    space = None
    try:
        space = DataSpace(global_config(server.url("postgres")))
        record = tmp_path / "r.jsonl"
        raw = counting_channel(str(record), standby_retry=0.2)
        raw["sources"]["counter"]["schedule"] = 0.2
        tm = TaskManager(plan_from(raw, "outage"), space)
        thread = threading.Thread(target=tm.run)
        thread.start()
        eventually(lambda: tm.generation_id >= 3, 30, what="three generations")

        server.stop("fast")
        eventually(lambda: tm.database_unreachable_since is not None, 30, what="the outage noticed")
        assert "database unreachable since" in tm.status()["last_error"]
        deliveries = tm.sources["counter"].deliveries
        eventually(lambda: tm.sources["counter"].deliveries > deliveries + 2, 30, what="sources acquiring meanwhile")
        before = tm.generation_id

        server.start()
        back = time.monotonic()
        eventually(lambda: tm.generation_id > before, 30, what="a generation after the return")
        assert time.monotonic() - back < 5.0
        assert tm.database_unreachable_since is None and tm.status()["last_error"] is None
        eventually(lambda: tm.generation_id > before + 2, 30, what="generations going on")
        tm.stop()
        thread.join(30)
        assert tm.state.state is State.SHUTDOWN

        generations = [g["generation_id"] for g in space.get_generations(tm.sequence_id)]
        assert generations == list(range(1, tm.generation_id + 1))
        for generation in generations:
            keys = set(space.get_keys(tm.sequence_id, generation))
            assert {"numbers", "doubled", "total", DECISION} <= keys, (generation, keys)
        committed = {stored_decision(space, "outage", tm, g)["idempotency_key"] for g in generations}
        published = published_keys(record)
        assert len(published) == len(set(published))  # no generation published twice
        assert set(published) <= committed  # nothing published that was not committed
    finally:
        if space is not None:
            space.close()
        server.destroy()
