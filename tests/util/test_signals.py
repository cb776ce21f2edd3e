"""SIGTERM handled without a lock in the handler (util.signals), in real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the main thread holds the lock the action needs when the signal arrives: a handler that
#: ran the action itself would wait for the main thread, which waits for the handler
HOLDS_THE_LOCK = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from decisionengine.framework.util.signals import on_signals
    lock = threading.Lock()
    done = threading.Event()
    def action():
        with lock:
            done.set()
    on_signals(action)
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs in this thread meanwhile
    print("stopped" if done.wait(10) else "not stopped", flush=True)
    """
)

#: the main thread waits on the very event the action sets, in short steps (as de-server's
#: main thread does): the signal lands inside Event.wait, sometimes holding its lock
WAITS_ON_THE_EVENT = textwrap.dedent(
    """
    import sys, threading
    from decisionengine.framework.util.signals import on_signals
    stopping = threading.Event()
    on_signals(stopping.set)
    print("ready", flush=True)
    while not stopping.wait(0.00001):
        pass
    print("stopped", flush=True)
    """
)


def run(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )


def test_the_action_runs_while_the_main_thread_holds_the_lock_it_needs():
    process = run(HOLDS_THE_LOCK)
    out, _ = process.communicate(timeout=30)
    assert out.strip() == "stopped" and process.returncode == 0


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_stops_a_main_thread_waiting_on_the_event_it_sets(attempt):
    processes = [run(WAITS_ON_THE_EVENT) for _ in range(8)]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
    for process in processes:
        out, _ = process.communicate(timeout=30)
        assert out.strip() == "stopped" and process.returncode == 0
