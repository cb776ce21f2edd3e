"""Messages from channel processes to the server: one pipe per channel process.

A channel process sends two kinds of messages: its log lines, and its events (status
snapshots, its validated plan, its failure, its exit).  Each process gets a pipe of its
own, written by it alone.  A shared ``multiprocessing.Queue`` would not do: its writers
share one cross-process lock, and a channel killed (SIGKILL, by the hang watchdog or an
operator) while it held that lock would leave every other channel, and the server's own
shutdown, waiting on it forever.  With a pipe per process, a dead channel can only break
its own pipe, which the server then sees end.

* :class:`LinkSender` (channel side) queues messages in memory and writes them from one
  thread, so that logging never waits on the server;
* :class:`LinkRouter` (server side) reads every channel's pipe from one thread, in the
  order each channel sent, and hands log records and events on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

_CLOSE = object()
LOG = "log"
EVENT = "event"


class LinkSender:
    """The channel's end: ``put``/``put_nowait`` never block; one thread writes the pipe."""

    def __init__(self, writer: Connection) -> None:
        self.writer = writer
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="link-sender", daemon=True)
        self._thread.start()

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def backlog(self) -> int:
        """Messages queued but not yet written to the pipe (a server slow to read shows here)."""
        return self._queue.qsize()

    def log(self, record: Any) -> None:
        self.put((LOG, record))

    def event(self, kind: str, name: str, payload: Any) -> None:
        self.put((EVENT, kind, name, payload))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            try:
                self.writer.send(item)
            except (OSError, ValueError):  # the server is gone: nobody to tell
                return
            except Exception:  # an unpicklable message: drop it, keep the link
                continue

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then close the pipe."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.writer.close()


class _LogAdapter:
    """Lets a QueueHandler send log records over a link."""

    def __init__(self, sender: LinkSender) -> None:
        self.sender = sender

    def put_nowait(self, record: Any) -> None:
        self.sender.log(record)

    put = put_nowait


def log_queue(sender: LinkSender) -> _LogAdapter:
    """What ``logging.handlers.QueueHandler`` needs to send records over ``sender``."""
    return _LogAdapter(sender)


class LinkRouter:
    """Reads every channel's pipe in one thread and routes what arrives."""

    def __init__(
        self,
        on_log: Callable[[Any], None],
        on_event: Callable[[str, str, Any], None],
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.on_log = on_log
        self.on_event = on_event
        self.on_closed = on_closed
        self._links: dict[Connection, str] = {}
        self._lock = threading.Lock()
        self._wake_reader, self._wake_writer = _local_pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="channel-links", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, name: str, reader: Connection) -> None:
        with self._lock:
            self._links[reader] = name
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send_bytes(b"!")

    def stop(self, timeout: float = 5.0) -> None:
        """Read what the pipes still hold (until ``timeout``), then stop."""
        self._stopping = True
        self._wake()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                readers = list(self._links)
            if self._stopping and not readers:
                return
            ready = wait([*readers, self._wake_reader], timeout=0.5 if self._stopping else None)
            if self._stopping and not ready:
                return  # the pipes are quiet: what had to arrive has arrived
            for reader in ready:
                if reader is self._wake_reader:
                    with contextlib.suppress(EOFError, OSError):
                        self._wake_reader.recv_bytes()
                    continue
                self._receive(reader)

    def _receive(self, reader: Connection) -> None:
        try:
            message = reader.recv()
        except (EOFError, OSError):  # the process has ended (or died): its pipe is done
            self._drop(reader)
            return
        except Exception:  # a message that does not unpickle: skip it, the pipe is intact
            return
        try:
            if message[0] == LOG:
                self.on_log(message[1])
            elif message[0] == EVENT:
                _, kind, name, payload = message
                self.on_event(kind, name, payload)
        except Exception:  # a handler error must never stop the routing
            return

    def _drop(self, reader: Connection) -> None:
        with self._lock:
            name = self._links.pop(reader, None)
        with contextlib.suppress(OSError):
            reader.close()
        if name is not None and self.on_closed is not None:
            self.on_closed(name)


def _local_pipe() -> tuple[Connection, Connection]:
    from multiprocessing import Pipe  # noqa: PLC0415 - an in-process pipe, no context needed

    reader, writer = Pipe(duplex=False)
    return reader, writer
