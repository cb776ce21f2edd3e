"""Event streams cannot take the server's threads: past the cap a stream is a 503, and control
requests keep their answer time however many streams are open or attempted."""

import http.client
import threading
import time

import pytest

from decisionengine.testing.waiting import eventually
from tests.engine.server import DEServer
from tests.security.helpers import request, rpc, steady_channel

pytestmark = pytest.mark.timeout(240)


class Stream:
    """One open event stream, held by a thread reading it."""

    def __init__(self, server) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.connection.request("GET", "/api/v1/events", headers={"Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.body = self.response.read() if self.status != 200 else b""

    def close(self) -> None:
        self.connection.close()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_streams_beyond_the_cap_are_refused_and_requests_keep_flowing(tmp_path):
    server = DEServer(
        tmp_path,
        f"sqlite:///{tmp_path / 'ds.sqlite'}",
        {"steady": steady_channel()},
        webserver={"thread_pool": 8, "max_event_streams": 3},
    ).start()
    streams = []
    try:
        server.wait_for_generation("steady", 1, 60)
        streams = [Stream(server) for _ in range(3)]
        assert [s.status for s in streams] == [200, 200, 200]
        refused = Stream(server)
        assert refused.status == 503
        assert b"too many event streams" in refused.body and b"max_event_streams" in refused.body
        refused.close()
        # the threads left serve requests at once: reads and control
        for call in (lambda: rpc(server).ping(), lambda: rpc(server).status("json"), server.status):
            _, seconds = timed(call)
            assert seconds < 1.0, seconds
        stopped, seconds = timed(lambda: rpc(server).stop_channel("steady"))
        assert stopped == "channel steady stopped" and seconds < 15
        # A closed stream frees its place: the server notices at its next write to it (an
        # event, or else the keep-alive every 15 s): the channel started again sends events.
        streams.pop().close()
        assert "started" in rpc(server).start_channel("steady")

        def reopened() -> bool:
            stream = Stream(server)
            if stream.status == 200:
                streams.append(stream)
                return True
            stream.close()
            return False

        eventually(reopened, 25, what="a stream after one was closed", max_interval=1)
    finally:
        for stream in streams:
            stream.close()
        server.stop()


def test_thirty_streams_at_once_do_not_stop_the_server(tmp_path):
    """The default pool (30 threads) with 30 clients opening streams together: 10 get one, 20 a 503,
    and the server answers control requests meanwhile."""
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"steady": steady_channel()}).start()
    streams: list[Stream] = []
    lock = threading.Lock()
    try:
        server.wait_for_generation("steady", 1, 60)

        def open_one() -> None:
            stream = Stream(server)
            with lock:
                streams.append(stream)

        openers = [threading.Thread(target=open_one) for _ in range(30)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
        statuses = sorted(s.status for s in streams)
        assert statuses.count(200) == 10 and statuses.count(503) == 20, statuses
        for _ in range(5):
            _, seconds = timed(lambda: rpc(server).ping())
            assert seconds < 1.0
        assert request(server, "GET", "/api/v1/channels")[0] == 200
        assert rpc(server).reaper_stop() == "reaper stopped"
    finally:
        for stream in streams:
            stream.close()
        server.stop()
