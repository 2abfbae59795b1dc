"""Channel offsets and history expire by their own settings (security review item 13), on a
real redis-server: a history list lives ``history_ttl`` after the last publication, a channel's
offsets ``PYGW_CHANNEL_META_TTL`` (at least ``history_ttl``), not a fixed week. The memory
broker drops its streams after the same times."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from broker.test_conformance import Node
from pygw.broker._layout import SINGLE
from pygw.broker.memory import MemoryBroker
from pygw.broker.redis import RedisBroker
from pygw.core.channels import PublishOptions
from redis_server import RedisServer

META_TTL = 300.0


@pytest.fixture
async def broker(clean_redis: RedisServer) -> AsyncIterator[RedisBroker]:
    node = Node(f"node-{uuid.uuid4().hex[:6]}")
    node.broker = broker = RedisBroker(clean_redis.url, node_id=node.node_id, meta_ttl=META_TTL)
    await broker.start(node)
    yield broker
    await broker.close()


@pytest.fixture
def raw(clean_redis: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(clean_redis.url)


def ttl_s(raw: redis.Redis, key: str) -> float:
    """The key's remaining time to live in seconds (fails if it has none or does not exist)."""
    pttl = int(raw.pttl(key))  # type: ignore[arg-type]
    assert pttl > 0, f"{key}: PTTL {pttl} (-1: no expiry, -2: missing)"
    return pttl / 1000


@pytest.mark.parametrize(
    ("history_ttl", "history_expiry", "meta_expiry"),
    [
        (60.0, 60.0, META_TTL),  # history by its own TTL, offsets by the setting
        (0.0, META_TTL, META_TTL),  # no age limit on history: as long as the offsets
        (900.5, 900.5, 900.5),  # offsets never go before the history they number
    ],
)
async def test_history_and_offsets_expire_by_their_settings(
    broker: RedisBroker,
    raw: redis.Redis,
    history_ttl: float,
    history_expiry: float,
    meta_expiry: float,
) -> None:
    options = PublishOptions(history_size=10, history_ttl=history_ttl)
    for n in range(3):
        await broker.publish("hist:ttl", b"%d" % n, options)
    assert 0 <= history_expiry - ttl_s(raw, SINGLE.history("hist:ttl")) < 2
    assert 0 <= meta_expiry - ttl_s(raw, SINGLE.meta("hist:ttl")) < 2
    assert [off for off, _ in await broker.history("hist:ttl")] == [1, 2, 3]


async def test_a_subscription_alone_keeps_offsets_for_the_meta_ttl(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    epoch, top = await broker.top("quiet")  # what a subscribe reads: creates the epoch
    assert (bool(epoch), top) == (True, 0)
    assert 0 <= META_TTL - ttl_s(raw, SINGLE.meta("quiet")) < 2
    assert not raw.exists(SINGLE.history("quiet"))


async def test_offsets_expire_and_a_new_epoch_starts(
    clean_redis: RedisServer, raw: redis.Redis
) -> None:
    node = Node("short")
    node.broker = broker = RedisBroker(clean_redis.url, node_id="short", meta_ttl=1.0)
    await broker.start(node)
    try:
        options = PublishOptions(history_size=10, history_ttl=0.2)
        first = await broker.publish("hist:short", b"1", options)
        assert ttl_s(raw, SINGLE.history("hist:short")) <= 0.2
        raw.pexpire(SINGLE.meta("hist:short"), 1)  # as if a second had passed
        raw.pexpire(SINGLE.history("hist:short"), 1)
        while raw.exists(SINGLE.meta("hist:short"), SINGLE.history("hist:short")):
            time.sleep(0.005)
        second = await broker.publish("hist:short", b"2", options)
        assert second.epoch != first.epoch
        assert second.offset == 1
        recovery = await broker.recover("hist:short", first.epoch, first.offset)
        assert not recovery.recovered
    finally:
        await broker.close()


# -- the memory broker: the same lifetimes, for its in-process streams ----------------------------
async def test_memory_streams_are_dropped_when_idle_like_redis_keys() -> None:
    broker = MemoryBroker(meta_ttl=META_TTL)
    now = time.time()
    for n in range(100):  # subscriptions to ever new names: one stream each
        await broker.top(f"quiet:{n}")
    first = await broker.publish("hist:long", b"1", PublishOptions(10, 900.0))
    await broker.publish("plain", b"1", PublishOptions(0, 0.0))
    assert len(broker._history) == 102
    assert broker.drop_idle(now + META_TTL - 2) == 0
    assert broker.drop_idle(now + META_TTL + 2) == 101  # all but the 900 s history
    assert len(broker._history) == 1
    assert [off for off, _ in await broker.history("hist:long")] == [1]
    assert broker.drop_idle(now + 902) == 1
    assert len(broker._history) == 0
    again = await broker.publish("hist:long", b"2", PublishOptions(10, 900.0))
    assert (again.offset, again.epoch != first.epoch) == (1, True)  # a new epoch: resync
