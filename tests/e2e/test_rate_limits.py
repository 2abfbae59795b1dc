"""Rate limits against real gateway processes: login per (username, address) (shared by two nodes
through Redis), per client IP and the per-username slow-down, registrations per address, HTTP per
user/IP, WebSocket messages per connection and connects per IP, trusted proxies, windows that
reset, and Redis outages that must not turn into 503s.

Clients bind to 127.0.0.2, 127.0.0.3, ... to be other addresses than the default 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import websockets
from websockets.exceptions import InvalidStatus
from wsclient import WS

from conftest import new_account, register, unique
from gateway_process import GatewayProcess
from redis_server import RedisServer

WRONG = "wrong-password-0"


@contextlib.contextmanager
def gateways(
    tmp_path: Path, env: dict[str, str], n: int = 1, redis_url: str | None = None
) -> Iterator[list[GatewayProcess]]:
    procs = [
        GatewayProcess(redis_url=redis_url, env=env, log_path=tmp_path / f"gw{i}.log")
        for i in range(n)
    ]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def attempt(
    client: httpx.Client,
    username: str,
    password: str = WRONG,
    *,
    xff: str | None = None,
    real_ip: str | None = None,
) -> httpx.Response:
    headers = {}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    if real_ip is not None:
        headers["X-Real-IP"] = real_ip
    return client.post(
        "/sessions/login", json={"username": username, "password": password}, headers=headers
    )


def from_address(gw: GatewayProcess, ip: str) -> httpx.Client:
    """A client connecting from ``ip`` (a loopback address other than 127.0.0.1)."""
    return httpx.Client(base_url=gw.url, transport=httpx.HTTPTransport(local_address=ip))


def assert_429(r: httpx.Response, path: str, max_wait: int) -> int:
    assert r.status_code == 429, r.text
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= max_wait
    body = r.json()
    assert body["status_code"] == 429
    assert body["retry_after"] == retry
    assert body["path"] == path
    assert body["error"] == "Too Many Requests"
    assert {"detail", "timestamp"} <= body.keys()
    return retry


def rate_limited(gw: GatewayProcess, cls: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    m = re.search(rf'^pygw_rate_limited_total\{{class="{cls}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


# ------------------------------------------------------------------------------ login
def test_sixth_wrong_password_is_refused_on_either_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The default (5 per 60 s per username and address) is shared: attempts spread over two
    nodes."""
    with gateways(tmp_path, {}, n=2, redis_url=redis_server.url) as (a, b):
        ca, cb = httpx.Client(base_url=a.url), httpx.Client(base_url=b.url)
        with ca, cb:
            victim, other = unique(), unique()
            register(ca, victim)
            register(cb, other)
            for client in (ca, cb, ca, cb, ca):
                assert attempt(client, victim).status_code == 401
            retry = assert_429(attempt(cb, victim), "/sessions/login", 60)
            assert retry == 12  # the next attempt is allowed once one of 5 per 60 s is back
            assert_429(attempt(ca, victim), "/sessions/login", 60)
            # Even the right password waits (checked before the hash is computed).
            assert_429(attempt(ca, victim, "correct-horse-1"), "/sessions/login", 60)
            # Another username is not affected, on either node.
            assert attempt(cb, other).status_code == 401
            assert attempt(ca, other, "correct-horse-1").status_code == 200
        assert rate_limited(a, "login") == 2 and rate_limited(b, "login") == 1
    with redis.Redis.from_url(redis_server.url) as r:
        assert 0 < r.pttl(f"pygw:rl:login:127.0.0.1|{victim}") <= 60_000
        assert 0 < r.pttl(f"pygw:rl:login_user:{victim}") <= 60_000
        # Cleared by the successful login.
        assert not r.exists(f"pygw:rl:login:127.0.0.1|{other}", f"pygw:rl:login_user:{other}")


