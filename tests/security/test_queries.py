"""Client queries cannot escape or exhaust the server: attacks against a real de-server process.

Every attack class is sent over XML-RPC (``get_product(product, columns, query, ...)``)
and, one per class, through ``de-client --print-product jobs --query ...`` as a subprocess;
each is refused with a message naming the offending construct, and the server answers
``ping`` at once afterwards.  A slow but allowed query over a million rows is stopped at
``webserver.query_timeout`` while ``ping`` and ``status`` keep answering.

The JSON API takes no query parameter (``/api/v1/channels/{c}/products/{key}`` pages and
selects columns only), so XML-RPC and de-client are the two ways a query reaches the server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pathlib
import signal
import threading
import time
import xmlrpc.client

import pandas as pd
import pytest

from decisionengine.framework.logicengine.LogicEngine import LogicEngine, LogicEngineConfigError
from decisionengine.testing.processes import alive, descendants_of, process_table
from decisionengine.testing.waiting import eventually
from tests.cli.run import command
from tests.engine.server import DEServer
from tests.taskmanager.channels import module

pytestmark = pytest.mark.timeout(900)

QUERY_TIMEOUT = 1.0
BIG_ROWS = 1_000_000
#: how fast the server must answer ping while it refuses or stops queries
AT_ONCE = 0.5
#: ... while a query runs over the big product.  Under pandas 2 its million strings are
#: Python objects: reading the product and handing its columns to the worker hold the
#: server's GIL for about a second (measured 0.9 to 1.3 s on 2 busy cores; README, "Client
#: queries"); under pandas 3 they are Arrow buffers and the server stays at once.
WHILE_A_BIG_QUERY_RUNS = AT_ONCE if int(pd.__version__.split(".")[0]) >= 3 else 2.5


class _Transport(xmlrpc.client.Transport):
    """XML-RPC with a socket timeout: a frozen server fails the test instead of hanging it."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def rpc(server: DEServer, timeout: float = 30) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(f"{server.url}/RPC2", allow_none=True, transport=_Transport(timeout))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("queries")
    channels = {
        "small": {"sources": {"small_jobs": module("JobsSource", schedule=3600, rows=20)}, "publishers": {}},
        "big": {"sources": {"jobs": module("JobsSource", schedule=3600, rows=BIG_ROWS)}, "publishers": {}},
    }
    server = DEServer(
        root, f"sqlite:///{root / 'ds.sqlite'}", channels, webserver={"query_timeout": QUERY_TIMEOUT}
    ).start()
    server.wait_for_generation("small", 1, 60)
    server.wait_for_generation("big", 1, 180)
    yield server
    server.stop()


def select(server: DEServer, query: str, channel: str = "small", timeout: float = 30) -> list[dict]:
    return json.loads(rpc(server, timeout).get_product("jobs", None, query, False, "json", channel))["value"]


def ids(rows: list[dict]) -> list[int]:
    return [row["id"] for row in rows]


#: a refusal also says what is allowed (a list, a bound, the right form), not only what is not
GUIDANCE = (
    "a query may use",
    "allowed:",
    "it accepts",
    "must be",
    "at most",
    "may only",
    "the only subscript",
    "use ",
    "columns are",
    "operators are",
    "literals are",
    "e.g.",
    "such as",
)


def guides(message: str) -> bool:
    return any(hint in message for hint in GUIDANCE)


def answers_at_once(server: DEServer) -> None:
    started = time.monotonic()
    assert rpc(server, 5).ping() == "pong"
    assert time.monotonic() - started < AT_ONCE


# -- what a query may say --------------------------------------------------------------------


def test_allowed_queries_select_rows(server):
    """Row-wise and/or/not (as pandas' query), chains, in, df['col'], .str and .dt."""
    cases = {
        "cores > 4 and site == 'A'": [3, 15],
        "site == 'C' or not cores < 8": [2, 3, 5, 7, 8, 11, 14, 15, 17, 19],
        "1 < cores <= 4 and id < 8": [1, 2, 5, 6],
        "site in ['B', 'C'] and id not in (1, 2, 4, 5)": [7, 8, 10, 11, 13, 14, 16, 17, 19],
        "df['id'].between(2, 4) & ~memory.isna()": [2, 3, 4],
        "memory.isna()": [0, 7, 14],
        "name.str.endswith('7') | name.str.contains('-00000001', regex=False)": [1, 7, 17],
        "name.str.contains('.*')": [],  # plain text, never a regular expression
        "submitted.dt.minute >= 18": [18, 19],
        "memory.fillna(0) * 2 > id.max() - cores.min() ** 2": [19],
        "id % 5 == 0 and memory.round(0) >= 5": [10, 15],
    }
    for query, expected in cases.items():
        assert ids(select(server, query)) == expected, query


