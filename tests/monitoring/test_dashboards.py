"""The Grafana dashboards and the alert rules query metrics a real server exports.

A real de-server runs a real channel for a few generations; its ``/metrics`` is scraped and
every PromQL expression of every dashboard panel, dashboard variable and alert rule is
parsed (promql-parser, the Prometheus grammar): each metric it selects must be in the
scrape, each label it matches on, groups by or joins on must be a label of those metrics,
and each label value it asks for with ``=`` must be one the server exported.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import defaultdict

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.engine.server import REPO, DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(180)

DASHBOARDS = sorted((REPO / "etc" / "grafana" / "dashboards").glob("*.json"))
RULES = REPO / "etc" / "prometheus" / "decisionengine-rules.yml"
#: labels Prometheus adds to every scraped series (not in /metrics)
TARGET_LABELS = {"job", "instance"}
#: series Prometheus makes itself for each target
PROMETHEUS_SERIES = {"up"}
#: what Grafana puts in place of its variables before a query is sent
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # rows hold panels


def dashboard_queries(dashboard):
    """(where, PromQL) of every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{dashboard['title']} / {panel['title']} / {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{dashboard['title']}: variable {variable['name']}: only label_values(selector, label)"
            selector, label = match.groups()
            # label_values(selector, label): the label must be on the selected metric
            yield f"{dashboard['title']} / variable {variable['name']}", f"count by ({label}) ({selector})"


def rule_queries():
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


def concrete(expr: str) -> str:
    """The query Grafana would send: its variables replaced (``$channel`` matches everything)."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def uses(expr: str):
    """(selectors [(metric, [(label, op, value)])], grouping and joining labels) of a query."""
    selectors, grouping = [], set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers]
            selectors.append((node.name, matchers))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None and node.modifier.matching:
            grouping.update(node.modifier.matching.labels)

    promql_parser.walk(promql_parser.parse(concrete(expr)), visit)
    return selectors, grouping


def exported(text: str) -> dict[str, dict[str, set[str]]]:
    """{series name: {label: values}} of an exposition (histograms: _bucket, _sum, _count)."""
    series: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = series[sample.name]
            for label, value in sample.labels.items():
                labels[label].add(value)
    return series


def problems_of(where: str, expr: str, scraped: dict[str, dict[str, set[str]]]) -> list[str]:
    selectors, grouping = uses(expr)
    found, available = [], set(TARGET_LABELS)
    for metric, matchers in selectors:
        if metric in PROMETHEUS_SERIES:
            continue
        if metric not in scraped:
            found.append(f"{where}: metric {metric} is not exported")
            continue
        labels = scraped[metric]
        available |= set(labels)
        for label, op, value in matchers:
            if label in TARGET_LABELS:
                continue
            if label not in labels:
                found.append(f"{where}: {metric} has no label {label!r} (it has {sorted(labels)})")
            elif op == "Equal" and value not in labels[label]:
                found.append(f"{where}: {metric}{{{label}={value!r}}} is never exported ({sorted(labels[label])})")
    found.extend(
        f"{where}: groups or joins by {label!r}, which no metric it reads has" for label in grouping - available
    )
    return found


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """/metrics of a real server after a few generations and requests of every interface."""
    root = tmp_path_factory.mktemp("monitoring")
    channel = counting_channel(str(root / "published.jsonl"))
    channel["sources"]["counter"]["schedule"] = 0.3
    server = DEServer(root, f"sqlite:///{root / 'dataspace.sqlite'}", {"counting": channel}).start()
    try:
        server.wait_for_generation("counting", 3)
        for path in ("/api/v1/channels", "/", "/metrics", "/api/v1/nothing"):
            try:
                urllib.request.urlopen(server.url + path, timeout=30).read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as response:
            return exported(response.read().decode())
    finally:
        server.stop()


def test_the_dashboards_are_ready_for_file_provisioning():
    assert [p.name for p in DASHBOARDS] == [
        "decisionengine-channels.json",
        "decisionengine-server.json",
        "decisionengine-sources.json",
    ]
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns it
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in panels(dashboard):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), path.name
    assert len(uids) == len(DASHBOARDS)
    provider = yaml.safe_load((REPO / "etc" / "grafana" / "provisioning" / "decisionengine.yaml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"


def test_every_panel_queries_metrics_the_server_exports(scraped):
    queries = [q for path in DASHBOARDS for q in dashboard_queries(json.loads(path.read_text()))]
    assert len(queries) > 30
    problems = [p for where, expr in queries for p in problems_of(where, expr, scraped)]
    assert not problems, "\n".join(problems)


def test_every_alert_rule_queries_metrics_the_server_exports(scraped):
    problems = [p for where, expr in rule_queries() for p in problems_of(where, expr, scraped)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_query_the_server_cannot_answer(scraped):
    """The check can fail: a renamed metric, a label it lacks, a value never exported."""
    assert problems_of("x", 'rate(de_generation_total{channel="counting"}[5m])', scraped) == [
        "x: metric de_generation_total is not exported"
    ]
    assert "has no label 'source'" in problems_of("x", 'de_channel_state{source="a"}', scraped)[0]
    assert "is never exported" in problems_of("x", 'de_channel_state{state="BROKEN"}', scraped)[0]
    assert "groups or joins by 'source'" in problems_of("x", "sum by (source) (de_channel_state)", scraped)[0]
    assert problems_of("x", 'sum by (channel, state) (de_channel_state{state="ERROR", job="de"})', scraped) == []


def test_the_dashboards_cover_what_operators_watch():
    """Every metric the issue names is on a dashboard."""
    exprs = " ".join(expr for path in DASHBOARDS for _, expr in dashboard_queries(json.loads(path.read_text())))
    for metric in (
        "de_channel_state",
        "de_generations_total",
        "de_generation_duration_seconds_bucket",
        "de_channel_last_generation_timestamp_seconds",
        "de_source_acquire_seconds_bucket",
        "de_source_missed_updates",
        "de_source_last_acquire_timestamp_seconds",
        "de_http_requests_total",
        "de_dataspace_up",
        "de_dataspace_errors_total",
        "de_channel_database_errors_total",
        "de_reaper_runs_total",
        "de_reaper_removed_total",
        "de_dataspace_size_bytes",
    ):
        assert metric in exprs, metric
