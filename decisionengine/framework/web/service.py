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

import functools
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

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
from decisionengine.framework.web import product_query
from decisionengine.framework.web.access import INTERNAL, Access, AccessPolicy, Caller, Refusal, RequestInfo
from decisionengine.framework.web.credentials import Credentials
from decisionengine.framework.web.masking import mask_secrets
from decisionengine.framework.web.query_runner import QueryLimits, QueryRunner, QueryUnavailable

__all__ = ["INTERNAL", "Access", "Caller", "ControlService", "RequestInfo", "ServiceError"]

#: what a channel name may look like (a file name without its directory or suffix)
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: the longest delay a client may ask for (the Reaper's first pass, a wait): one year
MAX_DELAY_SECONDS = 365 * 86400.0


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
            "reaper": self.engine.reaper.status(),
        }

    @read
    def server_config(self, caller: Caller) -> dict[str, Any]:
        return masked_config(self.engine.global_config)

    @read
    def metrics(self, caller: Caller) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus exposition."""
        return server_metrics.render(self.engine.reaper)

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
    def kill_channel(self, caller: Caller, channel: Any, timeout: Any = None) -> str:
        name = self._known(channel)
        seconds = check_number(timeout, "timeout", default=0.0)
        return self.engine.kill_channel(name, float(seconds or 0.0))

    @control
    def remove_channel(self, caller: Caller, channel: Any) -> str:
        return self.engine.remove_channel(self._known(channel))

    @read
    def channel_log_level(self, caller: Caller, channel: Any) -> str:
        return self.engine.worker(self._known(channel)).log_level

    @control
    def set_channel_log_level(self, caller: Caller, channel: Any, level: Any) -> str:
        name = self._known(channel)
        checked = check_level(level)
        self.engine.worker(name).set_log_level(checked)
        return f"channel {name} log level is {checked}"

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
        return self.engine.dataspace.latest_generation(self._known(channel), keys)

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
        return {name: self.engine.dataspace.latest_generation(name) for name in sorted(self.engine.workers)}

    @read
    def product(
        self, caller: Caller, product: Any, columns: Any = None, query: Any = None, channel: Any = None
    ) -> dict[str, Any]:
        """A product of a channel's latest generation (the first channel holding it when
        ``channel`` is not given), its DataFrame rows filtered by ``query`` and ``columns``."""
        key = check_text(product, "product")
        wanted = check_columns(columns)
        if query is not None and not isinstance(query, str):
            raise InvalidArgument(f"query must be a string, not {query!r}")
        names = [self._known(channel)] if channel not in (None, "") else sorted(self.engine.workers)
        for name in names:
            latest = self.engine.dataspace.latest_generation(name, [key])
            if latest is None or key not in latest.products:
                continue
            try:
                value = product_query.select(latest.products[key], wanted, query or None, self.queries)
            except ValueError as exc:  # refused, failed or stopped queries included
                raise InvalidArgument(str(exc)) from None
            except QueryUnavailable as exc:
                raise Unavailable(str(exc)) from None
            return {"channel": name, "generation": latest.generation_id, "product": key, "value": value}
        where = f"channel {channel!r}" if channel not in (None, "") else "any channel's latest generation"
        raise NotFound(f"no product {key!r} in {where}")

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
        return self.engine.dataspace.iter_products(registration["sequence_id"], product, since, until)

    @read
    def decisions(self, caller: Caller, channel: Any, since: float = 0.0, limit: int = 20) -> list[dict[str, Any]]:
        """Facts, new facts and publishers of the last ``limit`` generations since ``since``."""
        name = self._known(channel)
        try:
            sequence = self.engine.dataspace.get_taskmanager(name)["sequence_id"]
        except KeyError:
            return []
        by_generation: dict[int, dict[str, Any]] = {}
        for product, field in ((FACT_VALUES, "facts"), (FACTS, "new_facts"), (PUBLISHER_STATUS, "publishers")):
            for item in self.engine.dataspace.iter_products(sequence, product, since):
                entry = by_generation.setdefault(
                    item["generation_id"],
                    {
                        "generation_id": item["generation_id"],
                        "generation_time": item["generation_time"],
                        "facts": [],
                        "new_facts": [],
                        "publishers": [],
                    },
                )
                entry[field] = item["value"]
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
        seconds = float(check_number(delay, "delay", default=0.0) or 0.0)
        self.engine.reaper.start(delay=seconds)
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
