"""Hiding secrets in what the server shows: configuration dumps in every format.

A value is hidden when its key says it is a secret (``password``, ``secret``, ``token``,
``api_key``, ``credential``, ``private_key``... in any case, anywhere in the key), and any
string that holds a URL with a password has the password replaced, wherever it is.  Keys
naming a *file* that holds a secret (``api_token_file``) show the path: the path is not the
secret, and an operator needs to see which file is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "***"
SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|api[_-]?key|credential|private[_-]?key|auth", re.I)
NOT_SECRET_SUFFIXES = ("_file", "_path", "_dir")
#: scheme://user:password@host -> scheme://user:***@host
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<at>@)")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return bool(SECRET_KEY.search(lowered)) and not lowered.endswith(NOT_SECRET_SUFFIXES)


def mask_text(text: str) -> str:
    return URL_PASSWORD.sub(lambda m: f"{m['head']}{HIDDEN}{m['at']}", text)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (JSON-like data) with every secret hidden."""
    if isinstance(value, Mapping):
        masked = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "", [], {}):
                masked[key] = HIDDEN if not isinstance(item, Mapping | list) else mask_all(item)
            else:
                masked[key] = mask_secrets(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_all(value: Any) -> Any:
    """Every leaf hidden: the value of a key such as ``credentials: {...}``."""
    if isinstance(value, Mapping):
        return {key: mask_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_all(item) for item in value]
    return HIDDEN if value not in (None, "") else value
