"""Redis-only broker behaviour: a bounded number of subscriptions per node whatever its user
count, a push crossing one shard of a cluster, and the sharded links following a failover and a
slot migration (on clusters of their own)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
import redis
from redis.crc import key_slot

from broker.test_conformance import Node, did_not_suspend, until
from conftest import backend_url
from pygw.broker._layout import CLUSTER, SINGLE, USER_SHARDS
from pygw.broker.redis import RedisBroker
from pygw.core.channels import USER_PUBLISH, user_channel
from pygw.core.errors import BackendUnavailable
from redis_cluster import RedisClusterServers
from redis_server import RedisServer

NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture(params=["redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_node() -> AsyncIterator[NodeFactory]:
    """Started Redis brokers on the URL given (a cluster's with ``cluster=True``)."""
    started: list[Node] = []

    async def factory(url: str, cluster: bool) -> Node:
        node = Node(f"node-{uuid.uuid4().hex[:6]}")
        node.broker = RedisBroker(url, node_id=node.node_id, cluster=cluster)
        await node.broker.start(node)
        started.append(node)
        return node

    yield factory
    for node in reversed(started):
        await node.broker.close()


def subscriptions(url: str, cluster: RedisClusterServers | None) -> list[bytes]:
    """Every pub/sub channel (sharded ones on each primary of a cluster) with a subscriber."""
    if cluster is None:
        with redis.Redis.from_url(url) as r:
            return list(r.pubsub_channels("pygw:*"))
    found: list[bytes] = []
    for node in cluster.primaries():
        with cluster.client(node) as c:
            found += c.execute_command("PUBSUB", "SHARDCHANNELS", "pygw:*")
    return found


async def test_a_node_holds_a_bounded_number_of_subscriptions(
    make_node: NodeFactory, kind: str, request: pytest.FixtureRequest
) -> None:
    url = backend_url(kind, request)
    assert url is not None
    cluster = request.getfixturevalue("clean_cluster") if kind == "cluster" else None
    node = await make_node(url, kind == "cluster")
    before = sorted(subscriptions(url, cluster))
    layout = CLUSTER if cluster else SINGLE
    assert before == sorted([layout.control, *layout.user_shards])
    assert len(before) == USER_SHARDS + 1
    # 2,000 users connect: nothing to subscribe, nothing to wait for.
    assert all(did_not_suspend(node.broker.subscribe(user_channel(f"u{i}"))) for i in range(2000))
    await node.broker.subscribe("room:a")  # a channel with a local subscriber: one more
    assert sorted(subscriptions(url, cluster)) == sorted([*before, layout.pubsub("room:a")])
    for i in range(2000):
        await node.broker.unsubscribe(user_channel(f"u{i}"))  # user shards stay
    await asyncio.sleep(0.1)
    assert len(subscriptions(url, cluster)) == USER_SHARDS + 2


async def test_a_push_crosses_only_the_shard_of_its_user_channel(
    clean_cluster: RedisClusterServers, make_node: NodeFactory
) -> None:
    a = await make_node(clean_cluster.url, True)
    b = await make_node(clean_cluster.url, True)
    channel = user_channel("alice")
    for node in clean_cluster.primaries():
        with clean_cluster.client(node) as c:
            c.config_resetstat()
    await a.broker.publish(channel, b'"hi"', USER_PUBLISH)
    await until(lambda: b.received(channel) == [(0, "hi")])
    published = {}
    for node in clean_cluster.primaries():
        with clean_cluster.client(node) as c:
            stats = c.info("commandstats")
        published[node.port] = stats.get("cmdstat_spublish", {}).get("calls", 0)
    owner = clean_cluster.primary_of(CLUSTER.user_shard(channel))
    assert published == {port: int(port == owner.port) for port in published}


async def test_user_subscribe_waits_while_the_link_is_down(
    redis_server: RedisServer, make_node: NodeFactory
) -> None:
    """The guarantee behind `connected`: while the node cannot receive pushes, a connection
    is not told it is connected (the upgrade fails with 503 instead)."""
    node = await make_node(redis_server.url, False)
    assert did_not_suspend(node.broker.subscribe(user_channel("bob")))
    redis_server.stop()
    await until(lambda: not node.broker._link.is_confirmed(SINGLE.user_shard("user:bob")))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await node.broker.subscribe(user_channel("bob"))
    assert time.monotonic() - started >= 2.5  # waited for the link (subscribe_timeout 3 s)
    redis_server.start()
    await until(lambda: node.broker._link.is_confirmed(SINGLE.user_shard("user:bob")), 10)
    assert did_not_suspend(node.broker.subscribe(user_channel("bob")))
    assert node.resyncs >= 1


# -- a Redis Cluster changing under the links ----------------------------------------------------
async def publish_until_delivered(
    publisher: Node, subscriber: Node, channel: str, started: float, timeout: float = 30.0
) -> tuple[float, int]:
    """Publish to ``channel`` (a user channel: a push) until ``subscriber`` gets one; (seconds
    from ``started`` to that delivery, publications that failed meanwhile)."""
    failed = 0
    n = 0
    while True:
        assert time.monotonic() - started < timeout, "delivery did not resume"
        n += 1
        try:
            await publisher.broker.publish(channel, orjson.dumps(n), USER_PUBLISH)
        except BackendUnavailable:
            failed += 1
        if subscriber.received(channel):
            return time.monotonic() - started, failed
        await asyncio.sleep(0.05)


async def test_sharded_links_follow_a_failover(
    redis_cluster: RedisClusterServers, make_node: NodeFactory
) -> None:
    a = await make_node(redis_cluster.url, True)
    b = await make_node(redis_cluster.url, True)
    room = "room:" + uuid.uuid4().hex[:6]
    await a.broker.subscribe(room)
    await b.broker.subscribe(room)
    channel = user_channel("carol")
    victim = redis_cluster.primary_of(CLUSTER.user_shard(channel))
    victim.kill()
    started = time.monotonic()
    resumed, failed = await publish_until_delivered(a, b, channel, started)
    # Once resumed, deliveries are exactly once on every node (pushes and channel messages).
    for i in range(20):
        await a.broker.publish(channel, orjson.dumps(1000 + i), USER_PUBLISH)
        await b.broker.publish(room, orjson.dumps(i))
    for node in (a, b):
        await until(lambda node=node: len(node.received(room)) >= 20)
    await until(lambda: b.received(channel)[-1][1] == 1019)
    await asyncio.sleep(0.2)
    pushes = [d for _, d in b.received(channel)]
    assert len(pushes) == len(set(pushes)), f"duplicates: {pushes}"
    assert pushes[-20:] == [1000 + i for i in range(20)]
    for node in (a, b):
        assert [d for _, d in node.received(room)] == list(range(20))
    assert b.resyncs >= 1
    print(f"deliveries resumed {resumed:.2f} s after the kill ({failed} publishes failed)")
    assert resumed < 15


async def test_sharded_links_follow_a_slot_migration(
    redis_cluster: RedisClusterServers, make_node: NodeFactory
) -> None:
    """Moving a slot makes its old owner drop the slot's sharded subscribers (``sunsubscribe``);
    the link subscribes again on the new owner."""
    a = await make_node(redis_cluster.url, True)
    channel = user_channel("dave")
    shard = CLUSTER.user_shard(channel)
    slot = key_slot(shard)
    source = redis_cluster.primary_of(shard)
    target = next(n for n in redis_cluster.primaries() if n is not source)
    ids = {}
    for node in (source, target):
        with redis_cluster.client(node) as c:
            ids[node.port] = c.execute_command("CLUSTER", "MYID").decode()
    with redis_cluster.client(target) as c:
        c.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
    with redis_cluster.client(source) as c:
        c.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
    for node in redis_cluster.primaries():  # no keys in that slot: just hand it over
        with redis_cluster.client(node) as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    await until(lambda: redis_cluster.primary_of(shard) is target)
    started = time.monotonic()
    resumed, _failed = await publish_until_delivered(a, a, channel, started, timeout=15)
    with redis_cluster.client(target) as c:
        assert shard in c.execute_command("PUBSUB", "SHARDCHANNELS", "pygw:user:*")
    assert resumed < 10
