"""The ASGI adapter mounted in a Starlette app (tests/e2e/asgi_app.py) under a real granian
process: the HTTP API, a WebSocket, and cross-node delivery with a uWS node on real Redis."""

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
import pytest
import websockets
from tests.gateway_process import GatewayProcess, free_port
from tests.redis_server import RedisServer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("granian") is None or importlib.util.find_spec("starlette") is None,
    reason="granian and starlette (the asgi/dev extras) are not installed",
)
HERE = Path(__file__).parent


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def granian_node(redis: RedisServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = GatewayProcess(redis_url=redis.url).environment()
    env["PYTHONPATH"] = f"{HERE}{':' + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''}"
    log = (tmp_path / "granian.log").open("wb")
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "asgi_app:app"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/gw/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "granian.log").read_text()
            assert time.monotonic() < deadline, "granian did not become healthy"
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


def login(base: str, name: str) -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": "secret-pass-123"}
    r = httpx.post(f"{base}/sessions/register", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == name
    r = httpx.post(f"{base}/sessions/login", json={"username": name, "password": body["password"]})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def recv_type(ws: websockets.ClientConnection, kind: str) -> dict[str, object]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def test_mounted_adapter_serves_http_ws_and_cross_node_delivery(
    redis: RedisServer, granian_node: str
) -> None:
    assert httpx.get(f"{granian_node}/hello").json() == {"app": "host"}  # the host app's route
    base = f"{granian_node}/gw"
    token_a = login(base, "asgi-alice")
    ws_base = base.replace("http://", "ws://")
    with GatewayProcess(redis_url=redis.url) as uws_node:
        token_b = login(uws_node.url, "uws-bob")
        async with (
            websockets.connect(f"{ws_base}/ws/connect?token={token_a}") as wa,
            websockets.connect(f"{uws_node.ws_url}/ws/connect?token={token_b}") as wb,
        ):
            connected = await recv_type(wa, "connected")
            assert connected["user_id"] == "asgi-alice"
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
