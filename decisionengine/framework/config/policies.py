"""Where configuration lives, and the environment variables that move it.

* the global directory is ``$CONFIG_PATH``, else ``/etc/decisionengine``;
* the global file in it is ``decision_engine.jsonnet``;
* channel files are in ``$CHANNEL_CONFIG_PATH``, else the global config's ``channels`` key,
  else ``<global dir>/config.d``; a ``parent`` directory given to
  :func:`channel_config_dir` wins over all of them (its ``config.d``).

As in the reference, the functions return ``pathlib.Path`` objects and take an optional
``parent`` directory.  Each checks that what it returns exists and fails naming it (and
where the name came from) when it does not, instead of letting a later open() fail
obscurely.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

GLOBAL_CONFIG_FILENAME = "decision_engine.jsonnet"
CONFIG_PATH_ENV = "CONFIG_PATH"
CHANNEL_CONFIG_PATH_ENV = "CHANNEL_CONFIG_PATH"
DEFAULT_CONFIG_DIR = "/etc/decisionengine"
CHANNEL_SUBDIR = "config.d"


class ConfigFileNotFoundError(RuntimeError, FileNotFoundError):
    """The global configuration file is missing: a ``RuntimeError`` as in the reference, and
    a ``FileNotFoundError`` for callers that treat a missing file as such."""


def _existing_dir(path: str | os.PathLike[str], origin: str) -> pathlib.Path:
    directory = pathlib.Path(path)
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise RuntimeError(f"configuration directory {str(directory)!r} ({origin}) {problem}")
    return directory


def global_config_dir() -> pathlib.Path:
    """The global configuration directory: ``$CONFIG_PATH`` or ``/etc/decisionengine``."""
    env = os.environ.get(CONFIG_PATH_ENV)
    if env:
        return _existing_dir(env, f"from ${CONFIG_PATH_ENV}")
    return _existing_dir(DEFAULT_CONFIG_DIR, f"the default; set ${CONFIG_PATH_ENV} to use another")


def global_config_file(parent: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """``decision_engine.jsonnet`` in ``parent`` (default: the global configuration directory).

    Raises :class:`ConfigFileNotFoundError` (a ``RuntimeError``) naming the file when it is
    not there.
    """
    directory = pathlib.Path(parent) if parent is not None else global_config_dir()
    path = directory / GLOBAL_CONFIG_FILENAME
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise ConfigFileNotFoundError(f"global configuration file {str(path)!r} {problem}")
    return path


def channel_config_dir(
    parent: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    global_config: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """The channel directory.

    * ``parent`` (a directory): its ``config.d``, whatever the environment says (the reference's
      argument: a caller that names the configuration directory means its channels);
    * otherwise ``$CHANNEL_CONFIG_PATH``, the global configuration's ``channels`` key (given as
      ``global_config``, or as the first argument when it is a mapping), or
      ``<global dir>/config.d``.
    """
    if isinstance(parent, Mapping):
        parent, global_config = None, parent
    if parent is not None:
        return _existing_dir(pathlib.Path(parent) / CHANNEL_SUBDIR, f"the {CHANNEL_SUBDIR} of the directory given")
    env = os.environ.get(CHANNEL_CONFIG_PATH_ENV)
    if env:
        return _existing_dir(env, f"from ${CHANNEL_CONFIG_PATH_ENV}")
    configured = (global_config or {}).get("channels")
    if configured:
        return _existing_dir(configured, "from the global configuration's 'channels' key")
    return _existing_dir(
        global_config_dir() / CHANNEL_SUBDIR,
        f"the default <global dir>/{CHANNEL_SUBDIR}; set ${CHANNEL_CONFIG_PATH_ENV} or 'channels' to change it",
    )
