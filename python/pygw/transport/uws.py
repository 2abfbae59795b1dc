"""uWebSockets (socketify's native library) driven from asyncio.

This module talks to ``libsocketify`` through socketify's cffi handle directly instead of its
Python wrappers, which allocate several objects per callback. Two pieces:

* :class:`UVBridge` runs the libuv loop that uWS lives on *inside* asyncio. asyncio watches
  libuv's backend epoll fd and runs one non-blocking libuv iteration when it is readable, when a
  libuv timer is due (``uv_backend_timeout``), or when Python code wrote to sockets outside a uWS
  callback (:meth:`UVBridge.kick`). Nothing spins: an idle gateway sleeps in epoll.
  socketify's own ``Loop`` polls libuv from ``call_soon`` (a busy loop) — not used here.

* :class:`UWSServer` registers one catch-all HTTP handler and one WebSocket route and hands
  requests and socket events to the gateway through small protocols (:class:`HTTPApp`,
  :class:`WSApp`). Writes made inside uWS callbacks are corked by uWS; writes made from asyncio
  are corked explicitly (HTTP responses, direct WS sends) or left for the next libuv iteration
  (``publish``, which uWS then batches per socket — that is what makes fan-out fast).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from socketify.native import ffi, lib
from socketify.status_codes import status_codes as _KNOWN_STATUS

from pygw.transport import eager

log = logging.getLogger("pygw.transport")

SSL = 0
OPCODE_TEXT = 1
OPCODE_BINARY = 2
SEND_BACKPRESSURE = 0
SEND_SUCCESS = 1
SEND_DROPPED = 2

_NULL = ffi.NULL


def _load_libuv() -> ctypes.CDLL:
    # socketify's library links the system libuv (libuv.so.1); we bind the same instance to
    # reach the two functions that cffi definitions of socketify do not expose.
    name = ctypes.util.find_library("uv") or "libuv.so.1"
    uv = ctypes.CDLL(name)
    uv.uv_backend_fd.argtypes = [ctypes.c_void_p]
    uv.uv_backend_fd.restype = ctypes.c_int
    uv.uv_backend_timeout.argtypes = [ctypes.c_void_p]
    uv.uv_backend_timeout.restype = ctypes.c_int
    return uv


_libuv = _load_libuv()


class UVBridge:
    """Drive socketify's libuv loop from a running asyncio loop without busy-polling."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sloop = lib.socketify_create_loop()
        if lib.socketify_constructor_failed(self._sloop):
            raise RuntimeError("could not create the libuv loop for uWebSockets")
        native = lib.socketify_get_native_loop(self._sloop)
        # Make uWS use this libuv loop (thread-local; must precede uws_create_app).
        lib.uws_get_loop_with_native(native)
        self._uv_ptr = int(ffi.cast("uintptr_t", native))
        self._fd = _libuv.uv_backend_fd(self._uv_ptr)
        self._timer: asyncio.TimerHandle | None = None
        self._kicked = False
        self._closed = False
        self.in_uv = False
        """True while libuv runs: uWS callbacks are executing and their writes are corked."""
        self.iterations = 0
        loop.add_reader(self._fd, self.run)

    def run(self) -> None:
        """One non-blocking libuv iteration, then re-arm the timer for libuv's next deadline."""
        if self._closed:
            return
        self._kicked = False
        self.iterations += 1
        self.in_uv = True
        try:
            lib.socketify_loop_run(self._sloop, lib.SOCKETIFY_RUN_NOWAIT)
        finally:
            self.in_uv = False
        timeout = _libuv.uv_backend_timeout(self._uv_ptr)
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
            lib.socketify_loop_run(self._sloop, lib.SOCKETIFY_RUN_NOWAIT)
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[str, str]] | None = None
    close: bool = False


