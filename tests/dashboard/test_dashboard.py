"""The dashboard in a real headless Chromium (Debian's package), driven by Playwright."""

import os
import pathlib

import pytest

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
# A source or channel that fails shows its error; real errors often hold a long path with no place to
# break it (the demo never fails on its own, so the layout tests put this one in the API's answers).
LONG_ERROR = (
    "FileNotFoundError: no .csv snapshot in "
    "/var/lib/decisionengine/demo-output/job_queue/snapshots/batch_queue_of_the_site_2026-12-01T00:00:00Z"
)
# names too long for any box of the module graph (see bigger_graph)
LONG_NAME = "a_source_with_a_rather_long_name_indeed"
LONG_CLASS = "AVeryLongSourceClassNameThatNeverEndsAndGoesOnAndOn"
LONG_PRODUCT = "a_product_name_that_is_far_too_long_for_any_label_column"

# Every layout problem on the page, each naming the element (its text) and its box, in CSS pixels:
# * the module graph (#graph): edge labels that overlap each other or a module's box, a module's text
#   outside its box, text drawn smaller than 9 px, text outside its <svg>;
# * any text-bearing element (own text, a table, an svg, a form control, a <pre>) that sticks out of
#   its card (.card), or of <main> when in no card, horizontally; an element inside a scroll container
#   that is itself inside the card counts as that container (the container must fit, not its content);
# * a card outside <main>, and a page wider than the window.
LAYOUT_PROBLEMS = """(only) => {
  const TOL = 1;
  const problems = [];
  const box = (e) => e.getBoundingClientRect();
  const fmt = (r) => `x ${(r.left + scrollX).toFixed(1)}..${(r.right + scrollX).toFixed(1)}, `
    + `y ${(r.top + scrollY).toFixed(1)}..${(r.bottom + scrollY).toFixed(1)}`;
  const text = (e) => {
    const t = (e.textContent || e.value || "").replace(/\\s+/g, " ").trim();
    return t.length > 70 ? t.slice(0, 67) + "..." : t;
  };
  const name = (e) => {
    const cls = (e.getAttribute("class") || "").trim();
    return `<${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${cls ? "." + cls.split(/\\s+/).join(".") : ""}>`
      + ` "${text(e)}" [${fmt(box(e))}]`;
  };
  const overlap = (a, b) => a.left < b.right - TOL && b.left < a.right - TOL
    && a.top < b.bottom - TOL && b.top < a.bottom - TOL;
  const inside = (a, b) => a.left >= b.left - TOL && a.right <= b.right + TOL
    && a.top >= b.top - TOL && a.bottom <= b.bottom + TOL;

  const graph = only ? null : document.querySelector("#graph");
  const labels = graph ? [...graph.querySelectorAll("text.edge-label")].filter((t) => !t.closest(".node")) : [];
  const nodes = graph ? [...graph.querySelectorAll(".node")] : [];
  labels.forEach((a, i) => labels.slice(i + 1).forEach((b) => {
    if (overlap(box(a), box(b))) problems.push(`edge labels overlap: ${name(a)} and ${name(b)}`);
  }));
  for (const node of nodes) {
    const rect = node.querySelector("rect");
    for (const t of node.querySelectorAll("text")) {
      if (!inside(box(t), box(rect))) problems.push(`text outside its module's box ${fmt(box(rect))}: ${name(t)}`);
    }
    for (const label of labels) {
      if (overlap(box(label), box(rect))) {
        problems.push(`edge label over module "${node.dataset.key}" [${fmt(box(rect))}]: ${name(label)}`);
      }
    }
  }
  if (graph) {
    for (const t of graph.querySelectorAll("text")) {
      const m = t.getScreenCTM();
      const size = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
      if (size < 9 - 0.05) problems.push(`graph text drawn ${size.toFixed(1)} px high (less than 9): ${name(t)}`);
    }
  }
  for (const t of document.querySelectorAll(`${only || "main"} svg text`)) {
    const owner = t.ownerSVGElement;
    if (!inside(box(t), box(owner))) problems.push(`text outside its svg ${name(owner)}: ${name(t)}`);
  }

  const main = document.querySelector("main");
  const mainBox = box(main);
  const cards = [...main.querySelectorAll(".card")];
  const scrolls = (e) => e instanceof HTMLElement && ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const frameName = (f) => f === main ? `<main> [${fmt(box(f))}]`
    : `card "${text(f.querySelector("h2") || f)}" [${fmt(box(f))}]`;
  const reported = [];
  let checked = 0;
  for (const e of (only ? document.querySelector(only) : main).querySelectorAll("*")) {
    if (e.classList.contains("card") || ["title", "option", "tspan"].includes(e.tagName)) continue;
    const r = box(e);
    if (r.width === 0 && r.height === 0) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!own && !["TABLE", "svg", "SELECT", "INPUT", "BUTTON", "PRE", "IMG"].includes(e.tagName)) continue;
    const frame = e.closest(".card") || main;
    let target = e;
    for (let p = e; p && p !== frame; p = p.parentElement) if (scrolls(p)) target = p;
    checked += 1;
    const f = box(frame), t = box(target);
    if ((t.left < f.left - TOL || t.right > f.right + TOL) && !reported.some((x) => x.contains(target))) {
      reported.push(target);
      problems.push(`sticks out of ${frameName(frame)}: ${name(e)}` + (target === e ? "" : ` (in ${name(target)})`));
    }
  }
  for (const card of cards) {
    const c = box(card);
    if (c.left < mainBox.left - TOL || c.right > mainBox.right + TOL) {
      problems.push(`${frameName(card)} sticks out of <main> [${fmt(mainBox)}]`);
    }
  }
  const width = document.documentElement.scrollWidth;
  if (width > innerWidth) problems.push(`the page is ${width} px wide, wider than the window (${innerWidth} px)`);
  return {problems, checked, cards: cards.length, labels: labels.length, nodes: nodes.length,
          product: (document.querySelector("#product-view h2") || {}).textContent || ""};
}"""


