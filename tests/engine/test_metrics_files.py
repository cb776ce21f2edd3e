"""/metrics while a process is creating its metrics file.

Every process of the server writes its metrics to a file of its own in the server's
multiprocess directory; a new channel process creates that file empty, then sizes it.
A scrape that came in between failed whole (a 500 for every metric: ``struct.error`` in
prometheus_client), seen while channels started.  Here the empty file is planted and
left: the scrape must answer with every other process's metrics.
"""

import glob
import pathlib
import tempfile
import urllib.request

from decisionengine.framework.engine.leftovers import METRICS_PREFIX
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel


def test_a_metrics_file_being_created_does_not_break_the_scrape(tmp_path):
    server = DEServer(
        tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"counting": counting_channel(str(tmp_path / "c.jsonl"))}
    )
    server.start()
    try:
        server.wait_for_generation("counting", 1, 60)
        pattern = f"{tempfile.gettempdir()}/{METRICS_PREFIX}{server.process.pid}-*"
        (directory,) = glob.glob(pattern)
        planted = pathlib.Path(directory) / "counter_999999.db"
        planted.touch()  # what a starting process leaves for a moment: a file of 0 bytes
        for _ in range(3):
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
                assert response.status == 200
                exposition = response.read().decode()
            assert "de_server_up 1.0" in exposition
            assert 'de_generations_total{channel="counting",outcome="committed"}' in exposition
        assert server.rpc().ping() == "pong"
    finally:
        server.stop()
