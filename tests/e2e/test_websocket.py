"""/ws/connect (SPEC §3) and channels (SPEC §5) against a real gateway, on both backends."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt as pyjwt
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from wsclient import WS

from conftest import ADMIN, Account, backend_gateway, login, new_account
from gateway_process import TEST_SECRET, GatewayProcess
from redis_server import RedisServer

API_KEY = "ws-test-key"
NAMESPACES = [
    {"name": "hist", "history_size": 50, "history_ttl": 300},
    {"name": "pres", "presence": True},
    {"name": "news", "subscribe": "*", "publish": ["admin"]},
]
GATEWAY_ENV = {
    "PYGW_ADMIN_USERS": ADMIN,
    "PYGW_API_KEYS": API_KEY,
    "PYGW_NAMESPACES": orjson.dumps(NAMESPACES).decode(),
    "PYGW_MESSAGE_ROLES": '{"admin_only": ["admin"]}',
    "PYGW_WS_MAX_MESSAGE_BYTES": "4096",
    "PYGW_WS_MAX_ERRORS": "10",
}


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from backend_gateway(request, tmp_path_factory, GATEWAY_ENV)


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


def admin_account(http: httpx.Client) -> Account:
    return login(http, ADMIN)  # created at start (PYGW_ADMIN_USERS + PYGW_ADMIN_PASSWORD)


async def test_welcome_ping_and_update_api_key(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
        w = ws.welcome
        assert w["message"] == "WebSocket connection established"
        assert w["user_id"] == a.username
        assert w["session_id"] == a.session_id
        assert w["gateway_id"]
        assert w["ping_interval"] == 25
        assert w["inactivity_timeout"] == 60

        pong = await ws.request({"type": "ping"})
        assert pong["type"] == "pong"
        assert abs(pong["timestamp"] - time.time()) < 5

        ack = await ws.request({"type": "update_api_key", "key": "sk-123"})
        assert ack == {
            "type": "ack",
            "message": "API key update acknowledged",
            "api_key": "sk-123",
            "data": None,
            "session_id": a.session_id,
            "gateway_id": w["gateway_id"],
            "id": ack["id"],
        }
        # Written behind, but this node reads its own pending writes.
        session = http.get(f"/sessions/{a.session_id}", headers=a.headers).json()
        assert session["data"]["api_key"] == "sk-123"

        await ws.send({"type": "pong"})  # no reply to a pong
        await ws.send({"type": "ping", "id": "after-pong"})
        assert (await ws.recv())["id"] == "after-pong"


async def test_error_frames(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
        await ws.send("not json at all")
        assert await ws.recv() == {"type": "error", "code": 400, "message": "Invalid JSON"}
        await ws.send({"id": 7, "data": 1})
        assert await ws.recv() == {
            "type": "error",
            "code": 400,
            "message": "Missing message type",
            "id": 7,
        }
        # A type of the original's user permissions that nothing handles here: unknown.
        reply = await ws.request({"type": "chat_message"})
        assert reply["message"] == "Unknown message type: chat_message"
        assert reply["code"] == 404
        # Any other type from a user is refused as the original refuses it.
        reply = await ws.request({"type": "teleport"})
        assert reply["message"] == "Unauthorized: role 'user' cannot send 'teleport'"
        assert reply["code"] == 403
        reply = await ws.request({"type": "admin_only"})
        assert reply["message"] == "Unauthorized: role 'user' cannot send 'admin_only'"
        assert reply["code"] == 403
        # The connection is still usable after errors.
        assert (await ws.request({"type": "ping"}))["type"] == "pong"


async def test_too_many_errors_close_the_socket(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
        for _ in range(11):
            await ws.send("{bad")
        assert await ws.closed() == (1008, "Too many errors")


async def test_oversized_frame_closes_with_1009(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
        await ws.send({"type": "ping", "pad": "x" * 8192})
        code, _reason = await ws.closed()
        assert code == 1009


@pytest.mark.parametrize("kind", ["garbage", "expired", "forged", "missing"])
async def test_bad_tokens_get_1008(gw: GatewayProcess, http: httpx.Client, kind: str) -> None:
    a = new_account(http)
    now = int(time.time())
    token = {
        "garbage": "abc.def.ghi",
        "expired": pyjwt.encode({"sub": a.username, "exp": now - 5, "jti": "x"}, TEST_SECRET),
        "forged": pyjwt.encode({"sub": a.username, "exp": now + 60}, "x" * 32),
        "missing": "",
    }[kind]
    ws = await WS.open(gw.ws_url, token, a.session_id, welcome=False)
    assert await ws.closed() == (1008, "Invalid token")


async def test_revoked_token_and_session_mismatch(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    b = new_account(http)
    ws = await WS.open(gw.ws_url, a.token, b.session_id, welcome=False)
    assert await ws.closed() == (1008, "Session mismatch")
    http.post("/sessions/logout", headers=a.headers)
    ws = await WS.open(gw.ws_url, a.token, a.session_id, welcome=False)
    assert await ws.closed() == (1008, "Invalid token")


async def test_logout_relogin_and_delete_close_sockets_with_1000(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    ws1 = await WS.open(gw.ws_url, a.token, a.session_id)
    ws2 = await WS.open(gw.ws_url, a.token, a.session_id)
    http.post("/sessions/logout", headers=a.headers)
    assert (await ws1.closed())[0] == 1000
    assert (await ws2.closed())[0] == 1000

    again = login(http, a.username)
    ws3 = await WS.open(gw.ws_url, again.token, again.session_id)
    third = login(http, a.username)  # a new login replaces the previous one
    assert (await ws3.closed())[0] == 1000
    ws4 = await WS.open(gw.ws_url, third.token, third.session_id)
    http.post("/sessions/delete_account", headers=third.headers)
    assert (await ws4.closed())[0] == 1000


async def test_channels_subscribe_publish_unsubscribe(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    b = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as wa, await WS.open(gw.ws_url, b.token) as wb:
        sub = await wa.request({"type": "subscribe", "channel": "room:1"})
        assert sub["type"] == "subscribed"
        assert sub["channel"] == "room:1"
        assert sub["recovered"] is False
        assert isinstance(sub["epoch"], str)
        start = sub["offset"]
        await wb.request({"type": "subscribe", "channel": "room:1"})

        pub = await wb.request({"type": "publish", "channel": "room:1", "data": {"text": "hi"}})
        assert pub == {
            "type": "published",
            "channel": "room:1",
            "offset": start + 1,
            "id": pub["id"],
        }
        for ws in (wa, wb):
            (msg,) = await ws.messages(1, "room:1")
            assert msg == {
                "type": "message",
                "channel": "room:1",
                "data": {"text": "hi"},
                "offset": start + 1,
            }

        un = await wa.request({"type": "unsubscribe", "channel": "room:1"})
        assert un["type"] == "unsubscribed"
        await wb.request({"type": "publish", "channel": "room:1", "data": 2})
        (msg,) = await wb.messages(1, "room:1")
        assert msg["data"] == 2
        # wa no longer gets it: the next thing it sees is its own pong.
        assert (await wa.request({"type": "ping"}))["type"] == "pong"
        assert not [f for f in wa.backlog if f.get("type") == "message"]


async def test_channel_permissions(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    b = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as ws:
        cases = [
            ({"type": "publish", "channel": f"user:{b.username}", "data": 1}, 403),
            ({"type": "subscribe", "channel": f"user:{b.username}"}, 403),
            ({"type": "subscribe", "channel": "admin:ops"}, 403),
            ({"type": "publish", "channel": "news:today", "data": 1}, 403),
            ({"type": "subscribe", "channel": "bad channel!"}, 400),
            ({"type": "subscribe"}, 400),
            ({"type": "publish", "channel": "room:x"}, 400),
            ({"type": "subscribe", "channel": 5}, 400),
        ]
        for message, code in cases:
            reply = await ws.request(message)
            assert reply["type"] == "error", (message, reply)
            assert reply["code"] == code, (message, reply)
        ok = await ws.request({"type": "subscribe", "channel": "news:today"})
        assert ok["type"] == "subscribed"


async def test_history_recovery_after_reconnect(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    admin = admin_account(http)
    channel = f"hist:{a.username}"
    async with await WS.open(gw.ws_url, a.token) as ws:
        sub = await ws.request({"type": "subscribe", "channel": channel})
        epoch, offset = sub["epoch"], sub["offset"]
        await ws.request({"type": "publish", "channel": channel, "data": {"n": 0}})
        (first,) = await ws.messages(1, channel)
        offset = first["offset"]
    # Missed while away: five publications through the server API.
    for n in range(1, 6):
        r = http.post(
            "/api/publish",
            json={"channel": channel, "data": {"n": n}},
            headers={"X-API-Key": API_KEY},
        )
        assert r.status_code == 200, r.text
    async with await WS.open(gw.ws_url, a.token) as ws:
        sub = await ws.request(
            {"type": "subscribe", "channel": channel, "since": {"epoch": epoch, "offset": offset}}
        )
        missed = [f for f in ws.backlog if f.get("type") == "message"]
        ws.backlog.clear()
        assert [m["data"]["n"] for m in missed] == [1, 2, 3, 4, 5]
        assert [m["offset"] for m in missed] == list(range(offset + 1, offset + 6))
        assert sub["recovered"] is True
        assert sub["offset"] == offset + 5
        # A live publication after recovery arrives once, in order.
        await ws.request({"type": "publish", "channel": channel, "data": {"n": 6}})
        (live,) = await ws.messages(1, channel)
        assert live["offset"] == offset + 6
    async with await WS.open(gw.ws_url, a.token) as ws:
        sub = await ws.request(
            {
                "type": "subscribe",
                "channel": channel,
                "since": {"epoch": "stale-epoch", "offset": 1},
            }
        )
        assert sub["recovered"] is False
        assert not [f for f in ws.backlog if f.get("type") == "message"]
    r = http.get(f"/api/history/{channel}?since={offset + 3}&limit=2", headers=admin.headers)
    body = r.json()
    assert [p["data"]["n"] for p in body["publications"]] == [4, 5]
    assert body["offset"] == offset + 6


async def test_presence(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    b = new_account(http)
    channel = f"pres:{a.username}"
    headers = {"X-API-Key": API_KEY}
    async with await WS.open(gw.ws_url, a.token) as wa, await WS.open(gw.ws_url, b.token) as wb:
        await wa.request({"type": "subscribe", "channel": channel})
        await wb.request({"type": "subscribe", "channel": channel})
        body = http.get(f"/api/presence/{channel}", headers=headers).json()
        assert body["count"] == 2
        assert sorted(m["user_id"] for m in body["presence"].values()) == sorted(
            [a.username, b.username]
        )
        await wb.request({"type": "unsubscribe", "channel": channel})
        deadline = time.monotonic() + 3
        while http.get(f"/api/presence/{channel}", headers=headers).json()["count"] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def test_presence_frame(gw: GatewayProcess, http: httpx.Client) -> None:
    """``{"type":"presence"}`` answers subscribers of a presence namespace, and only them."""
    a = new_account(http)
    b = new_account(http)
    channel = f"pres:frame-{a.username}"
    async with await WS.open(gw.ws_url, a.token) as wa, await WS.open(gw.ws_url, b.token) as wb:
        refused = await wa.request({"type": "presence", "channel": channel})
        assert (refused["type"], refused["code"]) == ("error", 403), refused
        assert refused["message"] == f"Not subscribed to '{channel}'"
        await wa.request({"type": "subscribe", "channel": channel})
        await wb.request({"type": "subscribe", "channel": channel})
        reply = await wa.request({"type": "presence", "channel": channel})
        assert reply["type"] == "presence", reply
        assert reply["channel"] == channel
        assert reply["count"] == 2
        assert sorted(m["user_id"] for m in reply["presence"].values()) == sorted(
            [a.username, b.username]
        )
        await wb.request({"type": "unsubscribe", "channel": channel})
        deadline = time.monotonic() + 3
        while (await wa.request({"type": "presence", "channel": channel}))["count"] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

        # A namespace without presence, a missing or invalid channel: 400.
        await wa.request({"type": "subscribe", "channel": "room:nopresence"})
        cases = [
            ({"type": "presence", "channel": "room:nopresence"}, 400),
            ({"type": "presence"}, 400),
            ({"type": "presence", "channel": "bad channel!"}, 400),
            ({"type": "presence", "channel": "admin:ops"}, 403),
        ]
        for message, code in cases:
            reply = await wa.request(message)
            assert (reply["type"], reply["code"]) == ("error", code), (message, reply)


async def test_server_api_push_broadcast_disconnect(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    admin = admin_account(http)
    user_headers = a.headers
    key_headers = {"X-API-Key": API_KEY}
    async with await WS.open(gw.ws_url, a.token) as w1, await WS.open(gw.ws_url, a.token) as w2:
        r = http.post(f"/api/push/{a.username}", json={"data": {"hello": 1}}, headers=key_headers)
        assert r.status_code == 200
        assert r.json()["deliveries"] == 2
        for ws in (w1, w2):
            (msg,) = await ws.messages(1)
            assert msg == {"type": "message", "channel": f"user:{a.username}", "data": {"hello": 1}}

        await w1.request({"type": "subscribe", "channel": "b1"})
        await w2.request({"type": "subscribe", "channel": "b2"})
        r = http.post(
            "/api/broadcast", json={"channels": ["b1", "b2"], "data": "x"}, headers=admin.headers
        )
        assert r.json()["deliveries"] == 2
        assert (await w1.messages(1, "b1"))[0]["data"] == "x"
        assert (await w2.messages(1, "b2"))[0]["data"] == "x"

        assert (
            http.post(
                "/api/publish", json={"channel": "b1", "data": 1}, headers=user_headers
            ).status_code
            == 403
        )
        r = http.post(
            "/api/publish", json={"channel": "b1", "data": 1}, headers={"X-API-Key": "wrong"}
        )
        assert r.status_code == 401
        assert r.json()["error"] == "Invalid API key"
        r = http.post("/api/publish", json={"channel": "no spaces", "data": 1}, headers=key_headers)
        assert r.status_code == 400

        r = http.post(f"/api/disconnect/{a.username}", headers=key_headers)
        assert r.json()["deliveries"] == 2
        assert (await w1.closed())[0] == 1000
        assert (await w2.closed())[0] == 1000


async def test_ws_health_counts_connections(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    before = http.get("/ws/health").json()["active_connections"]
    async with await WS.open(gw.ws_url, a.token):
        assert http.get("/ws/health").json()["active_connections"] == before + 1
        record = http.get(f"/sessions/users/{a.username}/connection", headers=a.headers).json()
        assert record["ws_connected"] is True
        assert record["connected_at"]


async def test_pong_timeout(tmp_path: Path) -> None:
    env = {"PYGW_PING_INTERVAL": "0.3", "PYGW_INACTIVITY_TIMEOUT": "1"}
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as proc,
        httpx.Client(base_url=proc.url) as http,
    ):
        a = new_account(http)
        silent = await WS.open(proc.ws_url, a.token)
        lively = await WS.open(proc.ws_url, a.token)

        async def answer_pings() -> None:
            while True:
                frame = await lively.recv(timeout=10)
                if frame["type"] == "ping":
                    assert isinstance(frame["timestamp"], float)
                    await lively.send({"type": "pong"})

        task = asyncio.create_task(answer_pings())
        assert await silent.closed(timeout=5) == (1008, "Pong timeout")
        await asyncio.sleep(1.5)
        assert not task.done()  # the one answering pings is still connected
        task.cancel()
        await lively.close()


async def test_upgrades_past_the_connection_limit_get_503(tmp_path: Path) -> None:
    """At PYGW_WS_MAX_CONNECTIONS the upgrade is refused with 503 (the socket is closed, so the
    process never runs out of descriptors); a slot freed by a close is usable again."""
    with (
        GatewayProcess(env={"PYGW_WS_MAX_CONNECTIONS": "2"}, log_path=tmp_path / "gw.log") as proc,
        httpx.Client(base_url=proc.url) as http,
    ):
        a = new_account(http)
        first = await WS.open(proc.ws_url, a.token)
        second = await WS.open(proc.ws_url, a.token)
        with pytest.raises(InvalidStatus) as refused:
            await WS.open(proc.ws_url, a.token)
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        body = orjson.loads(response.body)
        assert body["error"] == "Service Unavailable"
        assert body["detail"] == "Connection limit reached"
        assert (await second.request({"type": "ping"}))["type"] == "pong"  # others unaffected
        await first.close()
        for _ in range(50):  # the close reaches the gateway asynchronously
            if http.get("/ws/health").json()["active_connections"] == 1:
                break
            await asyncio.sleep(0.05)
        third = await WS.open(proc.ws_url, a.token)
        metrics = http.get("/metrics").text
        assert "pygw_ws_connections_refused_total 1.0" in metrics
        await third.close()
        await second.close()


async def test_upgrades_completed_after_an_await_all_stay_open(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With Redis, a new user's upgrade awaits its user channel's SUBSCRIBE and is completed
    from asyncio, where the 101 and the welcome frame are written under TCP_CORK. Every such
    socket must stay usable: uWS's own response cork around an upgrade cut off up to one in
    a thousand (when the WebSocket kept the response's address; this test caught that build
    in one run of four with 2,000 sockets)."""
    now = int(time.time())

    def token(i: int) -> str:
        claims = {"sub": f"bulk{i}", "user_id": f"bulk{i}", "role": "user", "sid": f"bulk-{i}"}
        claims |= {"iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
        return pyjwt.encode(claims, TEST_SECRET)

    env = {"PYGW_RATE_WS_CONNECT": "0", "PYGW_RATE_WS_MESSAGE": "0"}
    with GatewayProcess(redis_url=redis_server.url, env=env, log_path=tmp_path / "gw.log") as gw:
        sockets: list[WS] = []
        for first in range(0, 4000, 200):
            sockets += await asyncio.gather(
                *(WS.open(gw.ws_url, token(i)) for i in range(first, first + 200))
            )
        await asyncio.sleep(0.5)
        replies = await asyncio.gather(*(ws.request({"type": "ping"}) for ws in sockets))
        assert [r["type"] for r in replies] == ["pong"] * len(sockets)
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_stalled_reader_is_cut_off_while_a_healthy_one_gets_everything(
    tmp_path: Path,
) -> None:
    import socket

    env = {"PYGW_API_KEYS": API_KEY, "PYGW_WS_MAX_BACKPRESSURE": "131072"}
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as proc,
        httpx.Client(base_url=proc.url) as http,
    ):
        slow = new_account(http)
        good = new_account(http)
        # The stalled client: a raw socket with a small receive buffer that stops reading.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", proc.port))
        sock.sendall(
            f"GET /ws/connect?token={slow.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        sock.settimeout(5)
        handshake = b""
        while b"\r\n\r\n" not in handshake:
            handshake += sock.recv(1)
        assert handshake.startswith(b"HTTP/1.1 101"), handshake
        subscribe = orjson.dumps({"type": "subscribe", "channel": "flood"})
        sock.sendall(bytes([0x81, 0x80 | len(subscribe)]) + b"\0\0\0\0" + subscribe)
        async with await WS.open(proc.ws_url, good.token) as ws:
            await ws.request({"type": "subscribe", "channel": "flood"})
            deadline = time.monotonic() + 5
            while (
                http.post(
                    "/api/publish",
                    json={"channel": "flood", "data": 0},
                    headers={"X-API-Key": API_KEY},
                ).json()["deliveries"]
                < 2
            ):
                assert time.monotonic() < deadline, "the stalled client never subscribed"
                await asyncio.sleep(0.05)
            payload = "x" * 16384
            received = 0

            async def read_all() -> None:
                nonlocal received
                while True:
                    frame = await ws.recv(timeout=10)
                    if frame.get("channel") == "flood" and isinstance(frame["data"], dict):
                        assert frame["data"]["i"] == received
                        received += 1

            reader = asyncio.create_task(read_all())
            deliveries = []
            async with httpx.AsyncClient(
                base_url=proc.url, headers={"X-API-Key": API_KEY}
            ) as client:
                for i in range(400):
                    r = await client.post(
                        "/api/publish", json={"channel": "flood", "data": {"i": i, "p": payload}}
                    )
                    deliveries.append(r.json()["deliveries"])
                    await asyncio.sleep(0.005)
            deadline = time.monotonic() + 10
            while received < 400:
                assert time.monotonic() < deadline, f"healthy reader got only {received}"
                await asyncio.sleep(0.05)
            reader.cancel()
        # Early publications reached both; at the end only the healthy client was left.
        assert deliveries[0] == 2
        assert deliveries[-1] == 1
        # When it reads again, what was queued before the cut ends with the 1013 close frame
        # (uWS keeps a closing socket for a few seconds).
        sock.settimeout(5)
        tail = b""
        while chunk := sock.recv(1 << 20):
            tail = (tail + chunk)[-64:]
        sock.close()
        assert b"\x03\xf5Backpressure limit exceeded" in tail, tail