def test_the_resource_limits_are_those_of_facts(server):
    for query in ("cores ** 65 > 1", "'a' * 10**10 == name", "(cores ** 8) ** 9 > 1"):
        with pytest.raises(xmlrpc.client.Fault) as refused:
            select(server, query)
        with pytest.raises(LogicEngineConfigError) as fact:
            LogicEngine({"facts": {"f": query.replace("cores", "val")}, "channel_name": "c"})
        assert str(fact.value).split(": ", 1)[1].replace("val", "cores") in refused.value.faultString


# -- attacks -------------------------------------------------------------------------------------

ATTACKS = [
    # modules imported by name: engine=/backend= keywords, plotting, to_* writers
    ("cores.sum(engine='numba') > 0", "keyword 'engine' is not allowed in sum(); it accepts min_count, skipna"),
    ("cores.mean(engine='cython', engine_kwargs=None) > 0", "keyword 'engine' is not allowed in mean()"),
    ("cores.rolling(2).mean(engine='numba') > 0", "method rolling() is not allowed in a query; allowed: abs, all"),
    ("cores.plot(backend='matplotlib') == 0", "method plot() is not allowed"),
    ("cores.hist() == 0", "method hist() is not allowed"),
    ("cores.to_csv('/tmp/pwned') == ''", "method to_csv() is not allowed"),
    ("cores.to_frame().to_parquet('/tmp/x', engine='fastparquet') == 0", "method to_parquet() is not allowed"),
    ("cores.astype('category') == 1", "method astype() is not allowed"),
    ("name.str.match('(a+)+$')", "method .str.match() is not allowed in a query; allowed: casefold, contains"),
    ("name.str.contains('(a+)+$', regex=True)", "keyword 'regex' of .str.contains() must be False"),
    ("name.str.contains('a', flags=2)", "keyword 'flags' is not allowed in .str.contains()"),
    # code evaluation and callables
    ("cores.pipe(len) > 0", "method pipe() is not allowed"),
    ("cores.apply(abs) > 0", "method apply() is not allowed"),
    ("cores.map(str) == '1'", "method map() is not allowed"),
    ("cores.agg('sum') > 0", "method agg() is not allowed"),
    ("cores.transform('abs') > 0", "method transform() is not allowed"),
    ("df.eval('cores > 1')", "method eval() is not allowed"),
    ("df.query('cores > 1')", "method query() is not allowed"),
    ("__import__('os').system('touch /tmp/pwned') == 0", "method system() is not allowed"),
    ("__import__('os') == 0", "calling '__import__' is not allowed: a query calls no functions"),
    ("open('/etc/passwd') == 0", "calling 'open' is not allowed"),
    ("getattr(cores, 'sum')() > 0", "is not allowed: a query calls no functions"),
    ("len(cores) > 0", "calling 'len' is not allowed"),
    ("df > 1", "'df' stands for the product and may only be used as df['column']"),
    # dunder and private access
    ("cores.__class__ == 0", "attribute '__class__' is not allowed"),
    ("cores.__class__.__bases__[0].__subclasses__() == 0", "method __subclasses__() is not allowed"),
    ("df.__dict__ == 0", "attribute '__dict__' is not allowed"),
    ("cores._values > 1", "attribute '_values' is not allowed"),
    ("_private > 1", "name '_private' is not allowed"),
    ("df['__class__'] == 1", "query names unknown columns ['__class__']"),
    # big powers and shifts
    ("cores ** 10**10 > 1", "the exponent of ** must be a literal number between -64 and 64, not '10 ** 10'"),
    ("2 ** 10 ** 10 > cores", "the exponent of ** must be a literal number between -64 and 64"),
    ("cores ** 65 > 1", "not 65"),
    ("cores ** id > 1", "the exponent of ** must be a literal number between -64 and 64, not 'id'"),
    ("(cores ** 64) ** 64 > 1", "a power of a power may raise to at most 64 in total"),
    ("cores << 1000 > 1", "operator LShift is not allowed"),
    # big repetition and formatting
    ("name == 'a' * 10**10", "a string, list or tuple may only be repeated by a literal count (at most 1000)"),
    ("name == 'a' * 1001", "repeats 1001 times; at most 1000 are allowed"),
    ("name == ('a' * 1000) * 1000 * 2", "would make 2000000 characters or items; at most 1000000"),
    ("site.isin(['A'] * 10**9)", "argument 1 of isin() must be a list, tuple or set of literals"),
    ("name * 10**9 == ''", "repeating a Series: repeats 1000000000 times; at most 1000 are allowed"),
    ("name * 1000 * 1000 == ''", "repeating a Series: would make"),
    ("'%0999999999d' % cores == ''", "string formatting with % is not allowed"),
    ("name % 3 == ''", "string formatting with % is not allowed"),
    # allocations by a count
    ("cores.repeat(10**10).sum() > 0", "method repeat() is not allowed"),
    ("cores.reindex(range(10**10)).isna()", "method reindex() is not allowed"),
    ("cores.sample(10**9, replace=True).sum() > 0", "method sample() is not allowed"),
    ("name.str.repeat(10**9) == ''", "method .str.repeat() is not allowed"),
    ("name.str.pad(10**9) == ''", "method .str.pad() is not allowed"),
    ("name.str.center(10**9) == ''", "method .str.center() is not allowed"),
    ("cores.round(10**9) > 0", "argument 1 of round() must be a literal integer between -64 and 64"),
    ("cores.quantile(10**9) > 0", "argument 1 of quantile() must be a literal number between 0 and 1"),
    # mutation
    ("cores.update(id) == 0", "method update() is not allowed"),
    ("cores.fillna(0, inplace=True) > 0", "keyword 'inplace' is not allowed in fillna(); it accepts value"),
    ("cores.clip(0, 1, inplace=True) > 0", "keyword 'inplace' is not allowed in clip()"),
    ("df.insert(0, 'x', 1) == 0", "method insert() is not allowed"),
    ("cores.__setitem__(0, 1) == 0", "method __setitem__() is not allowed"),
    ("cores.pop(0) == 0", "method pop() is not allowed"),
    ("cores.values.setflags(write=True) == 0", "method setflags() is not allowed"),
    ("cores.iloc[0] == 0", "the subscript 'cores.iloc[0]' is not allowed"),
    ("cores.at[0] == 0", "the only subscript is df['column']"),
    # lambdas, comprehensions, f-strings, walrus, other syntax
    ("cores > (lambda: 1)", "lambda is not allowed in a query"),
    ("[c for c in cores] == cores", "list comprehension is not allowed"),
    ("cores == (c for c in [1])", "generator expression is not allowed"),
    ("cores == {c: 1 for c in [1]}", "dict comprehension is not allowed"),
    ("f'{cores}' == name", "f-string is not allowed"),
    ("(y := cores) > 1", "assignment expression ':=' is not allowed"),
    ("cores > 1 if True else id > 1", "conditional expression (a if c else b) is not allowed"),
    ("cores is None", "comparison Is is not allowed"),
    ("cores in cores", "the right side of 'in' must be a list, tuple or set of literals"),
    ("b'x' == name", "the literal \"b'x'\" is not allowed"),
    ("cores.sum(**{'engine': 'numba'}) > 0", "'**' unpacking is not allowed"),
    # size
    ("cores > 1" + " and cores > 1" * 200, "at most 2000 are allowed"),
    ("-" * 100 + "cores > 1", "the query is nested too deeply"),
    ("cores >", "invalid syntax"),
]


