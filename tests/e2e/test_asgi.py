"""The ASGI adapter mounted in a Starlette app (tests/e2e/asgi_app.py) under a real granian
process, and under uvicorn: the HTTP API, a WebSocket, cross-node delivery with a uWS node on
real Redis, and the node reporting the port the ASGI server bound (not ``PORT``)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from redis.asyncio import Redis
from tests.gateway_process import GatewayProcess, free_port
from tests.redis_server import RedisServer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("granian") is None or importlib.util.find_spec("starlette") is None,
    reason="granian and starlette (the asgi/dev extras) are not installed",
)
HERE = Path(__file__).parent
SERVERS = {
    "granian": ["-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port"],
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port"],
}
WRONG_PORT = "8123"
"""``PORT`` in the ASGI node's environment: not what it listens on, so not what it reports."""


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=sorted(SERVERS))
def asgi_node(request: pytest.FixtureRequest, redis: RedisServer, tmp_path: Path) -> Iterator[str]:
    """The Starlette app of asgi_app.py served by granian or uvicorn; its base URL."""
    if importlib.util.find_spec(request.param) is None:
        pytest.skip(f"{request.param} is not installed (dev extra)")
    port = free_port()
    env = GatewayProcess(redis_url=redis.url).environment()
    env["PORT"] = WRONG_PORT
    env["PYTHONPATH"] = f"{HERE}{':' + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''}"
    log_path = tmp_path / "asgi.log"
    log = log_path.open("wb")
    cmd = [sys.executable, *SERVERS[request.param], str(port), "asgi_app:app"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/gw/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"{request.param} did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def login(base: str, name: str) -> dict[str, str]:
    """Register and log in; the login response (``access_token``, ``session_id``, ...)."""
    body = {"username": name, "email": f"{name}@example.com", "password": "secret-pass-123"}
    r = httpx.post(f"{base}/sessions/register", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == name
    r = httpx.post(f"{base}/sessions/login", json={"username": name, "password": body["password"]})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def reported_port(redis: RedisServer, node_id: str, timeout: float = 8.0) -> int:
    """The port in the node's heartbeat (every 5 s), once it is not 0 (the first beat may
    precede the first request, which tells the adapter the port)."""
    client = Redis.from_url(redis.url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            raw = await client.get(f"pygw:node:{node_id}")
            port = int(orjson.loads(raw).get("port", 0)) if raw else 0
            if port or time.monotonic() > deadline:
                return port
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def recv_type(ws: websockets.ClientConnection, kind: str) -> dict[str, object]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def test_mounted_adapter_serves_http_ws_and_cross_node_delivery(
    redis: RedisServer, asgi_node: str
) -> None:
    assert httpx.get(f"{asgi_node}/hello").json() == {"app": "host"}  # the host app's route
    base = f"{asgi_node}/gw"
    alice = login(base, "asgi-alice")
    token_a = alice["access_token"]
    ws_base = base.replace("http://", "ws://")
    # A session's ws_url names the address the client used and the mount prefix.
    auth = {"Authorization": f"Bearer {token_a}"}
    session = httpx.post(f"{base}/sessions/create", json={}, headers=auth).json()
    assert session["ws_url"].startswith(f"{ws_base}/ws/connect?"), session
    with GatewayProcess(redis_url=redis.url) as uws_node:
        token_b = login(uws_node.url, "uws-bob")["access_token"]
        async with (
            websockets.connect(f"{ws_base}/ws/connect?token={token_a}") as wa,
            websockets.connect(f"{uws_node.ws_url}/ws/connect?token={token_b}") as wb,
        ):
            connected = await recv_type(wa, "connected")
            assert connected["user_id"] == "asgi-alice"
            port = int(asgi_node.rsplit(":", 1)[1])
            reported = await reported_port(redis, str(connected["gateway_id"]))
            assert reported == port != int(WRONG_PORT)
            await wa.send(json.dumps({"type": "ping", "id": "p1"}))
            assert (await recv_type(wa, "pong"))["id"] == "p1"
            await wa.send(json.dumps({"type": "subscribe", "channel": "room:asgi"}))
            assert (await recv_type(wa, "subscribed"))["channel"] == "room:asgi"
            await recv_type(wb, "connected")
            data = {"text": "from uWS"}
            await wb.send(json.dumps({"type": "publish", "channel": "room:asgi", "data": data}))
            assert (await recv_type(wb, "published"))["channel"] == "room:asgi"
            publication = await recv_type(wa, "message")
            assert publication["channel"] == "room:asgi"
            assert publication["data"] == data
            # An SSE stream from the adapter gets what the uWS node's client publishes.
            sse_url = f"{base}/sse/connect?channels=room:asgi&token={token_a}"
            async with (
                httpx.AsyncClient(timeout=10) as client,
                client.stream("GET", sse_url) as r,
            ):
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/event-stream"
                lines = r.aiter_lines()

                async def next_frame(kind: str) -> dict[str, object]:
                    async for line in lines:
                        if line.startswith("data: "):
                            frame: dict[str, object] = json.loads(line[6:])
                            if frame["type"] == kind:
                                return frame
                    raise EOFError("the SSE stream ended")

                assert (await asyncio.wait_for(next_frame("connected"), 10))["user_id"] == (
                    "asgi-alice"
                )
                await asyncio.wait_for(next_frame("subscribed"), 10)
                sse_data = {"text": "to SSE"}
                frame = {"type": "publish", "channel": "room:asgi", "data": sse_data}
                await wb.send(json.dumps(frame))
                sse_message = await asyncio.wait_for(next_frame("message"), 10)
                assert sse_message["data"] == sse_data
