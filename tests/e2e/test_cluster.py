"""Two gateway nodes sharing one real redis-server, or a real Redis Cluster (3 primaries + 3
replicas, ``PYGW_REDIS_CLUSTER=true``): delivery across nodes exactly once, pushes and
disconnects reaching every node, recovery, presence, and surviving a Redis restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from wsclient import WS

from conftest import new_account
from gateway_process import GatewayProcess
from redis_cluster import RedisClusterServers
from redis_server import RedisServer

API_KEY = "cluster-key"
ENV = {
    "PYGW_API_KEYS": API_KEY,
    "PYGW_NAMESPACES": orjson.dumps(
        [
            {"name": "hist", "history_size": 100, "history_ttl": 600},
            {"name": "pres", "presence": True},
        ]
    ).decode(),
}


CLUSTER_ENV = {**ENV, "PYGW_REDIS_CLUSTER": "true"}


class Cluster:
    def __init__(
        self, redis_server: RedisServer | None, a: GatewayProcess, b: GatewayProcess
    ) -> None:
        self.redis = redis_server
        """The one redis-server (None on a Redis Cluster)."""
        self.a = a
        self.b = b


def two_nodes(url: str, env: dict[str, str], tmp_path: Path) -> tuple[GatewayProcess, ...]:
    a = GatewayProcess(redis_url=url, env=env, log_path=tmp_path / "a.log").start()
    try:
        b = GatewayProcess(redis_url=url, env=env, log_path=tmp_path / "b.log").start()
    except BaseException:
        a.stop()
        raise
    return a, b


@pytest.fixture(params=["redis", "cluster"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes on a fresh redis-server, or on the shared (flushed) Redis Cluster."""
    if request.param == "cluster":
        shared: RedisClusterServers = request.getfixturevalue("clean_cluster")
        a, b = two_nodes(shared.url, CLUSTER_ENV, tmp_path)
        try:
            yield Cluster(None, a, b)
        finally:
            a.stop()
            b.stop()
        return
    with RedisServer() as server:
        a, b = two_nodes(server.url, ENV, tmp_path)
        try:
            yield Cluster(server, a, b)
        finally:
            a.stop()
            b.stop()


async def no_more_messages(ws: WS, seconds: float = 0.3) -> list[dict]:
    extra = []
    try:
        while True:
            frame = await ws.recv(timeout=seconds)
            if frame.get("type") == "message":
                extra.append(frame)
    except TimeoutError:
        return extra


async def test_publish_on_a_reaches_b_exactly_once(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.a.url) as http:
        pub = new_account(http)
        sub = new_account(http)
    async with (
        await WS.open(cluster.b.ws_url, sub.token) as wb,
        await WS.open(cluster.a.ws_url, pub.token) as wa,
    ):
        assert wa.welcome["gateway_id"] != wb.welcome["gateway_id"]
        await wb.request({"type": "subscribe", "channel": "room:x"})
        for i in range(20):
            reply = await wa.request({"type": "publish", "channel": "room:x", "data": {"i": i}})
            assert reply["type"] == "published"
        with httpx.Client(base_url=cluster.a.url, headers={"X-API-Key": API_KEY}) as api:
            for i in range(20, 40):
                r = api.post("/api/publish", json={"channel": "room:x", "data": {"i": i}})
                assert r.status_code == 200, r.text
                assert r.json()["deliveries"] == 0  # node A has no local subscriber
        got = await wb.messages(40, "room:x")
        assert [m["data"]["i"] for m in got] == list(range(40))
        offsets = [m["offset"] for m in got]
        assert offsets == list(range(offsets[0], offsets[0] + 40))
        assert await no_more_messages(wb) == []


async def test_push_reaches_a_users_sockets_on_both_nodes_and_logout_closes_them(
    cluster: Cluster,
) -> None:
    with httpx.Client(base_url=cluster.a.url) as http:
        user = new_account(http)
    on_a = await WS.open(cluster.a.ws_url, user.token)
    on_b = await WS.open(cluster.b.ws_url, user.token)
    with httpx.Client(base_url=cluster.b.url, headers={"X-API-Key": API_KEY}) as api:
        r = api.post(f"/api/push/{user.username}", json={"data": {"n": 1}})
        assert r.json()["deliveries"] == 1  # node B's own socket
    for ws in (on_a, on_b):
        (msg,) = await ws.messages(1)
        assert msg == {"type": "message", "channel": f"user:{user.username}", "data": {"n": 1}}
    with httpx.Client(base_url=cluster.a.url) as http:
        assert http.post("/sessions/logout", headers=user.headers).status_code == 200
    assert await on_a.closed() == (1000, "Logged out")
    assert await on_b.closed() == (1000, "Logged out")


