"""permessage-deflate (``PYGW_WS_COMPRESSION``) against a real gateway, with `websockets` clients.

Each mode gets its own gateway process. A client offering the extension gets it negotiated when
compression is on (and not when it is off), receives the same frames (welcome, a ping reply, a
publication from the HTTP API and one from another client, whose frame the server inflated),
and, when compressed, far fewer bytes on the wire than the frame holds — counted below the
WebSocket protocol. A client that does not offer the extension works with every mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from conftest import login, register, unique
from gateway_process import TEST_SECRET, GatewayProcess, gateway_on
from pygw.asgi import create_app
from pygw.config import ConfigError, Settings

API_KEY = "compression-test-key"
# A realistic, compressible publication: ~16 KiB of chat-like JSON records.
BIG = [
    {"id": i, "user": f"user_{i % 7}", "text": "the quick brown fox jumps over the lazy dog"}
    for i in range(200)
]


class CountingConnection(ClientConnection):
    """Counts the bytes the socket delivered (frames as sent, compressed or not)."""

    received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        super().data_received(data)


@pytest.fixture(scope="module", params=["off", "shared", "dedicated"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {"PYGW_API_KEYS": API_KEY, "PYGW_WS_COMPRESSION": request.param}
    log = tmp_path_factory.mktemp("gw") / "gateway.log"
    yield from gateway_on("memory", log, env)


def account(gw: GatewayProcess) -> tuple[str, str]:
    name = unique("z")
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        register(http, name)
        acc = login(http, name)
    return acc.token, acc.session_id


async def connect(gw: GatewayProcess, *, offer: bool = True) -> CountingConnection:
    token, session_id = account(gw)
    conn = await websockets.connect(
        f"{gw.ws_url}/ws/connect?token={token}&session_id={session_id}",
        compression="deflate" if offer else None,
        create_connection=CountingConnection,
        max_size=None,
        open_timeout=10,
    )
    assert isinstance(conn, CountingConnection)
    return conn


async def recv(conn: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of type ``kind`` (others skipped)."""
    while True:
        raw = await asyncio.wait_for(conn.recv(), timeout)
        assert isinstance(raw, str)
        frame: dict[str, Any] = orjson.loads(raw)
        if frame["type"] == kind:
            return frame


def negotiated(conn: ClientConnection) -> list[str]:
    assert conn.response is not None
    return [str(e.name) for e in conn.protocol.extensions] + conn.response.headers.get_all(
        "Sec-WebSocket-Extensions"
    )


async def test_frames_and_bytes_with_the_extension_offered(gw: GatewayProcess) -> None:
    mode = gw.extra_env["PYGW_WS_COMPRESSION"]
    reader, writer = await connect(gw), await connect(gw)
    try:
        welcome = await recv(reader, "connected")
        assert welcome["message"] == "WebSocket connection established"
        if mode == "off":
            assert negotiated(reader) == []
        else:
            names = negotiated(reader)
            assert names[0] == "permessage-deflate", names
            assert names[1].startswith("permessage-deflate"), names

        await reader.send(orjson.dumps({"type": "ping", "id": 1}).decode())
        assert (await recv(reader, "pong"))["id"] == 1
        await reader.send(orjson.dumps({"type": "subscribe", "channel": "z:big", "id": 2}).decode())
        assert (await recv(reader, "subscribed"))["channel"] == "z:big"

        frame_bytes = len(orjson.dumps(BIG))
        before = reader.received
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            r = await http.post(
                "/api/publish",
                json={"channel": "z:big", "data": BIG},
                headers={"X-API-Key": API_KEY},
            )
        assert r.status_code == 200, r.text
        message = await recv(reader, "message")
        assert message["data"] == BIG
        on_wire = reader.received - before
        if mode == "off":
            assert on_wire > frame_bytes
        else:
            assert on_wire < frame_bytes / 4, (on_wire, frame_bytes)

        # A client frame the server must inflate (the writer compresses what it sends).
        await recv(writer, "connected")
        await writer.send(
            orjson.dumps({"type": "publish", "channel": "z:big", "data": BIG, "id": 3}).decode()
        )
        assert (await recv(writer, "published"))["channel"] == "z:big"
        assert (await recv(reader, "message"))["data"] == BIG
    finally:
        await reader.close()
        await writer.close()


async def test_a_client_without_the_extension_gets_plain_frames(gw: GatewayProcess) -> None:
    conn = await connect(gw, offer=False)
    try:
        await recv(conn, "connected")
        assert negotiated(conn) == []
        await conn.send(orjson.dumps({"type": "subscribe", "channel": "z:plain", "id": 1}).decode())
        await recv(conn, "subscribed")
        before = conn.received
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            r = await http.post(
                "/api/publish",
                json={"channel": "z:plain", "data": BIG},
                headers={"X-API-Key": API_KEY},
            )
        assert r.status_code == 200, r.text
        assert (await recv(conn, "message"))["data"] == BIG
        assert conn.received - before > len(orjson.dumps(BIG))
    finally:
        await conn.close()


def test_setting_values() -> None:
    assert Settings.from_env({}).ws_compression == "off"
    assert Settings.from_env({"PYGW_WS_COMPRESSION": " Shared "}).ws_compression == "shared"
    with pytest.raises(ConfigError, match="PYGW_WS_COMPRESSION must be off, shared or dedicated"):
        Settings.from_env({"PYGW_WS_COMPRESSION": "gzip"})


@pytest.mark.parametrize(
    ("inflated", "clean"),
    [(128 << 10, True), (8 << 20, False)],
    ids=["over-the-hub-limit", "over-the-transport-limit"],
)
async def test_frames_inflating_past_the_limits_close_the_socket(
    gw: GatewayProcess, inflated: int, clean: bool
) -> None:
    """A small compressed frame that inflates past the limits (a decompression bomb: 8 MiB of
    one letter is ~8 KiB on the wire) is refused as its plain version is: over the hub's limit
    (PYGW_WS_MAX_MESSAGE_BYTES, 64 KiB) with 1009, over the transport's (4x) by cutting the
    connection, uWS inflating no further. The gateway stays healthy."""
    conn = await connect(gw)
    try:
        await recv(conn, "connected")
        before = conn.received
        with pytest.raises(websockets.ConnectionClosed) as closed:
            # Uncompressed (off), the server may cut the connection while the frame is sent.
            await conn.send(orjson.dumps({"type": "ping", "pad": "a" * inflated, "id": 1}).decode())
            await recv(conn, "pong", timeout=10)
        if clean:
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009, closed.value.rcvd
        else:
            assert conn.received - before < 1024  # no reply, at most a close frame
    finally:
        await conn.close()
    assert httpx.get(f"{gw.url}/health", timeout=5).status_code == 200
    again = await connect(gw)
    try:
        await recv(again, "connected")
        await again.send(orjson.dumps({"type": "ping", "id": 2}).decode())
        assert (await recv(again, "pong"))["id"] == 2
    finally:
        await again.close()


async def test_the_asgi_adapter_leaves_compression_to_its_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under ASGI the server negotiates extensions: a gateway configured to compress says at
    startup that the setting does not apply, rather than ignoring it silently."""
    env = {"SECRET_KEY": TEST_SECRET, "PYGW_WS_COMPRESSION": "shared"}
    app = create_app(Settings.from_env(env))
    with caplog.at_level(logging.WARNING, logger="pygw"):
        await app.startup()
        await app.shutdown()
    assert "PYGW_WS_COMPRESSION=shared applies to the uWS transport only" in caplog.text
