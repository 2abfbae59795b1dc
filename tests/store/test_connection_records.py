"""Connection records (``connections:{user}``) in the original gateway's shape: ``last_seen`` and
``connected_at`` are epoch seconds (floats), ``ws_connected`` is "1"/"0"; records written by the
original or by earlier pygw versions (ISO-8601 times, "true"/"false") are read as well."""

from __future__ import annotations

import time

import pytest
import redis

from pygw.core.timeutil import iso_from_unix
from pygw.store.base import ConnectionRecord, Storage
from pygw.store.redis import RedisStorage
from redis_server import RedisServer


async def test_times_are_epoch_seconds(storage: Storage) -> None:
    """Both backends: what is stored comes back as the same floats."""
    now = time.time()
    await storage.set_connection("alice", ConnectionRecord("s1", "gw", True, now, now - 1.5))
    record = await storage.get_connection("alice")
    assert record is not None
    assert isinstance(record.last_seen, float) and record.last_seen == now
    assert record.connected_at == now - 1.5


async def test_redis_hash_is_the_originals_and_both_forms_are_read(
    clean_redis: RedisServer,
) -> None:
    node = RedisStorage(clean_redis.url, session_ttl=30, batch_interval_ms=60_000)
    await node.start()
    raw = redis.Redis.from_url(clean_redis.url, decode_responses=True)  # as another tool sees it
    try:
        seen = 1764900000.25
        await node.set_connection("alice", ConnectionRecord("s1", "gw-1", True, seen, seen - 10))
        await node.flush()
        # What the original writes with redis-py: hset(..., {"last_seen": time.time()}).
        assert raw.hgetall("connections:alice") == {
            "session_id": "s1",
            "gateway_id": "gw-1",
            "ws_connected": "1",
            "last_seen": "1764900000.25",
            "connected_at": "1764899990.25",
        }
        # Written by the original (float text, "1"/"0", no connected_at) ...
        raw.hset(
            "connections:orig",
            mapping={"session_id": "s", "gateway_id": "h:8000", "ws_connected": "0",
                     "last_seen": "1764900001.5"},
        )  # fmt: skip
        # ... and by earlier pygw versions (ISO-8601, "true"/"false").
        raw.hset(
            "connections:older",
            mapping={"session_id": "s", "gateway_id": "g", "ws_connected": "true",
                     "last_seen": iso_from_unix(seen), "connected_at": iso_from_unix(seen - 10)},
        )  # fmt: skip
        raw.hset("connections:junk", mapping={"session_id": "s", "last_seen": "yesterday"})
        orig = await node.get_connection("orig")
        assert orig == ConnectionRecord("s", "h:8000", False, 1764900001.5, None)
        older = await node.get_connection("older")
        assert older is not None and older.ws_connected is True
        assert older.last_seen == pytest.approx(seen, abs=1e-6)
        assert older.connected_at == pytest.approx(seen - 10, abs=1e-6)
        junk = await node.get_connection("junk")
        assert junk is not None and (junk.last_seen, junk.connected_at) == (0.0, None)
    finally:
        await node.close()
        raw.close()
