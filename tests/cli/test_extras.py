"""Optional parts are extras; a user who asks for one that is not installed is told its name."""

import configparser
import os
import subprocess
import sys

from tests.engine.server import REPO

# runs a command's module with `module` made unimportable, as on a base install without it
WITHOUT = (
    "import runpy, sys; sys.modules[sys.argv[1]] = None; "
    "sys.argv = sys.argv[2:]; runpy.run_module(sys.argv[0], run_name='__main__')"
)


def without(module, command, *args, env=None):
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("CONFIG_PATH", None)
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, module, command, *map(str, args)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_parquet_and_completion_are_extras_of_a_smaller_base_install():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    base = setup["options"]["install_requires"]
    assert "pyarrow" not in base and "argcomplete" not in base
    extras = setup["options.extras_require"]
    assert extras["parquet"].split() == ["pyarrow", ">=", "17"]
    assert extras["completion"].split() == ["argcomplete", ">=", "3.0"]
    assert "pyarrow" in extras["all"] and "argcomplete" in extras["all"]


def test_parquet_output_without_the_extra_names_it(tmp_path):
    missing = tmp_path / "nowhere.sqlite"
    result = without(
        "pyarrow",
        "decisionengine.framework.cli.de_query_tool",
        "--url",
        f"sqlite:///{missing}",
        "demo",
        "demand",
        "--output",
        tmp_path / "demand.parquet",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "de-query-tool: Parquet output needs the 'parquet' extra (pyarrow is not installed): "
        "pip install 'decisionengine[parquet]'"
    )
    assert not missing.exists() and not (tmp_path / "demand.parquet").exists()  # asked before opening anything


def test_completion_without_the_extra_names_it_and_runs_nothing(tmp_path):
    # what argcomplete's shell hook does on TAB: run the command with _ARGCOMPLETE set
    result = without(
        "argcomplete",
        "decisionengine.framework.cli.de_server",
        "--config",
        tmp_path,
        env={"_ARGCOMPLETE": "1", "COMP_LINE": "de-server --", "COMP_POINT": "12"},
    )
    assert result.returncode == 1
    assert "shell completion needs the 'completion' extra" in result.stderr
    assert "pip install 'decisionengine[completion]'" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no server started, nothing written