def test_login_window_resets_and_success_clears_the_count(tmp_path: Path) -> None:
    """Memory backend, a short window (3 per second)."""
    with (
        gateways(tmp_path, {"PYGW_RATE_LOGIN": "3/1"}) as (gw,),
        httpx.Client(base_url=gw.url) as client,
    ):
        user = unique()
        register(client, user)
        assert [attempt(client, user).status_code for _ in range(3)] == [401] * 3
        assert assert_429(attempt(client, user), "/sessions/login", 1) == 1
        time.sleep(1.05)  # a whole window: the full burst is back
        assert [attempt(client, user).status_code for _ in range(3)] == [401] * 3
        assert attempt(client, user).status_code == 429
        time.sleep(0.4)  # one attempt back (one per 1/3 s)
        assert attempt(client, user, "correct-horse-1").status_code == 200
        # The correct password cleared the failures: three more wrong ones before 429.
        assert [attempt(client, user).status_code for _ in range(4)] == [401] * 3 + [429]


def test_many_addresses_slow_a_username_down_but_never_lock_it(tmp_path: Path) -> None:
    env = {"PYGW_RATE_LOGIN": "2/60", "PYGW_RATE_LOGIN_USER": "2/60"}
    with gateways(tmp_path, env) as (gw,), httpx.Client(base_url=gw.url) as client:
        victim = unique()
        register(client, victim)
        with from_address(gw, "127.0.0.2") as attacker:
            assert [attempt(attacker, victim).status_code for _ in range(3)] == [401, 401, 429]
        # Over the per-username rate, from a fresh address: delayed, then answered.
        started = time.monotonic()
        assert attempt(client, victim, "correct-horse-1").status_code == 200
        assert time.monotonic() - started >= 1.5  # the deliberate slow-down (up to 2 s)
        assert rate_limited(gw, "login_user") == 1 and rate_limited(gw, "login") == 1


def test_forged_forwarded_for_from_an_untrusted_peer_keeps_its_bucket(tmp_path: Path) -> None:
    """Only PYGW_TRUSTED_PROXIES may name the client: 127.0.0.2 forging X-Forwarded-For is
    still 127.0.0.2, while the user behind the trusted proxy keeps their own allowance."""
    env = {"PYGW_TRUSTED_PROXIES": "127.0.0.1", "PYGW_RATE_LOGIN": "3/60"}
    with gateways(tmp_path, env) as (gw,), httpx.Client(base_url=gw.url) as proxy:
        victim = unique()
        register(proxy, victim)
        with from_address(gw, "127.0.0.2") as forger:
            codes = [attempt(forger, victim, xff=f"203.0.113.{i}").status_code for i in range(5)]
        assert codes == [401] * 3 + [429] * 2
        assert attempt(proxy, victim, "correct-horse-1", xff="198.51.100.7").status_code == 200
        # Through the proxy, the forwarded address is the key: the forger's forged addresses
        # are fresh there, its own is spent.
        assert attempt(proxy, victim, xff="203.0.113.0").status_code == 401


def test_login_attempts_per_client_ip(tmp_path: Path) -> None:
    env = {"PYGW_RATE_LOGIN_IP": "4/60", "PYGW_RATE_LOGIN": "0"}
    with gateways(tmp_path, env) as (gw,), httpx.Client(base_url=gw.url) as client:
        codes = [attempt(client, unique()).status_code for _ in range(4)]
        assert codes == [401] * 4  # unknown users: still attempts
        assert_429(attempt(client, unique()), "/sessions/login", 60)
        assert rate_limited(gw, "login_ip") == 1


