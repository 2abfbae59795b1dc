"""Web origins (scheme, host, port): the browser's ``Origin`` header, the request's ``Host``, and
the operator's public URL (``PYGW_PUBLIC_URL``). Used to build ``ws_url`` without trusting the
request's Host, and to tell a same-origin WebSocket upgrade from a cross-site one."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
"""Public URL scheme -> the WebSocket scheme clients use."""
PAGE_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
"""Public URL scheme -> the scheme of pages served from that origin."""
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


class WebOrigin(NamedTuple):
    scheme: str
    """``http`` or ``https``."""
    host: str
    """Lower case; an IPv6 address without brackets."""
    port: int


def parse_origin(text: str) -> WebOrigin | None:
    """An ``Origin`` header (``https://app.example.com[:port]``) as a :class:`WebOrigin`; None
    for ``null``, other schemes and anything malformed."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return WebOrigin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


def host_matches(origin: WebOrigin, host_header: str) -> bool:
    """Does the ``Host`` header name the origin's host and port? A Host without a port means the
    default port of the origin's scheme (the browser omits it in both)."""
    try:
        parts = urlsplit("//" + host_header.strip())
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None or parts.path:
        return False
    return (
        parts.hostname.lower() == origin.host
        and (port or DEFAULT_PORTS[origin.scheme]) == origin.port
    )


def check_public_url(url: str) -> str:
    """``PYGW_PUBLIC_URL`` without a trailing ``/``; ValueError says what is wrong."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{url!r} is not a URL") from None
    if parts.scheme.lower() not in WS_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} must be an absolute ws://, wss://, http:// or https:// URL")
    if parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"{url!r} must not have a query, a fragment or credentials")
    return url.strip().rstrip("/")


def public_ws_base(url: str) -> str:
    """The base of ``ws_url`` for a checked public URL: ``https://gw.example.com`` and
    ``wss://gw.example.com`` both give ``wss://gw.example.com`` (a path prefix is kept)."""
    scheme, rest = url.split("://", 1)
    return f"{WS_SCHEMES[scheme.lower()]}://{rest}"


def public_origin(url: str) -> WebOrigin:
    """The origin of the pages served at a checked public URL."""
    parts = urlsplit(url)
    scheme = PAGE_SCHEMES[parts.scheme.lower()]
    return WebOrigin(scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[scheme])


def listening_ws_base(host: str, port: int) -> str:
    """``ws://host:port`` for the address the server listens on; a wildcard address (``0.0.0.0``,
    ``::``) names no host clients could use, so ``localhost`` stands for it."""
    if host in WILDCARD_HOSTS:
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}"
