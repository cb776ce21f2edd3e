"""``de-server``: the decision engine daemon.

One process that loads the global configuration and every channel of config.d, runs
each channel in its own process (:mod:`.channel_process`), runs the Reaper, and serves
XML-RPC (``/RPC2`` and ``/``) and Prometheus metrics (``/metrics``) over one CherryPy
HTTP server.  All state lives here; ``de-client`` is a thin client.

No call waits on a channel: channel processes report status snapshots on an event
queue, which a pump thread applies to each :class:`ChannelWorker`; ``status`` reads
those, and product questions read the DataSpace.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from tabulate import tabulate

from decisionengine.framework.config.channel_file import read_channel_file
from decisionengine.framework.config.channels import read_channels
from decisionengine.framework.config.ValidConfig import ValidConfig
from decisionengine.framework.dataspace.datasources.sql_engine import mask_url
from decisionengine.framework.dataspace.datasources.sqlalchemy_ds import GENERATIONS_CHANNEL
from decisionengine.framework.dataspace.dataspace import DataSpace
from decisionengine.framework.dataspace.maintain import Reaper
from decisionengine.framework.engine import formatting, logs, products, server_metrics
from decisionengine.framework.engine.events import EventHub, GenerationListener
from decisionengine.framework.engine.webserver import HttpServer
from decisionengine.framework.engine.workers import ChannelWorker
from decisionengine.framework.taskmanager import metrics as channel_metrics
from decisionengine.framework.taskmanager.states import State

#: imported once by the fork server, shared (copy-on-write) by every channel process
PRELOAD = [
    "decisionengine.framework.engine.channel_process",
    "decisionengine.framework.config.validation",
    "decisionengine.framework.taskmanager.TaskManager",
    "decisionengine.framework.dataspace.datasources.sqlalchemy_ds",
    "decisionengine.framework.engine.logs",
    "decisionengine.framework.engine.preload",  # last: freezes the rest
]


def channel_context() -> Any:
    """How channel processes are started: a fork server.

    The fork server is a clean, single-threaded process started once; it imports the
    framework (pandas, SQLAlchemy, APScheduler...) and forks each channel from itself.  A
    channel therefore starts without re-importing everything, and its memory pages for
    those libraries are shared with the other channels.  Unlike forking the server itself,
    nothing of the server's threads, locks or connections leaks into a channel.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class DecisionEngine:
    """The server: channel workers, the Reaper, and the answers to every RPC method."""

    def __init__(
        self,
        global_config: dict[str, Any],
        channel_dir: str,
        *,
        config_path: str | None = None,
        log_service: Any = None,
        metrics_dir: str | None = None,
        context: Any = None,
        start_reaper: bool = True,
    ) -> None:

        self.logger = structlog.get_logger("decisionengine").bind(module="DecisionEngine")
        self.global_config = global_config
        self.config_path = config_path
        self.channel_dir = channel_dir
        self.log_service = log_service
        self.metrics_dir = metrics_dir
        self.context = context or channel_context()
        self.started = time.time()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self._changed = threading.Condition()
        self.event_queue = self.context.Queue()
        self.dataspace = DataSpace(global_config)
        self.reaper = Reaper(global_config, dataspace=self.dataspace)
        self.start_reaper = start_reaper
        self.workers: dict[str, Any] = {}
        self.config_failures: dict[str, Any] = {}
        self.http: Any = None
        self.events = EventHub()
        self.listener: GenerationListener | None = None
        configs, failures = read_channels(channel_dir)
        for name, failure in failures.items():
            self.config_failures[name] = failure
            self.logger.error(
                "channel configuration is invalid; the channel will not run",
                channel=name,
                file=failure.path,
                reason=failure.reason,
            )
        for name, config in configs.items():
            for warning in config.warnings:
                self.logger.warning("channel configuration", channel=name, warning=warning)
            self.workers[name] = self._new_worker(config)

    # -- plumbing -------------------------------------------------------------------------------

    def _launch_args(self) -> dict[str, Any]:
        logger_config = self.global_config.get("logger", {})
        return {
            "global_config": self.global_config,
            "log_queue": self.log_service.queue if self.log_service else None,
            "event_queue": self.event_queue,
            "log_level": logger_config.get("global_channel_log_level", "INFO"),
            "metrics_dir": self.metrics_dir,
            "json_logs": bool(self.log_service.json_lines) if self.log_service else False,
        }

    def _new_worker(self, config: Any) -> ChannelWorker:
        return ChannelWorker(config, self._launch_args(), self.context, self._notify, self.events.state)

    def _notify(self) -> None:
        self._export_channel_states()
        with self._changed:
            self._changed.notify_all()

    def _export_channel_states(self) -> None:
        """Channels whose process is not running are exported by the server itself."""
        for name, worker in list(self.workers.items()):
            current = worker.state
            for state in State:
                value = 1 if (not worker.alive and state is current) else 0
                channel_metrics.CHANNEL_STATE.labels(name, state.value).set(value)
        for name in self.config_failures:
            for state in State:
                channel_metrics.CHANNEL_STATE.labels(name, state.value).set(1 if state is State.ERROR else 0)

    def _pump_events(self) -> None:
        """Apply what channel processes report (status snapshots, failures, exits)."""
        while True:
            try:
                message = self.event_queue.get()
            except (EOFError, OSError):
                return
            if message is None:
                return
            kind, name, payload = message
            worker = self.workers.get(name)
            if worker is None:
                continue
            if kind == "status":
                previous = worker.snapshot
                worker.on_status(payload)
                self._announce(name, previous, payload)
            elif kind == "plan":
                worker.on_plan(payload)
            elif kind == "failed":
                worker.on_failed(payload)
            elif kind == "exited":
                worker.on_exited(payload)

    def _announce(self, channel: str, previous: dict[str, Any], current: dict[str, Any]) -> None:
        """Publish a generation a channel reports committed (the SQLite commit hook; on PostgreSQL
        NOTIFY usually comes first, and the hub publishes each generation once)."""
        generation = current.get("generation") or 0
        last = current.get("last_generation") or {}
        if generation > (previous.get("generation") or 0) and last.get("generation_id") == generation:
            self.events.generation(
                {
                    "channel": channel,
                    "generation": generation,
                    "time": last["started"] + (last.get("duration") or 0.0),
                    "outcome": last.get("outcome"),
                    "duration": last.get("duration"),
                }
            )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, serve_http: bool = True) -> None:
        """Start everything and return at once: channels boot in their own processes."""
        server_metrics.SERVER_UP.set(1)
        if serve_http:
            self.http = HttpServer(self)
            self.http.check_address()
        threading.Thread(target=self._pump_events, name="channel-events", daemon=True).start()
        for worker in self.workers.values():  # spawning returns at once; channels boot in parallel
            worker.start()
        if self.http is not None:
            self.http.start()
        if self.dataspace.datasource.engine.dialect.name == "postgresql":
            self.listener = GenerationListener(self.dataspace.datasource.engine, GENERATIONS_CHANNEL, self.events)
            self.listener.start()
        if self.start_reaper:
            self.reaper.start(delay=float(self.global_config["dataspace"].get("reaper_start_delay_seconds", 1818)))
        self._notify()
        self.logger.info(
            "decision engine started",
            channels=sorted(self.workers),
            invalid_channels=sorted(self.config_failures),
            address=self.http.address if self.http else None,
        )

    def wait(self) -> None:
        """Block until :meth:`request_stop` (SIGTERM, SIGINT or the ``stop`` method)."""
        self.stopping.wait()

    def request_stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every channel within one global deadline, then the Reaper and the web server."""
        timeout = float(self.global_config.get("shutdown_timeout", 10))
        self.logger.info("decision engine shutting down", timeout=timeout)
        self._stop_workers(list(self.workers.values()), timeout)
        self.reaper.stop(timeout=timeout)
        server_metrics.SERVER_UP.set(0)
        self.events.close()  # ends the event streams, so the web server can stop
        if self.listener is not None:
            self.listener.stop()
        if self.http is not None:
            self.http.stop()
        with contextlib.suppress(Exception):
            self.event_queue.put(None)
        self.dataspace.close()
        self.logger.info("decision engine stopped")
        self.stopped.set()

    def _stop_workers(self, workers: list[Any], timeout: float) -> list[str]:
        """Ask all to stop, wait for all against one deadline, kill those still running."""
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.stop()
        killed = []
        for worker in workers:
            if not worker.join(max(0.0, deadline - time.monotonic())):
                worker.kill(f"did not stop within the shutdown timeout ({timeout:g} s)")
                worker.join(5)
                killed.append(worker.name)
        return killed

    # -- helpers for the RPC methods ------------------------------------------------------------

    def _worker(self, channel: str) -> Any:
        worker = self.workers.get(channel)
        if worker is None:
            known = sorted(set(self.workers) | set(self.config_failures))
            raise ValueError(f"no channel {channel!r}; channels are {', '.join(known) or 'none'}")
        return worker

    def _channel_file(self, channel: str) -> pathlib.Path:
        if channel in self.workers and self.workers[channel].config.path:
            return pathlib.Path(self.workers[channel].config.path)
        if channel in self.config_failures:
            return pathlib.Path(self.config_failures[channel].path.split(",")[0].strip())
        return pathlib.Path(self.channel_dir) / f"{channel}.jsonnet"

    def channel_statuses(self) -> list[dict[str, Any]]:
        statuses = [worker.status() for _, worker in sorted(self.workers.items())]
        for name, failure in sorted(self.config_failures.items()):
            statuses.append(
                {
                    "channel": name,
                    "state": "ERROR",
                    "last_error": f"invalid configuration: {failure.reason}",
                    "config_error": True,
                }
            )
        return statuses

    # -- RPC methods (names as in the reference engine) ------------------------------------------

    def rpc_ping(self) -> str:
        return "pong"

    def rpc_status(self, fmt: str = "table") -> str:
        fmt = formatting.check_format(fmt, ("table", "json"))
        statuses = self.channel_statuses()
        if fmt == "json":
            return formatting.dumps(
                {
                    "server": {"pid": os.getpid(), "started": self.started},
                    "channels": statuses,
                    "reaper": self.reaper.status(),
                }
            )
        reaper = self.reaper.status()
        text = formatting.status_table(statuses, time.time())
        return text + f"reaper: {reaper['state']} (runs {reaper['runs']}, next {formatting.when(reaper['next_run'])})\n"

    def rpc_start_channel(self, channel: str) -> str:
        worker = self.workers.get(channel)
        if worker is not None and worker.alive:
            raise ValueError(f"channel {channel!r} is already running")
        path = self._channel_file(channel)
        if not path.exists():
            raise ValueError(f"no channel {channel!r}: {path} does not exist")
        try:
            config = read_channel_file(path)  # re-read: the operator may have fixed the file
        except Exception as exc:
            raise ValueError(f"channel {channel!r} cannot start: {exc}") from exc
        self.config_failures.pop(channel, None)
        if worker is None:
            worker = self.workers[channel] = self._new_worker(config)
        else:
            worker.config = config
        worker.start()
        return f"channel {channel} started"

    def rpc_stop_channel(self, channel: str) -> str:
        worker = self._worker(channel)
        if not worker.alive:
            return f"channel {channel} is not running ({worker.state.value})"
        killed = self._stop_workers([worker], float(self.global_config.get("shutdown_timeout", 10)))
        return f"channel {channel} {'killed' if killed else 'stopped'}"

    def rpc_start_channels(self) -> str:
        started = []
        for name in sorted(set(self.workers) | set(self.config_failures)):
            if name in self.workers and self.workers[name].alive:
                continue
            with contextlib.suppress(ValueError):
                self.rpc_start_channel(name)
                started.append(name)
        return f"started: {', '.join(started) or 'none'}"

    def rpc_stop_channels(self) -> str:
        running = [w for w in self.workers.values() if w.alive]
        killed = self._stop_workers(running, float(self.global_config.get("shutdown_timeout", 10)))
        names = ", ".join(sorted(w.name for w in running)) or "none"
        return f"stopped: {names}" + (f"; killed: {', '.join(killed)}" if killed else "")

    def rpc_kill_channel(self, channel: str, timeout: float | None = None) -> str:
        worker = self._worker(channel)
        if not worker.alive:
            return f"channel {channel} is not running ({worker.state.value})"
        worker.stop()
        if worker.join(float(timeout) if timeout is not None else 0.0):
            return f"channel {channel} stopped"
        worker.kill("killed by the operator")
        worker.join(10)
        return f"channel {channel} killed"

    def rpc_rm_channel(self, channel: str) -> str:
        worker = self._worker(channel)
        if worker.alive:
            self._stop_workers([worker], float(self.global_config.get("shutdown_timeout", 10)))
        del self.workers[channel]
        self._notify()
        return f"channel {channel} removed"

    def rpc_block_while(self, state: str, timeout: float | None = None, fmt: str = "table") -> str:
        """Wait until no channel is in ``state`` (one timeout for all of them together)."""
        wanted = State.parse(state)
        limit = float(timeout) if timeout not in (None, "") else None

        def blocking() -> list[str]:
            return sorted(name for name, w in self.workers.items() if w.state is wanted)

        with self._changed:
            done = self._changed.wait_for(lambda: not blocking() or self.stopping.is_set(), limit)
        still = blocking()
        if fmt == "json":
            return formatting.dumps({"state": wanted.value, "timed_out": not done, "channels": still})
        if done:
            return f"no channel is {wanted.value}\n"
        return f"timed out after {limit:g} s; still {wanted.value}: {', '.join(still)}\n"

    def rpc_print_products(self, fmt: str = "table", max_rows: int = 50) -> str:
        fmt = formatting.check_format(fmt, ("table", "json", "vertical"))
        everything: dict[str, Any] = {}
        text = []
        for name in sorted(self.workers):
            generation, values = products.latest_products(self.dataspace, name)
            everything[name] = {
                "generation": generation,
                "products": {k: formatting.describe_value(v) for k, v in values.items()},
            }
            text.append(f"channel {name}: generation {generation if generation is not None else '-'}")
            for key, value in values.items():
                info = formatting.describe_value(value)
                shape = f" {tuple(info['shape'])}" if "shape" in info else ""
                text.append(f"\n  product {key} ({info['type']}{shape}):")
                rendered = formatting.render_value(value, "vertical" if fmt == "vertical" else "table", max_rows)
                text.append("\n".join("    " + line for line in rendered.splitlines()))
            text.append("")
        if fmt == "json":
            return formatting.dumps(everything)
        return "\n".join(text) + "\n"

    def rpc_print_product(
        self,
        product: str,
        columns: Any = None,
        query: str | None = None,
        fmt: str = "table",
        channel: str | None = None,
        max_rows: int | None = None,
    ) -> str:
        fmt = formatting.check_format(fmt)
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        names = [channel] if channel else sorted(self.workers)
        for name in names:
            if channel:
                self._worker(name)
            generation, values = products.latest_products(self.dataspace, name)
            if product not in values:
                continue
            value = products.select(values[product], columns or None, query or None)
            if fmt == "json":
                return formatting.dumps({"channel": name, "generation": generation, "product": product, "value": value})
            rendered = formatting.render_value(value, fmt, max_rows)
            if fmt == "csv":
                return rendered
            return f"channel {name}, generation {generation}, product {product}:\n{rendered}\n"
        where = f"channel {channel!r}" if channel else "any channel's latest generation"
        raise ValueError(f"no product {product!r} in {where}")

    def rpc_product_dependencies(self, fmt: str = "table") -> str:
        graph: dict[str, Any] = {}
        for name, worker in sorted(self.workers.items()):
            if worker.plan is None:
                continue  # not validated yet (booting) or invalid
            consumers: dict[str, list[str]] = {}
            for spec in worker.plan["modules"]:
                for product in spec["consumes"]:
                    consumers.setdefault(product, []).append(spec["key"])
            graph[name] = {
                product: {"producer": producer, "consumers": sorted(consumers.get(product, []))}
                for product, producer in sorted(worker.plan["producers"].items())
            }
        if fmt == "json":
            return formatting.dumps(graph)

        blocks = []
        for name, dependencies in graph.items():
            rows = [[p, d["producer"], ", ".join(d["consumers"]) or "-"] for p, d in dependencies.items()]
            blocks.append(f"channel {name}:\n" + tabulate(rows, headers=["product", "producer", "consumers"]))
        return "\n\n".join(blocks) + "\n"

    def rpc_show_config(self, channel: str = "all") -> str:
        names = sorted(set(self.workers) | set(self.config_failures)) if channel in (None, "", "all") else [channel]
        configs = {}
        for name in names:
            path = self._channel_file(name)
            if not path.exists():
                raise ValueError(f"no channel {name!r}")
            try:
                configs[name] = ValidConfig(path).to_dict()
            except Exception as exc:
                configs[name] = {"error": str(exc)}
        return formatting.dumps(configs) + "\n"

    def rpc_show_de_config(self) -> str:
        return formatting.dumps(masked_config(self.global_config)) + "\n"

    def rpc_reaper_start(self, delay: float = 0) -> str:
        self.reaper.start(delay=float(delay))
        return f"reaper started (first pass in {float(delay):g} s)"

    def rpc_reaper_stop(self) -> str:
        self.reaper.stop()
        return "reaper stopped"

    def rpc_reaper_status(self, fmt: str = "table") -> str:
        status = self.reaper.status()
        if fmt == "json":
            return formatting.dumps(status)

        rows = [
            [k, formatting.when(v) if k in ("last_run_started", "last_run_finished", "next_run") else v]
            for k, v in status.items()
        ]
        return tabulate(rows, tablefmt="plain") + "\n"

    def rpc_get_log_level(self) -> str:
        return logs.get_level()

    def rpc_set_log_level(self, level: str) -> str:
        logs.set_level(level)
        return f"server log level is {logs.get_level()}"

    def rpc_get_channel_log_level(self, channel: str) -> str:
        return self._worker(channel).log_level

    def rpc_set_channel_log_level(self, channel: str, level: str) -> str:
        logs.level_number(level)  # validates
        self._worker(channel).set_log_level(level.upper())
        return f"channel {channel} log level is {level.upper()}"

    def rpc_metrics(self) -> str:
        return server_metrics.render(self.reaper)[0].decode()

    def rpc_stop(self) -> str:
        self.request_stop()
        return "decision engine stopping"

    def rpc_list_rpc_methods(self) -> list[str]:
        return sorted(self.rpc_methods())

    def rpc_methods(self) -> dict[str, Callable[..., Any]]:
        return {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_") and name != "rpc_methods"
        }


def masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The global configuration with passwords in URLs and the API token hidden."""

    shown = copy.deepcopy(dict(config))
    datasource = shown.get("dataspace", {}).get("datasource", {}).get("config", {})
    if isinstance(datasource, dict) and datasource.get("url"):
        datasource["url"] = mask_url(datasource["url"])
    webserver = shown.get("webserver")
    if isinstance(webserver, dict) and webserver.get("api_token"):
        webserver["api_token"] = "***"
    return shown
