"""Who may do what: callers, their access level, and the checks every request passes.

Every request is described by a :class:`RequestInfo` (filled in by the transport from its
HTTP request) and admitted by :meth:`AccessPolicy.admit`, which gives a :class:`Caller`:

* the ``Host`` header must name this server (DNS rebinding: a hostile page whose name
  resolves to 127.0.0.1 would otherwise talk to us with the victim browser's help);
* XML-RPC must come with an XML content type: a browser cannot send one to another site
  without asking first (CORS preflight, which this server never approves), so a cross-site
  form post (``text/plain``) never reaches a method;
* a request carrying a browser's cross-site markers (an ``Origin`` of another site,
  ``Sec-Fetch-Site: cross-site`` or ``same-site``) may read, never control;
* the token it presents (``Authorization: Bearer <token>``, or the password of HTTP Basic
  authentication, which XML-RPC clients send from ``http://user:TOKEN@host/``) decides its
  level: the control token gives *control*, the read token *read*.  Without any token
  configured, local XML-RPC clients keep full control (what existing operators' scripts
  expect) and everyone else may read.

:meth:`AccessPolicy.authorize` is then asked, by the control service, for every operation.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decisionengine.framework.web.credentials import Credentials


class Access(enum.IntEnum):
    """What a caller may do: every operation needs one of these levels."""

    NONE = 0
    READ = 1
    CONTROL = 2


class Refusal(Exception):
    """A request refused before or by authorization; ``kind`` says why (see ServiceError)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class RequestInfo:
    """What the transport knows of a request that matters for access."""

    transport: str  # "xmlrpc", "api", "metrics", "dashboard", "internal"
    method: str = "GET"
    token: str | None = None
    local: bool = False  # from this host: a loopback address or the Unix socket
    host: str | None = None  # the Host header
    origin: str | None = None
    fetch_site: str | None = None  # Sec-Fetch-Site
    content_type: str | None = None


@dataclass(frozen=True)
class Caller:
    """An admitted request: its level, and why it may get no more."""

    access: Access
    transport: str
    cross_site: bool = False
    token_configured: bool = False
    #: set when the request presented a token that is not valid
    credential_error: str | None = None


#: the server itself (tests, the de-server command): may do everything
INTERNAL = Caller(Access.CONTROL, "internal", token_configured=True)

XML_TYPES = ("text/xml", "application/xml")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "127.0.0.1", "::1", "ip6-localhost")
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "*")


def is_local_address(address: str | None) -> bool:
    """A loopback address, or none at all (a Unix socket peer has no IP address)."""
    if not address:
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header or an origin's netloc, without port or brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]")[0]
    if header.count(":") == 1:
        return header.split(":")[0]
    return header


class AccessPolicy:
    """The rules above, for one server: its names, its port, its tokens."""

    def __init__(
        self,
        credentials: Credentials,
        listen_host: str | None,
        listen_port: int | None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.credentials = credentials
        self.port = listen_port
        extra = [h.strip().lower() for h in allowed_hosts]
        self.any_host = "*" in extra
        names = set(LOCAL_NAMES) | {h for h in extra if h != "*"}
        if listen_host and listen_host.lower() not in WILDCARD_HOSTS:
            names.add(host_name(listen_host))
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
        self.hosts = frozenset(names)

    # -- admission -----------------------------------------------------------------------------

    def admit(self, request: RequestInfo) -> Caller:
        """The caller a request is, or a :class:`Refusal` for a request that must go no further."""
        if request.host is not None and not self.any_host and host_name(request.host) not in self.hosts:
            raise Refusal(
                "forbidden",
                f"Host {request.host!r} is not a name of this server; add it to webserver.allowed_hosts "
                "if clients use it",
            )
        if request.transport == "xmlrpc":
            kind = (request.content_type or "").split(";")[0].strip().lower()
            if kind not in XML_TYPES:
                raise Refusal(
                    "unsupported",
                    f"XML-RPC calls must be sent as text/xml, not {request.content_type or 'without a content type'}",
                )
        cross_site = self._cross_site(request)
        configured = self.credentials.configured
        if request.token is not None and configured:  # with no token configured, one sent means nothing
            level = self.credentials.access_of(request.token)
            if level is None:
                return Caller(
                    Access.NONE,
                    request.transport,
                    cross_site,
                    configured,
                    "the token presented is not valid for this server",
                )
            return Caller(level, request.transport, cross_site, configured)
        if not configured:
            local_control = request.transport == "xmlrpc" and request.local
            return Caller(Access.CONTROL if local_control else Access.READ, request.transport, cross_site, False)
        open_reads = self.credentials.read_token is None
        return Caller(Access.READ if open_reads else Access.NONE, request.transport, cross_site, True)

    def _cross_site(self, request: RequestInfo) -> bool:
        site = (request.fetch_site or "").strip().lower()
        if site in ("cross-site", "same-site"):
            return True
        origin = (request.origin or "").strip()
        if not origin:
            return False
        if origin == "null":
            return True
        parts = urllib.parse.urlsplit(origin)
        if not parts.hostname or (not self.any_host and parts.hostname.lower() not in self.hosts):
            return True
        if self.port is None:
            return False
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
        return port != self.port

    # -- authorization ---------------------------------------------------------------------------

    def authorize(self, caller: Caller, operation: str, level: Access) -> None:
        """Raise a :class:`Refusal` unless ``caller`` may run ``operation`` (which needs ``level``)."""
        if caller.credential_error is not None:
            raise Refusal("unauthorized", f"{operation} is refused: {caller.credential_error}")
        if level is Access.CONTROL and caller.cross_site:
            raise Refusal(
                "forbidden",
                f"{operation} is refused: a cross-site request (from a page of another site) may not "
                "control this server",
            )
        if caller.access >= level:
            return
        if level is Access.READ:
            raise Refusal("unauthorized", f"{operation} needs the read token or the API token")
        if self.credentials.control_token is None:
            if not caller.token_configured and caller.transport == "xmlrpc":
                raise Refusal(
                    "forbidden",
                    f"{operation} is refused: without webserver.api_token, control is open only to "
                    "clients on this host",
                )
            raise Refusal(
                "forbidden",
                f"{operation} is refused: control needs webserver.api_token (or api_token_file) in the "
                "global configuration, and the token with the request",
            )
        raise Refusal("unauthorized", f"{operation} needs the API token: Authorization: Bearer <token>")
