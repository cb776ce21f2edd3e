"""Channel and shared-source processes ask the kernel to merge their identical pages (KSM),
unless ``channel_memory_merging`` is false: a real de-server, the request read from
``/proc/<pid>/ksm_stat``.  Whether pages are then merged is the host's choice (KSM running),
which a test does not change: ``benchmarks/engine.py --memory-only`` measures it."""

from __future__ import annotations

import pathlib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from decisionengine.framework.config.global_config import validate_global_config
from decisionengine.framework.engine import memory_merging
from tests.engine.server import DEServer
from tests.engine.test_shared_sources import shared_channel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernel_tells() -> None:
    if memory_merging.requested() is None:
        pytest.skip("this kernel does not report KSM requests (/proc/self/ksm_stat needs Linux 6.4 or later)")


@pytest.mark.parametrize("setting", [None, True, False])
def test_channel_and_source_processes_ask_for_merging_as_configured(kernel_tells, tmp_path, sqlite_url, setting):
    extra = {} if setting is None else {"channel_memory_merging": setting}
    channels = {name: shared_channel(tmp_path, f"{name}.jsonl") for name in ("alpha", "beta")}
    server = DEServer(tmp_path, sqlite_url, channels, **extra).start()
    try:
        server.wait_for_generation("alpha", 1)
        server.wait_for_generation("beta", 1)
        status = server.status()
        pids = {channel["channel"]: channel["pid"] for channel in status["channels"]}
        source = next(row for row in status["sources"] if row["source"] == "jobs")
        assert source["shared"] is True and source["pid"] not in pids.values()
        expected = setting is not False
        for pid in [*pids.values(), source["pid"]]:
            assert memory_merging.requested(pid) is expected, pid
        assert memory_merging.requested(server.process.pid) is False  # the server itself is left alone
        boot = "channel memory merging: requested"
        assert (boot in server.log()) is expected

        # /metrics shows each process's memory, read when scraped
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            exposition = response.read().decode()
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
        }
        for family, label, name in [
            ("channel", "channel_name", "alpha"),
            ("channel", "channel_name", "beta"),
            ("source", "source_name", "jobs"),
        ]:
            pss = samples[(f"de_{family}_memory_bytes", frozenset({("kind", "pss"), (label, name)}))]
            private = samples[(f"de_{family}_memory_bytes", frozenset({("kind", "private"), (label, name)}))]
            merged = samples[(f"de_{family}_memory_bytes", frozenset({("kind", "merged"), (label, name)}))]
            assert 1 << 20 < private <= pss < 1 << 30 and 0 <= merged < pss
    finally:
        server.stop()


def test_the_setting_must_be_a_boolean(tmp_path):
    with pytest.raises(Exception, match="channel_memory_merging"):
        validate_global_config({"channel_memory_merging": "yes"})


def test_the_boot_report_says_whether_the_host_merges(monkeypatch, tmp_path: pathlib.Path):
    run = tmp_path / "run"
    monkeypatch.setattr(memory_merging, "KSM_RUN", run)
    monkeypatch.setattr(memory_merging, "libc_prctl", lambda: lambda *args: 0)  # a kernel that can (6.4+)
    assert "cannot merge" in memory_merging.boot_report({})
    run.write_text("0\n")
    assert "stopped" in memory_merging.boot_report({}) and str(run) in memory_merging.boot_report({})
    run.write_text("1\n")
    assert "is running" in memory_merging.boot_report({"channel_memory_merging": True})
    assert memory_merging.boot_report({"channel_memory_merging": False}) is None


def test_a_kernel_before_6_4_is_reported_as_unable(monkeypatch, tmp_path: pathlib.Path):
    """PR_GET_MEMORY_MERGE fails with EINVAL before Linux 6.4: KSM may run there, but not for whole processes."""
    run = tmp_path / "run"
    run.write_text("1\n")
    monkeypatch.setattr(memory_merging, "KSM_RUN", run)
    monkeypatch.setattr(memory_merging, "libc_prctl", lambda: lambda *args: -1)
    assert memory_merging.host_state() == "unavailable"
    assert "older than Linux 6.4" in memory_merging.boot_report({})
    assert memory_merging.request({}) is False
