"""A tiny HTTP/1.1 backend on loopback for proxy tests (``http.server`` in a thread).

Every request is answered with JSON describing it: ``{"method", "path", "query", "headers",
"body"}`` (headers lower-cased, ``body`` the raw body as text). The path picks the behaviour:

* ``.../status/<code>``  answer ``<code>`` with the description as body
* ``.../hang``           do not answer until the server is closed (or 30 s)
* ``.../drop``           close the connection without answering
* ``.../text``           answer ``text/plain`` with extra headers (``Set-Cookie`` twice)
* ``.../empty``          answer 200 with no body and no ``Content-Type``
* anything else          200

``hits`` counts requests per path (``drop`` included).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        stub = self.server.stub
        with stub.lock:
            stub.hits[parts.path] += 1
            stub.requests.append(parts.path)
        headers: dict[str, str] = {}
        for raw_name, value in self.headers.items():
            name = raw_name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        description = {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
        }
        last = parts.path.rstrip("/").rsplit("/", 2)
        status = 200
        extra: list[tuple[str, str]] = []
        content_type = "application/json"
        payload = json.dumps(description).encode()
        if last[-1] == "hang":
            stub.closed.wait(30)
            self.close_connection = True
            return
        if last[-1] == "drop":
            self.close_connection = True
            return
        if len(last) >= 2 and last[-2] == "status":
            status = int(last[-1])
        if last[-1] == "text":
            content_type = "text/plain; charset=utf-8"
            payload = b"plain text, not JSON"
            extra = [
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("X-Stub", "yes"),
            ]
        if last[-1] == "empty":
            payload = b""
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: StubBackend

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.stub.lock:
            self.stub.sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.stub.lock:
            self.stub.sockets.discard(request)
        super().shutdown_request(request)


class StubBackend:
    """``with StubBackend(port) as stub:`` — serves on 127.0.0.1:<port> until closed."""

    def __init__(self, port: int = 0) -> None:
        self.hits: Counter[str] = Counter()
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.closed.set()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:  # kept-alive connections would otherwise go on being served
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> StubBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
