"""Session size limits (security review item 11) on every backend, and on Redis the merge
script's own check when another node's writes make a node's view stale."""

from __future__ import annotations

import json
import random
import uuid
from typing import TYPE_CHECKING

import pytest
import redis

from pygw.core.errors import SessionTooLarge
from pygw.core.timeutil import now_iso
from pygw.store._limits import SessionLimits
from pygw.store.base import SessionRecord, Storage
from pygw.store.redis import RedisStorage
from redis_server import RedisServer

if TYPE_CHECKING:
    from conftest import StorageFactory

SESSION_MAX = 3000
UPDATE_MAX = 1000


def new_session(user: str) -> SessionRecord:
    now = now_iso()
    return SessionRecord(uuid.uuid4().hex, user, None, {"conversation": []}, now, now)


async def limited(make_storage: StorageFactory, **kwargs: object) -> Storage:
    return await make_storage(
        session_max_bytes=SESSION_MAX, session_update_max_bytes=UPDATE_MAX, **kwargs
    )


async def test_an_update_over_the_update_limit_changes_nothing(
    make_storage: StorageFactory,
) -> None:
    storage = await limited(make_storage)
    session = new_session("alice")
    await storage.create_session(session)
    sid = session.session_id
    with pytest.raises(SessionTooLarge, match=f"Session update larger than {UPDATE_MAX} bytes"):
        await storage.update_session(sid, data={"big": "x" * UPDATE_MAX})
    with pytest.raises(SessionTooLarge):  # chat_id counts too
        await storage.update_session(sid, chat_id="c" * UPDATE_MAX)
    await storage.flush()
    after = await storage.get_session(sid)
    assert after is not None
    assert "big" not in after.data
    assert after.chat_id is None
    # just under the limit: accepted ({"ok": "..."} is 9 bytes of JSON around the value)
    await storage.update_session(sid, data={"ok": "y" * (UPDATE_MAX - 9)})
    await storage.flush()
    after = await storage.get_session(sid)
    assert after is not None
    assert after.data["ok"] == "y" * (UPDATE_MAX - 9)


async def test_an_update_that_would_grow_the_session_past_its_limit_changes_nothing(
    make_storage: StorageFactory,
) -> None:
    storage = await limited(make_storage)
    session = new_session("alice")
    await storage.create_session(session)
    sid = session.session_id
    chunk = "x" * 900
    await storage.update_session(sid, data={"k0": chunk})
    await storage.update_session(sid, data={"k1": chunk})
    await storage.update_session(sid, data={"k2": chunk})  # about 2,900 bytes stored now
    with pytest.raises(SessionTooLarge, match=f"Session larger than {SESSION_MAX} bytes"):
        await storage.update_session(sid, data={"k3": chunk}, chat_id="room")
    await storage.flush()
    after = await storage.get_session(sid)
    assert after is not None
    assert sorted(after.data) == ["conversation", "k0", "k1", "k2"]
    assert after.chat_id is None
    assert len(json.dumps(after.to_json_dict())) <= SESSION_MAX
    # Replacing a value by a smaller one is a merge too, and makes room.
    await storage.update_session(sid, data={"k0": "small"})
    await storage.update_session(sid, data={"k3": chunk})
    await storage.flush()
    after = await storage.get_session(sid)
    assert after is not None
    assert (after.data["k0"], after.data["k3"]) == ("small", chunk)


async def test_a_session_over_a_lowered_limit_can_still_be_touched_and_shrunk(
    make_storage: StorageFactory, backend: str
) -> None:
    big = await make_storage()
    session = new_session("alice")
    await big.create_session(session)
    sid = session.session_id
    await big.update_session(sid, data={f"k{i}": "x" * 2000 for i in range(3)})
    await big.flush()
    if backend == "memory":
        storage = big  # one process: the same store, its limit lowered
        storage._limits = type(storage._limits)(SESSION_MAX, UPDATE_MAX)  # type: ignore[attr-defined]
    else:
        storage = await limited(make_storage)  # another node, with the limit
    assert await storage.update_session(sid, data={"k0": "y"}) is not None  # shrinks
    assert await storage.update_session(sid, data={"k0": "z"}) is not None  # same size
    with pytest.raises(SessionTooLarge):
        await storage.update_session(sid, data={"k9": "x" * 10})  # still over, and grows
    await storage.flush()
    after = await storage.get_session(sid)
    assert after is not None
    assert after.data["k0"] == "z"
    assert "k9" not in after.data


# -- Redis: the merge script's own check ---------------------------------------------------------
@pytest.fixture
def raw(clean_redis: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(clean_redis.url, decode_responses=True)


async def node(url: str, **kwargs: object) -> RedisStorage:
    storage = RedisStorage(
        url,
        session_ttl=30.0,
        batch_interval_ms=60_000,  # flushed explicitly
        session_max_bytes=SESSION_MAX,
        session_update_max_bytes=UPDATE_MAX,
        **kwargs,  # type: ignore[arg-type]
    )
    await storage.start()
    return storage


async def test_redis_refuses_a_merge_that_another_nodes_writes_made_too_large(
    clean_redis: RedisServer, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a = await node(clean_redis.url)
    b = await node(clean_redis.url)
    try:
        session = new_session("alice")
        await a.create_session(session)
        sid = session.session_id
        await b.update_session(sid, data={"b0": 1})  # b's view: the small session, pending
        chunk = "x" * 980  # two fit, three do not
        for key in ("a0", "a1"):
            await a.update_session(sid, data={key: chunk})
        await a.flush()  # about 2,100 bytes in Redis; b's view does not know
        await b.update_session(sid, data={"b1": chunk})  # b's view says it fits
        await b.flush()
        stored = raw.get(f"sessions:{sid}")
        assert stored is not None
        assert len(stored) <= SESSION_MAX
        assert sorted(json.loads(stored)["data"]) == ["a0", "a1", "conversation"]
        assert b.refused_merges == 1
        assert f"session {sid}: update dropped" in caplog.text
        assert b.pending_writes == 0
        fresh = await b.get_session(sid)  # the refused change is not shown any more
        assert fresh is not None
        assert sorted(fresh.data) == ["a0", "a1", "conversation"]
    finally:
        await a.close()
        await b.close()


def test_the_size_hint_never_lets_a_session_past_its_limit() -> None:
    """Random merges decided with the hint (no encoding while it fits) are the decisions an
    exact encoding of every merge gives."""
    limits = SessionLimits(SESSION_MAX, UPDATE_MAX)
    rng = random.Random(20261205)
    session = new_session("alice")
    hint = 0
    refused = 0
    for _ in range(2000):
        chat_id = rng.choice([None, None, None, "c" * rng.randrange(0, 80)])
        data = {
            f"k{rng.randrange(12)}": "x" * rng.randrange(0, 500) for _ in range(rng.randrange(3))
        }
        merged = session.to_json_dict() | {"data": {**session.data, **data}}
        if chat_id is not None:
            merged["chat_id"] = chat_id
        size = len(json.dumps(merged, separators=(",", ":")))
        current = len(json.dumps(session.to_json_dict(), separators=(",", ":")))
        expect_refused = (bool(data) or chat_id is not None) and current < size > SESSION_MAX
        try:
            hint = limits.admit(session, chat_id, data, hint)
        except SessionTooLarge:
            assert expect_refused, (size, current)
            refused += 1
            continue
        assert not expect_refused, (size, current, hint)
        session.data.update(data)
        session.chat_id = chat_id if chat_id is not None else session.chat_id
        assert hint == 0 or hint >= size
    assert refused > 100  # the limit was reached often