def chromium() -> str:
    """Debian's Chromium, or the test is skipped: a test never installs system packages."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    pytest.skip(
        f"the dashboard tests need Debian's chromium package ({CHROMIUM}), "
        "which README's test command installs (apt-get install chromium)"
    )


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
    # Routes of a test (with_long_errors) may be handling a live update as the page closes:
    # take them away first, or their "response disposed" error lands in the next test.
    page.unroute_all(behavior="ignoreErrors")
    page.close()
    assert errors == []


def screenshot(page, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn where the page was scrolled to
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def layout(page, where: str, only: str | None = None) -> dict:
    """The page's layout problems (see LAYOUT_PROBLEMS), each prefixed with ``where``.

    With ``only`` (a CSS selector), the texts of that element only, and the page's width.
    """
    found = page.evaluate(LAYOUT_PROBLEMS, only)
    # a product view holds at least its heading and the product (a table, or a JSON block for a dict)
    assert found["checked"] >= (2 if only else 11), f"{where}: only {found['checked']} elements checked"
    found["problems"] = [f"{where}: {problem}" for problem in found["problems"]]
    return found


def assert_no_problems(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} layout problems:\n" + "\n".join(problems)


def with_long_errors(page) -> None:
    """The API's answers as if the demo's jobs source (and so the channel) had failed with LONG_ERROR."""

    def channel(route):
        response = route.fetch()
        body = response.json()
        body["sources"]["jobs"]["last_error"] = LONG_ERROR
        route.fulfill(response=response, json=body)

    def channels(route):
        response = route.fetch()
        body = response.json()
        for channel in body["channels"]:
            channel["last_error"] = LONG_ERROR
        route.fulfill(response=response, json=body)

    def sources(route):
        response = route.fetch()
        body = response.json()
        for source in body["sources"]:
            source["last_error"] = LONG_ERROR
        route.fulfill(response=response, json=body)

    page.route("**/api/v1/channels/demo", channel)
    page.route("**/api/v1/channels", channels)
    page.route("**/api/v1/sources", sources)


def test_overview_lists_the_demo_channel(demo, page):
    page.goto(demo.url + "/")
    row = page.wait_for_selector("#channels tr[data-channel='demo']")
    assert "STEADY" in row.inner_text() or "ACTIVE" in row.inner_text()
    assert "Channels (1, 0 failing)" in page.inner_text("h1")
    # the sources table: each source with its consumers, schedule and where it runs
    source = page.wait_for_selector("#source-table tr[data-source='jobs']")
    cells = source.eval_on_selector_all("td", "cells => cells.map(c => c.textContent)")
    runs_on = row.eval_on_selector("td.runs-on", "c => c.textContent")
    assert cells[0] == "jobs" and cells[2] == "demo" and cells[3].endswith(" s") and cells[4] == runs_on, cells
    assert cells[1] in ("ACTIVE", "STEADY"), cells
    assert page.inner_text("#live").strip().endswith("live")
    screenshot(page, "dashboard-overview")
    assert_no_problems(layout(page, "overview at 1400 px")["problems"])


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
    assert_no_problems(layout(page, "channel page at 1400 px")["problems"])


@pytest.mark.parametrize("width", [1280, 800])
def test_channel_page_layout(demo, page, width):
    """Edge labels apart, module texts inside their boxes, every table and text inside its card."""
    page.set_viewport_size({"width": width, "height": 900})
    with_long_errors(page)
    page.goto(f"{demo.url}/#/channel/demo")
    page.wait_for_selector("#graph .node")
    page.wait_for_selector("#chart polyline")
    page.get_by_text(LONG_ERROR).first.wait_for()
    found = layout(page, f"channel page at {width} px")
    assert found["nodes"] == 7
    assert found["labels"] >= 5
    assert found["cards"] >= 4
    problems = found["problems"]
    # the product view (its texts, and the page's width), for every product (the widest last, for the screenshot)
    products = page.eval_on_selector_all("#products a", "links => links.map(a => a.textContent)")
    assert "resource_catalogue" in products
    for product in [*sorted(set(products) - {"resource_catalogue"}), "resource_catalogue"]:
        page.click(f"#products a >> text='{product}'")
        page.wait_for_function(
            "name => (document.querySelector('#product-view h2') || {}).textContent?.startsWith(name + ' (')",
            arg=product,
        )
        found = layout(page, f"channel page at {width} px, product view of {product}", "#product-view")
        assert found["product"].startswith(f"{product} ("), f"the product view closed: {found['product']!r}"
        problems += found["problems"]
    screenshot(page, f"dashboard-channel-{width}")
    assert_no_problems(problems)


@pytest.mark.parametrize("width", [1280, 800])
def test_overview_layout(demo, page, width):
    """Every table and text of the overview inside its card, even with a long error."""
    page.set_viewport_size({"width": width, "height": 900})
    with_long_errors(page)
    page.goto(demo.url + "/")
    page.wait_for_selector("#channels tr[data-channel='demo']")
    page.get_by_text(LONG_ERROR).first.wait_for()
    found = layout(page, f"overview at {width} px")
    screenshot(page, f"dashboard-overview-{width}")
    assert_no_problems(found["problems"])


def bigger_graph() -> dict:
    """A channel graph with more modules and arrows than the demo's, and names too long for any box."""
    kinds = {LONG_NAME: "source", "s2": "source", "s3": "source", "t1": "transform", "t2": "transform"}
    kinds |= {"t3": "transform", "le": "logicengine", "p1": "publisher", "p2": "publisher", "p3": "publisher"}
    classes = {LONG_NAME: LONG_CLASS, "p1": "ProvisioningRequestPublisher"}
    nodes = [
        {
            "key": key,
            "kind": kind,
            "module": f"modules.{classes.get(key, key.upper())}",
            "class_name": classes.get(key, key.upper()),
        }
        for key, kind in kinds.items()
    ]
    edges = [(LONG_NAME, "t1", LONG_PRODUCT), ("s2", "t1", "x"), ("s2", "t2", "y"), ("s2", "p3", "x")]
    edges += [("s3", "t3", "z"), ("s3", "le", "z"), ("s3", "p3", "z"), ("t1", "t2", "p"), ("t1", "t2", "q")]
    edges += [("t1", "t2", "r"), ("t1", "le", "p"), ("t1", "p1", "p"), ("t2", "t3", "w"), ("t2", "le", "w")]
    edges += [("t2", "p2", "w"), ("t3", "le", "v"), ("t3", "p3", "v"), ("le", "p1", "facts"), ("le", "p2", "facts")]
    return {"channel": "demo", "nodes": nodes, "edges": [{"from": f, "to": t, "product": p} for f, t, p in edges]}


