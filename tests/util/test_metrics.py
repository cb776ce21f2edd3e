"""decisionengine.framework.util.metrics: prometheus semantics, de_ prefix, multiprocess mode."""

import multiprocessing

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from decisionengine.framework.util import metrics
from tests.fixtures import metrics_worker


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def in_new_process(function, *args):
    """Run ``function(*args)`` in a fresh spawned process (one per call) and return its result."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


@pytest.fixture
def registry():
    return CollectorRegistry()


def test_names_are_prefixed_once(registry):
    assert metrics.Counter("jobs", "doc", registry=registry)._name == "de_jobs"
    assert metrics.Gauge("de_queue", "doc", registry=registry)._name == "de_queue"
    assert metrics.Histogram("latency_seconds", "doc", registry=registry)._name == "de_latency_seconds"
    assert metrics.Summary("sizes", "doc", registry=registry)._name == "de_sizes"


def test_labels_set_inc_observe_and_collect(registry):
    gauge = metrics.Gauge("rows", "rows per product", ["channel", "product"], registry=registry)
    gauge.labels("c1", "jobs").set(42)
    gauge.labels(channel="c1", product="jobs").inc(3)
    counter = metrics.Counter("runs", "runs", ["channel"], registry=registry)
    counter.labels("c1").inc()
    histogram = metrics.Histogram("took", "seconds", registry=registry, buckets=(0.1, 1.0))
    histogram.observe(0.5)
    summary = metrics.Summary("bytes", "bytes", registry=registry)
    summary.observe(10)
    summary.observe(30)

    (family,) = gauge.collect()
    assert family.name == "de_rows"
    assert [(s.labels, s.value) for s in family.samples] == [({"channel": "c1", "product": "jobs"}, 45.0)]
    text, content_type = metrics.render_metrics(registry)
    assert content_type.startswith("text/plain")
    found = samples(text)
    assert found[("de_runs_total", (("channel", "c1"),))] == 1
    assert found[("de_took_bucket", (("le", "1.0"),))] == 1
    assert found[("de_took_bucket", (("le", "0.1"),))] == 0
    assert found[("de_bytes_sum", ())] == 40
    assert found[("de_bytes_count", ())] == 2


def test_gauge_multiprocess_mode_default_and_override(registry):
    assert metrics.Gauge("g1", "doc", registry=registry)._multiprocess_mode == metrics.DEFAULT_GAUGE_MODE == "livesum"
    assert metrics.Gauge("g2", "doc", registry=registry, multiprocess_mode="max")._multiprocess_mode == "max"
    labelled = metrics.Gauge("g3", "doc", ["x"], registry=registry, multiprocess_mode="min")
    assert labelled.labels("a")._multiprocess_mode == "min"


def test_render_default_registry_without_multiprocess_dir(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    counter = metrics.Counter("default_registry_probe", "registered globally")
    counter.inc(7)
    text, _ = metrics.render_metrics()
    assert samples(text)[("de_default_registry_probe_total", ())] == 7


def test_mark_process_dead_without_multiprocess_dir_is_a_no_op(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.mark_process_dead(123456)


@pytest.mark.timeout(120)
def test_metrics_aggregate_across_real_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    pid1 = in_new_process(metrics_worker.record, "c1", 5.0, [0.5, 7.0])
    pid2 = in_new_process(metrics_worker.record, "c2", 7.0, [3.0])
    assert pid1 != pid2

    found = samples(metrics.render_metrics()[0])
    assert found[("de_test_generations_total", (("channel", "c1"),))] == 3
    assert found[("de_test_generations_total", (("channel", "c2"),))] == 3
    assert found[("de_test_queue_length", (("channel", "shared"),))] == 12  # livesum over both processes
    assert found[("de_test_high_water", ())] == 7  # max mode
    assert found[("de_test_duration_seconds_count", ())] == 3
    assert found[("de_test_duration_seconds_bucket", (("le", "5.0"),))] == 2
    assert found[("de_test_duration_seconds_sum", ())] == pytest.approx(10.5)
    assert found[("de_test_product_bytes_count", ())] == 3

    metrics.mark_process_dead(pid1)
    found = samples(metrics.render_metrics()[0])
    assert found[("de_test_queue_length", (("channel", "shared"),))] == 7  # the dead process no longer counts
    assert found[("de_test_generations_total", (("channel", "c1"),))] == 3  # counters survive their process

    metrics.clear_multiprocess_dir()
    assert list(tmp_path.glob("*.db")) == []


@pytest.mark.timeout(120)
def test_enable_multiprocess_at_run_time(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    directory = tmp_path / "late"
    in_new_process(metrics_worker.record_after_enable, str(directory))
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    assert samples(metrics.render_metrics()[0])[("de_test_enabled_late_total", ())] == 2
