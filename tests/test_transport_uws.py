"""The native uWS transport (``pygw.transport.uws`` over ``pygw._native``), in process.

Each test runs a :class:`UWSServer` with small fake apps on an asyncio loop in its own thread
(uWS keeps one loop per thread) and talks to it with blocking clients.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from pygw.transport import uws
from pygw.transport.types import HTTPRequest, Response, UpgradeRequest
from pygw.transport.uws import UWSServer


class HTTP:
    max_body_bytes = 64
    header_names = ("content-length", "transfer-encoding", "x-one")
    all_header_prefixes = ("/all/",)

    def __init__(self) -> None:
        self.seen: list[HTTPRequest] = []
        self.release: asyncio.Event | None = None
        self.late: list[bool] = []

    async def handle(self, request: HTTPRequest) -> Response:
        self.seen.append(request)
        path = request.path
        if path == "/status":
            return Response(599, b"odd", b"", headers=[("X-Extra", "caf\u00e9")])
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/slow":
            await asyncio.sleep(0.05)
        if path == "/hang":
            self.release = asyncio.Event()
            await self.release.wait()
        request.state["seen"] = True
        return Response(
            200,
            orjson.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "headers": request.headers,
                    "client_ip": request.client_ip,
                    "body": request.body.decode(),
                    "params": request.params,
                }
            ),
        )

    def error_response(self, request: HTTPRequest, status: int, message: str) -> Response:
        return Response(status, orjson.dumps({"error": message, "path": request.path}))


class Sock:
    __slots__ = ("__weakref__", "name", "ws")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ws: Any = None


class WS:
    query_names = ("token", "x")
    header_names = ("origin",)

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.upgrades: list[UpgradeRequest] = []
        self.sockets: list[weakref.ref[Sock]] = []

    async def upgrade(self, request: UpgradeRequest) -> Sock | Response | None:
        self.upgrades.append(request)
        token = request.query.get("token")
        if token == "deny":
            return None
        if token == "busy":
            return Response(429, b'{"error":"busy"}', headers=[("Retry-After", "3")])
        if token == "later":
            await asyncio.sleep(0.02)
        sock = Sock(token or "")
        self.sockets.append(weakref.ref(sock))
        return sock

    def on_open(self, sock: Sock) -> None:
        self.events.append(("open", type(sock.ws)))
        uws.ws_subscribe(sock.ws, b"topic")
        uws.ws_send(sock.ws, b"hello " + sock.name.encode())

    def on_message(self, sock: Sock, data: bytes, opcode: int) -> None:
        self.events.append(("message", data, opcode))
        if data == b"bye":
            uws.ws_end(sock.ws, 4000, b"server bye")
        else:
            uws.ws_send(sock.ws, data, opcode)

    def on_close(self, sock: Sock, code: int, reason: bytes) -> None:
        self.events.append(("close", code, reason, sock.ws))

    def on_pong(self, sock: Sock) -> None:
        self.events.append(("pong",))

    def on_drain(self, sock: Sock) -> None:
        return None


class ServerThread:
    """A UWSServer on its own asyncio loop and thread."""

    def __init__(self, http: HTTP, ws: WS) -> None:
        self.http, self.ws = http, ws
        self.loop = asyncio.new_event_loop()
        self.server: UWSServer | None = None
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = UWSServer(self.loop, self.http, self.ws)
            self.port = self.server.listen("127.0.0.1", 0)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(5)
        return box[0]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(HTTP(), WS()) as s:
        yield s


def exchange(
    port: int, raw: bytes, *, expect_close: bool = False
) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes, read one response: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk
            body += chunk
        if expect_close:
            s.settimeout(2)
            assert s.recv(1) == b"", "the server should close the connection"
        return lines[0], headers, body


def get(port: int, target: str, *extra: str) -> tuple[str, dict[str, str], bytes]:
    head = "".join(f"{h}\r\n" for h in extra)
    return exchange(port, f"GET {target} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode("latin-1"))


def test_request_is_copied_out_and_answered(server: ServerThread) -> None:
    status, headers, body = get(server.port, "/echo?a=1&b=%20", "X-One: 1", "X-Two: 2")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {
        "method": "GET",
        "path": "/echo",
        "query": "a=1&b=%20",
        "headers": {"x-one": "1"},
        "client_ip": "127.0.0.1",
        "body": "",
        "params": {},
    }
    req = server.http.seen[-1]
    assert req.responded and not req.aborted
    assert req.state == {"seen": True}
    assert server.call(lambda: server.server.app.pending_requests) == 0  # type: ignore[union-attr]


def test_post_body_is_read_natively(server: ServerThread) -> None:
    raw = b'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{"a":1}'
    status, _, body = exchange(server.port, raw)
    assert status == "HTTP/1.1 200 OK"
    doc = orjson.loads(body)
    assert doc["method"] == "POST"
    assert doc["body"] == '{"a":1}'
    assert doc["headers"]["content-length"] == "7"
    chunked = (
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    status, _, body = exchange(server.port, chunked)
    assert status == "HTTP/1.1 200 OK"
    assert orjson.loads(body)["body"] == "abcde"


def test_every_header_under_configured_prefixes(server: ServerThread) -> None:
    # Latin-1 in the middle (uWS trims trailing bytes >= 0x80 as if they were spaces).
    _, _, body = get(server.port, "/all/x", "X-Dup: 1", "X-Dup: 2", "X-Other: caf\xe9 au lait")
    headers = orjson.loads(body)["headers"]
    assert headers["x-dup"] == "1, 2"
    assert headers["x-other"] == "caf\xe9 au lait"
    assert headers["host"] == "x"


def test_unknown_status_extra_headers_and_no_content_type(server: ServerThread) -> None:
    status, headers, body = get(server.port, "/status")
    assert status == "HTTP/1.1 599 Unknown"
    assert headers["x-extra"] == "caf\xe9"
    assert "content-type" not in headers
    assert body == b"odd"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n" + b"x" * 65, 413),
        (
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"40\r\n"
            + b"x" * 64
            + b"\r\n1\r\nx\r\n0\r\n\r\n",
            413,
        ),
        (b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n" + b"x" * 10, None),
    ],
)
def test_body_limits(server: ServerThread, raw: bytes, status: int | None) -> None:
    line, headers, body = exchange(server.port, raw, expect_close=status is not None)
    if status is None:  # uWS or the transport: either way a 400 or a read body
        assert line.split()[1] in {"200", "400"}
        return
    assert line.startswith(f"HTTP/1.1 {status} ")
    assert headers["connection"] == "close"
    assert orjson.loads(body) == {"error": "Request body too large", "path": "/p"}


def test_answer_from_a_task_and_handler_errors(server: ServerThread) -> None:
    status, _, body = get(server.port, "/slow")
    assert status == "HTTP/1.1 200 OK"
    assert orjson.loads(body)["path"] == "/slow"
    status, _, body = get(server.port, "/boom")
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert orjson.loads(body)["error"] == "Internal Server Error"


def test_abort_makes_respond_a_no_op(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while server.http.release is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.call(lambda: server.server.app.pending_requests) == 1  # type: ignore[union-attr]
    req = server.http.seen[-1]
    deadline = time.monotonic() + 5
    while not req.aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert req.aborted
    assert server.call(lambda: server.server.app.pending_requests) == 0  # type: ignore[union-attr]
    release = server.http.release
    assert release is not None
    server.call(release.set)
    time.sleep(0.05)
    assert server.call(lambda: req.respond(200, b"late")) is False
    assert not req.responded


def test_client_close_request_closes_after_the_answer(server: ServerThread) -> None:
    raw = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, _, _ = exchange(server.port, raw, expect_close=True)
    assert status == "HTTP/1.1 200 OK"


def test_keep_alive_requests_in_sequence(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for i in range(3):
            s.sendall(f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while b'"params"' not in data:
                data += s.recv(65536)
            assert f'"query":"i={i}"'.encode() in data


def test_detached_requests() -> None:
    req = HTTPRequest("GET", "/p", "a=1", {"h": "v"}, "10.0.0.1")
    assert (req.method, req.path, req.query_string, req.client_ip) == (
        "GET",
        "/p",
        "a=1",
        "10.0.0.1",
    )
    assert req.headers == {"h": "v"}
    assert req.body == b"" and req.params == {} and req.state == {}
    req.body = b"xyz"
    req.params = {"k": "v"}
    req.state["x"] = 1
    assert (req.body, req.params, req.state) == (b"xyz", {"k": "v"}, {"x": 1})
    assert req.respond(200, b"{}") is False
    assert not req.aborted and not req.responded
    up = UpgradeRequest(
        path="/ws",
        query={"token": "t"},
        headers={},
        key=b"k",
        protocol=b"",
        extensions=b"",
        client_ip="1.2.3.4",
    )
    assert up.query == {"token": "t"} and up.key == b"k"
    assert up.accept(object()) is False
    assert up.reject(403, b"") is False


def ws_url(port: int, query: str) -> str:
    return f"ws://127.0.0.1:{port}/ws/connect?{query}"


def test_websocket_lifecycle(server: ServerThread) -> None:
    with connect(ws_url(server.port, "token=ok&x=a%20b+c"), origin="http://o.example") as ws:  # type: ignore[arg-type]
        assert ws.recv() == "hello ok"
        ws.send("ping")
        assert ws.recv() == "ping"
        ws.send(b"\x00bin")
        assert ws.recv() == b"\x00bin"
        server.call(lambda: server.server.publish(b"topic", b"published"))  # type: ignore[union-attr]
        assert ws.recv() == "published"
        assert server.call(lambda: server.server.num_subscribers(b"topic")) == 1  # type: ignore[union-attr]
        ws.close(4001, "client bye")
    up = server.ws.upgrades[-1]
    assert up.path == "/ws/connect"
    assert up.query == {"token": "ok", "x": "a b c"}
    assert up.headers == {"origin": "http://o.example"}
    assert len(up.key) == 24 and up.client_ip == "127.0.0.1"
    deadline = time.monotonic() + 5
    while server.ws.events[-1][0] != "close" and time.monotonic() < deadline:
        time.sleep(0.01)
    events = server.ws.events
    assert events[0] == ("open", int)
    assert ("message", b"ping", uws.OPCODE_TEXT) in events
    assert ("message", b"\x00bin", uws.OPCODE_BINARY) in events
    assert events[-1] == ("close", 4001, b"client bye", None)
    # uWS held the only reference; it is released after the close handler.
    server.call(gc.collect)
    assert server.ws.sockets[-1]() is None


def test_websocket_server_close_and_async_accept(server: ServerThread) -> None:
    with connect(ws_url(server.port, "token=later")) as ws:
        assert ws.recv() == "hello later"
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "server bye")
    assert server.ws.events[-1] == ("close", 4000, b"server bye", None)


def test_websocket_refusals(server: ServerThread) -> None:
    with pytest.raises(InvalidStatus) as denied:
        connect(ws_url(server.port, "token=deny"))
    assert denied.value.response.status_code == 403
    assert b'"status_code":403' in denied.value.response.body
    with pytest.raises(InvalidStatus) as busy:
        connect(ws_url(server.port, "token=busy"))
    assert busy.value.response.status_code == 429
    assert busy.value.response.headers["Retry-After"] == "3"
    assert server.call(lambda: server.server.app.pending_upgrades) == 0  # type: ignore[union-attr]


def test_ws_functions_refuse_a_null_socket() -> None:
    with pytest.raises(ValueError):
        uws.ws_send(0, b"x")


# --- request framing (security review item 16) --------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def until_closed(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes and read until the server closes; fails if it keeps the connection
    open (a hang) for ``timeout`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def responses(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Every response in ``data``: (status line, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        out.append((lines[0], headers, rest[:length]))
        data = rest[length:]
    return out


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: 0\r\n\r\n"
            % len(SMUGGLED)
            + SMUGGLED,
            "Conflicting Content-Length headers",
            id="two-lengths-first-wins-upstream",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
            % len(SMUGGLED)
            + SMUGGLED,
            "Conflicting Content-Length headers",
            id="two-lengths-last-wins-upstream",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:\r\nContent-Length: %d\r\n\r\n"
            % len(SMUGGLED)
            + SMUGGLED,
            "Invalid Content-Length",
            id="empty-length-then-length",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "Unsupported Transfer-Encoding",
            id="coding-list",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
            "Unsupported Transfer-Encoding",
            id="two-transfer-encodings",
        ),
        pytest.param(b"GET /echo HTTP/1.1\r\n\r\n", "Missing Host header", id="no-headers-at-all"),
        pytest.param(
            b"GET /echo HTTP/1.1\r\nX-One: 1\r\n\r\n", "Missing Host header", id="no-host"
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
            "Missing Host header",
            id="no-host-with-body",
        ),
    ],
)
def test_ambiguous_framing_and_missing_host_get_400_and_close(
    server: ServerThread, raw: bytes, message: str
) -> None:
    """Framing a proxy may read differently (duplicate or empty Content-Length, a coding list
    or repeated Transfer-Encoding) and HTTP/1.1 without Host: one 400 with the app's error
    body, then the connection is closed; nothing reaches the handler, the smuggled request
    least of all."""
    data = until_closed(server.port, raw)
    (answer,) = responses(data)
    line, headers, body = answer
    assert line == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close"
    assert orjson.loads(body) == {"error": message, "path": "/echo"}
    assert server.http.seen == []


def test_length_with_transfer_encoding_is_refused_by_uws(server: ServerThread) -> None:
    """uWS refuses Content-Length with Transfer-Encoding itself, before the request reaches
    the binding (its own 400 page, not the app's envelope), and closes."""
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    )
    (answer,) = responses(until_closed(server.port, raw))
    assert answer[0] == "HTTP/1.1 400 Bad Request"
    assert server.http.seen == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET /echo HTTP/1.0\r\n\r\n", id="no-headers"),
        pytest.param(b"GET /echo HTTP/1.0\r\nX-One: 1\r\n\r\n", id="other-headers"),
    ],
)
def test_http10_without_host_is_answered(server: ServerThread, raw: bytes) -> None:
    (answer,) = responses(until_closed(server.port, raw))
    assert answer[0] == "HTTP/1.1 200 OK"
    assert orjson.loads(answer[2])["path"] == "/echo"
    assert "host" not in server.http.seen[-1].headers


