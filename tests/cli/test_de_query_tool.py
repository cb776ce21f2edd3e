"""de-query-tool: latest values and histories straight from the DataSpace, in every format."""

import io
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from decisionengine.framework.dataspace.datablock import DataBlock, Header, Metadata
from decisionengine.framework.dataspace.dataspace import DataSpace
from tests.cli.run import MODULES, command
from tests.conftest import global_config
from tests.engine.server import REPO
from tests.fixtures import payloads

GENERATIONS = 20


class History(str):
    """The database URL of a history, with the time its generations count from (``start``):
    taken when the history is written, so a test running late in the suite sees it as fresh."""

    start: float


def frame(generation):
    return pd.DataFrame(
        {"site": ["a", "b", "c"], "cores": [generation, generation * 2, generation * 3], "load": [0.5, 0.25, 0.125]}
    )


@pytest.fixture
def history(db_url):
    space = DataSpace(global_config(db_url))
    block = DataBlock(space, "chan")
    tm = block.taskmanager_id
    start = time.time() - GENERATIONS * 600  # one generation every 10 minutes, the last one now
    for generation in range(1, GENERATIONS + 1):
        block.generation_id = generation
        when = start + generation * 600
        with block.transaction():
            metadata = Metadata(tm, generation_time=when)
            block.put("sites", frame(generation), Header(tm), metadata)
            block.put("count", generation * 10, Header(tm), metadata)
            block.put("info", {"generation": generation, "tags": ["x", "y"]}, Header(tm), metadata)
    space.close()
    written = History(db_url)
    written.start = start
    return written


def query(url, *args):
    result = command("de-query-tool", "--url", url, *args)
    assert result.returncode == 0, result.stderr
    return result


def test_list_and_describe(history):
    channels = json.loads(query(history, "--list", "--format", "json").stdout)
    assert channels == [
        {
            "channel": "chan",
            "generations": GENERATIONS,
            "latest_generation": GENERATIONS,
            "latest_time": channels[0]["latest_time"],
            "products": 3,
        }
    ]
    assert "chan" in query(history, "--list").stdout
    described = json.loads(query(history, "chan", "--format", "json").stdout)
    assert described["products"] == ["count", "info", "sites"]
    assert described["first_generation"] == 1 and described["latest_generation"] == GENERATIONS


def test_latest_and_given_generation(history):
    latest = pd.read_csv(io.StringIO(query(history, "chan", "sites", "--format", "csv").stdout))
    pd.testing.assert_frame_equal(latest, frame(GENERATIONS))
    fifth = json.loads(query(history, "chan", "sites", "--generation", "5", "--format", "json").stdout)
    assert fifth == frame(5).to_dict("records")
    assert json.loads(query(history, "chan", "count", "--format", "json").stdout) == GENERATIONS * 10
    table = query(history, "chan", "sites", "--columns", "site,cores").stdout
    assert "cores" in table and "load" not in table


def test_history_in_every_format(history, tmp_path):
    START = history.start
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(START + 11 * 600 - 1))  # generations 11..20
    expected = pd.concat([frame(g).assign(generation_id=g) for g in range(11, GENERATIONS + 1)], ignore_index=True)[
        ["generation_id", "site", "cores", "load"]
    ]

    as_csv = pd.read_csv(io.StringIO(query(history, "chan", "sites", "--since", since, "--format", "csv").stdout))
    pd.testing.assert_frame_equal(as_csv.drop(columns="generation_time"), expected)
    times = pd.to_datetime(as_csv["generation_time"]).map(lambda t: t.timestamp())
    assert list(times.drop_duplicates().round(3)) == [round(START + g * 600, 3) for g in range(11, GENERATIONS + 1)]

    as_json = pd.DataFrame(json.loads(query(history, "chan", "sites", "--since", since, "--format", "json").stdout))
    pd.testing.assert_frame_equal(as_json.drop(columns="generation_time"), expected)

    output = tmp_path / "history.parquet"
    query(history, "chan", "sites", "--since", since, "--output", output)
    as_parquet = pd.read_parquet(output)
    pd.testing.assert_frame_equal(as_parquet.drop(columns="generation_time"), expected)
    assert str(as_parquet["generation_time"].dtype).startswith("datetime64")

    table = query(history, "chan", "sites", "--since", since).stdout
    assert table.count("| a ") == 10 and "generation_time" in table

    # a duration works too, and --until bounds it
    recent = json.loads(query(history, "chan", "count", "--since", "15m", "--format", "json").stdout)
    assert [row["value"] for row in recent] == [190, 200]
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(START + 12 * 600 + 1))
    bounded = json.loads(query(history, "chan", "count", "--since", since, "--until", until, "--format", "json").stdout)
    assert [row["generation_id"] for row in bounded] == [11, 12]


