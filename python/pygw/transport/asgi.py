"""An ASGI transport: the gateway's HTTP app and WebSockets carried by any ASGI server (granian,
uvicorn), for hosts where socketify's uWS library cannot load, or to mount pygw inside a
Starlette/FastAPI application.

:class:`ASGIServer` plays the part :class:`~pygw.transport.uws.UWSServer` plays for uWS: it
turns ASGI ``http`` and ``websocket`` connections into the same requests and socket events
(:mod:`pygw.transport.types`) and keeps the topics a publication is delivered through. Each
accepted WebSocket gets an :class:`ASGISocket` handle, acted on through
:mod:`pygw.transport.sockets` (installed while the server is open), so the hub above does not
know which transport carries it.

What differs from uWS: every WebSocket has a writer task draining its own queue (uWS writes from
its loop), a topic publish is one queued frame per subscriber (uWS batches natively), and text
frames cross ASGI as ``str``. It is the portable path, not the fast one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from pygw.transport import sockets
from pygw.transport.types import (
    HTTPApp,
    HTTPRequest,
    Response,
    StreamResponse,
    UpgradeRequest,
    WSApp,
)

__all__ = ["ASGIServer", "ASGISocket", "ASGIStream", "route_path"]

log = logging.getLogger("pygw.transport")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SEND_BACKPRESSURE = 0
SEND_SUCCESS = 1
SEND_DROPPED = 2
CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_NO_STATUS = 1005
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
FORBIDDEN = b'{"error":"Forbidden","detail":null,"status_code":403}'
DENIAL_EXTENSION = "websocket.http.response"
"""ASGI extension that lets an app refuse an upgrade with its own HTTP response."""


def route_path(scope: Scope) -> str:
    """The request's path as the app routes it: undecoded (``raw_path``, as uWS gives it) and
    without the prefix the app is mounted under (``root_path``)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1").partition("?")[0] if raw else scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        path = path[len(root) :]
    return path or "/"


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the first of repeated ones, as uWS reads them)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _header_list(resp: Response) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-length", str(len(resp.body)).encode())]
    if resp.content_type:
        headers.append((b"content-type", resp.content_type))
    for name, value in resp.headers or ():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return headers


class ASGISocket:
    """One accepted WebSocket: its queue of outgoing frames, written by its own task, and the
    topics it is subscribed to."""

    __slots__ = ("_out", "_send", "_wakeup", "buffered", "open", "owner", "server", "topics")

    def __init__(self, server: ASGIServer, owner: Any, send: Send) -> None:
        self.server = server
        self.owner = owner
        """The gateway's object for this socket (``WSApp.upgrade``'s result)."""
        self.topics: set[bytes] = set()
        self.buffered = 0
        """Bytes queued and not yet handed to the ASGI server."""
        self.open = True
        self._send = send
        self._out: deque[tuple[Message, int]] = deque()
        self._wakeup: asyncio.Future[None] | None = None

    # -- the operations of pygw.transport.sockets -------------------------------------------------
    def send(self, data: bytes, opcode: int = sockets.OPCODE_TEXT) -> int:
        if not self.open:
            return SEND_DROPPED
        if self.buffered > self.server.max_backpressure:
            # uWS's close_on_backpressure_limit: a reader this far behind is cut off.
            self._closed(CLOSE_ABNORMAL, b"")
            self._queue({"type": "websocket.close", "code": CLOSE_TRY_AGAIN}, 0)
            return SEND_DROPPED
        if opcode == sockets.OPCODE_BINARY:
            self._queue({"type": "websocket.send", "bytes": data}, len(data))
        else:
            self._queue({"type": "websocket.send", "text": data.decode()}, len(data))
        return SEND_SUCCESS

    def end(self, code: int, reason: bytes = b"") -> None:
        """Close with a close frame; the close handler runs first (as with uWS)."""
        if not self.open:
            return
        self._closed(code, reason)
        message = {
            "type": "websocket.close",
            "code": code,
            "reason": reason.decode(errors="replace"),
        }
        self._queue(message, 0)

    def subscribe(self, topic: bytes) -> bool:
        if not self.open:
            return False
        self.topics.add(topic)
        self.server.topics.setdefault(topic, set()).add(self)
        return True

    def unsubscribe(self, topic: bytes) -> bool:
        if topic not in self.topics:
            return False
        self.topics.discard(topic)
        self.server.leave(topic, self)
        return True

    def buffered_amount(self) -> int:
        return self.buffered

    # -- the writer -------------------------------------------------------------------------------
    def _queue(self, message: Message, size: int) -> None:
        self._out.append((message, size))
        self.buffered += size
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def write(self) -> None:
        """Hand the queued frames to the ASGI server, in order, until the close frame."""
        out = self._out
        loop = asyncio.get_running_loop()
        try:
            while True:
                while out:
                    message, size = out.popleft()
                    self.buffered -= size
                    await self._send(message)
                    if message["type"] == "websocket.close":
                        return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
        except (OSError, RuntimeError) as exc:
            # The client went away under the write; the reader sees the disconnect.
            log.debug("WebSocket write stopped: %s", exc)
        except Exception as exc:  # servers raise their own "disconnected" errors
            log.debug("WebSocket write stopped: %r", exc)

    # -- closing ----------------------------------------------------------------------------------
    def _closed(self, code: int, reason: bytes) -> None:
        """Run the close handler once; the handle is dead after it."""
        if not self.open:
            return
        self.open = False
        for topic in self.topics:
            self.server.leave(topic, self)
        self.topics.clear()
        self.server.sockets.discard(self)
        owner = self.owner
        try:
            self.server.ws_app.on_close(owner, code, reason)
        except Exception:
            log.exception("WebSocket close handler failed")
        finally:
            owner.ws = None


