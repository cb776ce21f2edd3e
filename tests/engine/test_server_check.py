"""``de-server --check``: the configuration a start would use, validated with nothing opened."""

import json
import pathlib

from tests.engine.server import REPO, write_channel
from tests.engine.test_server_cli import de_server
from tests.taskmanager.channels import counting_channel, module


def configuration(tmp_path, **extra):
    """A global file (no port taken, no database) and an empty config.d/ under tmp_path."""
    (tmp_path / "config.d").mkdir()
    (tmp_path / "decision_engine.jsonnet").write_text(
        json.dumps({"server_address": ["127.0.0.1", 1], "logger": {"log_file": "logs/de.log"}, **extra})
    )
    return tmp_path


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*"))


def test_a_valid_configuration_passes_and_nothing_is_created(tmp_path):
    root = configuration(tmp_path)
    write_channel(root / "config.d", "counting", counting_channel(str(tmp_path / "published.jsonl")))
    write_channel(root / "config.d", "quiet", {"sources": {"s": module("CountingSource", schedule=5)}})
    before = files_under(root)

    result = de_server("--check", "--config", str(root), "--state-dir", str(tmp_path / "state"))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["global", "ok", str(root / "decision_engine.jsonnet")]
    assert lines[1].split() == ["counting", "ok", str(root / "config.d" / "counting.jsonnet")]
    assert lines[2].split() == ["quiet", "ok", str(root / "config.d" / "quiet.jsonnet")]
    assert lines[-1] == "configuration valid: 2 channels"
    # no database, no log file, no state directory, no pidfile: the check opens nothing
    assert files_under(root) == before


def test_every_broken_channel_is_named_with_its_file_and_key(tmp_path):
    root = configuration(tmp_path)
    channels = root / "config.d"
    write_channel(channels, "good", {"sources": {"s": module("CountingSource", schedule=5)}})
    write_channel(channels, "syntax", "{ sources: { ")
    write_channel(
        channels,
        "imports",
        {"sources": {"vendor": {"module": "tests.fixtures.modules.BrokenImport", "name": "X"}}},
    )
    write_channel(
        channels,
        "constructor",
        {"sources": {"batch": {"module": "tests.fixtures.modules.FailingConstructor", "schedule": 5}}},
    )
    write_channel(
        channels,
        "graph",
        {"sources": {"g": module("CountingSource")}, "publishers": {"p": module("RecordingPublisher", record="x")}},
    )
    write_channel(
        channels,
        "settings",
        {"sources": {"s": module("CountingSource", schedule=5)}, "task_manager": {"max_generations": "ten"}},
    )
    write_channel(channels, "schedule", {"sources": {"t": module("CountingSource", schedule=-1)}})

    result = de_server("--check", "--config", str(root))

    assert result.returncode == 1
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[:-1]}
    assert lines["good"].split()[1] == "ok"
    path = str(channels)
    assert f"{path}/syntax.jsonnet" in lines["syntax"] and "error:" in lines["syntax"]
    assert "sources.vendor: cannot import module 'tests.fixtures.modules.BrokenImport'" in lines["imports"]
    assert "the vendor library is not installed" in lines["imports"]
    assert f"{path}/imports.jsonnet" in lines["imports"]
    assert (
        "sources.batch: constructing" in lines["constructor"]
        and "cannot reach the batch system" in lines["constructor"]
    )
    assert "publishers.p consumes product 'total', which no module of the channel produces" in lines["graph"]
    assert "task_manager.max_generations: expected an integer, got 'ten'" in lines["settings"]
    assert f"{path}/schedule.jsonnet" in lines["schedule"] and "sources.t.schedule" in lines["schedule"]
    assert result.stdout.splitlines()[-1] == "configuration invalid: 6 of 7 channels cannot run"
    assert "Traceback" not in result.stdout + result.stderr


def test_json_output_for_scripts(tmp_path):
    root = configuration(tmp_path, broker_url="redis://old")  # a key of older installations: a warning
    write_channel(root / "config.d", "good", {"sources": {"s": module("CountingSource", schedule=5)}})
    write_channel(root / "config.d", "bad", {"sources": {"b": {"module": "no.such.module"}}})

    result = de_server("--check", "--json", "--config", str(root))

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["config_file"] == str(root / "decision_engine.jsonnet")
    assert report["channel_dir"] == str(root / "config.d")
    assert report["global"]["ok"] is True and any("broker_url" in w for w in report["global"]["warnings"])
    by_name = {c["name"]: c for c in report["channels"]}
    assert by_name["good"] == {
        "name": "good",
        "file": str(root / "config.d" / "good.jsonnet"),
        "ok": True,
        "error": None,
        "warnings": [],
    }
    assert by_name["bad"]["ok"] is False
    assert "sources.b: cannot import module 'no.such.module'" in by_name["bad"]["error"]


def test_a_broken_global_file_fails_the_check(tmp_path):
    (tmp_path / "config.d").mkdir()
    (tmp_path / "decision_engine.jsonnet").write_text('{ logger: { max_backup_count: "x" } }')
    result = de_server("--check", "--config", str(tmp_path))
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("global  error: ") and "logger.max_backup_count" in first
    assert result.stdout.splitlines()[-1] == "configuration invalid: the global file cannot be used"

    missing = de_server("--check", "--json", "--config", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert "nowhere" in json.loads(missing.stdout)["global"]["error"]


def test_a_missing_token_file_fails_the_check_as_it_fails_a_start(tmp_path):
    root = configuration(tmp_path, webserver={"api_token_file": str(tmp_path / "no-token")})
    result = de_server("--check", "--config", str(root))
    assert result.returncode == 1
    assert "no-token" in result.stdout.splitlines()[0]


def test_json_needs_check(tmp_path):
    result = de_server("--json", "--config", str(configuration(tmp_path)))
    assert result.returncode == 2 and "--json goes with --check" in result.stderr


def test_the_systemd_unit_checks_before_it_starts():
    unit = (REPO / "etc" / "systemd" / "decisionengine.service").read_text()
    pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert pre == [start.replace("ExecStart=", "ExecStartPre=").split(" --pidfile")[0] + " --check"]


def test_a_source_configured_differently_by_two_channels_fails_the_later_one(tmp_path):
    """As a start refuses it (sources are shared by name across the server)."""
    root = configuration(tmp_path)
    write_channel(root / "config.d", "first", {"sources": {"jobs": module("CountingSource", schedule=5)}})
    write_channel(root / "config.d", "second", {"sources": {"jobs": module("CountingSource", schedule=7)}})

    result = de_server("--check", "--config", str(root), "--state-dir", str(tmp_path / "state"))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["first"].split()[1] == "ok"
    assert "error:" in lines["second"] and "'jobs'" in lines["second"] and "schedule" in lines["second"]