@pytest.mark.parametrize("width", [1280, 800])
def test_graph_layout_of_a_bigger_channel(demo, page, width):
    """The graph's checks on a bigger graph: a text cut to fit its box has its full text in a tooltip."""
    page.set_viewport_size({"width": width, "height": 900})
    page.route("**/api/v1/channels/demo/graph", lambda route: route.fulfill(json=bigger_graph()))
    page.goto(f"{demo.url}/#/channel/demo")
    page.wait_for_selector("#graph .node")
    found = layout(page, f"bigger graph at {width} px")
    assert (found["nodes"], found["labels"]) == (10, 17)  # one label per pair of modules
    assert_no_problems(found["problems"])
    cut = page.eval_on_selector_all(
        "#graph text",
        "texts => texts.filter(t => t.textContent.includes('\u2026'))"
        "  .map(t => [t.textContent, t.closest('g').querySelector('title').textContent])",
    )
    # the long module name, its class and the long product, each with a tooltip holding it in full
    assert len(cut) == 3, f"texts cut with an ellipsis (and their tooltips): {cut}"
    for text, tooltip in cut:
        assert text.endswith("\u2026") and text[:-1] in tooltip, (text, tooltip)
        assert any(full in tooltip for full in (LONG_NAME, LONG_CLASS, LONG_PRODUCT)), (text, tooltip)


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
