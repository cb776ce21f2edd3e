"""The parent-death machinery on its own (the whole server: tests/faults/test_server_death.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from decisionengine.framework.engine import supervision
from decisionengine.testing.processes import alive
from decisionengine.testing.waiting import eventually
from tests.engine.server import REPO

pytestmark = pytest.mark.timeout(120)


def python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, **kwargs
    )


def test_this_system_can_kill_children_with_their_parent():
    assert supervision.parent_death_supported()  # Linux: the tests below mean something


def test_a_child_whose_parent_died_before_it_armed_the_signal_kills_itself():
    child = python(
        """
        import os
        from decisionengine.framework.engine import supervision
        supervision.die_with_parent(os.getppid() + 100000)  # "my parent is gone already"
        print("survived")
        """
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL and "survived" not in out


CHILD_ARMS_AND_SLEEPS = (
    "import os, time\n"
    "from decisionengine.framework.engine import supervision\n"
    "assert supervision.die_with_parent(os.getppid())\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_child_dies_with_its_parent():
    parent = python(
        f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {CHILD_ARMS_AND_SLEEPS!r}], stdout=sys.stdout)
        time.sleep(600)
        """
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait(10)
        eventually(lambda: not alive(child), 5, what=f"child {child} to die with its parent")
    finally:
        parent.kill()


def test_the_fork_server_outlives_the_thread_that_asked_for_it_and_dies_with_its_process():
    """prctl's signal comes when the *thread* that started the fork server ends: a request
    thread asking first must not doom it (and every channel with it); the keeper thread
    starts it instead.  (Asking from the thread itself, ``_start_fork_server``, the fork
    server is killed as soon as the thread ends: measured, not only read in ``man 2 prctl``.)"""
    server = python(
        """
        import multiprocessing, multiprocessing.forkserver as forkserver, os, threading, time
        from decisionengine.framework.engine import supervision
        from decisionengine.testing.processes import guarded_sleep
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["decisionengine.framework.engine.forkserver_guard"])
        started = []

        def ask():  # a request thread: it asks for a process, then ends
            supervision.ensure_fork_server()
            process = context.Process(target=guarded_sleep, args=(600,))
            process.start()  # answered once the fork server has preloaded, so armed its signal
            started.append(process)

        asker = threading.Thread(target=ask)
        asker.start()
        asker.join()
        time.sleep(0.5)  # a fork server tied to the asking thread would be dead by now
        fork_server = forkserver._forkserver._forkserver_pid
        print(fork_server, started[0].pid, os.waitpid(fork_server, os.WNOHANG)[0], flush=True)
        time.sleep(600)
        """
    )
    try:
        fork_server, child, reaped = (int(pid) for pid in server.stdout.readline().split())
        assert reaped == 0 and alive(fork_server) and alive(child)
        assert os.environ.get(supervision.PARENT_ENV) is None  # set only while a fork server starts
        server.kill()
        server.wait(10)
        eventually(lambda: not alive(fork_server) and not alive(child), 5, what="the fork server and its child to die")
    finally:
        server.kill()


def test_without_prctl_nothing_is_armed_and_it_says_so(monkeypatch):
    monkeypatch.setattr(supervision, "libc_prctl", lambda: None)
    assert not supervision.parent_death_supported()
    assert not supervision.set_parent_death_signal()
    assert supervision.die_with_parent(os.getppid()) is False  # the right parent: no kill, only False


def test_a_process_that_is_not_a_fork_server_ignores_the_guard(monkeypatch):
    monkeypatch.setenv(supervision.PARENT_ENV, str(os.getpid()))
    assert supervision.guard_fork_server() is None
    assert os.environ[supervision.PARENT_ENV] == str(os.getpid())
    assert supervision.fork_server_pid is None


def test_outside_a_guarded_fork_server_only_the_pipe_watches():
    assert supervision.fork_server_pid is None  # the test process is no fork server's child
    assert supervision.guard_forked_child() is None  # nothing armed: its parent may be any thread