class HTTPRequest:
    """What the gateway sees of an HTTP request; everything is copied out of uWS up front."""

    __slots__ = (
        "body",
        "client_ip",
        "headers",
        "method",
        "params",
        "path",
        "query_string",
        "state",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        client_ip: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.client_ip = client_ip
        self.body = b""
        self.params: dict[str, str] = {}
        self.state: dict[str, Any] = {}


class HTTPApp(Protocol):
    max_body_bytes: int
    header_names: tuple[str, ...]
    """Lower-case header names copied into every request (uWS headers die with the callback)."""

    def wants_all_headers(self, path: str) -> bool: ...

    def handle(self, request: HTTPRequest) -> Coroutine[Any, Any, Response]: ...

    def error_response(self, request: HTTPRequest, status: int, message: str) -> Response: ...


# ---------------------------------------------------------------------------------------------
# WebSocket


class UpgradeRequest:
    """What the gateway sees of a WebSocket upgrade request (copied out of uWS)."""

    __slots__ = (
        "client_ip",
        "extensions",
        "headers",
        "key",
        "path",
        "protocol",
        "query",
    )

    def __init__(
        self,
        *,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        key: bytes,
        protocol: bytes,
        extensions: bytes,
        client_ip: str,
    ) -> None:
        self.path = path
        self.query = query
        self.headers = headers
        self.key = key
        self.protocol = protocol
        self.extensions = extensions
        self.client_ip = client_ip


class Socket(Protocol):
    """The per-connection object the gateway attaches to a WebSocket at upgrade time."""

    ws: Any
    """The native ``uws_websocket_t*`` while open, else None (set by the transport)."""
    handle: Any
    """The cffi handle that keeps this object reachable from uWS (set by the transport)."""


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


@dataclass(slots=True)
class WSOptions:
    path: str = "/ws/connect"
    max_payload_length: int = 64 * 1024
    idle_timeout: int = 120
    """uWS's own receive-idle timeout in seconds (a safety net; pygw runs its own keep-alive)."""
    max_backpressure: int = 1 << 20
    close_on_backpressure_limit: bool = True
    send_pings_automatically: bool = False


# A single server per process is the norm; callbacks find it through this module slot so the
# hot paths avoid a handle lookup per call.
_server: UWSServer | None = None
_out_ptr = ffi.new("const char **")
_pending_response: Response | None = None


def _get_header(req: Any, name: bytes) -> str | None:
    n = lib.uws_req_get_header(req, name, len(name), _out_ptr)
    if n == 0:
        return None
    return ffi.unpack(_out_ptr[0], n).decode("latin-1")


def _all_headers(req: Any, res: Any) -> dict[str, str]:
    data = lib.socketify_asgi_request(SSL, req, res)
    headers: dict[str, str] = {}
    node = data.header_list
    first = node
    while node != _NULL:
        name = ffi.unpack(node.name, node.name_size).decode("latin-1")
        value = ffi.unpack(node.value, node.value_size).decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        node = ffi.cast("socketify_header *", node.next)
    lib.socketify_destroy_headers(first)
    return headers


def _remote_address(res: Any) -> str:
    n = lib.uws_res_get_remote_address_as_text(SSL, res, _out_ptr)
    return ffi.unpack(_out_ptr[0], n).decode() if n else ""


def _ws_remote_address(ws: Any) -> str:
    n = lib.uws_ws_get_remote_address_as_text(SSL, ws, _out_ptr)
    return ffi.unpack(_out_ptr[0], n).decode() if n else ""


def _write_headers_and_end(res: Any, resp: Response) -> None:
    if resp.status not in _KNOWN_STATUS:
        # socketify would write "200 OK" for a code it has no phrase for (e.g. a proxied 599).
        line = b"%d Unknown" % resp.status
        lib.uws_res_write_status(SSL, res, line, len(line))
    elif resp.headers:
        # uWS writes "200 OK" if a header comes before the status; the later call is a no-op.
        lib.socketify_res_write_int_status(SSL, res, resp.status)
    if resp.headers:
        for name, value in resp.headers:
            k = name.encode("latin-1")
            v = value.encode("latin-1")
            lib.uws_res_write_header(SSL, res, k, len(k), v, len(v))
    lib.socketify_res_send_int_code(
        SSL,
        res,
        resp.body,
        len(resp.body),
        resp.status,
        resp.content_type,
        len(resp.content_type),
        resp.close,
    )


def _write_response(res: Any, resp: Response) -> None:
    """Write a whole response, corked (uWS just runs it when the socket is already corked)."""
    global _pending_response
    if not resp.headers and resp.status in _KNOWN_STATUS:
        lib.socketify_res_cork_send_int_code(
            SSL,
            res,
            resp.body,
            len(resp.body),
            resp.status,
            resp.content_type,
            len(resp.content_type),
            resp.close,
        )
        return
    _pending_response = resp
    try:
        lib.uws_res_cork(SSL, res, _cork_write, _NULL)
    finally:
        _pending_response = None


def _send_plain_error(res: Any, status: int, error: bytes) -> None:
    """Last-resort answer when the gateway's own error handling is not reachable."""
    body = b'{"error":"%s","detail":null,"status_code":%d}' % (error, status)
    ctype = b"application/json"
    lib.socketify_res_send_int_code(SSL, res, body, len(body), status, ctype, len(ctype), True)


@ffi.callback("void(uws_res_t*, void*)")
def _cork_write(res: Any, _ud: Any) -> None:
    resp = _pending_response
    if resp is not None:
        _write_headers_and_end(res, resp)


class _Pending:
    """An HTTP exchange that outlives its uWS callback: reading a body, or an awaiting handler."""

    __slots__ = ("aborted", "body", "done", "handle", "request", "res", "size")

    def __init__(self, res: Any, request: HTTPRequest) -> None:
        self.res = res
        self.request = request
        self.aborted = False
        self.done = False
        self.body: list[bytes] = []
        self.size = 0
        self.handle = ffi.new_handle(self)


@ffi.callback("void(uws_res_t*, void*)")
def _on_aborted(_res: Any, ud: Any) -> None:
    pending: _Pending = ffi.from_handle(ud)
    pending.aborted = True
    if _server is not None:
        _server._release(pending)


@ffi.callback("void(uws_res_t*, const char*, size_t, bool, void*)")
def _on_data(_res: Any, chunk: Any, length: int, is_end: bool, ud: Any) -> None:
    pending: _Pending = ffi.from_handle(ud)
    server = _server
    if server is None or pending.done:
        return
    if length:
        pending.body.append(ffi.unpack(chunk, length))
        pending.size += length
        if pending.size > server.http_app.max_body_bytes:
            pending.done = True
            resp = server.http_app.error_response(pending.request, 413, "Request body too large")
            resp.close = True
            _write_response(pending.res, resp)
            server._release(pending)
            return
    if is_end:
        pending.request.body = b"".join(pending.body)
        pending.body = []
        server._dispatch(pending.res, pending.request, pending)


@ffi.callback("void(uws_res_t*, uws_req_t*, void*)")
def _on_http(res: Any, req: Any, _ud: Any) -> None:
    server = _server
    if server is None:
        return
    try:
        server._on_request(res, req)
    except Exception:
        log.exception("HTTP request handling failed before dispatch")
        _send_plain_error(res, 500, b"Internal Server Error")


# --- WebSocket callbacks ------------------------------------------------------------------------


class _PendingUpgrade:
    __slots__ = ("aborted", "context", "handle", "request", "res")

    def __init__(self, res: Any, context: Any, request: UpgradeRequest) -> None:
        self.res = res
        self.context = context
        self.request = request
        self.aborted = False
        self.handle = ffi.new_handle(self)


@ffi.callback("void(uws_res_t*, void*)")
def _on_upgrade_aborted(_res: Any, ud: Any) -> None:
    pending: _PendingUpgrade = ffi.from_handle(ud)
    pending.aborted = True


@ffi.callback("void(uws_res_t*, uws_req_t*, uws_socket_context_t*, void*)")
def _on_upgrade(res: Any, req: Any, context: Any, _ud: Any) -> None:
    server = _server
    if server is None:
        return
    try:
        server._on_upgrade(res, req, context)
    except Exception:
        log.exception("WebSocket upgrade failed")
        _send_plain_error(res, 500, b"Internal Server Error")


def _socket_of(ws: Any) -> Any:
    ud = lib.uws_ws_get_user_data(SSL, ws)
    return None if ud == _NULL else ffi.from_handle(ud)


@ffi.callback("void(uws_websocket_t*, void*)")
def _on_ws_open(ws: Any, _ud: Any) -> None:
    sock = _socket_of(ws)
    if sock is None or _server is None:
        return
    sock.ws = ws
    try:
        _server.ws_app.on_open(sock)
    except Exception:
        log.exception("WebSocket open handler failed")


@ffi.callback("void(uws_websocket_t*, const char*, size_t, uws_opcode_t, void*)")
def _on_ws_message(ws: Any, message: Any, length: int, opcode: int, _ud: Any) -> None:
    sock = _socket_of(ws)
    if sock is None or _server is None:
        return
    try:
        _server.ws_app.on_message(sock, ffi.unpack(message, length), opcode)
    except Exception:
        log.exception("WebSocket message handler failed")


@ffi.callback("void(uws_websocket_t*, const char*, size_t, void*)")
def _on_ws_pong(ws: Any, _message: Any, _length: int, _ud: Any) -> None:
    sock = _socket_of(ws)
    if sock is not None and _server is not None:
        _server.ws_app.on_pong(sock)


@ffi.callback("void(uws_websocket_t*, void*)")
def _on_ws_drain(ws: Any, _ud: Any) -> None:
    sock = _socket_of(ws)
    if sock is not None and _server is not None:
        _server.ws_app.on_drain(sock)


@ffi.callback("void(uws_websocket_t*, int, const char*, size_t, void*)")
def _on_ws_close(ws: Any, code: int, message: Any, length: int, _ud: Any) -> None:
    sock = _socket_of(ws)
    if sock is None:
        return
    sock.ws = None
    reason = ffi.unpack(message, length) if length and message != _NULL else b""
    try:
        if _server is not None:
            _server.ws_app.on_close(sock, code, reason)
    except Exception:
        log.exception("WebSocket close handler failed")
    finally:
        sock.handle = None  # uWS no longer references it


# --- operations on open sockets (used by the gateway's connection objects) ----------------------


def ws_send(ws: Any, data: bytes, opcode: int = OPCODE_TEXT) -> int:
    """Send one frame. Inside uWS callbacks the write is corked by uWS; from asyncio it is corked
    here so it leaves at once. Returns SEND_SUCCESS, SEND_BACKPRESSURE or SEND_DROPPED."""
    server = _server
    if server is not None and server.bridge.in_uv:
        return int(lib.uws_ws_send(SSL, ws, data, len(data), opcode))
    lib.socketify_ws_cork_send(SSL, ws, data, len(data), opcode)
    return SEND_SUCCESS


def ws_end(ws: Any, code: int, reason: bytes = b"") -> None:
    """Close gracefully with a close frame (code, reason)."""
    lib.uws_ws_end(SSL, ws, code, reason, len(reason))
    server = _server
    if server is not None and not server.bridge.in_uv:
        server.bridge.kick()


def ws_close_now(ws: Any) -> None:
    """Terminate the TCP connection without a close handshake."""
    lib.uws_ws_close(SSL, ws)


def ws_subscribe(ws: Any, topic: bytes) -> bool:
    return bool(lib.uws_ws_subscribe(SSL, ws, topic, len(topic)))


def ws_unsubscribe(ws: Any, topic: bytes) -> bool:
    return bool(lib.uws_ws_unsubscribe(SSL, ws, topic, len(topic)))


def ws_buffered_amount(ws: Any) -> int:
    return int(lib.uws_ws_get_buffered_amount(SSL, ws))


def ws_remote_address(ws: Any) -> str:
    return _ws_remote_address(ws)


# ---------------------------------------------------------------------------------------------


class UWSServer:
    """One uWS app: a catch-all HTTP handler plus one WebSocket route."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        http_app: HTTPApp,
        ws_app: WSApp,
        ws_options: WSOptions | None = None,
    ) -> None:
        global _server
        if _server is not None:
            raise RuntimeError("one UWSServer per process")
        self.loop = loop
        self.bridge = UVBridge(loop)
        self.http_app = http_app
        self.ws_app = ws_app
        self._inflight: set[_Pending] = set()
        self._http_header_names = tuple((name, name.encode()) for name in http_app.header_names)
        options = ffi.new("struct us_socket_context_options_t *")
        self._app = lib.uws_create_app(SSL, options[0])
        if lib.uws_constructor_failed(SSL, self._app):
            raise RuntimeError("could not create the uWebSockets app")
        self._listen_socket: Any = None
        self._listen_config: Any = None
        self.port = 0
        _server = self
        self._register_ws(ws_app, ws_options or WSOptions())
        lib.uws_app_any(SSL, self._app, b"/*", _on_http, _NULL)

    def _register_ws(self, ws_app: WSApp, opts: WSOptions) -> None:
        self._ws_query = tuple((n, n.encode()) for n in ws_app.query_names)
        self._ws_headers = tuple((n, n.encode()) for n in ws_app.header_names)
        behavior = ffi.new("uws_socket_behavior_t *")
        b = behavior[0]
        b.compression = 0
        b.maxPayloadLength = opts.max_payload_length
        b.idleTimeout = opts.idle_timeout
        b.maxBackpressure = opts.max_backpressure
        b.closeOnBackpressureLimit = opts.close_on_backpressure_limit
        b.resetIdleTimeoutOnSend = False
        b.sendPingsAutomatically = opts.send_pings_automatically
        b.maxLifetime = 0
        b.upgrade = _on_upgrade
        b.open = _on_ws_open
        b.message = _on_ws_message
        b.drain = _on_ws_drain
        b.ping = _NULL
        b.pong = _on_ws_pong
        b.close = _on_ws_close
        b.subscription = _NULL
        lib.uws_ws(SSL, self._app, opts.path.encode(), b, _NULL)

    # -- lifecycle ------------------------------------------------------------------------------
    def listen(self, host: str, port: int) -> int:
        """Bind (SO_REUSEPORT, so several worker processes can share the port); returns the port."""
        result: dict[str, Any] = {}

        @ffi.callback("void(struct us_listen_socket_t*, uws_app_listen_config_t, void*)")
        def on_listen(listen_socket: Any, _config: Any, _ud: Any) -> None:
            result["socket"] = listen_socket

        config = ffi.new("uws_app_listen_config_t *")
        host_c = ffi.new("char[]", host.encode())
        config.port = port
        config.host = host_c
        config.options = 0
        self._listen_config = (config, host_c, on_listen)
        lib.uws_app_listen_with_config(SSL, self._app, config[0], on_listen, _NULL)
        sock = result.get("socket")
        if sock is None or sock == _NULL:
            raise OSError(f"could not listen on {host}:{port}")
        self._listen_socket = sock
        self.port = int(lib.us_socket_local_port(SSL, sock))
        self.bridge.run()
        return self.port

    def close_listener(self) -> None:
        """Stop accepting connections; open sockets stay until closed."""
        if self._listen_socket is not None:
            lib.us_listen_socket_close(SSL, self._listen_socket)
            self._listen_socket = None
            self.bridge.kick()

    def close(self) -> None:
        global _server
        self.close_listener()
        self.bridge.close()
        if _server is self:
            _server = None

    # -- publish --------------------------------------------------------------------------------
    def publish(self, topic: bytes, message: bytes, opcode: int = OPCODE_TEXT) -> bool:
        """Deliver ``message`` to every local subscriber of ``topic``.

        Called from asyncio, uWS queues it per subscriber and writes each subscriber's queue in
        one go on the next libuv iteration — which we ask for."""
        ok = bool(
            lib.uws_publish(SSL, self._app, topic, len(topic), message, len(message), opcode, False)
        )
        if not self.bridge.in_uv:
            self.bridge.kick()
        return ok

    def num_subscribers(self, topic: bytes) -> int:
        return int(lib.uws_num_subscribers(SSL, self._app, topic, len(topic)))

    # -- HTTP -----------------------------------------------------------------------------------
    def _on_request(self, res: Any, req: Any) -> None:
        app = self.http_app
        n = lib.uws_req_get_method(req, _out_ptr)
        method = ffi.unpack(_out_ptr[0], n).decode("latin-1").upper()
        n = lib.uws_req_get_full_url(req, _out_ptr)
        path, _, query = ffi.unpack(_out_ptr[0], n).decode("utf-8", "replace").partition("?")
        if app.wants_all_headers(path):
            headers = _all_headers(req, res)
        else:
            headers = {}
            for name, raw in self._http_header_names:
                n = lib.uws_req_get_header(req, raw, len(raw), _out_ptr)
                if n:
                    headers[name] = ffi.unpack(_out_ptr[0], n).decode("latin-1")
        request = HTTPRequest(method, path, query, headers, _remote_address(res))

        length = headers.get("content-length")
        if length is None and "transfer-encoding" not in headers:
            self._dispatch(res, request, None)
            return
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                resp = app.error_response(request, 400, "Invalid Content-Length")
                resp.close = True
                _write_response(res, resp)
                return
            if declared > app.max_body_bytes:
                resp = app.error_response(request, 413, "Request body too large")
                resp.close = True
                _write_response(res, resp)
                return
            if declared == 0:
                self._dispatch(res, request, None)
                return
        pending = _Pending(res, request)
        self._inflight.add(pending)
        lib.uws_res_on_aborted(SSL, res, _on_aborted, pending.handle)
        lib.uws_res_on_data(SSL, res, _on_data, pending.handle)

    def _dispatch(self, res: Any, request: HTTPRequest, pending: _Pending | None) -> None:
        """Run the handler's first step now; answer now if it finished, else when its Task does.

        Called inside a uWS callback, so a synchronous answer is corked by uWS."""
        try:
            result, task = eager.start(self.http_app.handle(request))
        except Exception:
            log.exception("unhandled error in HTTP handler for %s %s", request.method, request.path)
            result, task = self.http_app.error_response(request, 500, "Internal Server Error"), None
        if task is None:
            _write_response(res, result)
            if pending is not None:
                self._release(pending)
            return
        if pending is None:
            pending = _Pending(res, request)
            self._inflight.add(pending)
            lib.uws_res_on_aborted(SSL, res, _on_aborted, pending.handle)
        task.add_done_callback(functools.partial(self._finish, pending))

    def _finish(self, pending: _Pending, task: asyncio.Task[Response]) -> None:
        if pending.aborted or pending.done:
            if not task.cancelled():
                task.exception()  # mark retrieved
            return
        try:
            resp = task.result()
        except Exception:
            log.exception(
                "unhandled error in HTTP handler for %s %s",
                pending.request.method,
                pending.request.path,
            )
            resp = self.http_app.error_response(pending.request, 500, "Internal Server Error")
        _write_response(pending.res, resp)
        self._release(pending)

    def _release(self, pending: _Pending) -> None:
        pending.done = True
        self._inflight.discard(pending)

    # -- WebSocket upgrade ------------------------------------------------------------------------
    def _on_upgrade(self, res: Any, req: Any, context: Any) -> None:
        n = lib.uws_req_get_url(req, _out_ptr)
        path = ffi.unpack(_out_ptr[0], n).decode("utf-8", "replace")
        query = {}
        for name, raw in self._ws_query:
            n = lib.uws_req_get_query(req, raw, len(raw), _out_ptr)
            if n:
                query[name] = ffi.unpack(_out_ptr[0], n).decode("utf-8", "replace")
        headers = {}
        for name, raw in self._ws_headers:
            n = lib.uws_req_get_header(req, raw, len(raw), _out_ptr)
            if n:
                headers[name] = ffi.unpack(_out_ptr[0], n).decode("latin-1")
        key = (_get_header(req, b"sec-websocket-key") or "").encode("latin-1")
        protocol = (_get_header(req, b"sec-websocket-protocol") or "").encode("latin-1")
        extensions = (_get_header(req, b"sec-websocket-extensions") or "").encode("latin-1")
        request = UpgradeRequest(
            path=path,
            query=query,
            headers=headers,
            key=key,
            protocol=protocol,
            extensions=extensions,
            client_ip=_remote_address(res),
        )
        try:
            result, task = eager.start(self.ws_app.upgrade(request))
        except Exception:
            log.exception("WebSocket upgrade handler failed")
            result, task = None, None
        if task is None:
            self._complete_upgrade(res, context, request, result)
            return
        pending = _PendingUpgrade(res, context, request)
        lib.uws_res_on_aborted(SSL, res, _on_upgrade_aborted, pending.handle)
        task.add_done_callback(functools.partial(self._finish_upgrade, pending))

    def _finish_upgrade(self, pending: _PendingUpgrade, task: asyncio.Task[Any]) -> None:
        if pending.aborted:
            if not task.cancelled():
                task.exception()
            return
        try:
            sock = task.result()
        except Exception:
            log.exception("WebSocket upgrade handler failed")
            sock = None
        # Not inside a cork: uWS corks the upgrade itself and swaps the socket for a WebSocket,
        # which a cork around it would outlive. Writes made by the open handler leave on the
        # next libuv iteration.
        self._complete_upgrade(pending.res, pending.context, pending.request, sock)
        pending.handle = None
        self.bridge.kick()

    def _complete_upgrade(self, res: Any, context: Any, request: UpgradeRequest, sock: Any) -> None:
        if sock is None:
            _send_plain_error(res, 403, b"Forbidden")
            return
        if isinstance(sock, Response):
            _write_response(res, sock)
            return
        sock.handle = ffi.new_handle(sock)
        lib.uws_res_upgrade(
            SSL,
            res,
            sock.handle,
            request.key,
            len(request.key),
            request.protocol,
            len(request.protocol),
            request.extensions,
            len(request.extensions),
            context,
        )
