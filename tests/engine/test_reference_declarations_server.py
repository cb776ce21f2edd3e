"""A real de-server with reference-style modules (issue 15, item 1).

A channel whose publisher never defines ``publish()`` is refused before it runs a
generation, with its reason in the status, while a channel that leaves out a parameter
without default runs and shows the warning in its status and its log.
"""

import json
import urllib.request

import pytest

from tests.engine.server import DEServer

pytestmark = pytest.mark.timeout(300)

MODULES = "tests.fixtures.reference_style_modules"


def entry(name, **parameters):
    return {"module": MODULES, "name": name, "parameters": parameters}


def channel(publisher):
    return {
        "sources": {"lines": {**entry("LinesSource"), "schedule": 0.3}},  # 'filename' left out
        "transforms": {"count": entry("CountLines")},
        "publishers": {"record": publisher},
    }


def test_refused_channel_is_reported_while_a_channel_missing_a_parameter_runs(tmp_path_factory, sqlite_url):
    root = tmp_path_factory.mktemp("de")
    record = root / "counts.txt"
    server = DEServer(
        root,
        sqlite_url,
        {
            "lines": channel(entry("RecordCount", record=str(record))),
            "no_publish": channel(entry("PublisherWithoutPublish")),
        },
    ).start()
    try:
        server.wait_for_generation("lines", 2, 90)
        refused = server.wait_for(
            lambda s: any(c["channel"] == "no_publish" and c["state"] == "ERROR" for c in s["channels"]),
            60,
            "no_publish to be refused",
        )
        by_name = {c["channel"]: c for c in refused["channels"]}
        reason = by_name["no_publish"]["last_error"]
        assert "invalid configuration" in reason
        assert f"publishers.record ({MODULES}.PublisherWithoutPublish)" in reason
        assert "does not define publish(self, data_block)" in reason
        assert not by_name["no_publish"].get("generation")  # refused before any generation

        lines = server.channel("lines")
        assert lines["state"] in ("ACTIVE", "STEADY")
        warning = (
            "sources.lines: parameter 'filename' (str) of LinesSource has no default and is not set in channel 'lines'"
        )
        assert any(w.startswith(warning) for w in lines["config_warnings"])
        api = json.loads(urllib.request.urlopen(f"{server.url}/api/v1/channels/lines", timeout=10).read())
        assert any(w.startswith(warning) for w in api["config_warnings"])  # the JSON API says it too
        assert record.read_text().splitlines()[0] == "3"  # the module ran without the parameter
    finally:
        assert server.stop() == 0
    log = server.log("lines")
    assert "channel configuration" in log and "parameter 'filename'" in log and "channel=lines" in log


def test_strict_parameters_in_the_global_file_reaches_the_channel_process(tmp_path_factory, sqlite_url):
    """The channel process validates with the server's global configuration (ChannelLaunch)."""
    root = tmp_path_factory.mktemp("de")
    complete = channel(entry("RecordCount", record=str(root / "counts.txt")))
    # a source of its own name: sources of one name are one source across the server
    complete["sources"] = {"all_lines": complete["sources"]["lines"]}
    complete["sources"]["all_lines"]["parameters"]["filename"] = str(root / "input.txt")
    (root / "input.txt").write_text("a\nb\n")
    server = DEServer(
        root,
        sqlite_url,
        {"lines": channel(entry("RecordCount", record=str(root / "counts.txt"))), "complete": complete},
        strict_parameters=True,
    ).start()
    try:
        server.wait_for_generation("complete", 1, 90)
        status = server.wait_for(
            lambda s: any(c["channel"] == "lines" and c["state"] == "ERROR" for c in s["channels"]),
            60,
            "lines to be refused",
        )
        (lines,) = [c for c in status["channels"] if c["channel"] == "lines"]
        assert (
            "sources.lines: parameter 'filename' is required by LinesSource (str) (strict_parameters is set)"
            in (lines["last_error"])
        )
    finally:
        assert server.stop() == 0