class ASGIStream:
    """A streamed HTTP answer (SSE, NDJSON): chunks queued by the gateway, handed to the ASGI
    server as ``http.response.body`` messages with ``more_body`` by the request's task."""

    __slots__ = ("_out", "_wakeup", "buffered", "ended", "gone")

    def __init__(self) -> None:
        self._out: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self.buffered = 0
        """Bytes queued and not yet handed to the ASGI server."""
        self.ended = False
        self.gone = False

    # -- the transport's Stream -------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        if self.ended or self.gone:
            return SEND_DROPPED
        self._out.append(data)
        self.buffered += len(data)
        self._wake()
        return SEND_SUCCESS

    def end(self) -> bool:
        if self.ended or self.gone:
            return False
        self.ended = True
        self._wake()
        return True

    def buffered_amount(self) -> int:
        return self.buffered

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def pump(self, send: Send, disconnected: asyncio.Future[Any]) -> None:
        """Hand the queued chunks to the server until the stream ends or the client leaves."""
        out = self._out
        loop = asyncio.get_running_loop()
        while True:
            while out:
                data = out.popleft()
                self.buffered -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if self.ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            self._wakeup = loop.create_future()
            await asyncio.wait([self._wakeup, disconnected], return_when=asyncio.FIRST_COMPLETED)
            self._wakeup = None
            if disconnected.done():
                return


ASGI_OPS = sockets.SocketOps(
    send=ASGISocket.send,
    end=ASGISocket.end,
    subscribe=ASGISocket.subscribe,
    unsubscribe=ASGISocket.unsubscribe,
    buffered_amount=ASGISocket.buffered_amount,
)


