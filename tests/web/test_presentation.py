"""Rendering for people: the status table names the generation each time belongs to."""

import time

from decisionengine.framework.web.presentation import status_table


def test_a_running_generation_is_shown_with_its_own_number():
    now = time.time()
    status = {
        "channel": "demo",
        "state": "STEADY",
        "generation": 3,
        "last_generation": {"generation_id": 4, "started": now - 1, "outcome": "running"},
        "failed_generations": 0,
    }
    table = status_table([status], now)
    lines = {line.split("  ")[0]: line for line in table.splitlines()}
    assert lines["generation"].split()[-1] == "3"
    last = lines["last generation"]
    assert last.split()[2] == "4" and last.endswith("(running)"), last


def test_a_committed_generation_is_shown_with_its_number():
    now = time.time()
    status = {
        "channel": "demo",
        "state": "STEADY",
        "generation": 4,
        "last_generation": {"generation_id": 4, "started": now - 1, "outcome": "committed"},
    }
    last = next(line for line in status_table([status], now).splitlines() if line.startswith("last generation"))
    assert last.split()[2] == "4" and last.endswith("(committed)")
