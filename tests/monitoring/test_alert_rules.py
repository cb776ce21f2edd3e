"""The alert rules, checked and unit-tested by promtool itself."""

import pathlib
import shutil
import subprocess

from tests.engine.server import REPO

RULES = REPO / "etc" / "prometheus" / "decisionengine-rules.yml"
RULE_TESTS = pathlib.Path(__file__).with_name("decisionengine-rules.test.yml")
ALERTS = {"DEServerDown", "DEChannelDown", "DEChannelNoGeneration", "DEDatabaseUnreachable", "DEReaperFailing"}


def run(promtool, *args, cwd=None):
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def test_the_rules_file_is_valid(promtool):
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_every_alert_behaves_as_its_unit_tests_say(promtool):
    tested = {line.split(":", 1)[1].strip() for line in RULE_TESTS.read_text().splitlines() if "alertname:" in line}
    assert tested == ALERTS  # every alert has a unit test
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_catch_a_wrong_threshold(promtool, tmp_path):
    """The unit tests can fail: with ten times the schedule instead of three, they do."""
    (tmp_path / "etc" / "prometheus").mkdir(parents=True)
    (tmp_path / "tests" / "monitoring").mkdir(parents=True)
    wrong = RULES.read_text().replace("> 3 * max by", "> 10 * max by")
    assert wrong != RULES.read_text()
    (tmp_path / "etc" / "prometheus" / RULES.name).write_text(wrong)
    shutil.copy(RULE_TESTS, tmp_path / "tests" / "monitoring")
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests" / "monitoring")
    assert result.returncode != 0
    assert "DEChannelNoGeneration" in result.stdout + result.stderr
