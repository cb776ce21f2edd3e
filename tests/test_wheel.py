"""The built wheel carries what the server runs with.

The project's files are copied (no build output lands in the work tree), a wheel is built
from the copy (``pip wheel --no-deps --no-build-isolation``: offline, a few seconds) and
installed without dependencies into a fresh virtual environment outside the source tree.
The third-party libraries come from the running environment through a ``.pth`` file
naming its site-packages (where ``.pth`` files such as the editable install's are *not*
processed), so the test installs nothing from the network, and ``decisionengine`` can only
be the wheel's copy: the test checks that it is.  ``de-server`` then runs from that
environment, from a temporary directory, on a temporary SQLite file and a free port: the
dashboard's files, the OpenAPI document, the migrations and ``de_std.libsonnet`` must all
work from the installed files.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile

import pytest

from decisionengine.testing.postgres import free_port
from decisionengine.testing.waiting import eventually
from tests.engine.server import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: not part of what a build reads
IGNORED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*cache*", "run", "demo-output", "artifacts"
)
#: files the server reads at run time, by their path in the wheel
RUNTIME_FILES = [
    "decisionengine/framework/web/dashboard/index.html",
    "decisionengine/framework/web/dashboard/app.js",
    "decisionengine/framework/web/dashboard/style.css",
    "decisionengine/framework/dataspace/migrations/env.py",
    "decisionengine/framework/dataspace/migrations/script.py.mako",
    "decisionengine/framework/config/libsonnet/de_std.libsonnet",
    "decisionengine/modules/demo/data/job_queue/",
    "decisionengine/modules/demo/data/catalogue/",
]


def run(*args, cwd, env=None, timeout=120):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    env = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        root / "dist",
        source,
        cwd=root,
        env=env,
    )
    (built,) = (root / "dist").glob("decisionengine-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv holding the wheel; its python and the environment to run it with."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=venv).stdout.strip()
    # the running environment's libraries, after the fresh venv's own site-packages
    running = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    (venv / purelib / "_dependencies.pth").write_text("\n".join(sorted(running)) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONFIG_PATH", "CHANNEL_CONFIG_PATH")}
    return venv, python, env


def test_the_wheel_holds_the_runtime_files_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for expected in RUNTIME_FILES:
        assert any(name.startswith(expected) for name in names), expected
    migrations = [n for n in names if n.startswith("decisionengine/framework/dataspace/migrations/versions/")]
    assert len(migrations) == len(list((REPO / "decisionengine/framework/dataspace/migrations/versions").glob("*.py")))
    assert not [n for n in names if n.startswith("tests/")]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if "Requires-Dist" in line]
    # Parquet and shell completion are extras: the base install leaves them out
    assert [r for r in requires if "pyarrow" in r] and all("extra ==" in r for r in requires if "pyarrow" in r)
    assert all("extra ==" in r for r in requires if "argcomplete" in r)
    assert any('extra == "parquet"' in r for r in requires)


def test_de_server_runs_from_the_installed_wheel(installed, tmp_path):
    venv, python, env = installed
    found = run(python, "-c", "import decisionengine; print(decisionengine.__file__)", cwd=tmp_path, env=env)
    assert found.stdout.strip().startswith(str(venv)), found.stdout  # not the source tree, not the editable install

    config = tmp_path / "config"
    (config / "config.d").mkdir(parents=True)
    port = free_port()
    (config / "decision_engine.jsonnet").write_text(
        json.dumps(
            {
                "server_address": ["127.0.0.1", port],
                "dataspace": {"datasource": {"config": {"url": f"sqlite:///{tmp_path / 'ds.sqlite'}"}}},
            }
        )
    )
    # the demo channel, put together with the installed de_std.libsonnet
    shutil.copy(REPO / "etc" / "decisionengine" / "config.d" / "demo.jsonnet", config / "config.d" / "demo.libsonnet")
    (config / "config.d" / "demo.jsonnet").write_text(
        "local de_std = import 'de_std.libsonnet';\n"
        "local demo = import 'demo.libsonnet';\n"
        "demo + { sources: de_std.sources_from([demo]) }\n"
    )
    state = tmp_path / "state"
    check = run(venv / "bin" / "de-server", "--check", "--config", config, cwd=tmp_path, env=env)
    assert check.stdout.splitlines()[1].split()[:2] == ["demo", "ok"]

    server = subprocess.Popen(
        [venv / "bin" / "de-server", "--config", config, "--state-dir", state],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def channels():
            if server.poll() is not None:
                raise RuntimeError(f"de-server exited: {server.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{url}/api/v1/channels", timeout=5) as response:
                    return json.loads(response.read())
            except OSError:
                return None

        def generation():
            listed = channels()
            demo = [c for c in (listed or {}).get("channels", []) if c["name"] == "demo"]
            return demo and (demo[0].get("generation") or 0) >= 1

        eventually(generation, 60, what="the demo's first generation")

        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert b"<html" in response.read().lower()
        for asset in ("app.js", "style.css"):
            with urllib.request.urlopen(f"{url}/static/{asset}", timeout=10) as response:
                assert response.status == 200 and response.read()
        with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=10) as response:
            document = json.loads(response.read())
        assert document["openapi"].startswith("3.1") and "/channels" in document["paths"]
    finally:
        server.terminate()
        server.wait(30)

    newest = sorted((REPO / "decisionengine/framework/dataspace/migrations/versions").glob("*.py"))[-1].stem
    with sqlite3.connect(tmp_path / "ds.sqlite") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == newest.split("_")[0]  # the migrations ran from the installed files
    assert (state / "demo-output" / "summary.csv").exists()  # the demo read its installed data and published
