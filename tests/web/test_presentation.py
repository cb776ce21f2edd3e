"""Rendering for people: the status table names the generation each time belongs to."""

import re
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


def rows(table):
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in table.splitlines() if "  " in line)


def test_what_the_server_does_about_a_fault_is_shown():
    now = 1000.0
    waiting = {"channel": "demo", "state": "ACTIVE", "generation": 4, "database_unreachable_since": now - 12}
    assert rows(status_table([waiting], now))["database"] == "unreachable since 12.0s ago; retrying"
    failed = {
        "channel": "demo",
        "state": "ERROR",
        "restart_at": now + 4,
        "failures_in_a_row": 3,
        "restarts": 2,
        "last_failure": {"reason": "exited with code 3", "at": now - 1},
    }
    shown = rows(status_table([failed], now))
    assert shown["restart"] == "in 4.0s (failure 3 in a row)" and shown["restarts"] == "2"
    assert "last failure" not in shown  # ERROR with its error says it already
    shown = rows(status_table([{**failed, "state": "STEADY", "restart_at": None}], now))
    assert "restart" not in shown and shown["last failure"] == "1.0s ago: exited with code 3"


def test_configuration_warnings_are_shown():
    """A channel loaded with a warning (e.g. a parameter left out) says so in --status."""
    status = {
        "channel": "lines",
        "state": "STEADY",
        "generation": 1,
        "config_warnings": ["sources.lines: parameter 'filename' (str) of LinesSource has no default"],
    }
    shown = [line for line in status_table([status], 0.0).splitlines() if line.startswith("config warning")]
    assert shown == ["config warning      sources.lines: parameter 'filename' (str) of LinesSource has no default"]