class ASGIServer:
    """The gateway's HTTP app and WebSocket route behind an ASGI server."""

    def __init__(
        self,
        http_app: HTTPApp,
        ws_app: WSApp,
        *,
        ws_path: str = "/ws/connect",
        max_payload_length: int = 64 * 1024,
        max_backpressure: int = 1 << 20,
    ) -> None:
        self.http_app = http_app
        self.ws_app = ws_app
        self.ws_path = ws_path
        self.max_payload_length = max_payload_length
        self.max_backpressure = max_backpressure
        self.topics: dict[bytes, set[ASGISocket]] = {}
        self.sockets: set[ASGISocket] = set()
        self.accepting = True
        self._replaced: sockets.SocketOps | None = sockets.install(ASGI_OPS)

    # -- the Server protocol ---------------------------------------------------------------------
    @property
    def in_uv(self) -> bool:
        return False

    def publish(self, topic: bytes, message: bytes, opcode: int = sockets.OPCODE_TEXT) -> bool:
        subscribers = self.topics.get(topic)
        if not subscribers:
            return False
        for sock in list(subscribers):
            sock.send(message, opcode)
        return True

    def num_subscribers(self, topic: bytes) -> int:
        subscribers = self.topics.get(topic)
        return len(subscribers) if subscribers else 0

    def write_streams(self, streams: Any, data: bytes) -> int:
        return sum(stream.write(data) != SEND_DROPPED for stream in streams)

    def leave(self, topic: bytes, sock: ASGISocket) -> None:
        subscribers = self.topics.get(topic)
        if subscribers is not None:
            subscribers.discard(sock)
            if not subscribers:
                del self.topics[topic]

    def close_listener(self) -> None:
        """Refuse new WebSockets (HTTP is refused by the app while it closes)."""
        self.accepting = False

    def close(self) -> None:
        self.accepting = False
        for sock in list(self.sockets):
            sock.end(CLOSE_GOING_AWAY, b"Server shutting down")
        if self._replaced is not None:
            sockets.install(self._replaced)
            self._replaced = None

    # -- HTTP -------------------------------------------------------------------------------------
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        request = HTTPRequest(
            scope["method"], route_path(scope), query, _headers(scope), _client_ip(scope)
        )
        root = scope.get("root_path", "")
        if root:
            request.state["root_path"] = root  # mounted: the prefix of URLs given to clients
        body = await self._read_body(receive)
        if body is None:
            resp = self.http_app.error_response(request, 413, "Request body too large")
        else:
            request.body = body
            try:
                resp = await self.http_app.handle(request)
            except Exception:
                log.exception(
                    "unhandled error in HTTP handler for %s %s", request.method, request.path
                )
                resp = self.http_app.error_response(request, 500, "Internal Server Error")
        if isinstance(resp, StreamResponse) and resp.owner is not None:
            await self._stream(resp, receive, send)
            return
        try:
            headers = _header_list(resp)
        except (UnicodeEncodeError, AttributeError):
            log.exception("bad response headers for %s %s", request.method, request.path)
            resp = self.http_app.error_response(request, 500, "Internal Server Error")
            headers = _header_list(resp)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _stream(self, resp: StreamResponse, receive: Receive, send: Send) -> None:
        """A streamed answer: status, headers and the first chunk, then the chunks the gateway
        writes, until it ends the stream or the client disconnects."""
        owner = resp.owner
        assert owner is not None
        stream = ASGIStream()
        first = owner.first_chunk()
        owner.attach(stream)  # nothing written meanwhile: no await in between
        headers = [(b"content-type", resp.content_type)]
        headers += [
            (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in resp.headers or ()
        ]
        disconnected = asyncio.ensure_future(self._disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            await stream.pump(send, disconnected)
        except Exception as exc:  # servers raise their own "disconnected" errors
            log.debug("stream write stopped: %r", exc)
        finally:
            disconnected.cancel()
            if not stream.ended:
                stream.gone = True
                owner.closed()

    @staticmethod
    async def _disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the app's limit (the rest is not read)."""
        limit = self.http_app.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # http.disconnect: the answer goes nowhere anyway
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- WebSocket --------------------------------------------------------------------------------
    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path = route_path(scope)
        if path != self.ws_path or not self.accepting:
            await self._refuse(scope, send, Response(404 if self.accepting else 503, b""))
            return
        headers = _headers(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        request = UpgradeRequest(
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers=headers,
            key=headers.get("sec-websocket-key", "").encode("latin-1"),
            protocol=headers.get("sec-websocket-protocol", "").encode("latin-1"),
            extensions=headers.get("sec-websocket-extensions", "").encode("latin-1"),
            client_ip=_client_ip(scope),
        )
        try:
            result = await self.ws_app.upgrade(request)
        except Exception:
            log.exception("WebSocket upgrade handler failed")
            result = None
        if result is None or isinstance(result, Response):
            await self._refuse(scope, send, result)
            return
        await send({"type": "websocket.accept"})
        await self._serve(result, receive, send)

    async def _serve(self, owner: Any, receive: Receive, send: Send) -> None:
        """Run an accepted socket until the client or the gateway closes it."""
        handle = ASGISocket(self, owner, send)
        owner.ws = handle
        self.sockets.add(handle)
        writer = asyncio.get_running_loop().create_task(handle.write())
        ws_app = self.ws_app
        code, reason = CLOSE_ABNORMAL, b""
        try:
            ws_app.on_open(owner)
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    code = int(message.get("code") or CLOSE_NO_STATUS)
                    reason = str(message.get("reason") or "").encode()
                    break
                if kind != "websocket.receive" or not handle.open:
                    continue
                text = message.get("text")
                if text is not None:
                    data, opcode = text.encode(), sockets.OPCODE_TEXT
                else:
                    data, opcode = message.get("bytes") or b"", sockets.OPCODE_BINARY
                if len(data) > self.max_payload_length:
                    handle.end(CLOSE_TOO_BIG, b"Message too big")
                    continue
                try:
                    ws_app.on_message(owner, data, opcode)
                except Exception:
                    log.exception("WebSocket message handler failed")
        finally:
            handle._closed(code, reason)
            if not writer.done():
                # A close frame still queued gets a moment to leave; then the writer stops.
                await asyncio.wait([writer], timeout=0.05)
                writer.cancel()

    async def _refuse(self, scope: Scope, send: Send, resp: Response | None) -> None:
        """Refuse an upgrade: with the gateway's response where the server lets the app answer
        (the ``websocket.http.response`` extension), else with the server's 403."""
        if resp is None:
            resp = Response(403, FORBIDDEN)
        if DENIAL_EXTENSION in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": resp.status,
                    "headers": _header_list(resp),
                }
            )
            await send({"type": "websocket.http.response.body", "body": resp.body})
        else:
            await send({"type": "websocket.close", "code": 1008})