def test_identical_duplicate_lengths_are_one_length(server: ServerThread) -> None:
    """RFC 9112 6.3 lets a recipient take repeated identical Content-Length values as one:
    no proxy can frame them differently."""
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    status, _, body = exchange(server.port, raw)
    assert status == "HTTP/1.1 200 OK"
    assert orjson.loads(body)["body"] == "{}"


def test_request_lines_in_a_body_are_body(server: ServerThread) -> None:
    """A body chunk that looks like a Host-less request (sent after the headers, in its own
    segment) is body: the binding only looks for missing Host at request starts."""
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    tail = b"GET /x HTTP/1.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head % len(tail))
        deadline = time.monotonic() + 5
        while not server.call(lambda: server.server.app.pending_requests):  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        s.sendall(tail)
        data = b""
        while b'"params"' not in data:
            data += s.recv(65536)
    assert orjson.loads(data.partition(b"\r\n\r\n")[2])["body"] == tail.decode()


def test_upgrade_without_host_is_refused(server: ServerThread) -> None:
    raw = (
        b"GET /ws/connect?token=ok HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    (answer,) = responses(until_closed(server.port, raw))
    assert answer[0] == "HTTP/1.1 400 Bad Request"
    assert orjson.loads(answer[2]) == {"error": "Missing Host header", "path": "/ws/connect"}
    assert server.ws.upgrades == []


@pytest.mark.parametrize("name", ["X_Forwarded_For", "x.y", "a+b", "K%1Z.q"])
def test_header_names_uws_cannot_parse_get_400_not_a_hang(server: ServerThread, name: str) -> None:
    """uWS takes header names of letters, digits and '-' only: with any other token character
    it waited for more data until its idle timeout. Found by the schema fuzzer."""
    raw = f"POST /echo HTTP/1.1\r\nHost: x\r\n{name}: v\r\nContent-Length: 2\r\n\r\n{{}}"
    (answer,) = responses(until_closed(server.port, raw.encode()))
    assert answer[0] == "HTTP/1.1 400 Bad Request"
    assert orjson.loads(answer[2]) == {"error": "Unsupported header name", "path": "/echo"}
    assert server.http.seen == []
