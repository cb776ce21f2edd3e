"""de-reaper: a dry run removes nothing and predicts exactly what a real run removes."""

import json
import time

import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace
from tests.cli.run import command
from tests.conftest import global_config

DAY = 86400.0


def fill(url):
    """Two channels: 12 and 5 daily generations, the newest today."""
    space = DataSpace(global_config(url))
    now = time.time()
    for name, days in (("alpha", 12), ("beta", 5)):
        block = DataBlock(space, name)
        tm = block.taskmanager_id
        for generation in range(1, days + 1):
            when = now - (days - generation) * DAY - 60
            block.generation_id = generation
            with block.transaction():
                block.put(
                    "value",
                    {"g": generation, "blob": "x" * 500 * generation},
                    Header(tm),
                    Metadata(tm, generation_time=when),
                )
                block.put("shared", list(range(100)), Header(tm), Metadata(tm, generation_time=when))
    stats = space.storage_stats()
    space.close()
    return stats


def test_dry_run_then_real_run(db_url):
    before = fill(db_url)
    preview = command("de-reaper", "--url", db_url, "--retention-days", "7", "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    predicted = json.loads(preview.stdout)
    assert predicted["dry_run"] is True
    assert predicted["per_channel"] == {"alpha": 5}  # alpha's generations 1..5 are 7+ days old
    space = DataSpace(global_config(db_url))
    assert space.storage_stats() == before  # nothing removed
    space.close()

    text = command("de-reaper", "--url", db_url, "--retention-days", "7", "--dry-run")
    assert "would remove" in text.stdout and "alpha" in text.stdout

    real = command("de-reaper", "--url", db_url, "--retention-days", "7", "--json")
    assert real.returncode == 0, real.stderr
    removed = json.loads(real.stdout)
    for key in ("generations", "products", "payloads", "payload_bytes", "per_channel"):
        assert removed[key] == predicted[key], key
    assert removed["dry_run"] is False
    space = DataSpace(global_config(db_url))
    after = space.storage_stats()
    assert before["generations"] - after["generations"] == 5
    assert before["payload_bytes"] - after["payload_bytes"] == removed["payload_bytes"]
    space.close()

    again = command("de-reaper", "--url", db_url, "--retention-days", "7")
    assert again.returncode == 0 and "removed" in again.stdout


def test_retention_below_the_minimum(sqlite_url):
    fill(sqlite_url)
    result = command("de-reaper", "--url", sqlite_url, "--retention-days", "3")
    assert result.returncode == 2
    assert result.stderr.startswith("de-reaper: retention_interval_in_days must be at least 7 days")


def test_reads_the_global_configuration(tmp_path, sqlite_url):
    fill(sqlite_url)
    (tmp_path / "decision_engine.jsonnet").write_text(
        json.dumps({"dataspace": {"datasource": {"config": {"url": sqlite_url}}, "retention_interval_in_days": 8}})
    )
    result = command("de-reaper", "--config", tmp_path, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["retention_days"] == 8
    assert json.loads(result.stdout)["per_channel"] == {"alpha": 4}


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--url", "sqlite:////nonexistent/x.sqlite"], 1, "no SQLite dataspace database at /nonexistent/x.sqlite"),
        (["--config", "/nonexistent"], 2, "/nonexistent"),
        (["--url", "x", "--config", "y"], 2, "not allowed with argument"),
        (["--retention-days", "soon"], 2, "invalid float value"),
    ],
)
def test_errors(args, status, message):
    result = command("de-reaper", *args)
    assert result.returncode == status
    assert message in result.stderr
    assert "Traceback" not in result.stderr
