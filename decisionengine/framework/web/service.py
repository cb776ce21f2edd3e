"""The control service: every question and order a client can give the server, in one class.

XML-RPC (:mod:`.xmlrpc`), the JSON API (:mod:`.api`) and the dashboard all call this
class, so the rules live in one place:

* **authorization**: each operation is declared *read* or *control* (the decorators
  below); :meth:`ControlService.identify` decides what a caller may do, and the decorator
  checks it before the operation runs;
* **validation**: every argument is checked before anything changes, so a request that
  fails changes nothing;
* **errors**: every refusal is a :class:`ServiceError` with a kind (``not_found``,
  ``invalid``, ``conflict``, ``unauthorized``, ``forbidden``) that each transport turns
  into its own shape (an XML-RPC fault, an HTTP status with a JSON body).

Operations return data (dicts, lists, DataFrames); turning data into tables, CSV or JSON
text is :mod:`.presentation`'s job.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import pandas as pd

from decisionengine.framework.config.ValidConfig import ValidConfig
from decisionengine.framework.dataspace.datasource import LatestGeneration
from decisionengine.framework.dataspace.datasources.sql_engine import mask_url
from decisionengine.framework.engine import logs, server_metrics
from decisionengine.framework.engine.DecisionEngine import DecisionEngine
from decisionengine.framework.engine.errors import ChannelConflict, ChannelNotFound
from decisionengine.framework.engine.events import Subscription
from decisionengine.framework.logicengine.LogicEngine import FACTS_PRODUCT as FACTS
from decisionengine.framework.taskmanager.states import State
from decisionengine.framework.taskmanager.TaskManager import FACT_VALUES, PUBLISHER_STATUS
from decisionengine.framework.util.times import parse_time
from decisionengine.framework.web import presentation, product_query
from decisionengine.framework.web.access import INTERNAL, Access, AccessPolicy, Caller, Refusal, RequestInfo
from decisionengine.framework.web.credentials import Credentials
from decisionengine.framework.web.masking import mask_secrets
from decisionengine.framework.web.query_runner import QueryLimits, QueryRunner, QueryUnavailable

__all__ = ["INTERNAL", "Access", "Caller", "ControlService", "RequestInfo", "ServiceError"]

#: what a channel name may look like (a file name without its directory or suffix)
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: channel states whose products are what the engine knows now (print_products)
ACTIVE_STATES = (State.BOOT, State.ACTIVE, State.STEADY, State.SHUTTINGDOWN)

#: the longest delay a client may ask for (the Reaper's first pass, a wait): one year
MAX_DELAY_SECONDS = 365 * 86400.0
#: a module key as clients name it (matched against the channel files' keys, never a path)
MAX_NAME_LENGTH = 200


class ServiceError(Exception):
    """A refused request; ``kind`` says why, for the transport's error shape."""

    kind = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    kind = "invalid"


class NotFound(ServiceError):
    kind = "not_found"


class Conflict(ServiceError):
    kind = "conflict"


class Unauthorized(ServiceError):
    """No credentials, or wrong ones, for an operation that needs them."""

    kind = "unauthorized"


class Forbidden(ServiceError):
    """The server does not allow this here (control without a configured token, a cross-site
    request, a foreign Host)."""

    kind = "forbidden"


class Unsupported(ServiceError):
    """The request is not in a form this server takes (XML-RPC without an XML content type)."""

    kind = "unsupported"


class Unavailable(ServiceError):
    """Not now: a limit is reached (event streams, busy query workers); try again later."""

    kind = "unavailable"


ERRORS: dict[str, type[ServiceError]] = {
    cls.kind: cls for cls in (InvalidArgument, NotFound, Conflict, Unauthorized, Forbidden, Unsupported, Unavailable)
}


def refused(refusal: Refusal) -> ServiceError:
    return ERRORS[refusal.kind](refusal.message)


F = TypeVar("F", bound=Callable[..., Any])


