"""What a transport and the application above it exchange: requests (native objects), responses,
and the protocols the HTTP and WebSocket applications implement. Shared by the uWS transport and
every layer that builds responses, so none of them imports a particular transport.

Requests are native objects: :class:`HTTPRequest` (``.method .path .query_string .headers
.client_ip .body .params .state``, ``.respond(...)``) and :class:`UpgradeRequest` (``.accept``,
``.reject``). ``HTTPRequest(method, path, query, headers, client_ip)`` builds a detached request
(tests, micro-benchmarks) whose ``respond`` does nothing.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from pygw._native import HTTPRequest, UpgradeRequest

__all__ = [
    "HTTPApp",
    "HTTPRequest",
    "Response",
    "Server",
    "Socket",
    "Stream",
    "StreamOwner",
    "StreamResponse",
    "UpgradeRequest",
    "WSApp",
]


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[str, str]] | None = None
    close: bool = False


class Stream(Protocol):
    """A streamed HTTP answer in progress (SSE, NDJSON): the native ``HTTPRequest`` once its
    ``stream()`` started, or the ASGI adapter's stream."""

    def write(self, data: bytes) -> int:
        """One chunk: 1 written, 0 part of it is buffered (backpressure), 2 the stream is gone."""

    def end(self) -> bool:
        """The last chunk (the connection stays open for further requests); the owner's
        ``closed()`` is not called."""

    def buffered_amount(self) -> int:
        """Bytes written and not yet sent."""


class StreamOwner(Protocol):
    """What a :class:`StreamResponse` hands the transport: the stream's first bytes, then the
    stream itself, and news of its end when the client went away first."""

    def first_chunk(self) -> bytes:
        """Everything to send with the status and headers (never empty)."""

    def attach(self, stream: Stream) -> None:
        """The answer started: write to ``stream`` from now on."""

    def closed(self) -> None:
        """The client went away (or the answer could not start); called once."""


@dataclass(slots=True)
class StreamResponse(Response):
    """An answer whose body is streamed: the transport writes status and headers with
    ``owner.first_chunk()``, then hands the stream to ``owner.attach``."""

    owner: StreamOwner | None = None


class HTTPApp(Protocol):
    max_body_bytes: int
    header_names: tuple[str, ...]
    """Lower-case header names copied into every request (uWS headers die with the callback).
    An optional ``all_header_prefixes: tuple[str, ...]`` attribute names path prefixes whose
    requests get every header (read once, when the server is created)."""

    def handle(self, request: HTTPRequest) -> Coroutine[Any, Any, Response]: ...

    def error_response(self, request: HTTPRequest, status: int, message: str) -> Response: ...


class Socket(Protocol):
    """The per-connection object the gateway attaches to a WebSocket at upgrade time.

    uWS holds a strong reference to it from ``accept`` until after the close handler."""

    ws: Any
    """The native WebSocket (an int for the ``ws_*`` functions) while open, else None (set by
    the transport)."""


class WSApp(Protocol):
    query_names: tuple[str, ...]
    header_names: tuple[str, ...]

    def upgrade(self, request: UpgradeRequest) -> Coroutine[Any, Any, Socket | Response | None]:
        """Return the Socket object to accept with, None to refuse with 403, or a Response to
        refuse with (e.g. 429 with ``Retry-After``)."""

    def on_open(self, sock: Any) -> None: ...

    def on_message(self, sock: Any, data: bytes, opcode: int) -> None: ...

    def on_close(self, sock: Any, code: int, reason: bytes) -> None: ...

    def on_pong(self, sock: Any) -> None: ...

    def on_drain(self, sock: Any) -> None: ...


class Server(Protocol):
    """What the gateway needs of the server that carries its HTTP app and WebSockets (uWS's
    :class:`~pygw.transport.uws.UWSServer`, or the ASGI adapter's)."""

    def publish(self, topic: bytes, message: bytes, opcode: int = 1) -> bool:
        """Deliver ``message`` to every local socket subscribed to ``topic``."""

    def num_subscribers(self, topic: bytes) -> int: ...

    def write_streams(self, streams: Any, data: bytes) -> int:
        """Write ``data`` to each of ``streams`` (an iterable of :class:`Stream`); returns how
        many took it."""

    @property
    def in_uv(self) -> bool:
        """True while the transport runs a callback whose writes it batches (uWS); publishes
        made then are deferred until it returns."""

    def close_listener(self) -> None:
        """Stop accepting connections; open ones stay until closed."""

    def close(self) -> None: ...