def test_history_of_non_dataframe_products(history, tmp_path):
    rows = json.loads(query(history, "chan", "info", "--since", "1w", "--format", "json").stdout)
    assert len(rows) == GENERATIONS
    assert json.loads(rows[0]["value"]) == {"generation": 1, "tags": ["x", "y"]}
    output = tmp_path / "count.csv"
    query(history, "chan", "count", "--since", "1w", "--output", output)
    counts = pd.read_csv(output)
    assert list(counts["value"]) == [g * 10 for g in range(1, GENERATIONS + 1)]
    query(history, "chan", "count", "--since", "1w", "--output", tmp_path / "count.parquet")
    assert list(pd.read_parquet(tmp_path / "count.parquet")["value"]) == list(counts["value"])


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["nochan", "sites"], 1, "no channel 'nochan' in the DataSpace; channels: chan"),
        (["chan", "nothing"], 1, "no product 'nothing'"),
        (["chan", "sites", "--since", "yesterday"], 2, "invalid time 'yesterday'"),
        (["chan", "sites", "--format", "parquet"], 2, "parquet is binary: give --output FILE"),
        (["chan", "sites", "--columns", "nope"], 2, "unknown columns ['nope']"),
        (["--since", "2h"], 2, "give --list, or a CHANNEL"),
        (["chan", "--since", "2h"], 2, "need a PRODUCT"),
        (["chan", "sites", "--since", "1w", "--page-rows", "0"], 2, "must be a whole number of at least 1, not '0'"),
        (["chan", "sites", "--since", "1w", "--page-rows", "many"], 2, "not 'many'"),
    ],
)
def test_errors(history, args, status, message):
    result = command("de-query-tool", "--url", history, *args)
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_history_prints_no_warnings(history):
    """Generation times have nanoseconds; printing them as local times must not warn."""
    for fmt in ("table", "csv", "json"):
        result = query(history, "chan", "sites", "--since", "1w", "--format", fmt)
        assert result.stderr == "", result.stderr