def _operation(level: Access) -> Callable[[F], F]:
    """Declare an operation and the access it needs; the one place access is checked."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def checked(self: ControlService, caller: Caller, *args: Any, **kwargs: Any) -> Any:
            self.authorize(caller, method.__name__, level)
            try:
                return method(self, caller, *args, **kwargs)
            except ChannelNotFound as exc:
                raise NotFound(str(exc)) from None
            except ChannelConflict as exc:
                raise Conflict(str(exc)) from None

        checked.access = level  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


read = _operation(Access.READ)
control = _operation(Access.CONTROL)


# -- argument checks ---------------------------------------------------------------------------


def check_text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InvalidArgument(f"{name} must be a non-empty string, not {value!r}")
    return value


def check_channel_name(value: Any) -> str:
    """A channel name: letters, digits, ``_``, ``.``, ``-`` (never a path)."""
    name = check_text(value, "channel")
    if not CHANNEL_NAME.fullmatch(name) or name.endswith(".jsonnet"):
        raise NotFound(f"no channel {name!r}: a channel name is letters, digits, '_', '.' and '-'")
    return name


def check_number(
    value: Any,
    name: str,
    *,
    default: float | None = None,
    minimum: float = 0.0,
    maximum: float = MAX_DELAY_SECONDS,
) -> float | None:
    """A finite number in [minimum, maximum] (strings of numbers accepted); None/'' -> default."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise InvalidArgument(f"{name} must be between {minimum:g} and {maximum:g}, not {value!r}")
    return number


def check_state(value: Any) -> State:
    try:
        return State.parse(check_text(value, "state"))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def check_level(value: Any, name: str = "level") -> str:
    try:
        logs.level_number(check_text(value, name))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    return value.upper()


def check_flag(value: Any, name: str) -> bool:
    """A yes/no argument: a boolean (0 and 1 from clients that send integers); None is no."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidArgument(f"{name} must be true or false, not {value!r}")


def check_time(value: Any, name: str) -> float | None:
    """A point in time as epoch seconds: epoch seconds, a datetime (naive: the server's local
    time), or text (``2021-03-21 11:00:00``, an ISO time, or a duration ago: ``2h``); None/''
    for no bound."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return check_number(value, name, minimum=0.0, maximum=float(2**40))
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return parse_time(value)
        except ValueError as exc:
            raise InvalidArgument(f"{name}: {exc}") from None
    raise InvalidArgument(f"{name} must be a time (text, epoch seconds or a date), not {value!r}")


def check_columns(value: Any) -> list[str] | None:
    """Columns as a list or a comma-separated string; None for all."""
    if value is None or value in ("", []):
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(c, str) for c in value):
        raise InvalidArgument(f"columns must be a list of names or a comma-separated string, not {value!r}")
    columns = [c.strip() for c in value if c.strip()]
    return columns or None


