"""The server's secrets: the control token and the read token, from the configuration or files.

A token may be written in the global configuration (``webserver.api_token``,
``webserver.read_token``) or kept in a file the configuration names (``api_token_file``,
``read_token_file``), so that the secret never appears in a configuration dump or in the
configuration repository.  Files are read once, at start; a missing, unreadable or empty
file is an error naming the key and the file.
"""

from __future__ import annotations

import hmac
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.web.access import Access


class CredentialsError(RuntimeError):
    """A token file that cannot be used; the message names the key and the file."""


def read_secret(path: str, key: str) -> str:
    """The secret held in ``path`` (surrounding whitespace removed)."""
    try:
        secret = pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"webserver.{key}: cannot read {path}: {exc.strerror or exc}") from None
    if not secret:
        raise CredentialsError(f"webserver.{key}: {path} is empty")
    return secret


def _secret(webserver: Mapping[str, Any], name: str) -> str | None:
    file = webserver.get(f"{name}_file")
    if file:
        return read_secret(file, f"{name}_file")
    return webserver.get(name) or None


@dataclass(frozen=True)
class Credentials:
    """The two tokens (either may be absent) and what each grants."""

    control_token: str | None = None
    read_token: str | None = None

    @classmethod
    def from_config(cls, webserver: Mapping[str, Any]) -> Credentials:
        return cls(_secret(webserver, "api_token"), _secret(webserver, "read_token"))

    @property
    def configured(self) -> bool:
        return self.control_token is not None or self.read_token is not None

    def access_of(self, token: str) -> Access | None:
        """What ``token`` grants; None when it is neither token.  Compared in constant time."""
        offered = token.encode()
        granted = None
        # Both comparisons always run, so the time taken does not say which one matched.
        if self.read_token is not None and hmac.compare_digest(offered, self.read_token.encode()):
            granted = Access.READ
        if self.control_token is not None and hmac.compare_digest(offered, self.control_token.encode()):
            granted = Access.CONTROL
        return granted

    def __repr__(self) -> str:  # never show the secrets, even in a debugger or a log line
        shown = {name: "***" if getattr(self, name) else None for name in ("control_token", "read_token")}
        return f"Credentials({', '.join(f'{k}={v}' for k, v in shown.items())})"
