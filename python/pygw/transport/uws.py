"""uWebSockets (socketify's native library) driven from asyncio.

The binding is native (``pygw._native``, ``native/src/py/uws``): it calls ``libsocketify``'s C
API directly and registers Rust callbacks with uWS, so each HTTP request, upgrade or socket event
crosses into Python once, with everything already copied out of uWS. Two pieces here:

* :class:`UVBridge` runs the libuv loop that uWS lives on *inside* asyncio. asyncio watches
  libuv's backend epoll fd and runs one non-blocking libuv iteration when it is readable, when a
  libuv timer is due (``uv_backend_timeout``), or when Python code wrote to sockets outside a uWS
  callback (:meth:`UVBridge.kick`). Nothing spins: an idle gateway sleeps in epoll.

* :class:`UWSServer` registers one catch-all HTTP handler and one WebSocket route and hands
  requests and socket events to the gateway through small protocols (:class:`HTTPApp`,
  :class:`WSApp`). Writes made inside uWS callbacks are corked by uWS; writes made from asyncio
  are corked explicitly (HTTP responses, direct WS sends) or left for the next libuv iteration
  (``publish``, which uWS then batches per socket — that is what makes fan-out fast).

HTTP requests are batched: those completed during one libuv iteration are handed to the app one
after the other right after it (still inside :meth:`UVBridge.run`, before asyncio does anything
else), and the answers given synchronously are written back to back at the end. The handlers
run with a warm interpreter and the clients get their answers in one burst instead of one
wake-up each; with a loaded gateway this more than doubles session updates/s. Requests whose
client asked to close (``Connection: close``, HTTP/1.0) are still answered inside the uWS
callback, where uWS closes after the answer.

Requests, responses and the application protocols are in :mod:`pygw.transport.types`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

from pygw._native import (
    UWSApp,
    stream_write_many,
    ws_buffered_amount,
    ws_remote_address,
    ws_send,
    ws_subscribe,
    ws_unsubscribe,
)
from pygw._native import ws_close as ws_close_now
from pygw._native import ws_end as _ws_end
from pygw.transport import eager
from pygw.transport.types import (
    HTTPApp,
    HTTPRequest,
    Response,
    StreamResponse,
    UpgradeRequest,
    WSApp,
)

__all__ = [
    "COMPRESSION",
    "OPCODE_BINARY",
    "OPCODE_TEXT",
    "SEND_BACKPRESSURE",
    "SEND_DROPPED",
    "SEND_SUCCESS",
    "UVBridge",
    "UWSServer",
    "WSOptions",
    "library_path",
    "ws_buffered_amount",
    "ws_close_now",
    "ws_end",
    "ws_remote_address",
    "ws_send",
    "ws_subscribe",
    "ws_unsubscribe",
]

log = logging.getLogger("pygw.transport")

OPCODE_TEXT = 1
OPCODE_BINARY = 2
SEND_BACKPRESSURE = 0
SEND_SUCCESS = 1
SEND_DROPPED = 2

COMPRESSION = {
    "off": 0,
    "shared": 0x001 | 0x100,
    "dedicated": 0x091 | 0xF00,
}
"""``uws_compress_options_t`` of each ``PYGW_WS_COMPRESSION``: ``shared`` is SHARED_COMPRESSOR |
SHARED_DECOMPRESSOR (one deflate stream for the loop, reset for every message); ``dedicated`` is
DEDICATED_COMPRESSOR_3KB (512-byte window, memLevel 1) | DEDICATED_DECOMPRESSOR (32 KiB window),
one pair per socket, context kept.

Why 3KB: the uWS in socketify 0.0.31 turns every dedicated compressor into the 3KB one at the
upgrade (it tests ``compression & DEDICATED_COMPRESSOR_3KB`` as a bit mask, which the window bits
of every dedicated option match; later uWS compares for equality). Asking for the larger ones
only made it advertise a 32 KiB window it does not use (measured: the same bytes on the wire)."""

FORBIDDEN = b'{"error":"Forbidden","detail":null,"status_code":403}'
LISTEN_BACKLOG = 65535
"""Asked for at listen time; Linux caps it at ``net.core.somaxconn``."""


def library_path() -> str:
    """socketify's prebuilt uWS library: the one its cffi module loaded if it is imported (the
    binding then shares that copy), else the file it would load (without importing socketify,
    which would parse its cffi declarations for nothing)."""
    native = sys.modules.get("socketify.native")
    if native is not None:
        return str(native.library_path)
    spec = importlib.util.find_spec("socketify")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("socketify is not installed")
    system = platform.system().lower()
    arch = "arm64" if "arm" in platform.processor().lower() else "amd64"
    ext = "dll" if system == "windows" else "so"
    return os.path.join(
        next(iter(spec.submodule_search_locations)), f"libsocketify_{system}_{arch}.{ext}"
    )


class UVBridge:
    """Drive the native app's libuv loop from a running asyncio loop without busy-polling."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: UWSApp) -> None:
        self._loop = loop
        self._app = app
        self._run_nowait = app.run_nowait
        self._fd = app.backend_fd()
        self._timer: asyncio.TimerHandle | None = None
        self._kicked = False
        self._closed = False
        self.iterations = 0
        loop.add_reader(self._fd, self.run)

    @property
    def in_uv(self) -> bool:
        """True while libuv runs: uWS callbacks are executing and their writes are corked."""
        return self._app.in_uv

    def run(self) -> None:
        """One non-blocking libuv iteration, then re-arm the timer for libuv's next deadline."""
        if self._closed:
            return
        self._kicked = False
        self.iterations += 1
        timeout = self._run_nowait()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if timeout == 0:
            self.kick()
        elif timeout > 0:
            self._timer = self._loop.call_later(timeout / 1000.0, self.run)

    def kick(self) -> None:
        """Ask for a libuv iteration soon (after Python wrote to sockets outside a callback)."""
        if not self._kicked and not self._closed:
            self._kicked = True
            self._loop.call_soon(self.run)

    def close(self) -> None:
        if self._closed:
            return
        # Let libuv finish closing handles (listen socket, timers) before we stop driving it.
        for _ in range(8):
            self._run_nowait()
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _respond(request: HTTPRequest, resp: Response) -> None:
    if isinstance(resp, StreamResponse):
        _start_stream(request, resp)
        return
    request.respond(resp.status, resp.body, resp.content_type, resp.headers, resp.close)


