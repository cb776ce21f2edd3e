"""SIGTERM is honoured however the kernel delivers it.

Python runs signal handlers in the main thread only, between bytecodes.  The kernel may
deliver a process-directed signal to any thread; when it picks another thread, a main
thread blocked in a lock wait without a timeout never runs the handler (what made a
de-server ignore SIGTERM until it was killed).  Here the signal is sent to a specific
other thread (pthread_kill), which is the worst case, deterministically.
"""

import subprocess
import sys
import textwrap

from tests.engine.server import REPO

SCRIPT = textwrap.dedent(
    """
    import signal, threading, time, types
    from decisionengine.framework.engine.DecisionEngine import DecisionEngine

    engine = types.SimpleNamespace(stopping=threading.Event())
    signal.signal(signal.SIGTERM, lambda *_: engine.stopping.set())
    def signal_this_thread():
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=signal_this_thread).start()
    started = time.monotonic()
    DecisionEngine.wait(engine)  # the server's main thread waits here
    print(f"{time.monotonic() - started:.2f}")
    """
)


def test_sigterm_delivered_to_another_thread_stops_the_wait():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1.5  # 0.5 s before the signal, then at most a wait step