@pytest.mark.parametrize("command_args", [("de-query-tool", "--list"), ("de-reaper", "--dry-run")])
def test_a_mistyped_sqlite_path_is_an_error_and_creates_nothing(tmp_path, command_args):
    name, *args = command_args
    typo = tmp_path / "dataspcae.sqlite"
    result = command(name, "--url", f"sqlite:///{typo}", *args)
    assert result.returncode == 1
    assert (
        result.stderr
        == f"{name}: no SQLite dataspace database at {typo} (read-only readers create nothing): check the path\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_readers_find_the_database_of_a_server_started_with_state_dir(tmp_path):
    """The same --config/--state-dir as de-server: the quick start's database, no --url."""
    config = tmp_path / "etc"
    config.mkdir()
    (config / "decision_engine.jsonnet").write_text("{ dataspace: { retention_interval_in_days: 30 } }")
    state = tmp_path / "run"
    state.mkdir()
    space = DataSpace(global_config(f"sqlite:///{state / 'dataspace.sqlite'}"))
    block = DataBlock(space, "quick")
    with block.transaction():
        block.put("answer", 42, Header(block.taskmanager_id))
    space.close()

    found = command("de-query-tool", "--config", config, "--state-dir", state, "quick", "answer", "--format", "json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == 42
    from_env = command("de-query-tool", "--config", config, "--list", env={"DE_STATE_DIR": str(state)})
    assert from_env.returncode == 0 and "quick" in from_env.stdout
    reaper = command("de-reaper", "--config", config, "--state-dir", state, "--dry-run", "--json")
    assert reaper.returncode == 0, reaper.stderr
    assert json.loads(reaper.stdout)["retention_days"] == 30
    elsewhere = command("de-query-tool", "--config", config, "--state-dir", tmp_path / "nothing", "--list")
    assert elsewhere.returncode == 1 and "no SQLite dataspace database at" in elsewhere.stderr
    assert not (tmp_path / "nothing").exists()


def test_a_planted_payload_is_refused_in_one_line(db_url, tmp_path):
    """A product whose stored pickle would run a command (planted in SQL by whoever can
    write to the database): one line naming it and the refused global, exit status 1,
    nothing run; the channel's other products still read."""
    marker = tmp_path / "pwned"
    space = DataSpace(global_config(db_url))
    block = DataBlock(space, "chan")
    with block.transaction():
        block.put("sites", frame(1), Header(block.taskmanager_id))
        block.put("count", 10, Header(block.taskmanager_id))
    space.close()
    payloads.plant(db_url, "chan", 1, "sites", payloads.zstd(payloads.os_system(marker)))

    for args in (["chan", "sites"], ["chan", "sites", "--generation", "1"], ["chan", "sites", "--since", "1d"]):
        result = command("de-query-tool", "--url", db_url, *args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("de-query-tool: product 'sites' of generation 1 of channel 'chan' ")
        assert "refers to posix.system" in result.stderr and "dataspace.trusted_modules" in result.stderr
        assert not marker.exists()
    assert json.loads(query(db_url, "chan", "count", "--format", "json").stdout) == 10


def test_publisher_status_old_and_new_formats(db_url):
    """publisher_status as a PublisherStatus (generation 2) and as the plain DataFrame stored
    before it (generation 1): the same table, latest or by generation, and one history."""
    from decisionengine.framework.taskmanager.PublisherStatus import PublisherStatusBoard

    details = pd.DataFrame([{"publisher": "pub", "ran": True, "succeeded": True, "seconds": 0.5, "error": None}])
    board = PublisherStatusBoard(["pub"])
    board.update("pub", False)
    space = DataSpace(global_config(db_url))
    block = DataBlock(space, "pubs")
    tm = block.taskmanager_id
    for generation, value in ((1, details), (2, board.frozen(details))):
        block.generation_id = generation
        with block.transaction():
            block.put("publisher_status", value, Header(tm), Metadata(tm, generation_time=time.time()))
    space.close()

    latest = json.loads(query(db_url, "pubs", "publisher_status", "--format", "json").stdout)
    assert latest[0]["publisher"] == "pub" and latest[0]["succeeded"] is True and latest[0]["enabled"] is False
    old = json.loads(query(db_url, "pubs", "publisher_status", "--generation", "1", "--format", "json").stdout)
    assert old == details.to_dict("records")
    history = json.loads(query(db_url, "pubs", "publisher_status", "--since", "1h", "--format", "json").stdout)
    assert [(row["generation_id"], row["ran"], row["seconds"]) for row in history] == [(1, True, 0.5), (2, True, 0.5)]


def in_process(url, *args) -> bytes:
    """de-query-tool's main() run here (the paging logic; the real process is tested
    above): what it wrote to standard output."""
    from decisionengine.framework.cli import de_query_tool

    out = io.BytesIO()
    real = sys.stdout
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    try:
        assert de_query_tool.main(["--url", str(url), *map(str, args)]) == 0
        sys.stdout.flush()
        return out.getvalue()
    finally:
        sys.stdout = real


def test_a_history_written_in_pages_is_the_same_history(history, tmp_path):
    """Pages of 4 rows (two generations of three-row frames a page): every format writes
    the same table as in one page; the table format prints one table per page."""
    for fmt in ("csv", "json", "parquet"):
        whole = tmp_path / f"whole.{fmt}"
        paged = tmp_path / f"paged.{fmt}"
        in_process(history, "chan", "sites", "--since", "1w", "--output", whole)
        in_process(history, "chan", "sites", "--since", "1w", "--output", paged, "--page-rows", "4")
        if fmt == "parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(paged), pd.read_parquet(whole))
        else:
            assert paged.read_text() == whole.read_text(), fmt
    rows = json.loads((tmp_path / "paged.json").read_text())
    assert [row["generation_id"] for row in rows] == [g for g in range(1, GENERATIONS + 1) for _ in range(3)]
    counts = in_process(history, "chan", "count", "--since", "1w", "--format", "json", "--page-rows", "3")
    assert [row["value"] for row in json.loads(counts)] == [g * 10 for g in range(1, GENERATIONS + 1)]
    table = in_process(history, "chan", "sites", "--since", "1w", "--page-rows", "4").decode()
    assert table.count("| a ") == GENERATIONS and table.count(" generation_id |") == GENERATIONS // 2


def test_a_history_is_read_as_it_is_written(history, monkeypatch, capsysbinary):
    """The DataSpace is read a page ahead of what is written, not whole first: when the
    first page is written, at most one page of generations (and the one that closed it)
    has been read."""
    from decisionengine.framework.cli import de_query_tool, paged_output

    read = []
    iter_products = DataSpace.iter_products

    def counted(self, *args, **kwargs):
        for item in iter_products(self, *args, **kwargs):
            read.append(item["generation_id"])
            yield item

    written = []
    write = paged_output.CsvPages.write

    def noted(self, page):
        written.append((len(read), len(page)))
        write(self, page)

    monkeypatch.setattr(DataSpace, "iter_products", counted)
    monkeypatch.setattr(paged_output.CsvPages, "write", noted)
    assert (
        de_query_tool.main(["--url", history, "chan", "sites", "--since", "1w", "--format", "csv", "--page-rows", "6"])
        == 0
    )
    assert written[0] == (2, 6) and len(written) == GENERATIONS // 2
    assert sum(rows for _read, rows in written) == 3 * GENERATIONS
    assert capsysbinary.readouterr().out.count(b"\n") == 3 * GENERATIONS + 1


def test_a_history_over_several_registrations_says_which(db_url, tmp_path):
    """A channel registered twice (as the reference did at every start) with history in
    both: a ``taskmanager_id`` column on every page says which registration a row is of."""
    space = DataSpace(global_config(db_url))
    registrations = []
    for run in range(2):
        block = DataBlock(space, "chan")
        registrations.append(block.taskmanager_id)
        for generation in range(1, 4):
            block.generation_id = generation
            with block.transaction():
                tm = block.taskmanager_id
                block.put("count", run * 100 + generation, Header(tm), Metadata(tm, generation_time=time.time()))
    space.close()
    for page_rows in ("1", "50"):
        rows = json.loads(
            in_process(db_url, "chan", "count", "--since", "1h", "--format", "json", "--page-rows", page_rows)
        )
        assert [(row["taskmanager_id"], row["value"]) for row in rows] == [
            (registrations[run], run * 100 + g) for run in range(2) for g in range(1, 4)
        ]


def test_a_history_whose_columns_grow_is_refused_and_writes_no_file(db_url, tmp_path):
    """Columns that appear after the first page cannot be added to what is written: the
    error names them, and ``--output`` leaves no file (nor a partial one)."""
    space = DataSpace(global_config(db_url))
    block = DataBlock(space, "chan")
    tm = block.taskmanager_id
    for generation in range(1, 5):
        block.generation_id = generation
        value = frame(generation) if generation < 3 else frame(generation).assign(extra=1)
        with block.transaction():
            block.put("sites", value, Header(tm), Metadata(tm, generation_time=time.time()))
    space.close()
    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "sites.csv"
    result = command(
        "de-query-tool", "--url", db_url, "chan", "sites", "--since", "1h", "-o", output, "--page-rows", "3"
    )
    assert result.returncode == 1, result.stderr
    assert "columns ['extra'] from about generation 3 on" in result.stderr and "--columns" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []
    # in one page (the default) they are joined as before; --columns chooses
    whole = pd.read_csv(io.BytesIO(in_process(db_url, "chan", "sites", "--since", "1h", "--format", "csv")))
    assert whole["extra"].isna().sum() == 6 and (whole["extra"].dropna() == 1).all()
    chosen = in_process(
        db_url, "chan", "sites", "--since", "1h", "--format", "csv", "--page-rows", "3", "--columns", "site"
    )
    assert len(pd.read_csv(io.BytesIO(chosen))) == 12


def peak_rss_mib(*args) -> float:
    """The peak resident memory of one de-query-tool run (a real process)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", MODULES["de-query-tool"], *map(str, args)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read()
    process.stderr.close()
    process.returncode = 0
    return usage.ru_maxrss / 1024


def test_a_long_history_costs_one_page_of_memory(tmp_path):
    """Twenty generations of a 50,000-row frame (a million rows) written by a real
    de-query-tool take about the memory of one generation's."""
    rows = 50_000
    big = pd.DataFrame({f"c{i}": [float(i)] * rows for i in range(4)})
    urls = {}
    for generations in (1, 20):
        url = urls[generations] = f"sqlite:///{tmp_path / f'h{generations}.sqlite'}"
        space = DataSpace(global_config(url))
        block = DataBlock(space, "chan")
        tm = block.taskmanager_id
        for generation in range(1, generations + 1):
            block.generation_id = generation
            with block.transaction():
                block.put("big", big, Header(tm), Metadata(tm, generation_time=time.time()))
        space.close()
    peaks = {
        generations: peak_rss_mib("--url", url, "chan", "big", "--since", "1h", "-o", tmp_path / f"h{generations}.csv")
        for generations, url in urls.items()
    }
    assert len(pd.read_csv(tmp_path / "h20.csv", usecols=["generation_id"])) == 20 * rows
    # as one page (--page-rows 100000000) it peaks at about 470 MiB against 180
    assert peaks[20] < peaks[1] + 30, peaks
