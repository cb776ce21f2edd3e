"""The global configuration file ``decision_engine.jsonnet``: schema, defaults, warnings.

:func:`load_global_config` evaluates the file, checks every known key (messages name the
key path and what was expected), fills in defaults, and returns the keys it does not know
(``broker_url``, ``exchange_name``... from older installations) as warnings instead of
failing.  :data:`GLOBAL_SCHEMA` is the single source of truth for keys and defaults; the
README's configuration reference mirrors it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from decisionengine.framework.config import policies
from decisionengine.framework.config.errors import ConfigError
from decisionengine.framework.config.schema import Bool, Custom, Int, ListOf, Number, Obj, Str, check
from decisionengine.framework.config.ValidConfig import ValidConfig
from decisionengine.framework.dataspace.retention import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_RETENTION_INTERVAL_DAYS,
    DEFAULT_SECONDS_BETWEEN_RUNS,
    DEFAULT_START_DELAY_SECONDS,
    MIN_RETENTION_INTERVAL_DAYS,
    MIN_SECONDS_BETWEEN_RUNS,
)
from decisionengine.framework.dataspace.unpickling import TRUSTABLE_MODULE, check_trusted_module

#: the niceness channel and source processes add to their own (``channel_nice``)
DEFAULT_CHANNEL_NICE = 10

DEFAULT_SERVER_ADDRESS = ["localhost", 8888]
DEFAULT_DATASOURCE_MODULE = "decisionengine.framework.dataspace.datasources.sqlalchemy_ds"
DEFAULT_DATASOURCE_NAME = "SQLAlchemyDS"
DEFAULT_DATASPACE_URL = "sqlite:////var/lib/decisionengine/dataspace.sqlite"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ROTATION_TIME_UNITS = ("S", "M", "H", "D", "midnight", "W0", "W1", "W2", "W3", "W4", "W5", "W6")


#: a Unix socket instead of [host, port]: ``"unix:/run/decisionengine/de.sock"``
UNIX_PREFIX = "unix:"


def _is_address(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(UNIX_PREFIX) and value[len(UNIX_PREFIX) :].startswith("/")
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and bool(value[0])
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
        and float(value[1]).is_integer()
        and 0 <= value[1] <= 65535
    )


def _is_trustable_module(value: Any) -> bool:
    try:
        check_trusted_module(value)
    except ValueError:
        return False
    return True


class _Address(Custom):
    def normalize(self, value: Any, path: Any, report: Any) -> Any:
        if isinstance(value, str):
            return value
        return [value[0], int(value[1])]


def _is_mode(value: Any) -> bool:
    """A file mode as an octal string ("0660"): jsonnet has no octal numbers."""
    if not isinstance(value, str):
        return False
    try:
        return 0 <= int(value, 8) <= 0o777
    except ValueError:
        return False


def _log_level(default: str) -> Str:
    return Str(default, choices=LOG_LEVELS, case_insensitive=True)


LOGGER_SCHEMA = Obj(
    {
        "log_file": Str(None, nullable=True),
        "log_level": _log_level("INFO"),
        "format": Str("text", choices=("text", "json"), case_insensitive=True),
        "file_rotate_by": Str("size", choices=("size", "time")),
        "rotation_time_unit": Str("D", choices=ROTATION_TIME_UNITS, case_insensitive=True),
        "rotation_time_interval": Int(1, minimum=1),
        "max_file_size": Int(200_000_000, minimum=1),
        "max_backup_count": Int(6, minimum=0),
        "global_channel_log_level": _log_level("INFO"),
    },
    default={},
)

DATASOURCE_CONFIG_SCHEMA = Obj(
    {
        "url": Str(DEFAULT_DATASPACE_URL),
        "echo": Bool(optional=True),
        "codec": Str(optional=True, choices=("zstd", "zlib", "pickle"), case_insensitive=True),
        "busy_timeout": Number(optional=True, minimum=0),
        "connect_timeout": Int(optional=True, minimum=0),
        "pool_size": Int(optional=True, minimum=0),
        "max_overflow": Int(optional=True),
        "pool_recycle": Int(optional=True),
        "pool_timeout": Number(optional=True, minimum=0),
        "pool_pre_ping": Bool(optional=True),
        "read_only": Bool(optional=True),
        "create": Bool(optional=True),
    },
    default={},
    extra="keep",  # any other SQLAlchemy create_engine option
)

DATASPACE_SCHEMA = Obj(
    {
        "datasource": Obj(
            {
                "module": Str(DEFAULT_DATASOURCE_MODULE),
                "name": Str(DEFAULT_DATASOURCE_NAME),
                "config": DATASOURCE_CONFIG_SCHEMA,
            },
            default={},
        ),
        "retention_interval_in_days": Number(DEFAULT_RETENTION_INTERVAL_DAYS, minimum=MIN_RETENTION_INTERVAL_DAYS),
        "reaper_run_interval": Number(DEFAULT_SECONDS_BETWEEN_RUNS, minimum=MIN_SECONDS_BETWEEN_RUNS),
        "reaper_start_delay_seconds": Number(DEFAULT_START_DELAY_SECONDS, minimum=0),
        "reaper_batch_size": Int(DEFAULT_BATCH_SIZE, minimum=1),
        # PostgreSQL connections open at once across all the channel processes of one server
        # (see decisionengine.framework.dataspace.connection_gate)
        "channel_connections": Int(8, minimum=1, maximum=1000),
        # PostgreSQL: the URL channel processes connect with instead of the datasource's url,
        # e.g. a PgBouncer in transaction pooling mode (README "Scaling out")
        "channel_url": Str(None, nullable=True),
        # modules whose classes payloads may hold, beside the built-in allow-list of data types
        "trusted_modules": ListOf(Custom(TRUSTABLE_MODULE, _is_trustable_module), default=[]),
    },
    default={},
)

WEBSERVER_SCHEMA = Obj(
    {
        "api_token": Str(None, nullable=True),
        "api_token_file": Str(None, nullable=True),
        "read_token": Str(None, nullable=True),
        "read_token_file": Str(None, nullable=True),
        "allowed_hosts": ListOf(Str(), default=[]),
        "thread_pool": Int(30, minimum=4),
        "max_event_streams": Int(10, minimum=0),
        "ssl_certificate": Str(None, nullable=True),
        "ssl_private_key": Str(None, nullable=True),
        "socket_mode": Custom('a file mode as an octal string such as "0660"', _is_mode, "0660"),
        # client queries (de-client --query): see decisionengine.framework.web.query_runner
        "query_timeout": Number(5, minimum=0.1, maximum=3600),
        "query_memory_mb": Int(1024, minimum=64),
        "query_workers": Int(2, minimum=1, maximum=64),
    },
    default={},
    extra="keep",  # open-ended: the engine defines further settings
)

GLOBAL_SCHEMA = Obj(
    {
        "server_address": _Address(
            "[host, port] with a non-empty host string and an integer port in 0..65535, "
            "or 'unix:/absolute/path' for a Unix socket",
            _is_address,
            DEFAULT_SERVER_ADDRESS,
        ),
        "logger": LOGGER_SCHEMA,
        "shutdown_timeout": Number(10, minimum=0),
        # niceness added by channel and source processes: the server and database come first
        # under contention (see engine.supervision.yield_to_the_server)
        "channel_nice": Int(DEFAULT_CHANNEL_NICE, minimum=0, maximum=19),
        # channel and source processes ask the kernel to merge their identical pages (KSM, where
        # the host runs it): see decisionengine.framework.engine.memory_merging
        "channel_memory_merging": Bool(True),
        # a channel that fails is started again by itself: see decisionengine.framework.engine.restarts
        "channel_restart": Obj(
            {
                "enabled": Bool(True),
                "initial_delay": Number(1, minimum=0.1, maximum=3600),
                "max_delay": Number(300, minimum=0.1, maximum=86400),
            },
            default={},
        ),
        # servers sharing one DataSpace balance its channels: see decisionengine.framework.engine.cluster
        "cluster": Obj(
            {
                "server_name": Str(None, nullable=True),
                "heartbeat_interval": Number(1, minimum=0.1, maximum=60),
                "member_timeout": Number(10, minimum=1, maximum=3600),
                "max_starting": Int(16, minimum=1, maximum=1000),
            },
            default={},
        ),
        "channels": Str(None, nullable=True),
        # a declared module parameter without a default that a channel leaves out: an error
        # when true, else a warning (the reference's behaviour; see config.parameters)
        "strict_parameters": Bool(False),
        "dataspace": DATASPACE_SCHEMA,
        "webserver": WEBSERVER_SCHEMA,
    },
    extra="warn",
)


def validate_global_config(config: Mapping[str, Any], path: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Check an already evaluated global configuration.

    Returns (configuration with defaults filled in, warnings); raises :class:`ConfigError`
    listing every problem.
    """
    normalized, report = check(GLOBAL_SCHEMA, config)
    if not report.problems:
        _check_webserver(normalized["webserver"], report)
        restart = normalized["channel_restart"]
        if restart["max_delay"] < restart["initial_delay"]:
            report.problem(
                ("channel_restart", "max_delay"),
                f"expected at least initial_delay ({restart['initial_delay']:g}), got {restart['max_delay']:g}",
            )
        cluster = normalized["cluster"]
        if cluster["member_timeout"] < 2 * cluster["heartbeat_interval"]:
            report.problem(
                ("cluster", "member_timeout"),
                f"expected at least twice heartbeat_interval ({2 * cluster['heartbeat_interval']:g}), "
                f"got {cluster['member_timeout']:g}",
            )
    if report.problems:
        raise ConfigError(path, report.problems)
    if path:
        _resolve_webserver_files(normalized["webserver"], pathlib.Path(path).resolve().parent)
    where = f"{path}: " if path else ""
    return normalized, [where + warning for warning in report.warnings]


