"""The shipped configuration (etc/decisionengine) runs the demo channel end to end."""

import json
import os
import subprocess
import sys
import xmlrpc.client

import pandas as pd
import pytest

from decisionengine.testing.postgres import free_port
from decisionengine.testing.waiting import eventually
from tests.engine.server import REPO

pytestmark = pytest.mark.timeout(180)


def test_demo_channel_decides_and_publishes(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "decisionengine.framework.cli.de_server",
            "--config",
            str(REPO / "etc" / "decisionengine"),
            "--state-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--no-reaper",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2", allow_none=True)
    try:
        status = {}

        def two_generations():
            try:
                status.update(json.loads(rpc.status("json")))
            except OSError:
                return None
            demo = [c for c in status["channels"] if c["channel"] == "demo"]
            return demo[0] if demo and (demo[0].get("generation") or 0) >= 2 else None

        demo = eventually(two_generations, 90, what=lambda: f"two generations of the demo: {status}")
        assert demo["state"] == "STEADY"
        assert set(demo["sources"]) == {"jobs", "catalogue"}
        facts = json.loads(rpc.get_product("de_logicengine_facts"))["value"]
        assert facts[0]["fact_name"] == "provisioning"
        plan = json.loads(rpc.get_product("provisioning_plan"))["value"]
        assert all(row["hourly_cost"] >= 0 for row in plan)
        # the publishers run after their generation commits: their files may lag the status
        output_dir = tmp_path / "demo-output"

        def two_summaries() -> tuple[pd.DataFrame] | None:  # a tuple: a DataFrame has no truth value
            try:
                summary = pd.read_csv(output_dir / "summary.csv")
            except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):  # not written yet, or half
                return None
            return (summary,) if len(summary) >= 2 else None

        (summary,) = eventually(two_summaries, 30, what="two rows in the demo's summary.csv")
        assert list(summary.columns)[:3] == ["time", "generation", "idle_jobs"]
        if facts[0]["fact_value"]:
            requests = eventually(
                lambda: sorted((output_dir / "requests").glob("request-*.json")), 30, what="a provisioning request"
            )
            assert json.loads(requests[-1].read_text())["requests"]
        assert (tmp_path / "dataspace.sqlite").exists()
        assert (tmp_path / "logs" / "demo.log").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0].decode()
    assert server.returncode == 0, output
