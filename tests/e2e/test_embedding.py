"""Embedding: an app built on ``pygw.Gateway`` with its own message types, and
``pygw.Publisher`` pushing from another process through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wsclient import WS

from conftest import new_account
from gateway_process import GatewayProcess
from pygw import Publisher
from redis_server import RedisServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def chat_app(tmp_path: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(script=EXAMPLES / "chat_app.py", log_path=tmp_path / "app.log") as proc:
        yield proc


async def test_custom_message_handlers(chat_app: GatewayProcess) -> None:
    with httpx.Client(base_url=chat_app.url) as http:
        alice = new_account(http, "alice")
        bob = new_account(http, "bob")
    async with (
        await WS.open(chat_app.ws_url, alice.token) as wa,
        await WS.open(chat_app.ws_url, bob.token) as wb,
    ):
        await wb.request({"type": "subscribe", "channel": "room:lobby"})
        joined = await wa.request({"type": "join", "room": "lobby"})
        assert joined["type"] == "joined"
        assert joined["room"] == "lobby"
        ok = await wa.request({"type": "chat_message", "room": "lobby", "text": "hello"})
        assert ok["type"] == "chat_ok"
        messages = await wb.messages(2, "room:lobby")
        assert messages[0]["data"] == {"event": "joined", "user": alice.username}
        assert messages[1]["data"] == {"from": alice.username, "text": "hello"}
        assert messages[1]["offset"] == ok["offset"]
        # Handlers registered with roles are refused to other roles.
        refused = await wa.request({"type": "shout", "text": "!"})
        assert refused["message"] == "Unauthorized: role 'user' cannot send 'shout'"


async def test_publisher_reaches_channels_and_users(tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        GatewayProcess(redis_url=redis.url, log_path=tmp_path / "gw.log") as gw,
    ):
        with httpx.Client(base_url=gw.url) as http:
            user = new_account(http)
        async with await WS.open(gw.ws_url, user.token) as ws, Publisher(redis.url) as pub:
            await ws.request({"type": "subscribe", "channel": "alerts"})
            publication = await pub.publish("alerts", {"level": "high"})
            (msg,) = await ws.messages(1, "alerts")
            assert msg == {
                "type": "message",
                "channel": "alerts",
                "data": {"level": "high"},
                "offset": publication.offset,
            }
            await pub.push(user.username, {"note": 1})
            (pushed,) = await ws.messages(1, f"user:{user.username}")
            assert pushed["data"] == {"note": 1}
            await pub.disconnect(user.username)
            assert (await ws.closed())[0] == 1000