@pytest.mark.parametrize(("query", "reason"), ATTACKS, ids=[q[:50] for q, _ in ATTACKS])
def test_attack_over_xmlrpc_is_refused_and_the_server_answers_at_once(server, query, reason):
    with pytest.raises(xmlrpc.client.Fault) as fault:
        select(server, query, timeout=10)
    assert fault.value.faultString.startswith("get_product: ")
    assert reason in fault.value.faultString
    assert guides(fault.value.faultString), fault.value.faultString
    answers_at_once(server)


#: one attack of each class, through the operator's command
CLIENT_ATTACKS = [
    ("cores.sum(engine='numba') > 0", "keyword 'engine' is not allowed in sum()"),
    ("cores.plot(backend='matplotlib') == 0", "method plot() is not allowed"),
    ("df.eval('cores > 1')", "method eval() is not allowed"),
    ("cores.__class__ == 0", "attribute '__class__' is not allowed"),
    ("cores ** 10**10 > 1", "the exponent of ** must be a literal number between -64 and 64"),
    ("name == 'a' * 10**10", "may only be repeated by a literal count"),
    ("name * 10**9 == ''", "repeats 1000000000 times"),
    ("cores.repeat(10**10).sum() > 0", "method repeat() is not allowed"),
    ("cores.fillna(0, inplace=True) > 0", "keyword 'inplace' is not allowed in fillna()"),
    ("cores > (lambda: 1)", "lambda is not allowed"),
    ("[c for c in cores] == cores", "list comprehension is not allowed"),
    ("f'{cores}' == name", "f-string is not allowed"),
    ("(y := cores) > 1", "assignment expression ':=' is not allowed"),
]