#: webserver keys naming files; relative ones are relative to the global file
WEBSERVER_FILES = ("api_token_file", "read_token_file", "ssl_certificate", "ssl_private_key")


def _check_webserver(webserver: dict[str, Any], report: Any) -> None:
    """Rules between keys: a secret given once, TLS given whole, streams below the pool."""
    for secret in ("api_token", "read_token"):
        if webserver.get(secret) and webserver.get(f"{secret}_file"):
            report.problem(("webserver", f"{secret}_file"), f"give {secret} or {secret}_file, not both")
    if bool(webserver.get("ssl_certificate")) != bool(webserver.get("ssl_private_key")):
        report.problem(("webserver", "ssl_private_key"), "TLS needs both ssl_certificate and ssl_private_key")
    streams, threads = webserver["max_event_streams"], webserver["thread_pool"]
    if streams > threads - 4:
        report.problem(
            ("webserver", "max_event_streams"),
            f"expected at most thread_pool - 4 = {threads - 4} (each stream holds a thread; "
            f"the rest must stay free for requests), got {streams}",
        )


def _resolve_webserver_files(webserver: dict[str, Any], base: pathlib.Path) -> None:
    for key in WEBSERVER_FILES:
        value = webserver.get(key)
        if value and not pathlib.Path(value).is_absolute():
            webserver[key] = str(base / value)


def load_global_config(path_or_dir: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Evaluate, check and complete ``decision_engine.jsonnet``.

    ``path_or_dir`` is the file, or the directory holding it; by default the directory of
    :func:`~decisionengine.framework.config.policies.global_config_dir`.  Raises
    ``FileNotFoundError`` (no file), ``RuntimeError`` (not valid jsonnet) or
    :class:`ConfigError` (a key has a wrong value).  A relative ``channels`` directory is
    made absolute against the directory of the file.
    """
    if path_or_dir is None:
        path = pathlib.Path(policies.global_config_file())
    else:
        path = pathlib.Path(path_or_dir)
        if path.is_dir():
            path = path / policies.GLOBAL_CONFIG_FILENAME
    raw = ValidConfig(path)
    config, warnings = validate_global_config(raw.to_dict(), str(path))
    channels = config.get("channels")
    if channels and not pathlib.Path(channels).is_absolute():
        # a relative channel directory means "next to decision_engine.jsonnet", not "where the server started"
        config["channels"] = str(path.resolve().parent / channels)
    return config, warnings
