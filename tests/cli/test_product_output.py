"""Output that keeps meaning (issue 15, item 4): ``--print-product`` keeps the product's index,
``--print-products`` names each product's producer and says when no channel is active."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.run import command
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(300)


def client(server: DEServer, *args: object) -> str:
    result = command("de-client", "--host", "127.0.0.1", "--port", server.port, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("output")
    channel = counting_channel(str(root / "r.jsonl"))
    channel["sources"]["counter"]["schedule"] = 0.3
    server = DEServer(root, f"sqlite:///{root / 'ds.sqlite'}", {"counting": channel}).start()
    server.wait_for_generation("counting", 2, 60)
    yield server
    server.stop()


def row_labels(table: str) -> list[str]:
    """The index column of a psql table (the first cell of each data row)."""
    return re.findall(r"^\|\s*(\d+)\s*\|", table, re.M)


def test_print_product_keeps_the_index(server):
    # numbers has x = 0, 1, 2 at index 0, 1, 2: "x >= 1" keeps the rows labelled 1 and 2
    table = client(server, "--print-product", "numbers", "--query", "x >= 1")
    assert row_labels(table) == ["1", "2"], table
    narrowed = client(server, "--print-product", "numbers", "--columns", "x", "--query", "x >= 1")
    assert row_labels(narrowed) == ["1", "2"], narrowed
    vertical = client(server, "--print-product", "numbers", "--query", "x >= 2", "--vertical")
    assert "*** row 2 ***" in vertical and "*** row 0 ***" not in vertical, vertical
    document = json.loads(client(server, "--print-product", "numbers", "--query", "x >= 1", "--json"))
    assert document["index"] == [1, 2] and [r["x"] for r in document["value"]] == [1, 2]
    # without a query, the index as it is
    assert row_labels(client(server, "--print-product", "numbers")) == ["0", "1", "2"]


def test_print_products_names_producers_and_says_when_no_channel_is_active(server):
    text = client(server, "--print-products")
    assert "product numbers (DataFrame (3, 2)) from counter:" in text, text
    assert "product doubled (DataFrame (3, 2)) from doubler:" in text
    assert "product total (int) from summer:" in text
    document = json.loads(client(server, "--print-products", "--json"))
    assert document["counting"]["products"]["numbers"]["producer"] == "counter"
    assert document["counting"]["products"]["de_logicengine_facts"]["producer"] == "le"

    client(server, "--stop-channels")
    server.wait_for(lambda s: all(c["state"] == "SHUTDOWN" for c in s["channels"]), what="channels stopped")
    stopped = client(server, "--print-products")
    assert stopped == "no channel is active (1 stopped: counting); their stored products: --print-products --all\n"
    assert json.loads(client(server, "--print-products", "--json")) == {}
    everything = client(server, "--print-products", "--all")
    assert "channel counting: generation" in everything and "(SHUTDOWN)" in everything
    assert "product numbers (DataFrame (3, 2)) from counter:" in everything
    assert json.loads(client(server, "--print-products", "--all", "--json"))["counting"]["state"] == "SHUTDOWN"
    client(server, "--start-channels")
