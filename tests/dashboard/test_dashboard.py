"""The dashboard in a real headless Chromium (Debian's package), driven by Playwright."""

import os
import pathlib
import shutil
import subprocess

import pytest

from tests.conftest import IN_CI
from tests.engine.server import REPO, DEServer

pytestmark = pytest.mark.timeout(300)
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"
TOKEN = "dashboard-token"


def chromium() -> str:
    """Debian's Chromium; CI installs it when missing (as root), elsewhere the test is skipped."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if IN_CI and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env, capture_output=True)
        return CHROMIUM
    if IN_CI:
        pytest.fail("CI=true and Debian's chromium is not installed (and cannot be installed here)")
    pytest.skip("the dashboard test needs Debian's chromium package (/usr/bin/chromium)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    demo = (REPO / "etc" / "decisionengine" / "config.d" / "demo.jsonnet").read_text()
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", {"demo": demo}, webserver={"api_token": TOKEN})
    server.start()
    server.wait_for_generation("demo", 1, 90)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert errors == []


def screenshot(page, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_overview_lists_the_demo_channel(demo, page):
    page.goto(demo.url + "/")
    row = page.wait_for_selector("#channels tr[data-channel='demo']")
    assert "STEADY" in row.inner_text() or "ACTIVE" in row.inner_text()
    assert "Channels (1, 0 failing)" in page.inner_text("h1")
    assert page.inner_text("#live").strip().endswith("live")
    screenshot(page, "dashboard-overview")


def test_channel_page_shows_graph_chart_and_live_generations(demo, page):
    page.goto(f"{demo.url}/#/channel/demo")
    page.wait_for_selector("#graph .node")
    nodes = page.eval_on_selector_all("#graph .node", "nodes => nodes.map(n => n.dataset.key)")
    assert sorted(nodes) == ["catalogue", "demand", "jobs", "logic", "merit", "provisioner", "summary"]
    assert page.eval_on_selector_all("#graph path.edge", "paths => paths.length") >= 5
    page.wait_for_selector("#chart polyline")
    assert "demand" in page.text_content("#chart")
    assert "provisioning" in page.inner_text("#decision")
    first = int(page.inner_text("#generation"))
    # a new generation appears without reloading the page (the demo's jobs source runs every 5 s)
    page.wait_for_function(f"() => Number(document.querySelector('#generation').textContent) > {first}", timeout=60_000)
    points = int(page.get_attribute("#chart", "data-points"))
    assert points >= 2
    page.click("#products a >> text=provisioning_plan")
    page.wait_for_selector("#product-view h2")
    assert "provisioning_plan" in page.inner_text("#product-view h2")
    screenshot(page, "dashboard-channel")


def test_control_buttons_need_the_token(demo, page):
    page.goto(f"{demo.url}/#/channel/demo")
    page.wait_for_selector("#graph .node")
    assert page.query_selector("#stop") is None  # read-only until the token is entered
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#stop")
    page.click("#stop")
    page.wait_for_function("() => document.querySelector('#state').textContent === 'SHUTDOWN'", timeout=60_000)
    page.click("#start")
    page.wait_for_function(
        "() => ['BOOT', 'ACTIVE', 'STEADY'].includes(document.querySelector('#state').textContent)", timeout=60_000
    )
    demo.wait_for_generation("demo", demo.channel("demo")["generation"] + 1, 90)