def _start_stream(request: HTTPRequest, resp: StreamResponse) -> None:
    """Status, headers and the first chunk now; the request object is the stream from then on
    (``write``, ``end``, ``buffered_amount``), and the owner hears of an abort once."""
    owner = resp.owner
    assert owner is not None
    started = request.stream(
        resp.status, owner.first_chunk(), resp.content_type, resp.headers, owner.closed
    )
    if started:
        owner.attach(request)  # the request is the stream now
        server = _server
        if server is not None and not server.app.in_uv:
            server.bridge.kick()
    else:
        owner.closed()


@dataclass(slots=True)
class WSOptions:
    path: str = "/ws/connect"
    max_payload_length: int = 64 * 1024
    idle_timeout: int = 120
    """uWS's own receive-idle timeout in seconds (a safety net; pygw runs its own keep-alive)."""
    max_backpressure: int = 1 << 20
    close_on_backpressure_limit: bool = True
    send_pings_automatically: bool = False
    compression: int = 0
    """A :data:`COMPRESSION` value: permessage-deflate is offered to clients that ask for it, and
    every frame sent or published to a socket that accepted it is compressed."""


# A single server per process is the norm; the ws_* helpers that may need a loop iteration find
# it here.
_server: UWSServer | None = None


def _report(what: str, exc: BaseException) -> None:
    """Called by the native callbacks when a Python handler raised."""
    log.error("%s failed", what, exc_info=exc)


# --- operations on open sockets (used by the gateway's connection objects) ----------------------

# Native, imported above: ``ws_send(ws, data, opcode=OPCODE_TEXT) -> int`` sends one frame
# (inside uWS callbacks the write is corked by uWS; from asyncio it is corked natively so it
# leaves at once; compressed when the route has compression and the socket negotiated it;
# returns SEND_SUCCESS, SEND_BACKPRESSURE or SEND_DROPPED); ``ws_close_now``
# terminates the TCP connection without a close handshake (the close handler runs first);
# ``ws_subscribe``, ``ws_unsubscribe``, ``ws_buffered_amount``, ``ws_remote_address``.


def ws_end(ws: int, code: int, reason: bytes = b"") -> None:
    """Close gracefully with a close frame (code, reason); the close handler runs first."""
    _ws_end(ws, code, reason)
    server = _server
    if server is not None and not server.app.in_uv:
        server.bridge.kick()


# ---------------------------------------------------------------------------------------------


