"""Running the operator commands as real subprocesses."""

import os
import subprocess
import sys

from tests.engine.server import REPO

MODULES = {
    "de-client": "decisionengine.framework.cli.de_client",
    "de-reaper": "decisionengine.framework.cli.de_reaper",
    "de-query-tool": "decisionengine.framework.cli.de_query_tool",
    "de-dataspace": "decisionengine.framework.cli.de_dataspace",
}


def command(name, *args, timeout=120, env=None):
    """Run ``name`` (as ``python -m``) with ``args``; the CompletedProcess."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    environment.pop("CONFIG_PATH", None)
    return subprocess.run(
        [sys.executable, "-m", MODULES[name], *map(str, args)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
