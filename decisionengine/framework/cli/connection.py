"""How the command-line tools reach a running de-server: URL, TLS, Unix socket, token.

A server is named by a URL: ``http://host:port``, ``https://host:port`` (TLS; ``--ca-file``
for a private certificate authority) or ``unix:/path/to/de.sock``.  Without ``--url`` it is
the global configuration's ``server_address`` (``https`` when the configuration has a TLS
certificate), else ``http://localhost:8888``.

The token, when the server wants one, comes from ``--token-file``, else ``$DE_API_TOKEN``,
else the configuration the tool reads (``webserver.api_token_file`` when this user may read
it, or ``webserver.api_token``); it travels as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from decisionengine.framework.web.credentials import CredentialsError, read_secret

TOKEN_ENV = "DE_API_TOKEN"
DEFAULT_URL = "http://localhost:8888"
UNIX_PREFIX = "unix:"


class ConnectionSetupError(ValueError):
    """A URL, token file or certificate file that cannot be used; the message names it."""


@dataclass(frozen=True)
class ServerLocation:
    """Where the server is and how to talk to it."""

    url: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float | None = None

    @property
    def unix_path(self) -> str | None:
        return self.url[len(UNIX_PREFIX) :] if self.url.startswith(UNIX_PREFIX) else None

    @property
    def display(self) -> str:
        return self.url

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionSetupError(f"--ca-file {self.ca_file}: {exc}") from None

    def headers(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}")] if self.token else []

    def http_connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A connection for plain HTTP requests (the event stream)."""
        limit = timeout if timeout is not None else self.timeout
        if self.unix_path is not None:
            return UnixHTTPConnection(self.unix_path, timeout=limit)
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname or "localhost", parts.port or 443, timeout=limit, context=self.ssl_context()
            )
        return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80, timeout=limit)

    def xmlrpc_proxy(self) -> xmlrpc.client.ServerProxy:
        if self.unix_path is not None:
            transport: xmlrpc.client.Transport = _UnixTransport(self.unix_path, self.timeout, self.headers())
            return xmlrpc.client.ServerProxy("http://localhost/RPC2", allow_none=True, transport=transport)
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            transport = _SafeTransport(self.timeout, self.headers(), self.ssl_context())
        else:
            transport = _Transport(self.timeout, self.headers())
        return xmlrpc.client.ServerProxy(f"{self.url.rstrip('/')}/RPC2", allow_none=True, transport=transport)


def normalize_url(url: str) -> str:
    """Check a server URL and drop any path: ``http[s]://host[:port]`` or ``unix:/path``."""
    if url.startswith(UNIX_PREFIX):
        path = url[len(UNIX_PREFIX) :]
        if not path.startswith("/"):
            raise ConnectionSetupError(f"--url {url!r}: a Unix socket URL is unix:/absolute/path")
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionSetupError(f"--url {url!r}: use http://host:port, https://host:port or unix:/path")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}"


def url_from_config(config: dict[str, Any] | None) -> str:
    """The URL of the server a global configuration describes."""
    if not config:
        return DEFAULT_URL
    address = config.get("server_address") or ["localhost", 8888]
    if isinstance(address, str):
        return address if address.startswith(UNIX_PREFIX) else f"{UNIX_PREFIX}{address}"
    host, port = address
    host = "localhost" if host in ("", "0.0.0.0", "::") else host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if (config.get("webserver") or {}).get("ssl_certificate") else "http"
    return f"{scheme}://{host}:{int(port)}"


def token_from(token_file: str | None, config: dict[str, Any] | None) -> str | None:
    """The token to send: ``--token-file``, ``$DE_API_TOKEN``, or the configuration's."""
    if token_file:
        try:
            return read_secret(token_file, "token_file")
        except CredentialsError as exc:
            raise ConnectionSetupError(f"--token-file: {exc}".replace("webserver.token_file: ", "")) from None
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    webserver = (config or {}).get("webserver") or {}
    if webserver.get("api_token_file") and os.access(webserver["api_token_file"], os.R_OK):
        try:
            return read_secret(webserver["api_token_file"], "api_token_file")
        except CredentialsError:
            return None
    return webserver.get("api_token") or None


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the file's permissions decide who may connect)."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float | None, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float | None, headers: list[tuple[str, str]], context: ssl.SSLContext) -> None:
        super().__init__(headers=headers, context=context)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float | None, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self.path = path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and self._connection[0] == "unix":
            return self._connection[1]
        connection = UnixHTTPConnection(self.path, self.timeout)
        self._connection = ("unix", connection)
        return connection
