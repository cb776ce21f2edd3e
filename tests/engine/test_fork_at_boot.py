"""de-server's fork server forked from de-server at boot (:mod:`.fork_at_boot`), in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from decisionengine.framework.engine import fork_at_boot, supervision
from tests.engine.server import REPO

pytestmark = pytest.mark.timeout(120)


def run_script(tmp_path, body: str) -> list[dict]:
    """Run ``body`` as a server's main script; the JSON lines it and its children wrote."""
    lines = tmp_path / "lines"
    script = tmp_path / "server_main.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os
            LINES = {str(lines)!r}
            def write(**fields):
                with open(LINES, "a") as out:
                    out.write(json.dumps(fields) + "\\n")
            write(main_module_ran_in=os.getpid())
            """
        )
        + textwrap.dedent(body)
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ARROW_DEFAULT_MEMORY_POOL", supervision.WARM_UP_ENV)
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        stdin=subprocess.DEVNULL,  # as de-server's (the fork server points its fd 0 at /dev/null itself)
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in lines.read_text().splitlines()]


def report_forkserver_lock(path: str) -> None:
    """The target run in the forked process: whether it could start a fork server of its own."""
    import multiprocessing.forkserver

    free = multiprocessing.forkserver._forkserver._lock.acquire(blocking=False)
    with open(path, "a") as out:
        out.write(json.dumps({"forkserver_lock_free": free}) + "\n")


def report_inherited_descriptor(path: str) -> None:
    """The target run in the forked process: a file object of the server's, closed here."""
    import __main__

    def at_devnull(file) -> bool:
        try:
            return os.path.samestat(os.fstat(file.fileno()), os.stat(os.devnull))
        except OSError:
            return False

    held = __main__.held  # opened by the server before it forked the fork server
    all_at_devnull = all(at_devnull(file) for file in held)
    read_end, write_end = os.pipe()  # this process's own, as its signal pipe is
    for file in held:
        file.close()  # as prometheus_client closes its inherited metrics files
    try:
        os.write(write_end, b"x")
        pipe_works = os.read(read_end, 1) == b"x"
    except OSError:
        pipe_works = False
    with open(path, "a") as out:
        out.write(json.dumps({"held_at_devnull": all_at_devnull, "own_pipe_works": pipe_works}) + "\n")


def test_the_fork_server_forked_at_boot_serves_channels_as_a_started_one_would(tmp_path):
    held = tmp_path / "held-open"
    written = run_script(
        tmp_path,
        f"""
        if __name__ == "__main__":
            held = [open({str(held)!r} + str(n), "w") for n in range(4)]  # the server's (a pidfile, a log)
            from decisionengine.framework.engine import fork_at_boot, supervision
            from tests.engine.test_fork_at_boot import report_forkserver_lock, report_inherited_descriptor
            from tests.engine.test_preload import report

            fork_server = fork_at_boot.fork_fork_server()
            context = supervision.channel_context()
            for _ in range(2):
                process = context.Process(target=report, args=(LINES,))
                process.start()  # answered once the fork server has run its preload list
                process.join(60)
                write(exitcode=process.exitcode)
            for target in (report_forkserver_lock, report_inherited_descriptor):
                process = context.Process(target=target, args=(LINES,))
                process.start()
                process.join(60)
            fds = f"/proc/{{fork_server}}/fd"
            descriptors = sorted(os.readlink(f"{{fds}}/{{fd}}") for fd in os.listdir(fds))
            with open(f"/proc/{{fork_server}}/comm") as comm:
                write(server=os.getpid(), fork_server=fork_server, descriptors=descriptors, comm=comm.read().strip())
        """,
    )
    first, child, done, second, done_again, lock, inherited, boot = written
    # a descriptor of the server's stays taken (by /dev/null) in the fork server: an object
    # inherited from the server that closes it cannot close a channel's own pipe instead
    assert inherited == {"held_at_devnull": True, "own_pipe_works": True}
    assert lock == {"forkserver_lock_free": True}  # a channel may start processes of its own
    assert first == {"main_module_ran_in": boot["server"]}  # and in no child
    assert boot["fork_server"] and boot["comm"] == "de-fork-server"
    assert not [path for path in boot["descriptors"] if path.startswith(str(held))]  # none of the server's files
    assert done == done_again == {"exitcode": 0}
    for report in (child, second):
        assert report["pid"] not in (boot["server"], boot["fork_server"])
        assert report["frozen"] > 10_000  # the framework, out of the collector's reach
        assert report["arrow_pool"] == "system"
        assert report["head_cached"] == 1  # computed once, before the fork
        assert report["validation_loaded"] and not report["go_runtime_loaded"]
        assert report["postgres_driver_loaded"] and report["local_zone_known"]
        assert report["root_handlers"] == 0 and report["last_resort"]


def test_a_fork_server_forked_at_boot_that_dies_is_started_again_the_ordinary_way(tmp_path):
    written = run_script(
        tmp_path,
        """
        if __name__ == "__main__":
            import multiprocessing.forkserver, signal
            from decisionengine.framework.engine import fork_at_boot, supervision
            from tests.engine.test_preload import report

            first = fork_at_boot.fork_fork_server()
            os.kill(first, signal.SIGKILL)
            while open(f"/proc/{first}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                pass  # dead, not yet reaped: ensure_fork_server reaps it
            supervision.ensure_fork_server()
            second = multiprocessing.forkserver._forkserver._forkserver_pid
            process = supervision.channel_context().Process(target=report, args=(LINES,))
            process.start()
            process.join(60)
            write(exitcode=process.exitcode)
            with open(f"/proc/{second}/cmdline", "rb") as cmdline:
                write(first=first, second=second, cmdline=cmdline.read().decode(errors="replace"))
        """,
    )
    _, child, done, restarted = written
    assert restarted["second"] != restarted["first"]
    assert "multiprocessing.forkserver" in restarted["cmdline"]  # a new interpreter this time
    assert done == {"exitcode": 0} and child["frozen"] > 10_000


def test_it_declines_while_another_thread_runs_or_with_the_warm_up(monkeypatch):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not fork_at_boot.can_fork_here()
    finally:
        stop.set()
        thread.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert fork_at_boot.can_fork_here() == (threading.current_thread() is threading.main_thread())
    monkeypatch.setenv(supervision.WARM_UP_ENV, "1")  # the warm-up runs in the fork server, not here
    assert not fork_at_boot.can_fork_here()
