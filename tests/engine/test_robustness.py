"""Robustness of a real de-server: arguments of the wrong type, a long TMPDIR, a channel
process that never started (issue 15, item 5)."""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import pathlib
import time
import xmlrpc.client
from typing import Any

import pytest

from decisionengine.framework.engine.DecisionEngine import DecisionEngine
from decisionengine.framework.web.xmlrpc import ARGUMENT_TYPES, DISPLAY_NAMES, EXPECTED, XmlRpcMethods
from tests.conftest import global_config
from tests.engine.server import DEServer
from tests.taskmanager.channels import counting_channel

pytestmark = pytest.mark.timeout(300)

#: values of every XML-RPC type; each argument gets those its allow-list does not take
CANDIDATES: list[Any] = [True, 7, 2.5, "text", ["a", 1], {"a": 1}, None]


def _wrong_values(parameter: inspect.Parameter) -> list[Any]:
    allowed = ARGUMENT_TYPES[parameter.name]
    optional = parameter.name == "channel" and parameter.default is not inspect.Parameter.empty
    wrong = []
    for value in CANDIDATES:
        if value is None and (type(None) in allowed or optional):
            continue
        if isinstance(value, bool):
            if bool not in allowed:
                wrong.append(value)
        elif not isinstance(value, allowed) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
            wrong.append(value)
    return wrong


def _filler(parameter: inspect.Parameter) -> Any:
    if parameter.default is not inspect.Parameter.empty:
        return parameter.default
    return "x"


def test_every_argument_has_an_allowed_type_list():
    for name in XmlRpcMethods.names():
        for parameter in list(inspect.signature(getattr(XmlRpcMethods, name)).parameters)[2:]:
            assert parameter in ARGUMENT_TYPES, f"{name}({parameter}) has no entry in ARGUMENT_TYPES"
            assert parameter in EXPECTED, f"{name}({parameter}) has no entry in EXPECTED"


def test_every_method_refuses_wrong_types_by_name_and_keeps_answering(tmp_path, sqlite_url):
    server = DEServer(tmp_path, sqlite_url, {}).start()
    rpc = server.rpc()
    checked = 0
    try:
        for name in XmlRpcMethods.names():
            parameters = list(inspect.signature(getattr(XmlRpcMethods, name)).parameters.values())[2:]
            for index, parameter in enumerate(parameters):
                required = [i for i, p in enumerate(parameters) if p.default is inspect.Parameter.empty]
                count = max([index, *required]) + 1
                for value in _wrong_values(parameter):
                    arguments = [value if i == index else _filler(p) for i, p in enumerate(parameters[:count])]
                    with pytest.raises(xmlrpc.client.Fault) as fault:
                        getattr(rpc, name)(*arguments)
                    shown = DISPLAY_NAMES.get(parameter.name, parameter.name)
                    text = fault.value.faultString
                    assert text.startswith(f"{name}: {shown} must be "), text
                    assert f"must be {EXPECTED[parameter.name]}, not " in text, text
                    assert "has no attribute" not in text and "Traceback" not in text
                    checked += 1
            assert rpc.ping() == "pong"
        assert checked > 100
        # the raw Python message the issue reports is gone
        with pytest.raises(
            xmlrpc.client.Fault,
            match=r"print_product: format must be a format name \(a string\) or nil, not boolean True",
        ):
            rpc.print_product("p", None, None, False, True)
        with pytest.raises(
            xmlrpc.client.Fault, match=r"kill_channel: timeout must be a number of seconds .*not boolean True"
        ):
            rpc.kill_channel("c", True)
        assert "channels" in server.status()
    finally:
        assert server.stop() == 0


def test_a_long_tmpdir_does_not_stop_the_server(tmp_path, sqlite_url):
    """multiprocessing puts the fork server's socket under TMPDIR; AF_UNIX paths end at 108 bytes."""
    long_tmp = tmp_path / ("t" * 60) / ("m" * 60)
    long_tmp = pathlib.Path(str(long_tmp) + "/" + "p" * max(1, 150 - len(str(long_tmp)) - 1))
    long_tmp.mkdir(parents=True)
    assert len(str(long_tmp)) >= 150
    channel = counting_channel(str(tmp_path / "published.jsonl"))
    channel["sources"]["counter"]["schedule"] = 0.5
    server = DEServer(tmp_path / "root", sqlite_url, {"counting": channel})
    server.env["TMPDIR"] = str(long_tmp)
    server.start()
    try:
        server.wait_for_generation("counting", 2)
        assert "AF_UNIX path too long" not in server.output.read_text()
    finally:
        code = server.stop()
    output = server.output.read_text()
    assert code == 0, output
    assert "TypeError" not in output and "Traceback" not in output
    leftovers = list(pathlib.Path("/tmp").glob(f"de-mp-{server.process.pid}-*"))
    assert leftovers == [], "the short private directory is removed when the server stops"


class _FailingProcess:
    """A process whose start fails, as a fork server that cannot be reached makes it fail."""

    pid = None
    exitcode = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        raise OSError("AF_UNIX path too long")


class _Context:
    """The fork server context, but processes never start."""

    def __init__(self) -> None:
        self.real = multiprocessing.get_context("fork")

    def get_start_method(self) -> str:
        return "fork"

    def Queue(self) -> Any:
        return self.real.Queue()

    def Pipe(self, duplex: bool = True) -> Any:
        return self.real.Pipe(duplex)

    Process = _FailingProcess


def test_a_channel_process_that_never_started_does_not_break_shutdown(tmp_path, sqlite_url):
    config_dir = tmp_path / "config.d"
    config_dir.mkdir()
    (config_dir / "counting.jsonnet").write_text(json.dumps(counting_channel(str(tmp_path / "published.jsonl"))))
    engine = DecisionEngine(
        global_config(sqlite_url, retention_interval_in_days=365),
        str(config_dir),
        context=_Context(),
        start_reaper=False,
    )
    worker = engine.workers["counting"]
    engine.start()  # the failure is the channel's: the server starts
    status = worker.status()
    assert status["state"] == "ERROR"
    assert "AF_UNIX path too long" in status["last_error"]
    assert not worker.alive
    started = time.monotonic()
    engine.shutdown()  # used to raise TypeError (os.kill(None, ...)) and wait for the whole timeout
    assert time.monotonic() - started < 5
    assert os.getpid()  # still here
