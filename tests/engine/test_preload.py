"""What a process forked by the channel fork server finds already loaded (and what it does not redo).

Per-channel memory itself is measured by ``benchmarks/engine.py --memory-only``; these
tests pin the mechanisms it relies on, in a real fork server started by a real script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.engine.server import REPO

pytestmark = pytest.mark.timeout(120)


def report(path: str) -> None:
    """The target run in the forked process: what it shares with the fork server."""
    # before this function imports anything: what the fork server loaded
    postgres_driver_loaded = all(name in sys.modules for name in ("psycopg2", "psycopg2.extras"))
    local_zone_known = "tzlocal.unix" in sys.modules and sys.modules["tzlocal.unix"]._cache_tz is not None
    import gc
    import logging

    import pyarrow

    from decisionengine.framework.dataspace import migrations
    from decisionengine.framework.engine import warmup
    from decisionengine.framework.taskmanager import metrics

    warm_up_labels = [
        labels
        for metric in vars(metrics).values()
        for labels in getattr(metric, "_metrics", {})
        if warmup.CHANNEL in labels
    ]

    with open(path, "a") as out:
        out.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "frozen": gc.get_freeze_count(),
                    "arrow_pool": pyarrow.default_memory_pool().backend_name,
                    "head_cached": migrations.head_revision.cache_info().currsize,
                    "validation_loaded": "decisionengine.framework.config.validation" in sys.modules,
                    # go-jsonnet starts Go's threads when loaded: a forked process would lack them
                    "go_runtime_loaded": "_gojsonnet" in sys.modules,
                    "postgres_driver_loaded": postgres_driver_loaded,
                    "local_zone_known": local_zone_known,
                    "warm_up_labels": warm_up_labels,
                    "root_handlers": len(logging.getLogger().handlers),
                    "last_resort": logging.lastResort is not None,
                }
            )
            + "\n"
        )


def test_a_forked_process_shares_the_preloaded_framework_and_does_not_rerun_the_main_module(tmp_path):
    lines = tmp_path / "lines"
    script = tmp_path / "server_main.py"
    # Run as a script, the main module is one multiprocessing would run again in each child.
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            with open({str(lines)!r}, "a") as out:
                out.write(f"main module ran in {{os.getpid()}}\\n")

            if __name__ == "__main__":
                from decisionengine.framework.engine.DecisionEngine import channel_context
                from tests.engine.test_preload import report

                process = channel_context().Process(target=report, args=({str(lines)!r},))
                process.start()
                process.join(60)
                print(os.getpid(), process.exitcode, flush=True)
            """
        )
    )
    env = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO), "DE_FORK_SERVER_WARM_UP": "1"},  # with the warm-up
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    server_pid, exitcode = (int(field) for field in done.stdout.split())
    assert exitcode == 0, done.stderr
    written = lines.read_text().splitlines()
    assert written[0] == f"main module ran in {server_pid}"
    assert not [line for line in written[1:] if line.startswith("main module ran")]  # not in the child
    child = json.loads(written[-1])
    assert child["pid"] != server_pid
    assert child["frozen"] > 10_000  # the framework, out of the collector's reach
    assert child["arrow_pool"] == "system"
    assert child["head_cached"] == 1  # computed once, in the fork server
    assert child["validation_loaded"]
    assert not child["go_runtime_loaded"]
    assert child["postgres_driver_loaded"] and child["local_zone_known"]  # not found again per channel
    assert child["warm_up_labels"] == []  # the warm-up counts in no channel's metrics
    assert child["root_handlers"] == 0 and child["last_resort"]  # nor changes its logging


def test_the_warm_up_runs_its_generations_and_leaves_nothing_behind(tmp_path):
    """In a process of its own (it clears the channel metrics' label values)."""
    code = textwrap.dedent(
        """
        import os, tempfile, threading
        from prometheus_client import values
        from decisionengine.framework.engine import warmup
        value_class = values.ValueClass
        descriptors = sorted(os.listdir("/proc/self/fd"))
        ok = warmup.warm_up()
        left = [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("de-warm-up-")]
        print(ok, threading.active_count(), sorted(os.listdir("/proc/self/fd")) == descriptors,
              values.ValueClass is value_class, left == [])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    assert done.stdout.split() == ["True", "1", "True", "True", "True"], done.stderr
