"""Channel ownership: two processes (here: two task managers) never run one channel at once."""

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import TaskManager
from decisionengine.testing.waiting import eventually
from tests.taskmanager.channels import counting_channel, plan_from


def start(plan, config):
    space = DataSpace(config)
    tm = TaskManager(plan, space)
    thread = threading.Thread(target=tm.run, daemon=True)
    thread.start()
    return tm, thread, space


def terminate_backend(connection, pid):
    """End a PostgreSQL backend and wait until it is gone: its locks go with it, not before."""
    connection.execute(sa.select(sa.func.pg_terminate_backend(pid)))

    def gone():
        # pg_stat_activity is a snapshot taken once per transaction: drop it to see the present.
        connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        found = connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
        return found == 0

    eventually(gone, 20, what=f"backend {pid} to exit")


def test_second_owner_waits_in_standby_and_takes_over(dataspace_config, tmp_path):
    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), standby_retry=0.1), "owned")
    first, first_thread, first_space = start(plan, dataspace_config)
    assert first.state.wait_for(State.STEADY, 20)
    second, second_thread, second_space = start(plan, dataspace_config)
    eventually(lambda: second.standby, 20, what="the second owner in standby")
    time.sleep(0.5)
    assert second.state.state is State.BOOT
    assert second.status()["standby"] is True
    assert second.generations_run == 0

    first.stop()
    first_thread.join(10)
    handed_over_at = first.generation_id
    assert second.state.wait_for(State.STEADY, 20)
    assert not second.standby
    eventually(lambda: second.generation_id > handed_over_at, 20, what="a generation by the new owner")
    second.stop()
    second_thread.join(10)
    # numbering continued across owners, with no generation written twice
    generations = [g["generation_id"] for g in second_space.get_generations(second.sequence_id)]
    assert generations == list(range(1, second.generation_id + 1))
    first_space.close()
    second_space.close()


def test_stopping_a_standby_channel_shuts_it_down(dataspace_config, tmp_path):
    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), standby_retry=0.1), "waiting")
    owner, owner_thread, owner_space = start(plan, dataspace_config)
    assert owner.state.wait_for(State.STEADY, 20)
    waiting, waiting_thread, waiting_space = start(plan, dataspace_config)
    eventually(lambda: waiting.standby, 20, what="the second owner in standby")
    waiting.stop()
    waiting_thread.join(10)
    assert waiting.state.state is State.SHUTDOWN
    owner.stop()
    owner_thread.join(10)
    owner_space.close()
    waiting_space.close()


@pytest.mark.postgresql
def test_losing_the_lock_to_another_server_yields_the_channel(pg_url, tmp_path):
    """The lock's connection drops and another server takes the channel meanwhile: the
    channel waits in standby, then takes the channel back once it is free again."""
    from decisionengine.framework.dataspace.ownership import lock_key
    from tests.conftest import global_config

    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), standby_retry=0.1), "fragile")
    tm, thread, space = start(plan, global_config(pg_url))
    assert tm.state.wait_for(State.STEADY, 20)
    lock_pid = tm._ownership.conn.execute(sa.select(sa.func.pg_backend_pid())).scalar()
    with space.datasource.engine.connect() as other_server:
        terminate_backend(other_server, lock_pid)
        assert other_server.execute(sa.select(sa.func.pg_try_advisory_lock(lock_key("fragile")))).scalar()
        other_server.commit()
        eventually(lambda: tm.standby and tm.state.state is State.BOOT, 20, what="the channel in standby")
        assert "lost ownership" in tm.last_error
        yielded_at = tm.generation_id
        other_server.execute(sa.select(sa.func.pg_advisory_unlock(lock_key("fragile"))))
        other_server.commit()
    eventually(lambda: tm.generation_id > yielded_at + 1, 20, what="generations after taking the channel back")
    assert not tm.standby and tm.state.state is State.STEADY
    tm.stop()
    thread.join(10)
    generations = [g["generation_id"] for g in space.get_generations(tm.sequence_id)]
    assert generations == list(range(1, tm.generation_id + 1))
    space.close()


@pytest.mark.postgresql
def test_a_dropped_lock_connection_is_taken_again_when_nobody_else_did(pg_url, tmp_path):
    from tests.conftest import global_config

    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl")), "resilient")
    tm, thread, space = start(plan, global_config(pg_url))
    assert tm.state.wait_for(State.STEADY, 20)
    lock_pid = tm._ownership.conn.execute(sa.select(sa.func.pg_backend_pid())).scalar()
    with space.datasource.engine.connect() as conn:
        terminate_backend(conn, lock_pid)
    before = tm.generation_id
    eventually(lambda: tm.generation_id > before + 2, 20, what="three more generations")
    assert tm.state.state is State.STEADY
    assert tm._ownership.held()
    tm.stop()
    thread.join(10)
    space.close()