async def test_recovery_across_nodes(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.a.url) as http:
        user = new_account(http)
    channel = f"hist:{user.username}"
    async with await WS.open(cluster.a.ws_url, user.token) as ws:
        sub = await ws.request({"type": "subscribe", "channel": channel})
        epoch, offset = sub["epoch"], sub["offset"]
    with httpx.Client(base_url=cluster.b.url, headers={"X-API-Key": API_KEY}) as api:
        for i in range(5):
            api.post("/api/publish", json={"channel": channel, "data": i})
    async with await WS.open(cluster.b.ws_url, user.token) as ws:
        sub = await ws.request(
            {"type": "subscribe", "channel": channel, "since": {"epoch": epoch, "offset": offset}}
        )
        assert sub["recovered"] is True
        missed = [f["data"] for f in ws.backlog if f.get("type") == "message"]
        assert missed == [0, 1, 2, 3, 4]


async def test_presence_is_cluster_wide(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.a.url) as http:
        u1 = new_account(http)
        u2 = new_account(http)
    channel = f"pres:{u1.username}"
    async with (
        await WS.open(cluster.a.ws_url, u1.token) as w1,
        await WS.open(cluster.b.ws_url, u2.token) as w2,
    ):
        await w1.request({"type": "subscribe", "channel": channel})
        await w2.request({"type": "subscribe", "channel": channel})
        with httpx.Client(base_url=cluster.a.url, headers={"X-API-Key": API_KEY}) as api:
            body = api.get(f"/api/presence/{channel}").json()
        assert body["count"] == 2
        nodes = {m["gateway_id"] for m in body["presence"].values()}
        assert nodes == {w1.welcome["gateway_id"], w2.welcome["gateway_id"]}
    with httpx.Client(base_url=cluster.a.url) as http:
        conns = http.get("/health/connections").json()
    assert conns["cluster_connections"] is not None


@pytest.mark.parametrize("cluster", ["redis"], indirect=True)  # a cluster: failover tests
async def test_delivery_resumes_after_redis_restart(cluster: Cluster) -> None:
    assert cluster.redis is not None
    with httpx.Client(base_url=cluster.a.url) as http:
        user = new_account(http)
    with redis.Redis.from_url(cluster.redis.url) as r:
        r.config_set("save", "3600 1")  # keep users and sessions across the restart
    async with await WS.open(cluster.b.ws_url, user.token) as wb:
        await wb.request({"type": "subscribe", "channel": "room:r"})
        cluster.redis.restart()
        # Publish through node A until node B's subscriber link is back and delivers.
        deadline = time.monotonic() + 20
        delivered = None
        with httpx.Client(base_url=cluster.a.url, headers={"X-API-Key": API_KEY}) as api:
            n = 0
            while delivered is None:
                assert time.monotonic() < deadline, "delivery did not resume"
                n += 1
                r = api.post("/api/publish", json={"channel": "room:r", "data": n})
                if r.status_code == 200:
                    try:
                        (delivered,) = await wb.messages(1, "room:r", timeout=0.3)
                    except TimeoutError:
                        delivered = None
                else:
                    await asyncio.sleep(0.1)
            # Once resumed, every publication arrives, in order, once.
            for i in range(n + 1, n + 21):
                assert (
                    api.post("/api/publish", json={"channel": "room:r", "data": i}).status_code
                    == 200
                )
        seen = [delivered["data"]]
        while seen[-1] != n + 20:
            (msg,) = await wb.messages(1, "room:r")
            seen.append(msg["data"])
        assert len(seen) == len(set(seen)), f"duplicates: {seen}"
        assert seen == sorted(seen)
        assert [x for x in seen if x > n] == list(range(n + 1, n + 21))
        assert await no_more_messages(wb) == []
