"""Bounded Redis state against a real gateway and a real redis-server (security review items
14, 15): the stored revocation list keeps only live entries, and WebSocket upgrades aborted
while the node waits for Redis pub/sub leave no subscription behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from wsclient import WS

from conftest import ADMIN, Account, login, new_account
from gateway_process import GatewayProcess
from pygw.broker._layout import SINGLE, USER_SHARDS
from pygw.store._layout import SINGLE as STORE_KEYS
from redis_server import RedisServer
from tcp_relay import TCPRelay


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def relay(redis_server: RedisServer) -> Iterator[TCPRelay]:
    with TCPRelay("127.0.0.1", redis_server.port) as r:
        yield r


@pytest.fixture(scope="module")
def gw(relay: TCPRelay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One node reaching Redis through ``relay`` (so a test can cut its link)."""
    log = tmp_path_factory.mktemp("gw") / "gateway.log"
    env = {"PYGW_ADMIN_USERS": ADMIN, "PYGW_RATE_WS_CONNECT": "0"}
    with GatewayProcess(redis_url=relay.url(), env=env, log_path=log) as proc:
        yield proc


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


# -- item 14: the revocation list ----------------------------------------------------------------
def test_a_revocation_prunes_expired_entries_and_still_holds(
    http: httpx.Client, raw: redis.Redis
) -> None:
    now = int(time.time())
    # 5,000 revocations of tokens that expired long ago, as a node would have left them.
    raw.zadd(STORE_KEYS.revoked, {f"old-{n}": now - 86_400 + n for n in range(5000)})
    a = new_account(http)
    r = http.post("/sessions/logout", headers=a.headers)
    assert r.status_code == 200, r.text
    entries = raw.zrange(STORE_KEYS.revoked, 0, -1, withscores=True)
    assert entries, "the logout's revocation is stored"
    assert all(score >= now for _, score in entries), "expired entries were kept"
    assert len(entries) <= 2  # the logged-out token (and its family's latest access token)
    refused = http.get(f"/sessions/{a.session_id}", headers=a.headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "Token revoked"


# -- item 15: upgrades aborted while the node waits for pub/sub ----------------------------------
def upgrade_request(port: int, account: Account) -> bytes:
    return (
        f"GET /ws/connect?token={account.token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def pubsub_channels(raw: redis.Redis) -> set[bytes]:
    return set(raw.pubsub_channels())  # type: ignore[arg-type]


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def opened(http: httpx.Client) -> float:
    """``ws_connections_opened`` from the node's /metrics."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("pygw_ws_connections_opened"):
            return float(line.split()[-1])
    raise AssertionError("no ws_connections_opened in /metrics")


def node_state(http: httpx.Client, admin: Account) -> tuple[int, int]:
    """(this node's WebSocket connections, channels with local subscribers)."""
    conns = http.get("/admin/connections", headers=admin.headers)
    channels = http.get("/admin/channels", headers=admin.headers)
    assert conns.status_code == channels.status_code == 200, (conns.text, channels.text)
    (node,) = conns.json()["nodes"]
    return int(node["count"]), int(channels.json()["count"])


async def test_upgrades_aborted_during_the_subscribe_leave_no_subscription(
    gw: GatewayProcess, relay: TCPRelay, raw: redis.Redis, http: httpx.Client, tmp_path: Path
) -> None:
    admin = login(http, ADMIN)
    users = [new_account(http, "aborted") for _ in range(20)]
    baseline = pubsub_channels(raw)
    assert SINGLE.control in baseline
    assert len(baseline) == USER_SHARDS + 1  # control + user shards: nothing per user
    opened_before = opened(http)
    relay.cut()  # the node's pub/sub link is down: upgrades wait for it
    try:
        wait_until(lambda: not pubsub_channels(raw))  # Redis dropped the node's subscriber
        time.sleep(0.2)  # and the node noticed
        sockets = []
        for user in users:
            sock = socket.create_connection(("127.0.0.1", gw.port))
            sock.sendall(upgrade_request(gw.port, user))
            sockets.append(sock)
        time.sleep(0.3)  # every upgrade has reached the wait
        for sock in sockets:
            sock.close()  # aborted before the node could answer
    finally:
        relay.restore()
    # The link comes back, the waits end, the upgrades find their clients gone.
    wait_until(lambda: pubsub_channels(raw) == baseline)
    time.sleep(0.5)
    assert opened(http) == opened_before, "an upgrade did not wait for the subscription"
    assert node_state(http, admin) == (0, 0)
    assert pubsub_channels(raw) == baseline
    for channel in baseline:
        assert raw.pubsub_numsub(channel) == [(channel, 1)]  # this node, once
    # The node still serves: a real connection is counted, and leaves nothing when it closes.
    async with await WS.open(gw.ws_url, users[0].token) as ws:
        assert (await ws.request({"type": "ping"}))["type"] == "pong"
        assert node_state(http, admin) == (1, 0)
    wait_until(lambda: node_state(http, admin) == (0, 0))
    assert pubsub_channels(raw) == baseline
    assert "Traceback" not in gw.log_tail(400)