# ------------------------------------------------------------------------------ registration
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_registrations_are_limited_per_address(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Before the name is looked up or a password hashed; shared by the nodes with Redis."""
    redis_url = request.getfixturevalue("redis_server").url if backend == "redis" else None
    env = {"PYGW_RATE_REGISTER": "2/60"}
    n = 2 if redis_url else 1
    with gateways(tmp_path, env, n=n, redis_url=redis_url) as procs:
        first, last = procs[0], procs[-1]
        with httpx.Client(base_url=first.url) as ca, httpx.Client(base_url=last.url) as cb:
            register(ca, unique())
            register(cb, unique())
            for client in (ca, cb):
                body = {"username": unique(), "email": "x@example.com", "password": "pw-123456"}
                assert_429(client.post("/sessions/register", json=body), "/sessions/register", 60)
            with from_address(last, "127.0.0.2") as other:
                register(other, unique())
        assert sum(rate_limited(p, "register") for p in procs) == 2


# ------------------------------------------------------------------------------ proxies
@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Behind a trusted proxy at 127.0.0.1 (the test client plays the proxy)."""
    env = {
        "PYGW_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8",
        "PYGW_RATE_LOGIN_IP": "2/60",
        "PYGW_RATE_LOGIN": "0",
        "PYGW_RATE_WS_CONNECT": "1/60",
    }
    with gateways(tmp_path_factory.mktemp("proxied"), env) as (gw,):
        yield gw


def test_trusted_proxy_forwarded_for_keys_per_client(proxied: GatewayProcess) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        for _ in range(2):
            assert attempt(client, unique(), xff="203.0.113.5").status_code == 401
        assert attempt(client, unique(), xff="203.0.113.5").status_code == 429
        # A spoofed leftmost entry does not help: the hop the proxy appended decides.
        spoofed = attempt(client, unique(), xff="198.51.100.99, 203.0.113.5")
        assert spoofed.status_code == 429
        # Through a chain of trusted proxies, the nearest untrusted hop is the client.
        chained = attempt(client, unique(), xff="203.0.113.5, 10.1.1.1")
        assert chained.status_code == 429
        # Other clients behind the same proxy have their own allowance.
        assert attempt(client, unique(), xff="203.0.113.6").status_code == 401
        assert attempt(client, unique(), real_ip="203.0.113.7").status_code == 401
        assert attempt(client, unique(), real_ip="203.0.113.7").status_code == 401
        assert attempt(client, unique(), real_ip="203.0.113.7").status_code == 429


def test_untrusted_peer_cannot_choose_its_address(tmp_path: Path) -> None:
    env = {"PYGW_RATE_LOGIN_IP": "2/60", "PYGW_RATE_LOGIN": "0"}
    with gateways(tmp_path, env) as (gw,), httpx.Client(base_url=gw.url) as client:
        codes = [
            attempt(client, unique(), xff=f"203.0.113.{i}", real_ip=f"192.0.2.{i}")
            for i in range(4)
        ]
        assert [r.status_code for r in codes] == [401, 401, 429, 429]


async def test_ws_connects_through_a_trusted_proxy(proxied: GatewayProcess) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        a = new_account(client)
    url = f"{proxied.ws_url}/ws/connect?token={a.token}"

    async def connect(ip: str) -> websockets.ClientConnection:
        return await websockets.connect(url, additional_headers={"X-Forwarded-For": ip})

    first = await connect("198.51.100.1")
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect("198.51.100.1")
        assert refused.value.response.status_code == 429
        other = await connect("198.51.100.2")
        await other.close()
    finally:
        await first.close()


# ------------------------------------------------------------------------------ WebSocket
async def test_flooding_client_gets_429_frames_then_1008(tmp_path: Path) -> None:
    env = {"PYGW_RATE_WS_MESSAGE": "10/60", "PYGW_WS_MAX_ERRORS": "20"}
    with gateways(tmp_path, env) as (gw,):
        with httpx.Client(base_url=gw.url) as client:
            a = new_account(client)
        async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
            for i in range(1, 61):
                await ws.send({"type": "ping", "id": i})
            frames = []
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    frames.append(orjson.loads(await asyncio.wait_for(ws.conn.recv(), 5)))
            assert (ws.conn.close_code, ws.conn.close_reason) == (1008, "Too many errors")
        assert [f["type"] for f in frames[:10]] == ["pong"] * 10
        assert [f["id"] for f in frames[:10]] == list(range(1, 11))
        errors = frames[10:]
        # 20 errors are tolerated within the error window; the 21st closes the socket.
        assert len(errors) == 21
        assert all(
            f == {"type": "error", "code": 429, "message": "Rate limit exceeded", "id": i}
            for i, f in zip(range(11, 32), errors, strict=True)
        )
        assert rate_limited(gw, "ws_message") == 21


async def test_ws_message_limit_counts_every_type_and_resets(tmp_path: Path) -> None:
    with gateways(tmp_path, {"PYGW_RATE_WS_MESSAGE": "3/1"}) as (gw,):
        with httpx.Client(base_url=gw.url) as client:
            a = new_account(client)
        async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
            unknown = await ws.request({"type": "chat_message"})  # a user's, handled by none
            assert unknown["message"] == "Unknown message type: chat_message"
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
            refused = await ws.request({"type": "ping"})
            assert (refused["code"], refused["message"]) == (429, "Rate limit exceeded")
            await asyncio.sleep(1.05)
            for _ in range(3):
                assert (await ws.request({"type": "ping"}))["type"] == "pong"
            assert (await ws.request({"type": "ping"}))["code"] == 429


async def test_ws_connects_per_ip_are_shared_by_nodes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"PYGW_RATE_WS_CONNECT": "3/60"}
    with gateways(tmp_path, env, n=2, redis_url=redis_server.url) as (a, b):
        with httpx.Client(base_url=a.url) as client:
            acc = new_account(client)
        opened = [
            await WS.open(a.ws_url, acc.token, acc.session_id),
            await WS.open(b.ws_url, acc.token, acc.session_id),
        ]
        try:
            # A refused (bad token) upgrade is an attempt too.
            bad = await WS.open(a.ws_url, "not-a-token", welcome=False)
            assert await bad.closed() == (1008, "Invalid token")
            for node in (a, b):
                with pytest.raises(InvalidStatus) as refused:
                    await WS.open(node.ws_url, acc.token, acc.session_id)
                response = refused.value.response
                assert response.status_code == 429
                retry = int(response.headers["Retry-After"])
                assert 1 <= retry <= 20
                body = orjson.loads(response.body)
                assert body["status_code"] == 429 and body["retry_after"] == retry
                assert body["path"] == "/ws/connect"
            # The open connections are not affected.
            assert (await opened[1].request({"type": "ping"}))["type"] == "pong"
        finally:
            for ws in opened:
                await ws.close()
        assert rate_limited(a, "ws_connect") == 1 and rate_limited(b, "ws_connect") == 1


