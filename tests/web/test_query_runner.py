"""QueryRunner: client queries in worker processes that can be stopped (time, memory) and replaced.

The runner is driven in this process (the server's use of it is tested against a real
de-server in tests/security/test_queries.py).
"""

import pathlib
import threading

import pytest

from decisionengine.framework.web.query_language import QueryError, compile_query, row_mask
from decisionengine.framework.web.query_runner import QueryLimits, QueryRunner, QueryStopped, QueryUnavailable
from decisionengine.testing.waiting import eventually
from tests.fixtures.channel_modules import JobsSource

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def jobs():
    return JobsSource({"rows": 1_000}).acquire()["jobs"]


@pytest.fixture(scope="module")
def many_jobs():
    return JobsSource({"rows": 1_000_000}).acquire()["jobs"]


@pytest.fixture
def runner():
    runner = QueryRunner(QueryLimits(timeout=1, memory_mb=1024, workers=2))
    yield runner
    runner.close()


def gone(pid: int) -> bool:
    return not pathlib.Path(f"/proc/{pid}").exists()


def mask(runner, query, frame):
    compiled = compile_query(query, list(frame.columns))
    return runner.mask(query, frame.iloc[:, compiled.positions])


def test_a_worker_answers_as_in_process_evaluation_would(runner, jobs):
    for query in ("cores > 4 and site == 'A'", "name.str.contains('9') | memory.isna()", "submitted.dt.hour == 3"):
        expected = row_mask(compile_query(query, list(jobs.columns)), jobs)
        assert mask(runner, query, jobs).tolist() == expected.tolist()
    (pid,) = runner.worker_pids  # one worker served them all, started lazily
    assert (pathlib.Path(f"/proc/{pid}") / "comm").read_text().strip() == "de-query-worker"


def test_a_query_over_time_is_stopped_and_its_worker_replaced(runner, many_jobs):
    mask(runner, "id < 0", many_jobs)
    (first,) = runner.worker_pids
    slow = "cores > " + " + ".join(["name.nunique()"] * 20)
    with pytest.raises(QueryStopped, match=r"query 'cores > name.nunique\(\) .*' took longer than 1 s and was stopped"):
        mask(runner, slow, many_jobs)
    assert runner.worker_pids == []
    eventually(lambda: gone(first), 10, what=f"stopped worker {first} to be gone")
    assert mask(runner, "id < 2", many_jobs).sum() == 2
    assert runner.worker_pids != [first]


def test_a_query_over_memory_is_stopped(many_jobs):
    runner = QueryRunner(QueryLimits(timeout=30, memory_mb=128))
    try:
        hungry = "(" + " + ".join(["name"] * 8) + ").str.len() > 3"
        with pytest.raises(QueryStopped, match=r"needed more than 128 MiB of memory and was stopped"):
            mask(runner, hungry, many_jobs)
        assert mask(runner, "name.str.len() > 3", many_jobs).all()
    finally:
        runner.close()


def test_refused_and_failing_queries_keep_their_worker(runner, jobs):
    mask(runner, "id < 0", jobs)
    before = runner.worker_pids
    with pytest.raises(QueryError, match="repeating a Series: repeats 1000000000 times"):
        mask(runner, "name * 10**9 == ''", jobs)
    with pytest.raises(QueryError, match="must give one true/false value per row"):
        mask(runner, "cores.sum() > 3", jobs)
    with pytest.raises(QueryError, match=r"failed: TypeError"):
        mask(runner, "name ** 2 > 1", jobs)
    assert runner.worker_pids == before


def test_the_worker_checks_what_it_evaluates(runner, jobs):
    """Text that reaches a worker unchecked is refused there too."""
    with pytest.raises(QueryError, match="method eval\\(\\) is not allowed"):
        runner.mask("df.eval('id > 1')", jobs)


def test_close_ends_every_worker_busy_or_idle(many_jobs, jobs):
    runner = QueryRunner(QueryLimits(timeout=60, workers=2))
    slow = "cores > " + " + ".join(["name.nunique()"] * 40)
    outcome = {}

    def run():
        try:
            mask(runner, slow, many_jobs)
        except (QueryError, QueryUnavailable) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    eventually(lambda: len(runner.worker_pids) == 1, 30, what="the slow query to hold a worker")
    mask(runner, "id < 3", jobs)  # a second worker: the first is busy
    workers = runner.worker_pids
    assert len(workers) == 2
    runner.close()
    thread.join(30)
    assert isinstance(outcome.get("error"), QueryStopped)
    eventually(lambda: all(gone(pid) for pid in workers), 10, what=f"workers {workers} to be gone")
    with pytest.raises(QueryUnavailable, match="the server is stopping"):
        mask(runner, "id < 3", jobs)
