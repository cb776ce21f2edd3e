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


def test_an_idle_connection_is_kept_until_another_process_waits_for_its_slot(db_url, tmp_path):
    """A new connection is dear (a PostgreSQL backend start): an idle one is kept while nobody
    waits for its slot (before: closed after 0.5 s idle, at every generation of every
    channel), and given back promptly when another process waits (before: 0.5 s later)."""
    import subprocess
    import sys

    engine, gate = gated_engine(db_url, tmp_path)
    connects = []
    event.listen(engine, "connect", lambda *_: connects.append(time.monotonic()))
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            time.sleep(0.6)  # longer than the old idle close
            assert gate.in_use() == 1
        assert len(connects) == 1, "the idle connection was closed although nobody waited"

        # the two slots: one held by this idle connection, one taken by the test
        other = gate.take()
        code = (
            "import sys, time; from decisionengine.framework.dataspace.connection_gate import ConnectionGate as G;"
            "started = time.monotonic(); G.give_back(G(sys.argv[1], 2, wait=20).take());"
            "print(round(time.monotonic() - started, 3))"
        )
        directory = str(tmp_path / "slots")
        waiter = subprocess.run(
            [sys.executable, "-c", code, directory], check=False, capture_output=True, text=True, timeout=60
        )
        ConnectionGate.give_back(other)
        assert waiter.returncode == 0, waiter.stderr
        waited = float(waiter.stdout)
        assert waited < 2, f"the waiter got the idle connection's slot after {waited:.2f} s (IDLE_KEEP: 60 s)"
        assert gate.in_use() == 0
        with engine.connect() as conn:  # connects again, with a slot
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        assert len(connects) == 2
    finally:
        engine.dispose()


def test_done_for_now_keeps_the_connection_only_while_the_server_has_a_slot_to_spare(db_url, tmp_path):
    """``DataSpace.idle`` after a generation: on a server with a free slot the connection is
    kept for the next generation; on one short of slots it goes back at once (holders that
    kept theirs until a newcomer waited made every newcomer wait: benchmarks/scale.py)."""
    engine, gate = gated_engine(db_url, tmp_path)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        gate.idle(engine.pool)
        assert gate.in_use() == 1, "given back although the other slot was free"
        other = gate.take()  # now no slot is free
        try:
            gate.idle(engine.pool)
            assert gate.in_use() == 0, "kept although the server had no slot to spare"
        finally:
            ConnectionGate.give_back(other)
    finally:
        engine.dispose()


# --- waiting in line: no database needed, the slots are lock files -----------------------


def test_a_long_waiter_gets_the_slot_before_a_greedy_newcomer(tmp_path):
    """Regression (benchmarks/scale.py): a waiter polling with pauses growing to 250 ms lost
    a slot, again and again, to processes giving it back and taking it again at once; some
    waited more than 30 s.  Now the greedy one must line up behind the waiter."""
    directory = create_slots(str(tmp_path / "slots"), 1)
    greedy = ConnectionGate(directory, 1, wait=10)
    waiter = ConnectionGate(directory, 1, wait=10)
    fd = greedy.take()
    got = threading.Event()
    waited = []

    def wait_for_slot() -> None:
        started = time.monotonic()
        mine = waiter.take()
        waited.append(time.monotonic() - started)
        got.set()
        ConnectionGate.give_back(mine)

    thread = threading.Thread(target=wait_for_slot)
    thread.start()
    time.sleep(0.1)  # the waiter is in line (nothing observable to await: it sleeps in the kernel)
    rounds = 0
    deadline = time.monotonic() + 5
    while not got.is_set() and time.monotonic() < deadline:
        ConnectionGate.give_back(fd)  # give it back and ask again at once, as a busy channel does
        fd = greedy.take()
        rounds += 1
        time.sleep(0.01)  # "uses" the connection
    ConnectionGate.give_back(fd)
    thread.join(10)
    assert got.is_set(), f"the waiter never got the slot while the greedy one took it {rounds} times"
    assert rounds <= 2, f"the greedy one took the slot {rounds} times while the waiter waited"
    assert waited[0] < 1.0


def test_a_waiter_gives_up_in_line_with_an_error_naming_the_setting_and_passes_its_turn_on(tmp_path):
    import fcntl
    import os

    import pytest

    from decisionengine.framework.dataspace.errors import DataSpaceConnectionError

    directory = create_slots(str(tmp_path / "slots"), 1)
    head = os.open(os.path.join(directory, "queue.lock"), os.O_RDWR)
    fcntl.flock(head, fcntl.LOCK_EX)  # someone is at the head of the line and stays there
    try:
        started = time.monotonic()
        with pytest.raises(DataSpaceConnectionError, match=r"within 0.3 s \(waiting behind .*channel_connections"):
            ConnectionGate(directory, 1, wait=0.3).take()
        assert 0.3 <= time.monotonic() - started < 2
    finally:
        os.close(head)
    # the abandoned turn is handed on at once: the next waiter is not kept behind a ghost
    started = time.monotonic()
    ConnectionGate.give_back(ConnectionGate(directory, 1, wait=5).take())
    assert time.monotonic() - started < 1


def test_a_waiter_killed_at_the_head_of_the_line_does_not_block_the_others(tmp_path):
    """kill -9 of the process looking for a slot for the others: the kernel drops its locks."""
    import subprocess
    import sys

    directory = create_slots(str(tmp_path / "slots"), 1)
    holder = ConnectionGate(directory, 1, wait=5)
    fd = holder.take()  # every slot held: the next waiter stays at the head of the line
    code = (
        "import sys; from decisionengine.framework.dataspace.connection_gate import ConnectionGate as G;"
        "print('waiting', flush=True); G(sys.argv[1], 1, wait=60).take()"
    )
    head = subprocess.Popen([sys.executable, "-c", code, directory], stdout=subprocess.PIPE, text=True)
    try:
        assert head.stdout.readline().strip() == "waiting"
        import fcntl
        import os

        queue = os.open(os.path.join(directory, "queue.lock"), os.O_RDWR)
        try:
            deadline = time.monotonic() + 10
            while True:  # awaited: the child holds the line
                try:
                    fcntl.flock(queue, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(queue, fcntl.LOCK_UN)
                except BlockingIOError:
                    break
                assert time.monotonic() < deadline, "the child never took its place in line"
                time.sleep(0.01)
        finally:
            os.close(queue)
        head.kill()
        head.wait(10)
    finally:
        if head.poll() is None:
            head.kill()
            head.wait(10)
    ConnectionGate.give_back(fd)
    started = time.monotonic()
    ConnectionGate.give_back(ConnectionGate(directory, 1, wait=5).take())
    assert time.monotonic() - started < 1
