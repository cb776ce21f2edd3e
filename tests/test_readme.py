"""README.rst stays true: valid reStructuredText, and .ci/run runs exactly its test command."""

import pathlib
import re

import docutils.core

REPO = pathlib.Path(__file__).resolve().parents[1]


def commands():
    text = (REPO / "README.rst").read_text()
    return re.findall(r"^ {5}(\S.*)$", text.split("Quick start")[0], flags=re.MULTILINE)


def test_readme_is_valid_restructuredtext():
    settings = {"report_level": 5, "halt_level": 2}  # any warning or error raises SystemMessage
    docutils.core.publish_doctree((REPO / "README.rst").read_text(), settings_overrides=settings)


def test_the_two_commands_open_the_readme_and_ci_runs_the_second():
    run, test = commands()
    assert "de-server" in run and "de-client" in run and "--status" in run
    assert test.startswith("scripts/system-packages && ")
    assert "scripts/run-tests newest" in test and "scripts/run-tests oldest" in test  # both version sets
    runner = (REPO / "scripts" / "run-tests").read_text()
    steps = ('pip" install', "constraints/oldest.txt", 'ruff" check .', 'ruff" format --check .', "lint-imports")
    for step in (*steps, "pytest -n 3"):
        assert step in runner, step
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test
    assert "export CI=true" in ci