class ControlService:
    """Every operation of the server, validated and authorized (see the module docstring)."""

    def __init__(self, engine: DecisionEngine, credentials: Credentials | None = None) -> None:
        self.engine = engine
        webserver = engine.global_config.get("webserver") or {}
        self.credentials = credentials if credentials is not None else Credentials.from_config(webserver)
        address = engine.global_config.get("server_address") or ["localhost", 8888]
        host, port = (None, None) if isinstance(address, str) else (str(address[0]), int(address[1]))
        self.policy = AccessPolicy(self.credentials, host, port, webserver.get("allowed_hosts") or ())
        self.max_event_streams = int(webserver.get("max_event_streams", 10))
        # client queries run in worker processes forked from the channels' fork server
        self.queries = QueryRunner(QueryLimits.from_config(webserver), context=getattr(engine, "context", None))

    def close(self) -> None:
        """Stop what the service started (the query workers); the server is stopping."""
        self.queries.close()

    # -- who may do what -------------------------------------------------------------------------

    def admit(self, request: RequestInfo) -> Caller:
        """Who a request is (see :mod:`.access`); refuses a foreign Host or a malformed call."""
        try:
            return self.policy.admit(request)
        except Refusal as refusal:
            raise refused(refusal) from None

    def identify(self, transport: str, token: str | None = None, local: bool = True) -> Caller:
        """A caller for requests that carry nothing more than a transport and a token."""
        return self.admit(RequestInfo(transport, token=token, local=local, content_type="text/xml"))

    def authorize(self, caller: Caller, operation: str, level: Access) -> None:
        try:
            self.policy.authorize(caller, operation, level)
        except Refusal as refusal:
            raise refused(refusal) from None

    @property
    def control_open_to_local_users(self) -> bool:
        """No token configured: local XML-RPC clients may control the server (as the reference)."""
        return not self.credentials.configured

    @classmethod
    def operations(cls) -> dict[str, Access]:
        """Every operation and the access it needs."""
        return {
            name: member.access
            for name, member in vars(cls).items()
            if callable(member) and isinstance(getattr(member, "access", None), Access)
        }

    # -- the server --------------------------------------------------------------------------------

    @read
    def ping(self, caller: Caller) -> str:
        return "pong"

    @read
    def server(self, caller: Caller) -> dict[str, Any]:
        return {"pid": os.getpid(), "started": self.engine.started}

    @read
    def status(self, caller: Caller) -> dict[str, Any]:
        return {
            "server": self.server(caller),
            "channels": self.engine.channel_statuses(),
            "sources": self.engine.source_statuses(),
            "reaper": self.engine.reaper.status(),
            "cluster": self.engine.cluster_status(),
        }

    @read
    def server_config(self, caller: Caller) -> dict[str, Any]:
        return masked_config(self.engine.global_config)

    @read
    def metrics(self, caller: Caller) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus exposition."""
        return server_metrics.render(self.engine.reaper, self.engine.process_ids)

    @read
    def log_level(self, caller: Caller) -> str:
        return logs.get_level()

    @control
    def set_log_level(self, caller: Caller, level: Any) -> str:
        logs.set_level(check_level(level))
        return f"server log level is {logs.get_level()}"

    @control
    def stop_server(self, caller: Caller) -> str:
        self.engine.request_stop()
        return "decision engine stopping"

    # -- channels ----------------------------------------------------------------------------------

    def _known(self, channel: Any) -> str:
        name = check_channel_name(channel)
        if name not in self.engine.workers and name not in self.engine.config_failures:
            raise NotFound(f"no channel {name!r}; channels are {', '.join(self.engine.channel_names()) or 'none'}")
        return name

    @read
    def channel_names(self, caller: Caller) -> list[str]:
        return self.engine.channel_names()

    @read
    def channel_statuses(self, caller: Caller) -> list[dict[str, Any]]:
        return self.engine.channel_statuses()

    @read
    def channel_status(self, caller: Caller, channel: Any) -> dict[str, Any]:
        return self.engine.channel_status(self._known(channel))

    @read
    def channel_plan(self, caller: Caller, channel: Any) -> dict[str, Any]:
        """The validated channel (modules, products, producers); Conflict until it is known."""
        name = self._known(channel)
        worker = self.engine.workers.get(name)
        if worker is None or worker.plan is None:
            raise Conflict(f"channel {name!r} has not been validated yet (or its configuration is invalid)")
        return worker.plan

    @read
    def product_dependencies(self, caller: Caller) -> dict[str, dict[str, Any]]:
        """{channel: {product: {producer, consumers}}} of every validated channel."""
        graph: dict[str, Any] = {}
        for name, worker in sorted(self.engine.workers.items()):
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
        return graph

    @read
    def channel_configs(self, caller: Caller, channel: Any = "all") -> dict[str, Any]:
        """Channel files as evaluated: one channel, or every channel (``all``)."""
        names = self.engine.channel_names() if channel in (None, "", "all") else [self._known(channel)]
        configs: dict[str, Any] = {}
        for name in names:
            path = self.engine.channel_file(name)
            try:
                configs[name] = mask_secrets(ValidConfig(path).to_dict())
            except Exception as exc:
                configs[name] = {"error": str(exc)}
        return configs

    @control
    def start_channel(self, caller: Caller, channel: Any) -> str:
        return self.engine.start_channel(check_channel_name(channel))

    @control
    def stop_channel(self, caller: Caller, channel: Any) -> str:
        return self.engine.stop_channel(self._known(channel))

    @control
    def start_channels(self, caller: Caller) -> list[str]:
        return self.engine.start_channels()

    @control
    def stop_channels(self, caller: Caller) -> tuple[list[str], list[str]]:
        return self.engine.stop_channels()

    @control
    def drain(self, caller: Caller) -> dict[str, Any]:
        """Hand this server's channels to the other servers of the cluster (before
        maintenance); :meth:`drain_status` says when none runs here any more."""
        return self.engine.drain()

    @control
    def undrain(self, caller: Caller) -> dict[str, Any]:
        """End a drain: this server takes its share of channels again."""
        return self.engine.undrain()

    @read
    def drain_status(self, caller: Caller) -> dict[str, Any]:
        return self.engine.drain_status()

    @read
    def cluster(self, caller: Caller) -> dict[str, Any] | None:
        """The servers sharing this DataSpace, their channels, and this server's part."""
        return self.engine.cluster_status()

    @control
    def kill_channel(self, caller: Caller, channel: Any, timeout: Any = None) -> str:
        """Stop a channel, killing it after ``timeout`` seconds (0: at once); None means the
        server's ``shutdown_timeout``, as the reference's ``kill_channel(channel, None)``."""
        name = self._known(channel)
        seconds = check_number(timeout, "timeout", default=self.engine.shutdown_timeout)
        return self.engine.kill_channel(name, float(seconds or 0.0))

    @control
    def remove_channel(self, caller: Caller, channel: Any, timeout: Any = None) -> str:
        """Stop a channel (killed after ``timeout`` seconds, None: ``shutdown_timeout``) and
        forget it until it is started again."""
        name = self._known(channel)
        seconds = check_number(timeout, "timeout")
        return self.engine.remove_channel(name, seconds)

    @read
    def channel_log_level(self, caller: Caller, channel: Any) -> str:
        return self.engine.worker(self._known(channel)).log_level

    @control
    def set_channel_log_level(self, caller: Caller, channel: Any, level: Any) -> str:
        name = self._known(channel)
        checked = check_level(level)
        self.engine.worker(name).set_log_level(checked)
        return f"channel {name} log level is {checked}"

    # -- sources ---------------------------------------------------------------------------------

    def _sources_named(self, source: Any, channel: Any) -> list[tuple[str, str]]:
        """(channel, source key) of every configured channel with a source ``source`` (in
        ``channel`` only, when given); NotFound names the sources there are."""
        key = check_text(source, "source")
        if len(key) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"source must be at most {MAX_NAME_LENGTH} characters")
        names = [self._known(channel)] if channel not in (None, "") else sorted(self.engine.workers)
        found = [(name, key) for name in names if name in self.engine.workers and key in self._source_keys(name)]
        if not found:
            known = [f"{name}.{k}" for name in names if name in self.engine.workers for k in self._source_keys(name)]
            where = f"channel {names[0]!r}" if channel not in (None, "") else "any channel"
            raise NotFound(f"no source {key!r} in {where}; sources are {', '.join(known) or 'none'}")
        return found

    def _source_keys(self, channel: str) -> list[str]:
        """The sources of a channel as its file names them (no module imported)."""
        return sorted(self.engine.workers[channel].config.sources)

    @read
    def source_log_levels(self, caller: Caller, source: Any, channel: Any = None) -> dict[str, str]:
        """{channel: level} of a source: the level of the lines emitted while it runs (its
        own, else its channel's).  The reference's sources were shared by channels, named
        alone; here a source belongs to a channel, so every channel with one of that name
        answers, or only ``channel``."""
        return {
            name: self.engine.workers[name].source_log_level(key) for name, key in self._sources_named(source, channel)
        }

    @control
    def set_source_log_level(self, caller: Caller, source: Any, level: Any, channel: Any = None) -> dict[str, str]:
        """Give a source a log level of its own in every channel that has it (or in
        ``channel``): now, and at each later start of the channel.  NOTSET: the channel's
        level again.  Every argument is checked before any channel changes."""
        checked = check_level(level)
        found = self._sources_named(source, channel)
        for name, key in found:
            self.engine.workers[name].set_source_log_level(key, checked)
            shared = self.engine.sources.workers.get(key)
            if shared is not None:  # the process acquiring for every channel naming it
                shared.set_source_log_level(key, checked)
        return {name: self.engine.workers[name].source_log_level(key) for name, key in found}

    @read
    def source_statuses(self, caller: Caller) -> list[dict[str, Any]]:
        """Every source: shared or not, its consumers, schedule, last acquire time and state."""
        return self.engine.source_statuses()

    @read
    def queue_status(self, caller: Caller) -> list[dict[str, Any]]:
        """What stands in for the reference's message queues, per channel.

        The reference's sources ran apart from channels and sent products through Redis
        queues; here a channel's sources run in its own process and hand over their
        products in memory, so what can wait is: a source's delivery the next generation
        has not used yet (``pending``), and messages of the channel process (status, log
        lines) not yet written to its link to the server (``link_backlog``).
        """
        rows = []
        for status in self.engine.channel_statuses():
            sources = status.get("sources") or {}
            rows.append(
                {
                    "channel": status["channel"],
                    "state": status.get("state"),
                    "link_backlog": status.get("link_backlog") if status.get("process_alive") else None,
                    "generation_running": bool((status.get("last_generation") or {}).get("outcome") == "running"),
                    "sources": {
                        key: {
                            "pending": bool(source.get("pending")),
                            "shared": bool(source.get("shared")),
                            "deliveries": source.get("deliveries", 0),
                            "last_update": source.get("last_update"),
                            "missed_update_count": source.get("missed_update_count", 0),
                        }
                        for key, source in sorted(sources.items())
                    },
                }
            )
        return rows

    @read
    def block_while(self, caller: Caller, state: Any, timeout: Any = None) -> dict[str, Any]:
        """Wait until no channel is in ``state`` (one timeout for all of them together)."""
        wanted = check_state(state)
        limit = check_number(timeout, "timeout")
        done, still = self.engine.wait_while(wanted, limit)
        return {"state": wanted.value, "timed_out": not done, "timeout": limit, "channels": still}

    # -- products ----------------------------------------------------------------------------------

    @read
    def latest(self, caller: Caller, channel: Any, keys: Any = None) -> LatestGeneration | None:
        """A channel's newest committed generation (only ``keys``' products, when given)."""
        return presentation.displayed_generation(self.engine.dataspace.latest_generation(self._known(channel), keys))

    @read
    def latest_holding(self, caller: Caller, channel: Any, key: str) -> LatestGeneration | None:
        """The newest committed generation of a channel holding ``key``, with it (see
        ``DataSpace.latest_holding``: one generation back while the newest lacks it)."""
        return presentation.displayed_generation(self.engine.dataspace.latest_holding(self._known(channel), key))

    @read
    def known_generation(self, caller: Caller, channel: Any) -> int | None:
        """The newest committed generation of ``channel`` this server has heard announced
        (no database query), else the DataSpace's; None when it has none.  For caches keyed
        by generation: at worst a few milliseconds behind a commit."""
        name = self._known(channel)
        heard = self.engine.events.last_generation(name)
        if heard is not None:
            return heard
        latest = self.engine.dataspace.latest_generation(name, ())
        return latest.generation_id if latest is not None else None

    @read
    def latest_of_all(self, caller: Caller) -> dict[str, LatestGeneration | None]:
        return {
            name: presentation.displayed_generation(self.engine.dataspace.latest_generation(name))
            for name in sorted(self.engine.workers)
        }

    @read
    def latest_products(self, caller: Caller, include_stopped: Any = False) -> dict[str, Any]:
        """The latest products of the active channels (every configured channel with
        ``include_stopped``), each with the module that produced it.

        Products of a channel that no longer runs are history, not what the engine knows
        now: shown among the current ones they would mislead, so they come only when asked
        for.  ``{"channels": {name: {state, generation, products: {key: {value, producer}}}},
        "stopped": [names left out]}``.
        """
        everything = check_flag(include_stopped, "include_stopped")
        chosen: dict[str, Any] = {}
        stopped = []
        for name in sorted(self.engine.workers):
            worker = self.engine.workers[name]
            state = worker.state
            if not everything and not (worker.alive or state in ACTIVE_STATES):
                stopped.append(name)
                continue
            latest = self.engine.dataspace.latest_generation(name)
            products = {}
            for key, value in (latest.products if latest is not None else {}).items():
                products[key] = {"value": value, "producer": self._producer(latest, key, worker.plan)}
            chosen[name] = {
                "state": state.value,
                "generation": latest.generation_id if latest is not None else None,
                "products": products,
            }
        return {"channels": chosen, "stopped": stopped}

    @staticmethod
    def _producer(latest: LatestGeneration, key: str, plan: Mapping[str, Any] | None) -> str | None:
        """The module that produced ``key``: its header's creator (what the generation
        recorded, read with the products), else the channel's validated plan."""
        header = latest.headers.get(key)
        creator = header.get("creator") if header is not None else None
        if creator:
            return str(creator)
        return (plan or {}).get("producers", {}).get(key)

    def _checked_product_request(
        self, product: Any, columns: Any, query: Any, types: Any
    ) -> tuple[str, Any, Any, bool]:
        key = check_text(product, "product")
        wanted = check_columns(columns)
        if query is not None and not isinstance(query, str):
            raise InvalidArgument(f"query must be a string, not {query!r}")
        return key, wanted, query or None, check_flag(types, "types")

    def _product_of(self, name: str, key: str, wanted: Any, query: str | None, types: bool) -> dict[str, Any] | None:
        """``key`` of channel ``name``'s latest generation holding it, selected; None when it
        has none (see ``DataSpace.latest_holding``)."""
        latest = self.engine.dataspace.latest_holding(name, key)
        if latest is None or key not in latest.products:
            return None
        try:
            value = product_query.select(presentation.displayed(latest.products[key]), wanted, query, self.queries)
        except ValueError as exc:  # refused, failed or stopped queries included
            raise InvalidArgument(str(exc)) from None
        except QueryUnavailable as exc:
            raise Unavailable(str(exc)) from None
        if types and isinstance(value, pd.DataFrame):
            value = presentation.with_types(value)
        return {"channel": name, "generation": latest.generation_id, "product": key, "value": value}

    @read
    def product(
        self,
        caller: Caller,
        product: Any,
        columns: Any = None,
        query: Any = None,
        channel: Any = None,
        types: Any = False,
    ) -> dict[str, Any]:
        """A product of a channel's latest generation (the first channel holding it when
        ``channel`` is not given), its DataFrame rows filtered by ``query`` and ``columns``;
        ``types`` adds a ``<column>.type`` column after each column (the reference's
        ``--types``)."""
        key, wanted, text, with_types = self._checked_product_request(product, columns, query, types)
        names = [self._known(channel)] if channel not in (None, "") else sorted(self.engine.workers)
        for name in names:
            document = self._product_of(name, key, wanted, text, with_types)
            if document is not None:
                return document
        where = f"channel {channel!r}" if channel not in (None, "") else "any channel's latest generation"
        raise NotFound(f"no product {key!r} in {where}")

    @read
    def product_everywhere(
        self,
        caller: Caller,
        product: Any,
        columns: Any = None,
        query: Any = None,
        channel: Any = None,
        types: Any = False,
    ) -> list[dict[str, Any]]:
        """:meth:`product` from every channel whose latest generation holds it (the
        reference's ``print_product`` shows them all), or from ``channel`` only."""
        key, wanted, text, with_types = self._checked_product_request(product, columns, query, types)
        names = [self._known(channel)] if channel not in (None, "") else sorted(self.engine.workers)
        documents = [d for d in (self._product_of(n, key, wanted, text, with_types) for n in names) if d is not None]
        if not documents:
            where = f"channel {channel!r}" if channel not in (None, "") else "any channel's latest generation"
            raise NotFound(f"no product {key!r} in {where}")
        return documents

    @read
    def product_histories(self, caller: Caller, product: Any, since: Any = None) -> list[dict[str, Any]]:
        """A product's history in every channel of the DataSpace that has it since ``since``
        (all of it when None): [{channel, taskmanager_id (its sequence id, as the
        reference's), history (one frame, see ``presentation.history_frame``)}].

        The DataSpace's channels, not only the configured ones: history outlives a channel
        file (and is what an imported reference database brings).  Names come from the
        database, never from the client.
        """
        key = check_text(product, "product")
        start = check_time(since, "start_time")
        space = self.engine.dataspace
        found = []
        for name in space.channel_names():
            try:
                sequence = space.get_taskmanager(name)["sequence_id"]
            except KeyError:
                continue
            try:
                frame = presentation.history_frame(space.iter_products(sequence, key, start), key)
            except ValueError as exc:
                raise InvalidArgument(f"channel {name}: {exc}") from None
            if not frame.empty:
                found.append({"channel": name, "taskmanager_id": sequence, "history": frame})
        if not found:
            since_text = f" since {presentation.when(start)}" if start is not None else ""
            raise NotFound(f"no product {key!r} in any channel's history{since_text}")
        return found

    @read
    def history(
        self, caller: Caller, channel: Any, key: Any, since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """A product's values across generations (oldest first)."""
        name = self._known(channel)
        product = check_text(key, "product")
        try:
            registration = self.engine.dataspace.get_taskmanager(name)
        except KeyError:
            return iter(())
        return presentation.displayed_items(
            self.engine.dataspace.iter_products(registration["sequence_id"], product, since, until)
        )

    @read
    def decisions(self, caller: Caller, channel: Any, since: float = 0.0, limit: int = 20) -> list[dict[str, Any]]:
        """Facts, new facts and publishers of the last ``limit`` generations since ``since``.

        The three are read one after the other while the channel goes on: the generations
        are those whose facts the first read found (a generation committed meanwhile is left
        for the next call, not shown half).  ``published`` says whether the generation's
        publishers have finished (their status is stored after the commit): the newest
        generation may still be publishing, with ``publishers`` empty.
        """
        name = self._known(channel)
        try:
            sequence = self.engine.dataspace.get_taskmanager(name)["sequence_id"]
        except KeyError:
            return []
        by_generation: dict[int, dict[str, Any]] = {}
        for item in self.engine.dataspace.iter_products(sequence, FACT_VALUES, since):
            by_generation[item["generation_id"]] = {
                "generation_id": item["generation_id"],
                "generation_time": item["generation_time"],
                "facts": presentation.displayed(item["value"]),
                "new_facts": [],
                "publishers": [],
                "published": False,
            }
        for product, field in ((FACTS, "new_facts"), (PUBLISHER_STATUS, "publishers")):
            for item in self.engine.dataspace.iter_products(sequence, product, since):
                entry = by_generation.get(item["generation_id"])
                if entry is not None:
                    entry[field] = presentation.displayed(item["value"])
                    entry["published"] = entry["published"] or field == "publishers"
        return [by_generation[g] for g in sorted(by_generation)][-limit:]

    @read
    def subscribe(self, caller: Caller, channel: Any = None) -> Subscription:
        """Live events (generations, state changes) of one channel or of all.

        Each open stream holds a web server thread, so there are at most
        ``webserver.max_event_streams`` of them: the other threads stay free for requests.
        """
        name = None if channel in (None, "") else self._known(channel)
        subscription = self.engine.events.subscribe(name, limit=self.max_event_streams)
        if subscription is None:
            raise Unavailable(
                f"too many event streams open ({self.max_event_streams}, webserver.max_event_streams); "
                "close one or try again later"
            )
        return subscription

    # -- the Reaper --------------------------------------------------------------------------------

    @read
    def reaper_status(self, caller: Caller) -> dict[str, Any]:
        return self.engine.reaper.status()

    @control
    def reaper_start(self, caller: Caller, delay: Any = 0) -> str:
        """Start the Reaper, its first pass after ``delay`` seconds; a running Reaper keeps
        its schedule (as the reference's), and the answer says so."""
        seconds = float(check_number(delay, "delay", default=0.0) or 0.0)
        reaper = self.engine.reaper
        if reaper.thread is not None and reaper.thread.is_alive():
            return (
                f"reaper already running (next pass {presentation.when(reaper.next_run)}); stop it to change its delay"
            )
        reaper.start(delay=seconds)
        return f"reaper started (first pass in {seconds:g} s)"

    @control
    def reaper_stop(self, caller: Caller) -> str:
        self.engine.reaper.stop()
        return "reaper stopped"


def masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The global configuration with every secret hidden (tokens, passwords, URLs' passwords)."""
    shown = mask_secrets(dict(config))
    datasource = shown.get("dataspace", {}).get("datasource", {}).get("config", {})
    if isinstance(datasource, dict) and isinstance(datasource.get("url"), str):
        datasource["url"] = mask_url(datasource["url"])
    return shown
