"""de-dataspace import-reference as an operator runs it: real processes, real databases.

After the import, de-query-tool (another real process) shows the old history.
"""

import json

import pandas as pd
import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header
from decisionengine.framework.dataspace.dataspace import DataSpace
from tests.cli.run import command
from tests.conftest import global_config
from tests.engine.server import DEServer
from tests.fixtures.reference_db import ReferenceDatabase, build_history, jobs, reference_database_url
from tests.taskmanager.channels import counting_channel


@pytest.fixture
def reference_url(db_url, request, tmp_path):
    yield from reference_database_url(db_url, request, tmp_path)


def channel_of(status, name):
    return next(c for c in status["channels"] if c["channel"] == name)


def dataspace(*args, **kwargs):
    return command("de-dataspace", "import-reference", *args, **kwargs)


def test_dry_run_then_an_interrupted_import_then_the_rest(db_url, reference_url, tmp_path):
    build_history(reference_url)
    source = ["--from", reference_url, "--url", db_url]

    dry = dataspace(*source, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["conflicts"] == []
    assert plan["totals"]["rows"] == plan["totals"]["rows_to_copy"] == 72
    assert [t["channel"] for t in plan["taskmanagers"]] == ["jobs_channel", "prices", "jobs_channel"]
    # July 2023 is older than the default retention: the Reaper would delete all but the newest
    assert plan["retention_days"] == 365 and plan["totals"]["older_than_retention"] == 12 - 3
    table = dataspace(*source, "--dry-run")
    assert table.returncode == 0 and "dry run: nothing written" in table.stdout
    assert "warning: 9 of these generations are older than retention_interval_in_days (365)" in table.stdout
    if db_url.startswith("sqlite"):
        assert not (tmp_path / "dataspace.sqlite").exists()

    stopped = dataspace(*source, "--batch-size", "10", "--max-batches", "2")
    assert stopped.returncode == 3, stopped.stderr
    assert "stopped after 2 batches: run the same command again to continue" in stopped.stdout

    rest = dataspace(*source)
    assert rest.returncode == 0, rest.stderr
    lines = rest.stdout.splitlines()
    assert lines[0].startswith(f"imported {reference_url}")
    header = lines[1].split()
    assert header[:4] == ["channel", "task", "manager", "generations"]
    total = next(line for line in lines if line.startswith("total")).split()
    # generations, source rows, duplicates, products, copied now, bad, in target, missing, status
    assert total[1:] == ["12", "72", "0", "72", "60", "0", "72", "0", "complete"]

    again = dataspace(*source, "--json")
    assert again.returncode == 0
    report = json.loads(again.stdout)
    assert report["complete"] is True and report["products_written"] == 0
    assert [t["status"] for t in report["taskmanagers"]] == ["ok", "ok", "ok"]

    # de-query-tool shows the old history
    listed = command("de-query-tool", "--url", db_url, "--list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    channels = {c["channel"]: c for c in json.loads(listed.stdout)}
    assert (channels["prices"]["generations"], channels["prices"]["latest_generation"]) == (5, 5)
    assert channels["jobs_channel"]["latest_generation"] == 3
    history = command("de-query-tool", "--url", db_url, "prices", "jobs", "--since", "2023-01-01", "--format", "json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [r["generation_id"] for r in rows] == [g for g in range(1, 6) for _ in range(3)]
    assert [r["idle"] for r in rows[-3:]] == list(jobs(5)["idle"])
    restarts = command(
        "de-query-tool", "--url", db_url, "jobs_channel", "count", "--since", "2023-01-01", "--format", "csv"
    )
    assert restarts.returncode == 0, restarts.stderr
    frame = pd.read_csv(pd.io.common.StringIO(restarts.stdout))
    assert list(frame.columns) == ["generation_id", "generation_time", "taskmanager_id", "value"]
    assert list(frame["generation_id"]) == [1, 2, 3, 4, 1, 2, 3]
    assert list(frame["value"]) == [10, 20, 30, 40, 10, 20, 30]
    described = command("de-query-tool", "--url", db_url, "jobs_channel", "--format", "json")
    assert json.loads(described.stdout)["registrations"] == 2


def test_bad_values_conflicts_and_wrong_databases(sqlite_url, tmp_path):
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    with ReferenceDatabase(reference_url) as reference:
        seq = reference.add_taskmanager("chan")
        reference.add([reference.product(seq, 1, "fine", {"a": 1}), reference.product(seq, 1, "broken", blob=b"??")])
    imported = dataspace("--from", reference_url, "--url", sqlite_url)
    assert imported.returncode == 0, imported.stderr
    assert "not imported: 1 products" in imported.stdout
    bad_line = next(line for line in imported.stdout.splitlines() if "broken" in line).split()
    assert bad_line[:3] == ["chan", "1", "broken"]
    assert "ok, bad values skipped" in imported.stdout

    # the target already runs a channel of that name: refused, nothing written
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    space = DataSpace(global_config(other))
    block = DataBlock(space, "chan")
    block.put("mine", 1, Header(block.taskmanager_id))
    space.close()
    refused = dataspace("--from", reference_url, "--url", other)
    assert refused.returncode == 2
    assert "channel 'chan' already has history here" in refused.stderr
    assert refused.stderr.count("\n") == 1

    unknown = dataspace("--from", reference_url, "--url", other, "--channel", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr == "de-dataspace: --channel: no channel 'nope' in the reference; its channels: chan\n"

    not_reference = dataspace("--from", sqlite_url, "--url", other)
    assert not_reference.returncode == 1
    assert "is a DataSpace of this decision engine" in not_reference.stderr
    missing = dataspace("--from", f"sqlite:///{tmp_path / 'typo.sqlite'}", "--url", other)
    assert missing.returncode == 1 and "no SQLite dataspace database at" in missing.stderr
    assert not (tmp_path / "typo.sqlite").exists()


def test_the_target_comes_from_the_global_configuration(tmp_path):
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    with ReferenceDatabase(reference_url) as reference:
        seq = reference.add_taskmanager("chan")
        reference.add([reference.product(seq, 1, "x", {"a": 1})])
    config = tmp_path / "etc"
    config.mkdir()
    (config / "decision_engine.jsonnet").write_text("{ dataspace: { retention_interval_in_days: 30 } }")
    state = tmp_path / "run"
    result = dataspace("--from", reference_url, "--config", config, "--state-dir", state, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["products_written"] == 1
    assert report["retention_days"] == 30 and report["totals"]["older_than_retention"] == 0  # a newest is kept
    found = command("de-query-tool", "--config", config, "--state-dir", state, "chan", "x", "--format", "json")
    assert json.loads(found.stdout) == {"a": 1}


def test_de_server_continues_an_imported_channel(sqlite_url, tmp_path):
    """A channel of the same name started by de-server numbers on from the newest imported
    registration's last generation, under that registration."""
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    build_history(reference_url)
    assert dataspace("--from", reference_url, "--url", sqlite_url).returncode == 0
    server = DEServer(tmp_path / "server", sqlite_url, {"prices": counting_channel(str(tmp_path / "published.jsonl"))})
    server.start()
    try:
        status = server.wait_for_generation("prices", 6)
    finally:
        server.stop()
    assert channel_of(status, "prices")["taskmanager_id"] == "00000000-0000-4000-8000-000000000001"
    with DataSpace(global_config(sqlite_url)) as space:
        (registration,) = space.get_taskmanagers("prices")
        generations = [g["generation_id"] for g in space.get_generations(registration["sequence_id"])]
        assert generations[:6] == [1, 2, 3, 4, 5, 6]
        assert "jobs" in space.get_keys(registration["sequence_id"], 5)
        assert "numbers" in space.get_keys(registration["sequence_id"], 6)