@pytest.mark.parametrize(("query", "reason"), CLIENT_ATTACKS, ids=[q[:50] for q, _ in CLIENT_ATTACKS])
def test_attack_through_de_client_is_refused_in_one_line(server, query, reason):
    result = command(
        "de-client", "--host", "127.0.0.1", "--port", server.port, "--print-product", "jobs", "--channel", "small",
        "--query", query, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert message.startswith("de-client: get_product: ")
    assert reason in message
    assert guides(message), message
    answers_at_once(server)


def test_mutation_attempts_leave_the_product_as_it_was(server):
    before = select(server, "id >= 0")
    for query in (
        "cores.update(id) == 0",
        "cores.fillna(0, inplace=True) > 0",
        "cores.clip(0, 1, inplace=True) > 0",
        "(cores.values.partition(0) == None) | (cores > 0)",  # sorts in place, named in no deny-list
        "(cores.values.__setitem__(0, 99) == None) | (cores > 0)",
    ):
        with pytest.raises(xmlrpc.client.Fault, match="is not allowed"):
            select(server, query)
    assert select(server, "id >= 0") == before
    assert not pathlib.Path("/tmp/pwned").exists()


# -- time -------------------------------------------------------------------------------------


def test_a_runaway_query_is_stopped_while_the_server_keeps_answering(server):
    """A slow but allowed query (each nunique hashes a million strings) over the big product."""
    slow = "cores > " + " + ".join(["name.nunique()"] * 20)
    outcome: dict = {}

    def run() -> None:
        started = time.monotonic()
        try:
            outcome["rows"] = len(select(server, slow, channel="big", timeout=120))
        except xmlrpc.client.Fault as fault:
            outcome["fault"] = fault.faultString
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = repr(exc)
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    latencies = []
    while thread.is_alive():
        started = time.monotonic()
        assert rpc(server, 5).ping() == "pong"
        assert json.loads(rpc(server, 5).status("json"))["channels"]
        latencies.append(time.monotonic() - started)
        thread.join(0.05)
    assert "fault" in outcome, outcome
    assert f"took longer than {QUERY_TIMEOUT:g} s and was stopped" in outcome["fault"]
    assert QUERY_TIMEOUT <= outcome["seconds"] < QUERY_TIMEOUT + 10
    assert len(latencies) >= 5
    assert max(latencies) < WHILE_A_BIG_QUERY_RUNS, latencies
    # the stopped worker was replaced: the next query over the same product answers
    assert ids(select(server, "id < 3", channel="big", timeout=60)) == [0, 1, 2]


def test_query_workers_end_with_the_server(tmp_path):
    channel = {"sources": {"jobs": module("JobsSource", schedule=3600, rows=20)}, "publishers": {}}
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"small": channel}).start()
    try:
        server.wait_for_generation("small", 1, 60)
        assert ids(select(server, "id < 2")) == [0, 1]
        workers = query_workers_of(server.process.pid)
        assert workers, "the query ran in a de-query-worker process of this server"
    finally:
        assert server.stop() == 0
    assert not [pid for pid in workers if pathlib.Path(f"/proc/{pid}").exists()]


def test_query_workers_end_when_the_server_is_killed(tmp_path):
    channel = {"sources": {"jobs": module("JobsSource", schedule=3600, rows=20)}, "publishers": {}}
    server = DEServer(tmp_path, f"sqlite:///{tmp_path / 'ds.sqlite'}", {"small": channel}).start()
    family: list[int] = []
    try:
        server.wait_for_generation("small", 1, 60)
        assert ids(select(server, "id < 2")) == [0, 1]
        workers = query_workers_of(server.process.pid)
        family = descendants_of(server.process.pid)
        assert workers
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        eventually(lambda: not any(alive(pid) for pid in workers), 20, what=f"query workers {workers} to end")
    finally:
        server.stop()
        for pid in family:  # a safety net: they die with the server (tests/faults/test_server_death.py)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def query_workers_of(server_pid: int) -> list[int]:
    """Pids of the ``de-query-worker`` processes descending from ``server_pid`` (Linux /proc)."""
    _, names = process_table()
    return [pid for pid in descendants_of(server_pid) if names.get(pid) == "de-query-worker"]