@contextlib.contextmanager
def owned_by_a_live_member(pg_url, plan):
    """The channel run by a task manager of a live cluster member ("a"), until the block ends."""
    from decisionengine.framework.dataspace.membership import Membership
    from tests.conftest import global_config

    space = DataSpace(global_config(pg_url))
    member = Membership(space.datasource, "a", 60)
    member.beat([], False)
    owner = TaskManager(plan, space, server_id=member.server_id)
    thread = threading.Thread(target=owner.run, daemon=True)
    thread.start()
    try:
        assert owner.state.wait_for(State.STEADY, 20)
        yield owner, thread
    finally:
        owner.stop()
        thread.join(10)
        member.leave()
        space.close()


@contextlib.contextmanager
def running(taskmanager, space):
    thread = threading.Thread(target=taskmanager.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        taskmanager.stop()
        thread.join(10)
        space.close()


@pytest.mark.postgresql
def test_a_channel_in_standby_keeps_no_connection_slot_between_its_attempts(pg_url, tmp_path):
    """Regression (benchmarks/scale.py): a process in standby tried to claim its channel once
    a retry and kept its connection, and so one of its server's connection slots, half a
    second after each try; fifty of them on a joining server starved its running channels."""
    from decisionengine.framework.dataspace.connection_gate import ConnectionGate, create_slots, gated_config
    from tests.conftest import global_config

    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), standby_retry=0.1), "rationed")
    with owned_by_a_live_member(pg_url, plan):
        config = global_config(pg_url)
        datasource = config["dataspace"]["datasource"]
        datasource["config"] = gated_config(datasource["config"], "rationed")
        space = DataSpace(config)
        engine = space.datasource.engine
        engine.dispose()  # what opening it connected was not gated
        gate = ConnectionGate(create_slots(str(tmp_path / "slots"), 2), 2)
        gate.install(engine)
        space.idle_hook = gate.idle_hook(engine.pool)
        waiting = TaskManager(plan, space, server_id="b:elsewhere")  # as under server b
        with running(waiting, space):
            eventually(lambda: waiting.standby, 20, what="the second owner in standby")
            samples = []
            deadline = time.monotonic() + 1.5  # fifteen attempts at standby_retry 0.1
            while time.monotonic() < deadline:
                samples.append(gate.in_use())
                time.sleep(0.005)
            assert waiting.standby
            free = samples.count(0) / len(samples)
            assert free > 0.5, f"the slot was free in only {free:.0%} of {len(samples)} looks while in standby"


@pytest.mark.postgresql
def test_a_standby_under_a_server_tries_ever_less_often_and_claims_at_once_when_told(pg_url, tmp_path):
    """Under a cluster member a standby's own attempts back off (each is a new connection on a
    gated server): its server tells it when the channel is free (``claim_now``)."""
    from tests.conftest import global_config

    plan = plan_from(counting_channel(str(tmp_path / "r.jsonl"), standby_retry=0.1), "patient")
    with owned_by_a_live_member(pg_url, plan) as (owner, owner_thread):
        space = DataSpace(global_config(pg_url))
        waiting = TaskManager(plan, space, server_id="b:elsewhere")
        attempts = []
        take_and_claim = waiting._take_and_claim

        def counted():
            attempts.append(time.monotonic())
            return take_and_claim()

        waiting._take_and_claim = counted
        with running(waiting, space):
            eventually(lambda: waiting.standby, 20, what="the second owner in standby")
            first = attempts[0]
            eventually(lambda: attempts[-1] - first > 3, 20, what="three seconds of attempts")
            within = [at for at in attempts if at - first <= 3]
            # pauses 0.1, 0.2, 0.4, 0.8, 1.6: six attempts in three seconds, not thirty
            assert len(within) <= 7, f"{len(within)} attempts in 3 s at standby_retry 0.1"
            assert waiting.standby

            owner.stop()
            owner_thread.join(10)
            told = time.monotonic()
            waiting.claim_now()  # what its server sends at the next heartbeat that shows it free
            eventually(lambda: not waiting.standby and waiting.fence is not None, 10, what="the takeover")
            took = time.monotonic() - told
            assert took < 1.5, f"took over {took:.1f} s after being told (its own pause was over 3 s)"
