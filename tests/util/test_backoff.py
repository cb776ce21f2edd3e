"""The growing pauses both lock waiters use (connection slots, SQLite's WAL switch)."""

from __future__ import annotations

import time

from decisionengine.framework.util.backoff import pauses


def test_pauses_end_once_the_time_is_spent_and_grow_to_the_ceiling():
    started = time.monotonic()
    moments = []
    for _ in pauses(0.001, 0.02, 0.3):
        moments.append(time.monotonic())
    spent = time.monotonic() - started
    assert 0.3 <= spent < 0.5
    gaps = [b - a for a, b in zip([started, *moments], moments, strict=False)]
    # the first looks again are quick, the last ones at the ceiling (compared, not timed
    # alone: on a loaded machine a 1 ms sleep can take 8)
    assert sum(gaps[:3]) < sum(gaps[-3:])
    assert max(gaps) <= 0.02 + 0.03  # never longer than the ceiling (plus scheduling, loaded)
    assert len(moments) >= 10  # about 0.3 / (0.75 x 0.02) looks once at the ceiling


def test_pauses_number_the_attempts_and_stop_when_the_caller_breaks():
    seen = []
    for attempt in pauses(0.001, 0.001, 5):
        seen.append(attempt)
        if attempt == 3:
            break
    assert seen == [1, 2, 3]


def test_no_time_means_no_second_attempt():
    assert list(pauses(0.01, 0.1, 0)) == []