class UWSServer:
    """One uWS app: a catch-all HTTP handler plus one WebSocket route."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        http_app: HTTPApp,
        ws_app: WSApp,
        ws_options: WSOptions | None = None,
        *,
        http_batch: bool = True,
    ) -> None:
        global _server
        if _server is not None:
            raise RuntimeError("one UWSServer per process")
        self.loop = loop
        self.http_app = http_app
        self.ws_app = ws_app
        self.app = UWSApp(library_path(), _report)
        self.bridge = UVBridge(loop, self.app)
        self._handle = http_app.handle
        self.port = 0
        _server = self
        opts = ws_options or WSOptions()
        self.app.ws(
            opts.path,
            upgrade=self._on_upgrade,
            open=ws_app.on_open,
            message=ws_app.on_message,
            close=ws_app.on_close,
            pong=ws_app.on_pong,
            drain=ws_app.on_drain,
            query_names=list(ws_app.query_names),
            header_names=list(ws_app.header_names),
            max_payload_length=opts.max_payload_length,
            idle_timeout=opts.idle_timeout,
            max_backpressure=opts.max_backpressure,
            close_on_backpressure_limit=opts.close_on_backpressure_limit,
            send_pings_automatically=opts.send_pings_automatically,
            compression=opts.compression,
        )
        self.app.http(
            self._on_request,
            self._on_http_error,
            list(http_app.header_names),
            list(getattr(http_app, "all_header_prefixes", ())),
            http_app.max_body_bytes,
            http_batch,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def listen(self, host: str, port: int) -> int:
        """Bind (SO_REUSEPORT, so several worker processes can share the port); returns the port.

        The accept backlog is raised from uSockets' 512 to the kernel's maximum
        (``net.core.somaxconn``): a connect storm then queues instead of losing SYNs (retried
        by clients only after 1 s) while Python handles the upgrades already accepted."""
        self.port = self.app.listen(host, port, LISTEN_BACKLOG)
        self.bridge.run()
        return self.port

    def close_listener(self) -> None:
        """Stop accepting connections; open sockets stay until closed."""
        if self.app.close_listener():
            self.bridge.kick()

    def close(self) -> None:
        global _server
        self.close_listener()
        self.bridge.close()
        if _server is self:
            _server = None

    @property
    def in_uv(self) -> bool:
        """True while uWS callbacks run (their writes are corked by uWS)."""
        return self.app.in_uv

    # -- publish --------------------------------------------------------------------------------
    def publish(self, topic: bytes, message: bytes, opcode: int = OPCODE_TEXT) -> bool:
        """Deliver ``message`` to every local subscriber of ``topic``.

        Called from asyncio, uWS queues it per subscriber and writes each subscriber's queue in
        one go on the next libuv iteration — which we ask for."""
        app = self.app
        ok = app.publish(topic, message, opcode)
        if not app.in_uv:
            self.bridge.kick()
        return ok

    def num_subscribers(self, topic: bytes) -> int:
        return self.app.num_subscribers(topic)

    def write_streams(self, streams: Any, data: bytes) -> int:
        """Write one chunk to every stream in ``streams`` (natively, corked per stream: it
        leaves at once, no loop iteration needed)."""
        return stream_write_many(streams, data)

    # -- HTTP -----------------------------------------------------------------------------------
    def _on_request(self, request: HTTPRequest) -> None:
        """A complete request (body read natively). Runs the handler's first step now and
        answers now if it finished, else when its Task does.

        Called in the HTTP batch right after a libuv iteration (the answer is written with the
        batch's others), or inside the uWS callback (corked by uWS)."""
        try:
            result, task = eager.start(self._handle(request))
        except Exception:
            log.exception("unhandled error in HTTP handler for %s %s", request.method, request.path)
            result, task = self.http_app.error_response(request, 500, "Internal Server Error"), None
        if task is None:
            _respond(request, result)
            return
        task.add_done_callback(functools.partial(self._finish, request))

    def _on_http_error(self, request: HTTPRequest, status: int, message: str) -> None:
        """The transport refuses the request (400 bad Content-Length, 413 body too large)."""
        resp = self.http_app.error_response(request, status, message)
        resp.close = True
        _respond(request, resp)

    def _finish(self, request: HTTPRequest, task: asyncio.Task[Response]) -> None:
        if request.aborted:
            if not task.cancelled() and task.exception() is None:
                resp = task.result()
                if isinstance(resp, StreamResponse) and resp.owner is not None:
                    resp.owner.closed()
            return
        try:
            resp = task.result()
        except Exception:
            log.exception("unhandled error in HTTP handler for %s %s", request.method, request.path)
            resp = self.http_app.error_response(request, 500, "Internal Server Error")
        try:
            _respond(request, resp)
        except Exception:
            log.exception("could not write the response to %s %s", request.method, request.path)
            _respond(request, self.http_app.error_response(request, 500, "Internal Server Error"))

    # -- WebSocket upgrade ------------------------------------------------------------------------
    def _on_upgrade(self, request: UpgradeRequest) -> None:
        try:
            result, task = eager.start(self.ws_app.upgrade(request))
        except Exception:
            log.exception("WebSocket upgrade handler failed")
            result, task = None, None
        if task is None:
            _complete_upgrade(request, result)
            return
        task.add_done_callback(functools.partial(self._finish_upgrade, request))

    def _finish_upgrade(self, request: UpgradeRequest, task: asyncio.Task[Any]) -> None:
        if request.aborted:
            if not task.cancelled():
                task.exception()
            return
        try:
            sock = task.result()
        except Exception:
            log.exception("WebSocket upgrade handler failed")
            sock = None
        # Outside a uWS callback nothing is corked in user space: accept() sets TCP_CORK around
        # the upgrade (native), so the 101 response and the welcome frame leave as one segment.
        _complete_upgrade(request, sock)
        self.bridge.kick()


def _complete_upgrade(request: UpgradeRequest, sock: Any) -> None:
    if sock is None:
        request.reject(403, FORBIDDEN, close=True)
    elif isinstance(sock, Response):
        request.reject(sock.status, sock.body, sock.content_type, sock.headers, sock.close)
    else:
        request.accept(sock)
