"""The demo channel's modules, one by one, with plain dicts as data blocks."""

import json

import pandas as pd
import pytest

from decisionengine.modules.demo import files
from decisionengine.modules.demo.DemandTransform import DemandTransform
from decisionengine.modules.demo.FigureOfMeritTransform import FigureOfMeritTransform
from decisionengine.modules.demo.JobQueueSource import COLUMNS as JOB_COLUMNS
from decisionengine.modules.demo.JobQueueSource import JobQueueSource
from decisionengine.modules.demo.ProvisioningRequestPublisher import ProvisioningRequestPublisher
from decisionengine.modules.demo.ResourceCatalogueSource import COLUMNS as CATALOGUE_COLUMNS
from decisionengine.modules.demo.ResourceCatalogueSource import ResourceCatalogueSource
from decisionengine.modules.demo.SummaryPublisher import SummaryPublisher


def queue(rows):
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def catalogue(rows):
    return pd.DataFrame(rows, columns=CATALOGUE_COLUMNS)


def test_snapshots_rotate_with_the_clock(tmp_path):
    for name in ("a.csv", "b.csv", "c.csv", "ignored.txt"):
        (tmp_path / name).write_text("x\n1\n")
    picks = [files.snapshot(tmp_path, 10, clock=lambda t=t: t).name for t in (0, 9.9, 10, 25, 30)]
    assert picks == ["a.csv", "a.csv", "b.csv", "c.csv", "a.csv"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.csv snapshot"):
        files.snapshot(empty, 10)


def test_sources_read_the_shipped_snapshots():
    jobs = JobQueueSource({"channel_name": "demo"}).acquire()["job_queue"]
    assert {"job_id", "vo", "request_cpus", "status"} <= set(jobs.columns) and len(jobs) > 100
    resources = ResourceCatalogueSource({"channel_name": "demo"}).acquire()["resource_catalogue"]
    assert {"price_per_hour", "max_instances"} <= set(resources.columns)


def test_source_reports_a_bad_snapshot_clearly(tmp_path):
    (tmp_path / "broken.csv").write_text("job_id,vo\n1,cms\n")
    with pytest.raises(ValueError, match=r"broken\.csv lacks columns"):
        JobQueueSource({"snapshot_dir": str(tmp_path), "period": 60.0}).acquire()


def test_demand_counts_idle_jobs_per_group():
    jobs = queue(
        [
            [1, "cms", 4, 8, "Idle", 100],
            [2, "cms", 2, 4, "Idle", 300],
            [3, "cms", 1, 2, "Running", 0],
            [4, "dune", 8, 16, "Held", 9000],
        ]
    )
    demand = DemandTransform({}).transform({"job_queue": jobs})["demand"].set_index("vo")
    assert demand.loc["cms"].to_dict() == {
        "idle_jobs": 2,
        "idle_cpus": 6,
        "idle_memory_gb": 12.0,
        "running_jobs": 1,
        "oldest_idle_seconds": 300,
    }
    assert demand.loc["dune", "idle_cpus"] == 0


def test_plan_prefers_cheap_empty_resources_within_capacity_and_budget():
    demand = pd.DataFrame({"vo": ["cms"], "idle_cpus": [100]})
    resources = catalogue(
        [
            ["cheap", "p", "r", 8, 16, 0.08, 5, 0],  # 0.01 $/cpu-h, empty
            ["pricey", "p", "r", 16, 32, 0.80, 100, 0],  # 0.05 $/cpu-h
            ["full", "p", "r", 8, 16, 0.01, 3, 3],  # cheapest but no free instance
        ]
    )
    out = FigureOfMeritTransform({"max_hourly_budget": 2.0}).transform(
        {"demand": demand, "resource_catalogue": resources}
    )
    plan = out["provisioning_plan"].set_index("resource")
    assert plan.loc["cheap", "instances"] == 5  # all its free instances: 40 cpus
    assert plan.loc["pricey", "instances"] == 2  # 60 cpus still needed would be 4, but the budget left buys 2
    assert "full" not in plan.index
    assert out["provisioning_plan"]["hourly_cost"].sum() <= 2.0
    assert list(out["figure_of_merit"]["resource"]) == ["cheap", "pricey", "full"]


def test_no_demand_no_plan():
    demand = pd.DataFrame({"vo": ["cms"], "idle_cpus": [0]})
    resources = catalogue([["cheap", "p", "r", 8, 16, 0.08, 5, 0]])
    plan = FigureOfMeritTransform({}).transform({"demand": demand, "resource_catalogue": resources})
    assert plan["provisioning_plan"].empty


def test_publishers_write_requests_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("DE_STATE_DIR", str(tmp_path))
    plan = pd.DataFrame(
        [["cheap", "p", 2, 16, 0.16]], columns=["resource", "provider", "instances", "cpus", "hourly_cost"]
    )
    facts = pd.DataFrame([["provision", "provisioning", True]], columns=["rule_name", "fact_name", "fact_value"])
    block = {
        "provisioning_plan": plan,
        "demand": pd.DataFrame({"vo": ["cms"], "idle_jobs": [3], "idle_cpus": [12]}),
        "de_logicengine_facts": facts,
    }
    requests = ProvisioningRequestPublisher({"output_dir": "out", "keep": 2})
    for _ in range(3):
        requests.publish(block)
    written = sorted((tmp_path / "out" / "requests").glob("request-*.json"))
    assert 1 <= len(written) <= 2  # pruned to `keep`
    document = json.loads(written[-1].read_text())
    assert document["requests"] == [{"resource": "cheap", "provider": "p", "instances": 2, "cpus": 16}]
    summary = SummaryPublisher({"output_dir": "out"})
    summary.publish(block)
    summary.publish(block)
    rows = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(rows) == 2
    assert rows.iloc[0][["idle_jobs", "idle_cpus", "planned_instances", "planned_cpus"]].tolist() == [3, 12, 2, 16]
    assert bool(rows.iloc[0]["provisioning"])
