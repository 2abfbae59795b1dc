"""Redis-only behaviour against a real redis-server: key layout, legacy data, write-behind
batching, several nodes, outages."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from pygw.core.errors import BackendUnavailable
from pygw.core.timeutil import now_iso
from pygw.store._pending import SessionDelta
from pygw.store.base import (
    ConnectionRecord,
    RefreshFamily,
    RouteRecord,
    SessionRecord,
    UnstorableValue,
    UserRecord,
)
from pygw.store.redis import RedisStorage
from redis_server import RedisServer, free_port

RedisFactory = Callable[..., Awaitable[RedisStorage]]


@pytest.fixture
def raw(clean_redis: RedisServer) -> Iterator[redis.Redis]:
    """A plain client on the shared (flushed) server, as another tool would see the data."""
    with redis.Redis.from_url(clean_redis.url, decode_responses=True) as client:
        yield client


@pytest.fixture
async def make_redis(clean_redis: RedisServer) -> AsyncIterator[RedisFactory]:
    """Started RedisStorage "nodes" (shared server unless ``url`` is given), closed afterwards."""
    nodes: list[RedisStorage] = []

    async def factory(**kwargs: Any) -> RedisStorage:
        kwargs.setdefault("session_ttl", 30.0)
        kwargs.setdefault("batch_interval_ms", 60_000)  # tests flush explicitly
        node = RedisStorage(kwargs.pop("url", clean_redis.url), **kwargs)
        await node.start()
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        await node.close()


def new_session(user: str, **data: Any) -> SessionRecord:
    now = now_iso()
    return SessionRecord(
        uuid.uuid4().hex, user, None, {"conversation": [], "api_key": None, **data}, now, now
    )


def stored(raw: redis.Redis, session_id: str) -> dict[str, Any]:
    value = raw.get(f"sessions:{session_id}")
    assert value is not None, "session missing in Redis"
    doc: dict[str, Any] = json.loads(value)
    return doc


def command_calls(raw: redis.Redis) -> int:
    """Commands executed since CONFIG RESETSTAT, script-internal ones included."""
    stats: dict[str, dict[str, int]] = raw.info("commandstats")
    skip = {"cmdstat_info", "cmdstat_config|resetstat"}
    return sum(s["calls"] for name, s in stats.items() if name not in skip)


# -- layout and compatibility ----------------------------------------------------------------
async def test_key_layout(make_redis: RedisFactory, raw: redis.Redis) -> None:
    node = await make_redis()
    await node.create_user(UserRecord("alice", "a@example.com", "hash"))
    assert raw.hgetall("users:alice") == {
        "password": "hash",
        "email": "a@example.com",
        "role": "user",
    }
    login = now_iso()
    await node.update_user("alice", {"last_login": login})
    assert raw.hget("users:alice", "last_login") == login

    session = new_session("alice")
    await node.create_session(session)
    assert stored(raw, session.session_id) == session.to_json_dict()
    assert 29_000 < raw.pttl(f"sessions:{session.session_id}") <= 30_000
    await node.update_session(session.session_id, chat_id="c1", data={"api_key": "k"})
    await node.flush()
    doc = stored(raw, session.session_id)
    assert list(doc) == ["user_id", "chat_id", "data", "created_at", "last_access"]
    assert (doc["chat_id"], doc["data"]) == ("c1", {"conversation": [], "api_key": "k"})

    seen = time.time()
    await node.set_connection("alice", ConnectionRecord(session.session_id, "gw-1", True, seen))
    await node.flush()
    assert raw.hgetall("connections:alice") == {  # the original's shape: "1"/"0", epoch seconds
        "session_id": session.session_id,
        "gateway_id": "gw-1",
        "ws_connected": "1",
        "last_seen": repr(seen),
    }
    await node.set_connection("alice", ConnectionRecord("s", "gw-1", False, seen, seen))
    await node.flush()
    assert raw.hget("connections:alice", "ws_connected") == "0"
    assert raw.hget("connections:alice", "connected_at") == repr(seen)

    exp = int(time.time()) + 60
    await node.revoke_token("jti-1", exp)
    assert raw.zscore("pygw:revoked_tokens", "jti-1") == exp
    family = RefreshFamily("fam", "alice", session.session_id, "r", "a", exp, exp)
    await node.create_family(family)
    assert raw.hget("pygw:refresh_family:fam", "refresh_jti") == "r"
    assert raw.ttl("pygw:refresh_family:fam") > 0
    assert raw.get("pygw:current_family:alice") == "fam"

    original = ("users:", "sessions:", "connections:")
    for key in raw.scan_iter():
        assert key.startswith(original) or key.startswith("pygw:"), key


async def test_reads_data_of_the_original_gateway(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    legacy_hash = hashlib.sha256(b"secret").hexdigest()
    raw.hset("users:old", mapping={"password": legacy_hash, "email": "old@example.com"})
    raw.hset("users:older", mapping={"password": legacy_hash, "email": "", "nickname": "x"})
    raw.hset("users:admin", mapping={"password": "h", "email": "e", "role": "admin"})
    legacy_session = (
        '{"user_id": "old", "data": {"conversation": [{"role": "user", "content": "hi"}],'
        ' "caf\\u00e9": 1, "api_key": null}, "created_at": "2024-05-01T10:00:00",'
        ' "extra": {"kept": []}}'
    )
    raw.set("sessions:legacy-sid", legacy_session, ex=600)
    raw.set("sessions:numeric", json.dumps({"user_id": "old", "data": None, "created_at": 1.7e9}))
    for user, flag in [("c1", "1"), ("c2", "True"), ("c3", "false")]:
        raw.hset(f"connections:{user}", mapping={"session_id": "s", "ws_connected": flag})

    node = await make_redis()  # starts after the data exists: back-fills the user index
    old = await node.get_user("old")
    assert old == UserRecord("old", "old@example.com", legacy_hash, "user", None)
    older = await node.get_user("older")
    assert older is not None and (older.email, older.role) == ("", "user")
    assert [u.username for u in await node.list_users()] == ["admin", "old", "older"]
    assert (await node.stats()).total_users == 3

    session = await node.get_session("legacy-sid")
    assert session is not None
    assert (session.user_id, session.chat_id) == ("old", None)
    assert session.last_access == session.created_at == "2024-05-01T10:00:00"
    assert session.data["café"] == 1
    numeric = await node.get_session("numeric")
    assert numeric is not None and numeric.data == {}
    assert numeric.created_at.startswith("2023-11-14T22:13:20")

    await node.update_session("legacy-sid", chat_id="new-chat", data={"café": 2, "api_key": "k"})
    await node.flush()
    text = raw.get("sessions:legacy-sid")
    assert isinstance(text, str) and text.count("caf") == 1  # replaced, not duplicated
    doc = json.loads(text)
    assert list(doc)[:3] == ["user_id", "data", "created_at"]  # original order kept
    assert doc["extra"] == {"kept": []}
    assert doc["data"] == {
        "conversation": [{"role": "user", "content": "hi"}],
        "café": 2,
        "api_key": "k",
    }
    assert doc["chat_id"] == "new-chat"
    assert 0 < raw.ttl("sessions:legacy-sid") <= 30
    # sessions pygw did not create are adopted into the user's index once read
    assert {s.session_id for s in await node.list_user_sessions("old")} == {
        "legacy-sid",
        "numeric",
    }
    for user, expected in [("c1", True), ("c2", True), ("c3", False)]:
        record = await node.get_connection(user)
        assert record is not None and record.ws_connected is expected
        assert (record.gateway_id, record.last_seen, record.connected_at) == ("", 0.0, None)
    await node.delete_session("legacy-sid")
    assert raw.exists("sessions:legacy-sid") == 0
    assert [s.session_id for s in await node.list_user_sessions("old")] == ["numeric"]


async def test_merge_keeps_json_values_exact(make_redis: RedisFactory, raw: redis.Redis) -> None:
    node = await make_redis()
    tricky = {
        "big": 9007199254740993,  # 2**53 + 1: not representable as a double
        "float": 0.1,
        "empty_list": [],
        "empty_obj": {},
        "nested": {"a": [[], {}], "b": None},
        "text": 'quote " backslash \\ braces }{ ][ , : unicode \u00e9 \U0001f600',
    }
    session = new_session("alice", **tricky)
    await node.create_session(session)
    await node.update_session(session.session_id, data={"added": {"x": [1, 2]}})
    await node.flush()
    assert stored(raw, session.session_id)["data"] == {
        "conversation": [],
        "api_key": None,
        **tricky,
        "added": {"x": [1, 2]},
    }


async def test_malformed_stored_session_is_left_alone(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node = await make_redis()
    session = new_session("alice")
    await node.create_session(session)
    await node.update_session(session.session_id, data={"a": 1})  # loaded while still valid
    raw.set(f"sessions:{session.session_id}", "[1, 2", px=30_000)
    await node.flush()  # logs and drops the update; no crash, no overwrite
    assert raw.get(f"sessions:{session.session_id}") == "[1, 2"
    assert node.pending_writes == 0
    assert await node.get_session(session.session_id) is None


# -- write-behind ------------------------------------------------------------------------------
async def test_100_updates_cost_at_most_10_commands(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node = await make_redis()
    session = new_session("alice")
    await node.create_session(session)  # also opens the pooled connection
    raw.config_resetstat()
    for i in range(100):
        merged = await node.update_session(session.session_id, data={f"k{i % 10}": i})
        assert merged is not None and merged.data[f"k{i % 10}"] == i
    await node.flush()
    calls = command_calls(raw)
    assert calls <= 10, raw.info("commandstats")
    doc = stored(raw, session.session_id)
    assert {doc["data"][f"k{j}"] for j in range(10)} == set(range(90, 100))


async def test_many_sessions_flush_in_one_pipeline(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node = await make_redis()
    sessions = [new_session("alice") for _ in range(50)]
    for s in sessions:
        await node.create_session(s)
        await node.update_session(s.session_id, data={"n": 1})
    raw.config_resetstat()
    await node.flush()
    stats: dict[str, dict[str, int]] = raw.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 50
    assert all(stored(raw, s.session_id)["data"]["n"] == 1 for s in sessions)


async def test_connection_records_are_write_behind_and_batched(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    """A connect storm: 2,002 records (two per user) cost two script calls (1,000 users per
    call), not a round-trip per connection; the writing node reads them back before the flush,
    another node after it."""
    node, other = await make_redis(), await make_redis()
    await node.ping()
    seen = time.time()
    raw.hset("connections:u0", mapping={"session_id": "old", "connected_at": "stale"})
    raw.config_resetstat()
    users = 1001
    for i in range(users):
        await node.set_connection(f"u{i}", ConnectionRecord("s-first", "gw-1", True, seen))
        await node.set_connection(f"u{i}", ConnectionRecord(f"s{i}", "gw-1", False, seen))
    assert command_calls(raw) == 0
    assert await node.get_connection("u7") == ConnectionRecord("s7", "gw-1", False, seen)
    assert (await other.get_connection("u0")).session_id == "old"  # type: ignore[union-attr]
    await node.flush()
    stats: dict[str, dict[str, int]] = raw.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2
    assert stats["cmdstat_hset"]["calls"] == users  # the later record of each user, once
    assert raw.hgetall("connections:u0") == {  # replaced whole: no stale connected_at
        "session_id": "s0",
        "gateway_id": "gw-1",
        "ws_connected": "0",
        "last_seen": repr(seen),
    }
    assert await other.get_connection("u1000") == ConnectionRecord("s1000", "gw-1", False, seen)
    await node.set_connection("u1", ConnectionRecord("s-new", "gw-1", True, seen))
    await node.delete_connection("u1")  # drops the pending record and the stored one
    await node.flush()
    assert await node.get_connection("u1") is None
    assert not raw.exists("connections:u1")
    raw.script_flush()  # Redis forgot the script (restart, SCRIPT FLUSH): loaded again
    await node.set_connection("u2", ConnectionRecord("s-again", "gw-1", True, seen, seen))
    await node.flush()
    assert raw.hget("connections:u2", "connected_at") == repr(seen)


async def test_two_nodes_updating_different_keys_lose_nothing(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node_a, node_b = await make_redis(), await make_redis()
    session = new_session("alice")
    await node_a.create_session(session)
    sid = session.session_id
    for round_ in range(5):
        await node_a.update_session(sid, data={f"a{round_}": round_})
        await node_b.update_session(sid, data={f"b{round_}": round_}, chat_id=f"b{round_}")
        await asyncio.gather(node_a.flush(), node_b.flush())
    expected = {f"{p}{r}": r for p in "ab" for r in range(5)}
    assert stored(raw, sid)["data"] == {"conversation": [], "api_key": None, **expected}
    for node in (node_a, node_b):
        got = await node.get_session(sid)
        assert got is not None and expected.items() <= got.data.items()
        assert got.chat_id == "b4"


async def test_background_flusher_coalesces(make_redis: RedisFactory, raw: redis.Redis) -> None:
    node = await make_redis(batch_interval_ms=20)
    session = new_session("alice")
    await node.create_session(session)
    for i in range(20):
        await node.update_session(session.session_id, data={"i": i})
    for _ in range(200):
        if node.pending_writes == 0:
            break
        await asyncio.sleep(0.01)
    assert stored(raw, session.session_id)["data"]["i"] == 19


async def test_flush_never_resurrects_a_deleted_session(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node = await make_redis()
    session = new_session("alice")
    await node.create_session(session)
    await node.update_session(session.session_id, data={"a": 1})
    raw.delete(f"sessions:{session.session_id}")  # deleted by another node
    await node.flush()
    assert raw.exists(f"sessions:{session.session_id}") == 0
    assert await node.get_session(session.session_id) is None
    assert node.pending_writes == 0


async def test_session_ttl_refreshed_in_redis(make_redis: RedisFactory, raw: redis.Redis) -> None:
    node = await make_redis(session_ttl=10.0)
    session = new_session("alice")
    await node.create_session(session)
    key = f"sessions:{session.session_id}"

    def age() -> None:  # as if 8 s of inactivity went by
        raw.pexpire(key, 2_000)

    def fresh() -> bool:
        return 9_000 < raw.pttl(key) <= 10_000

    age()
    assert await node.get_session(session.session_id) is not None
    assert fresh()
    age()
    assert await node.update_session(session.session_id, data={"a": 1}) is not None  # GETEX
    assert fresh()
    age()
    assert await node.update_session(session.session_id, data={"a": 2}) is not None  # pending
    await node.flush()
    assert fresh()
    score = raw.zscore("pygw:session_expiry", session.session_id)
    assert score is not None and abs(score - (time.time() + 10)) < 2


async def test_close_flushes_pending_writes(clean_redis: RedisServer, raw: redis.Redis) -> None:
    node = RedisStorage(clean_redis.url, session_ttl=30, batch_interval_ms=60_000)
    await node.start()
    session = new_session("alice")
    await node.create_session(session)
    await node.update_session(session.session_id, data={"api_key": "at-close"})
    await node.set_connection(
        "alice", ConnectionRecord(session.session_id, "gw", False, time.time())
    )
    await node.close()
    await node.close()  # idempotent
    assert stored(raw, session.session_id)["data"]["api_key"] == "at-close"
    assert raw.hget("connections:alice", "session_id") == session.session_id


async def test_script_cache_loss_is_survived(make_redis: RedisFactory, raw: redis.Redis) -> None:
    node = await make_redis()
    session = new_session("alice")
    await node.create_session(session)
    await node.update_session(session.session_id, data={"a": 1})
    raw.script_flush()
    await node.flush()
    assert stored(raw, session.session_id)["data"]["a"] == 1
    raw.script_flush()
    assert await node.create_user(UserRecord("bob", "b@x", "h"))
    assert (await node.get_session(session.session_id)) is not None


async def test_rotation_is_atomic_across_nodes(make_redis: RedisFactory) -> None:
    nodes = [await make_redis() for _ in range(4)]
    now = int(time.time())
    await nodes[0].create_family(RefreshFamily("fam", "alice", "s", "r1", "a1", now, now + 60))
    outcomes = await asyncio.gather(
        *(n.rotate_refresh("fam", "r1", f"r-{i}", f"a-{i}", now, now) for i, n in enumerate(nodes))
    )
    # exactly one winner; the first loser revokes the family, the others find it revoked
    assert sorted(o.status for o in outcomes) == ["ok", "reused", "revoked", "revoked"]


# -- outages -----------------------------------------------------------------------------------
async def test_unreachable_redis_raises_backend_unavailable(make_redis: RedisFactory) -> None:
    node = await make_redis(url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    started = time.monotonic()
    for call in (
        node.ping(),
        node.get_user("alice"),
        node.get_session("s"),
        node.stats(),
        node.update_session("s", data={"a": 1}),
    ):
        with pytest.raises(BackendUnavailable, match="Redis unavailable"):
            await call
    assert time.monotonic() - started < 2


def persist_on_shutdown(server: RedisServer) -> None:
    """Make the next SIGTERM write a dump that the restart loads (a server that keeps data)."""
    with redis.Redis.from_url(server.url) as client:
        client.config_set("save", "3600 1")


async def test_outage_keeps_pending_writes_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    node = RedisStorage(redis_server.url, session_ttl=30, batch_interval_ms=60_000)
    await node.start()
    try:
        session = new_session("alice")
        sid = session.session_id
        await node.create_session(session)
        await node.create_user(UserRecord("alice", "a@x", "h"))
        await node.update_session(sid, data={"a": 1})
        persist_on_shutdown(redis_server)
        redis_server.stop()

        caplog.set_level(logging.WARNING, logger="pygw.store.redis")
        merged = await node.update_session(sid, data={"b": 2})  # pending entry: no I/O needed
        assert merged is not None and (merged.data["a"], merged.data["b"]) == (1, 2)
        record = ConnectionRecord(sid, "gw-1", True, time.time(), time.time())
        await node.set_connection("alice", record)  # write-behind: accepted during the outage
        assert await node.get_connection("alice") == record
        for call in (node.flush(), node.flush(), node.get_session(sid), node.get_user("alice")):
            with pytest.raises(BackendUnavailable):
                await call
        assert node.pending_writes == 1
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per failed flush

        redis_server.start()
        await node.flush()
        assert node.pending_writes == 0
        got = await node.get_session(sid)
        assert got is not None and (got.data["a"], got.data["b"]) == (1, 2)
        assert await node.get_user("alice") is not None
        with redis.Redis.from_url(redis_server.url, decode_responses=True) as raw:
            assert raw.hget("connections:alice", "connected_at") == repr(record.connected_at)
        await node.ping()
    finally:
        await node.close()


async def test_background_flusher_retries_after_outage(redis_server: RedisServer) -> None:
    node = RedisStorage(redis_server.url, session_ttl=30, batch_interval_ms=300)
    await node.start()
    try:
        session = new_session("alice")
        await node.create_session(session)
        persist_on_shutdown(redis_server)
        for attempt in range(10):  # the flusher may win the race to our stop(): try again
            await node.update_session(session.session_id, data={"attempt": attempt})
            redis_server.stop()
            if node.pending_writes:
                break
            redis_server.start()
        else:
            pytest.fail("could not stop Redis with a write pending")
        await asyncio.sleep(0.7)  # a couple of failed background flushes
        assert node.pending_writes == 1
        redis_server.start()
        for _ in range(100):
            if node.pending_writes == 0:
                break
            await asyncio.sleep(0.05)
        with redis.Redis.from_url(redis_server.url, decode_responses=True) as raw:
            assert stored(raw, session.session_id)["data"]["attempt"] == attempt
    finally:
        await node.close()


async def test_start_and_close_without_redis(caplog: pytest.LogCaptureFixture) -> None:
    node = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", session_ttl=30, socket_timeout=0.5)
    await node.start()  # does not fail: the gateway can start before Redis
    with pytest.raises(BackendUnavailable):
        await node.create_user(UserRecord("a", "b", "c"))
    await node.close()


async def test_routes_key_layout_and_malformed_entries(
    make_redis: RedisFactory, raw: redis.Redis
) -> None:
    node = await make_redis()
    route = RouteRecord("r1", "http://127.0.0.1:9", "/p", "PUT", {"X-K": "v"}, 2.0, True, True)
    await node.put_route(route)
    assert raw.type("pygw:routes") == "hash"
    assert json.loads(raw.hget("pygw:routes", "r1")) == {
        "base_url": "http://127.0.0.1:9",
        "path": "/p",
        "method": "PUT",
        "headers": {"X-K": "v"},
        "timeout": 2.0,
        "require_auth": True,
        "ws_supported": True,
    }
    # Values another tool broke are skipped (and logged), the rest still load.
    raw.hset("pygw:routes", mapping={"bad1": "not json", "bad2": "[1]", "bad3": '{"path": "/"}'})
    assert await node.list_routes() == [route]


# -- values that cannot be encoded (security review item 1) -----------------------------------
async def test_one_unstorable_update_cannot_block_the_batch(
    clean_redis: RedisServer, raw: redis.Redis
) -> None:
    """An integer past 2**64 once reached the write-behind batch, which then failed to encode
    on every flush: no session of the node was written again, and the SIGTERM flush failed.
    It is refused when given; the 100 others are written, later updates too, close works."""
    node = RedisStorage(clean_redis.url, session_ttl=30, batch_interval_ms=60_000)
    await node.start()
    sessions = [new_session(f"user{i}") for i in range(101)]
    for session in sessions:
        await node.create_session(session)
    bad = sessions[50]
    for i, session in enumerate(sessions):
        if session is bad:
            with pytest.raises(UnstorableValue):
                await node.update_session(session.session_id, data={"n": 2**64, "ok": i})
        else:
            await node.update_session(session.session_id, data={"n": i})
    await node.flush()
    for i, session in enumerate(sessions):
        data = stored(raw, session.session_id)["data"]
        assert data.get("n") == (None if session is bad else i)
        assert "ok" not in data
    await node.update_session(bad.session_id, data={"n": "fine now"})
    await node.update_session(sessions[0].session_id, data={"n": "later"})
    await node.close()  # the SIGTERM flush
    assert stored(raw, bad.session_id)["data"]["n"] == "fine now"
    assert stored(raw, sessions[0].session_id)["data"]["n"] == "later"
    assert node.dropped_values == 0


async def test_flush_drops_an_unencodable_value_alone_and_counts_it(
    clean_redis: RedisServer, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Defence in depth: should a value that cannot be encoded reach the pending writes some
    other way than update_session (simulated by adding it to a pending delta), the flush drops
    that value alone, logs and counts it, and writes everything else — the same session's
    other keys, the other 100 sessions, later flushes and the one at close."""
    node = RedisStorage(clean_redis.url, session_ttl=30, batch_interval_ms=60_000)
    await node.start()
    sessions = [new_session(f"user{i}") for i in range(101)]
    for i, session in enumerate(sessions):
        await node.create_session(session)
        await node.update_session(session.session_id, data={"n": i})
    poisoned = sessions[7].session_id
    node._pending[poisoned].delta.absorb(SessionDelta(data={"big": 2**64, "also": "kept"}))
    with caplog.at_level(logging.ERROR, logger="pygw.store.redis"):
        await node.flush()
    assert node.dropped_values == 1
    assert f"session {poisoned}: dropping data['big']" in caplog.text
    assert "Integer exceeds 64-bit range" in caplog.text
    for i, session in enumerate(sessions):
        data = stored(raw, session.session_id)["data"]
        assert data["n"] == i
    assert stored(raw, poisoned)["data"]["also"] == "kept"
    assert "big" not in stored(raw, poisoned)["data"]
    assert node.pending_writes == 0
    await node.update_session(poisoned, data={"after": 1})
    node._pending[poisoned].delta.absorb(SessionDelta(chat_id="\ud800"))
    await node.close()
    assert stored(raw, poisoned)["data"]["after"] == 1
    assert stored(raw, poisoned)["chat_id"] is None
    assert node.dropped_values == 2


def test_script_args_leave_out_what_cannot_be_encoded() -> None:
    delta = SessionDelta(
        chat_id="c", data={"a": 1, "b": 2**64, "\ud800": 1, "c": [object()]}, last_access="t"
    )
    args, dropped = delta.script_args()
    assert args == [b'"c"', b'"t"', "a", b'"a"', b"1"]
    assert [field for field, _ in dropped] == ["data['b']", "data['\\ud800']", "data['c']"]
