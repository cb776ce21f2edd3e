"""The connection slots of channel processes: closing idle connections gives their slot back
and never makes a thread that checks out at that moment wait for the pool's timeout."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy import event

from decisionengine.framework.dataspace.connection_gate import ConnectionGate, create_slots

POOL_TIMEOUT = 3.0


def gated_engine(db_url: str, tmp_path) -> tuple[sa.Engine, ConnectionGate]:
    url = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT)
    gate = ConnectionGate(create_slots(str(tmp_path / "slots"), 2), 2, wait=5)
    gate.install(engine)
    return engine, gate


def test_closing_idle_connections_gives_their_slot_back(db_url, tmp_path):
    engine, gate = gated_engine(db_url, tmp_path)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            assert gate.in_use() == 1
        assert gate.in_use() == 1  # idle in the pool, still holding its slot
        gate.close_idle(engine.pool)
        assert gate.in_use() == 0
        with engine.connect() as conn:  # the pool connects again, with a slot
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
            assert gate.in_use() == 1
    finally:
        engine.dispose()


def test_a_checkout_during_the_idle_close_does_not_wait_for_the_pool_timeout(db_url, tmp_path):
    """Regression: the idle close used ``pool.dispose()``; a checkout that came while dispose had
    emptied the pool waited for the whole pool timeout (30 s in a channel process)."""
    engine, gate = gated_engine(db_url, tmp_path)
    # a close that takes a moment, as over a network: widens the window the bug needed
    event.listen(engine.pool, "close", lambda *_: time.sleep(0.005))
    stop = threading.Event()
    slowest = [0.0]
    checkouts = [0]

    def use() -> None:
        while not stop.is_set():
            started = time.monotonic()
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            slowest[0] = max(slowest[0], time.monotonic() - started)
            checkouts[0] += 1

    def close() -> None:
        while not stop.is_set():
            gate.close_idle(engine.pool)

    threads = [threading.Thread(target=use), threading.Thread(target=close)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and slowest[0] < POOL_TIMEOUT:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(POOL_TIMEOUT + 10)
        engine.dispose()
    assert checkouts[0] > 50
    assert slowest[0] < POOL_TIMEOUT / 2, f"a checkout waited {slowest[0]:.2f} s (pool timeout {POOL_TIMEOUT:g} s)"
