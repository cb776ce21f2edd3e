"""The shared deadline thread behind the hang watchdog (engine.deadlines)."""

from __future__ import annotations

import threading
import time

from decisionengine.framework.engine.deadlines import Deadlines


def test_a_deadline_calls_its_callback_once_its_time_has_come():
    deadlines = Deadlines("test")
    fired = threading.Event()
    armed_at = time.monotonic()
    deadlines.arm("a", 0.05, fired.set)
    assert fired.wait(5)
    assert time.monotonic() - armed_at >= 0.05
    assert deadlines.pending() == 0


def test_rearming_a_key_replaces_its_deadline():
    deadlines = Deadlines("test")
    calls: list[str] = []
    done = threading.Event()
    deadlines.arm("a", 0.01, lambda: calls.append("first"))
    deadlines.arm("a", 0.02, lambda: (calls.append("second"), done.set()))
    assert done.wait(5)
    # a later key armed after both: when it fires, the replaced one would have fired too
    last = threading.Event()
    deadlines.arm("b", 0.05, last.set)
    assert last.wait(5)
    assert calls == ["second"]


def test_a_cancelled_deadline_never_fires():
    deadlines = Deadlines("test")
    calls: list[str] = []
    deadlines.arm("a", 0.01, lambda: calls.append("a"))
    deadlines.cancel("a")
    later = threading.Event()
    deadlines.arm("b", 0.05, later.set)
    assert later.wait(5)
    assert calls == []
    deadlines.cancel("never armed")  # no error


def test_deadlines_fire_in_time_order_and_a_failing_callback_does_not_stop_the_others():
    deadlines = Deadlines("test")
    order: list[str] = []
    done = threading.Event()

    def fail():
        order.append("fails")
        raise RuntimeError("boom")

    deadlines.arm("late", 0.15, lambda: (order.append("late"), done.set()))
    deadlines.arm("early", 0.01, fail)
    deadlines.arm("middle", 0.05, lambda: order.append("middle"))
    assert done.wait(5)
    assert order == ["fails", "middle", "late"]


def test_replaced_deadlines_do_not_pile_up():
    """A key re-armed at every status report (far deadlines) keeps the heap small."""
    deadlines = Deadlines("test")
    for _ in range(10_000):
        deadlines.arm("busy", 300.0, lambda: None)
    assert deadlines.pending() == 1
    assert len(deadlines._heap) <= 4 * 1 + 64 + 1
    deadlines.cancel("busy")