# ------------------------------------------------------------------------------ HTTP
def test_http_requests_per_user_else_per_ip(redis_server: RedisServer, tmp_path: Path) -> None:
    env = {"PYGW_RATE_HTTP": "6/60", "PYGW_API_KEYS": "k1"}
    with gateways(tmp_path, env, n=2, redis_url=redis_server.url) as (a, b):
        ca, cb = httpx.Client(base_url=a.url), httpx.Client(base_url=b.url)
        with ca, cb:
            # Anonymous requests count per IP: register + login twice = 4 of 6.
            alice, bob = new_account(ca), new_account(cb)
            for client in (ca, cb, ca, cb, ca, cb):
                r = client.get(f"/sessions/{alice.session_id}", headers=alice.headers)
                assert r.status_code == 200, r.text
            assert_429(
                ca.get(f"/sessions/{alice.session_id}", headers=alice.headers),
                f"/sessions/{alice.session_id}",
                60,
            )
            assert cb.get(f"/sessions/{bob.session_id}", headers=bob.headers).status_code == 200
            # The IP's own allowance: 4 used, 2 left, then 429 (bad tokens count per IP too).
            assert ca.get("/openapi.json").status_code == 200
            assert cb.get("/openapi.json", headers={"Authorization": "Bearer x"}).status_code == 200
            assert ca.get("/openapi.json").status_code == 429
            # Never limited: health checks, metrics, and backends with an API key.
            assert ca.get("/health").status_code == 200
            assert cb.get("/metrics").status_code == 200
            for _ in range(8):
                r = ca.post(
                    "/api/publish", json={"channel": "c", "data": 1}, headers={"X-API-Key": "k1"}
                )
                assert r.status_code == 200, r.text


def test_redis_outage_fails_open_to_per_node_limits(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"PYGW_RATE_HTTP": "3/60"}
    with gateways(tmp_path, env, redis_url=redis_server.url) as (gw,):
        with httpx.Client(base_url=gw.url) as client:
            assert client.get("/openapi.json").status_code == 200
            redis_server.stop()
            # No 503 because of the limiter: checks fall back to this node's own limiter.
            codes = [client.get("/openapi.json").status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
        assert "Redis unavailable" in gw.log_tail(200)
        assert "limiting per node" in gw.log_tail(200)
