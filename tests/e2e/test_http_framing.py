"""Request framing against a real gateway (security review item 16): ambiguous framing and
HTTP/1.1 without Host are answered 400 with the error envelope and the connection is closed;
HTTP/1.0 without Host is served. The transport's own tests (tests/test_transport_uws.py) cover
every case; these check the envelope the gateway really writes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway_process import GatewayProcess

SMUGGLED = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    log: Path = tmp_path_factory.mktemp("gw") / "gateway.log"
    with GatewayProcess(log_path=log) as proc:
        yield proc


def until_closed(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            b"POST /sessions/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
            "Conflicting Content-Length headers",
        ),
        (b"GET /health HTTP/1.1\r\n\r\n", "Missing Host header"),
        (b"GET /health HTTP/1.1\r\nAccept: */*\r\n\r\n", "Missing Host header"),
    ],
)
def test_refused_with_the_envelope_and_closed(gw: GatewayProcess, raw: bytes, error: str) -> None:
    data = until_closed(gw.port, raw)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close" in head
    envelope = orjson.loads(body)  # exactly one response: nothing follows the envelope
    assert envelope["error"] == error
    assert envelope["status_code"] == 400
    assert envelope["path"] in ("/sessions/login", "/health")
    assert envelope["timestamp"].endswith("+00:00")


def test_http10_without_host_is_served(gw: GatewayProcess) -> None:
    data = until_closed(gw.port, b"GET /health HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert orjson.loads(body)["status"] == "healthy"
