"""One behaviour suite for every storage backend (parametrized: memory, one Redis, a Redis
Cluster of 3 primaries and 3 replicas)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import orjson
import pytest

from pygw.core.timeutil import now_iso
from pygw.store.base import (
    ConnectionRecord,
    RefreshFamily,
    RouteRecord,
    SessionRecord,
    Storage,
    TokenFloor,
    UnstorableValue,
    UserRecord,
)

if TYPE_CHECKING:
    from conftest import StorageFactory


def new_session(user: str, **data: object) -> SessionRecord:
    now = now_iso()
    return SessionRecord(
        session_id=uuid.uuid4().hex,
        user_id=user,
        chat_id=None,
        data={"conversation": [], "api_key": None, **data},
        created_at=now,
        last_access=now,
    )


def new_user(name: str, role: str = "user") -> UserRecord:
    return UserRecord(
        username=name, email=f"{name}@example.com", password="hash-" + name, role=role
    )


def new_family(user: str, session_id: str = "s1", ttl: int = 3600) -> RefreshFamily:
    now = int(time.time())
    return RefreshFamily(
        family=uuid.uuid4().hex,
        username=user,
        session_id=session_id,
        refresh_jti="r1",
        access_jti="a1",
        access_exp=now + 900,
        expires_at=now + ttl,
    )


# -- users ---------------------------------------------------------------------------------------
async def test_create_and_get_user(storage: Storage) -> None:
    assert await storage.create_user(new_user("alice", role="admin"))
    user = await storage.get_user("alice")
    assert user == UserRecord("alice", "alice@example.com", "hash-alice", "admin", None)


async def test_duplicate_user_is_refused_and_original_kept(storage: Storage) -> None:
    assert await storage.create_user(new_user("alice"))
    other = UserRecord("alice", "evil@example.com", "other-hash")
    assert not await storage.create_user(other)
    user = await storage.get_user("alice")
    assert user is not None and user.email == "alice@example.com" and user.password == "hash-alice"


async def test_missing_user(storage: Storage) -> None:
    assert await storage.get_user("nobody") is None
    assert not await storage.update_user("nobody", {"role": "admin"})
    assert await storage.get_user("nobody") is None
    assert not await storage.delete_user("nobody")


async def test_update_user(storage: Storage) -> None:
    await storage.create_user(new_user("bob"))
    login = now_iso()
    assert await storage.update_user("bob", {"role": "admin", "last_login": login})
    assert await storage.update_user("bob", {"password": "argon2-hash", "email": "b@x.io"})
    assert await storage.get_user("bob") == UserRecord(
        "bob", "b@x.io", "argon2-hash", "admin", login
    )


async def test_delete_and_list_users(storage: Storage) -> None:
    for name in ("carol", "alice", "bob"):
        await storage.create_user(new_user(name))
    assert [u.username for u in await storage.list_users()] == ["alice", "bob", "carol"]
    assert await storage.delete_user("bob")
    assert await storage.get_user("bob") is None
    assert [u.username for u in await storage.list_users()] == ["alice", "carol"]
    assert await storage.create_user(new_user("bob"))  # the name is free again


async def test_returned_user_is_a_copy(storage: Storage) -> None:
    await storage.create_user(new_user("alice"))
    user = await storage.get_user("alice")
    assert user is not None
    user.role = "admin"
    again = await storage.get_user("alice")
    assert again is not None and again.role == "user"


# -- sessions ------------------------------------------------------------------------------------
async def test_create_and_get_session(storage: Storage) -> None:
    session = new_session("alice")
    session.chat_id = "chat-1"
    await storage.create_session(session)
    got = await storage.get_session(session.session_id)
    assert got is not None
    assert got.to_json_dict() == session.to_json_dict()
    assert got.session_id == session.session_id
    assert await storage.get_session("missing") is None


async def test_update_merges_data_shallowly(storage: Storage) -> None:
    session = new_session("alice", prefs={"theme": "dark", "lang": "en"})
    await storage.create_session(session)
    sid = session.session_id
    merged = await storage.update_session(sid, data={"api_key": "k1", "prefs": {"lang": "fr"}})
    assert merged is not None
    assert merged.data == {"conversation": [], "api_key": "k1", "prefs": {"lang": "fr"}}
    merged = await storage.update_session(sid, data={"conversation": [{"role": "user"}]})
    assert merged is not None
    assert merged.data == {
        "conversation": [{"role": "user"}],
        "api_key": "k1",
        "prefs": {"lang": "fr"},
    }
    await storage.flush()
    got = await storage.get_session(sid)
    assert got is not None and got.data == merged.data


async def test_update_chat_id(storage: Storage) -> None:
    session = new_session("alice")
    await storage.create_session(session)
    sid = session.session_id
    updated = await storage.update_session(sid, chat_id="c1")
    assert updated is not None and updated.chat_id == "c1"
    updated = await storage.update_session(sid, data={"x": 1})  # chat_id None: kept
    assert updated is not None and updated.chat_id == "c1"
    await storage.flush()
    got = await storage.get_session(sid)
    assert got is not None and got.chat_id == "c1" and got.data["x"] == 1


async def test_update_bumps_last_access(storage: Storage) -> None:
    session = new_session("alice")
    session.created_at = session.last_access = "2020-01-01T00:00:00+00:00"
    await storage.create_session(session)
    updated = await storage.update_session(session.session_id, data={})
    assert updated is not None
    assert updated.last_access > "2020-01-02"
    assert updated.created_at == "2020-01-01T00:00:00+00:00"
    await storage.flush()
    got = await storage.get_session(session.session_id)
    assert got is not None and got.last_access == updated.last_access


async def test_update_missing_session(storage: Storage) -> None:
    assert await storage.update_session("missing", data={"a": 1}) is None
    await storage.flush()
    assert await storage.get_session("missing") is None


async def test_read_your_own_writes_before_flush(make_storage: StorageFactory) -> None:
    storage = await make_storage(batch_interval_ms=60_000)  # no background flush in this test
    session = new_session("alice")
    await storage.create_session(session)
    sid = session.session_id
    for i in range(5):
        await storage.update_session(sid, data={f"k{i}": i}, chat_id=f"c{i}")
    got = await storage.get_session(sid)
    assert got is not None
    assert got.chat_id == "c4"
    assert {f"k{i}" for i in range(5)} <= got.data.keys()
    listed = await storage.list_user_sessions("alice")
    assert [s.data.get("k4") for s in listed] == [4]


async def test_flush_persists(make_storage: StorageFactory, backend: str) -> None:
    storage = await make_storage(batch_interval_ms=60_000)
    session = new_session("alice")
    await storage.create_session(session)
    await storage.update_session(session.session_id, data={"api_key": "k2"})
    await storage.flush()
    reader = await make_storage() if backend != "memory" else storage  # another node
    got = await reader.get_session(session.session_id)
    assert got is not None and got.data["api_key"] == "k2"


async def test_background_flush_persists(make_storage: StorageFactory, backend: str) -> None:
    storage = await make_storage(batch_interval_ms=10)
    session = new_session("alice")
    await storage.create_session(session)
    await storage.update_session(session.session_id, data={"api_key": "k3"})
    reader = await make_storage() if backend != "memory" else storage
    for _ in range(100):
        got = await reader.get_session(session.session_id)
        assert got is not None
        if got.data["api_key"] == "k3":
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the write-behind flusher never wrote the update")


async def test_returned_session_is_a_copy(storage: Storage) -> None:
    session = new_session("alice")
    await storage.create_session(session)
    session.data["conversation"].append("caller mutation after create")
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data["conversation"] == []
    got.data["conversation"].append("caller mutation after get")
    updated = await storage.update_session(session.session_id, data={"x": [1]})
    assert updated is not None and updated.data["conversation"] == []
    updated.data["x"].append(2)
    again = await storage.get_session(session.session_id)
    assert again is not None and again.data["x"] == [1]


def deep_list(depth: int) -> list[object]:
    doc: list[object] = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


UNSTORABLE = [
    pytest.param(object(), id="not-json"),
    pytest.param(2**64, id="int-above-u64"),
    pytest.param(-(2**63) - 1, id="int-below-i64"),
    pytest.param({"nested": [1, 2**64]}, id="nested-big-int"),
    pytest.param("\ud800", id="unpaired-surrogate"),
    pytest.param(deep_list(300), id="deeper-than-orjson-encodes"),
]


@pytest.mark.parametrize("value", UNSTORABLE)
async def test_unstorable_data_is_refused_and_changes_nothing(
    make_storage: StorageFactory, value: object
) -> None:
    """Security review item 1: a value that cannot be encoded must never be stored (the
    memory backend then failed every read of the session; Redis every flush of the node)."""
    storage = await make_storage(batch_interval_ms=60_000)
    session = new_session("alice")
    await storage.create_session(session)
    await storage.update_session(session.session_id, data={"ok": 1})
    with pytest.raises(UnstorableValue):
        await storage.update_session(session.session_id, data={"bad": value, "also": 2})
    with pytest.raises(TypeError):  # UnstorableValue is a TypeError, as before
        await storage.update_session(session.session_id, data={"bad": value}, chat_id="c")
    got = await storage.get_session(session.session_id)
    assert got is not None
    assert got.data == {"conversation": [], "api_key": None, "ok": 1}
    assert got.chat_id is None
    orjson.dumps(got.to_json_dict())  # what every read and the flush encode
    assert await storage.update_session(session.session_id, data={"later": True}) is not None
    await storage.flush()
    again = await storage.get_session(session.session_id)
    assert again is not None and again.data["later"] is True and "bad" not in again.data
    assert storage.dropped_values == 0


@pytest.mark.parametrize("value", UNSTORABLE)
async def test_unstorable_new_session_is_refused(storage: Storage, value: object) -> None:
    session = new_session("alice", bad=value)
    with pytest.raises(UnstorableValue):
        await storage.create_session(session)
    assert await storage.get_session(session.session_id) is None
    assert await storage.list_user_sessions("alice") == []


async def test_storable_extremes_are_kept(storage: Storage) -> None:
    session = new_session("alice")
    await storage.create_session(session)
    data = {"max": 2**64 - 1, "min": -(2**63), "deep": deep_list(200), "text": "\u00e9\u2603"}
    await storage.update_session(session.session_id, data=data)
    await storage.flush()
    got = await storage.get_session(session.session_id)
    assert got is not None
    assert {k: got.data[k] for k in data} == data


async def test_delete_session_drops_pending_writes(make_storage: StorageFactory) -> None:
    storage = await make_storage(batch_interval_ms=60_000)
    session = new_session("alice")
    await storage.create_session(session)
    await storage.update_session(session.session_id, data={"a": 1})
    await storage.delete_session(session.session_id)
    await storage.flush()
    assert await storage.get_session(session.session_id) is None
    assert await storage.list_user_sessions("alice") == []
    assert await storage.update_session(session.session_id, data={"b": 2}) is None
    await storage.delete_session(session.session_id)  # deleting twice is fine


async def test_list_user_sessions(storage: Storage) -> None:
    first, second, other = new_session("alice"), new_session("alice"), new_session("bob")
    for s in (first, second, other):
        await storage.create_session(s)
        await asyncio.sleep(0.002)  # distinct creation times
    assert [s.session_id for s in await storage.list_user_sessions("alice")] == [
        first.session_id,
        second.session_id,
    ]
    await storage.delete_session(first.session_id)
    assert [s.session_id for s in await storage.list_user_sessions("alice")] == [second.session_id]
    assert [s.session_id for s in await storage.list_user_sessions("bob")] == [other.session_id]
    assert await storage.list_user_sessions("nobody") == []


async def test_session_expires_after_inactivity(make_storage: StorageFactory) -> None:
    storage = await make_storage(session_ttl=0.3)
    session = new_session("alice")
    await storage.create_session(session)
    assert await storage.get_session(session.session_id) is not None
    await asyncio.sleep(0.45)
    assert await storage.get_session(session.session_id) is None
    assert await storage.update_session(session.session_id, data={"a": 1}) is None
    assert await storage.list_user_sessions("alice") == []
    assert (await storage.stats()).active_sessions == 0


async def test_get_refreshes_ttl(make_storage: StorageFactory) -> None:
    storage = await make_storage(session_ttl=0.6)
    session = new_session("alice")
    await storage.create_session(session)
    for _ in range(3):  # 1.05 s in total, never 0.6 s idle
        await asyncio.sleep(0.35)
        assert await storage.get_session(session.session_id) is not None
    await asyncio.sleep(0.8)
    assert await storage.get_session(session.session_id) is None


async def test_update_refreshes_ttl(make_storage: StorageFactory) -> None:
    storage = await make_storage(session_ttl=0.6, batch_interval_ms=10)
    session = new_session("alice")
    await storage.create_session(session)
    for i in range(3):
        await asyncio.sleep(0.35)
        assert await storage.update_session(session.session_id, data={"i": i}) is not None
    await storage.flush()
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data["i"] == 2


async def test_cleanup_sessions(make_storage: StorageFactory) -> None:
    storage = await make_storage(session_ttl=0.3)
    expired = [new_session("alice"), new_session("bob")]
    for s in expired:
        await storage.create_session(s)
    await asyncio.sleep(0.4)
    alive = new_session("alice")
    await storage.create_session(alive)
    assert await storage.cleanup_sessions() == 2
    assert await storage.cleanup_sessions() == 0
    assert [s.session_id for s in await storage.list_user_sessions("alice")] == [alive.session_id]
    assert await storage.list_user_sessions("bob") == []
    assert (await storage.stats()).active_sessions == 1


async def test_stats(storage: Storage) -> None:
    empty = await storage.stats()
    assert (empty.total_users, empty.active_sessions) == (0, 0)
    for name in ("alice", "bob"):
        await storage.create_user(new_user(name))
    sessions = [new_session("alice"), new_session("alice"), new_session("bob")]
    for s in sessions:
        await storage.create_session(s)
    stats = await storage.stats()
    assert (stats.total_users, stats.active_sessions) == (2, 3)
    await storage.delete_session(sessions[0].session_id)
    await storage.delete_user("bob")
    stats = await storage.stats()
    assert (stats.total_users, stats.active_sessions) == (1, 1)


# -- connection records --------------------------------------------------------------------------
async def test_connection_records(storage: Storage) -> None:
    assert await storage.get_connection("alice") is None
    record = ConnectionRecord("s1", "gw-1", True, time.time(), connected_at=time.time())
    await storage.set_connection("alice", record)
    assert await storage.get_connection("alice") == record
    replaced = ConnectionRecord("s2", "gw-2", False, time.time())
    await storage.set_connection("alice", replaced)
    assert await storage.get_connection("alice") == replaced  # connected_at gone, not kept
    await storage.delete_connection("alice")
    assert await storage.get_connection("alice") is None
    await storage.delete_connection("alice")


# -- revoked tokens ------------------------------------------------------------------------------
async def test_revoked_tokens_expire_and_are_pruned(storage: Storage) -> None:
    now = int(time.time())
    await storage.revoke_token("live", now + 100)
    await storage.revoke_token("edge", now)
    await storage.revoke_token("dead", now - 10)
    assert sorted(await storage.revoked_tokens(now)) == [("edge", now), ("live", now + 100)]
    # pruned: asking about an earlier time does not bring "dead" back
    assert sorted(await storage.revoked_tokens(now - 20)) == [("edge", now), ("live", now + 100)]
    assert await storage.revoked_tokens(now + 101) == []
    assert await storage.revoked_tokens(now) == []


async def test_revoking_twice_keeps_the_later_exp(storage: Storage) -> None:
    now = int(time.time())
    await storage.revoke_token("j", now + 50)
    await storage.revoke_token("j", now + 10)
    assert await storage.revoked_tokens(now) == [("j", now + 50)]


# -- refresh families ----------------------------------------------------------------------------
async def test_family_rotation(storage: Storage) -> None:
    family = new_family("alice")
    await storage.create_family(family)
    now = int(time.time())
    outcome = await storage.rotate_refresh(family.family, "r1", "r2", "a2", now + 900, now)
    assert outcome.status == "ok"
    assert outcome.family == family  # as it was before the call
    outcome = await storage.rotate_refresh(family.family, "r2", "r3", "a3", now + 901, now)
    assert outcome.status == "ok"
    assert outcome.family is not None
    assert (outcome.family.refresh_jti, outcome.family.access_jti) == ("r2", "a2")
    assert outcome.family.access_exp == now + 900
    current = await storage.current_family("alice")
    assert current is not None
    assert (current.refresh_jti, current.access_jti, current.access_exp) == ("r3", "a3", now + 901)


async def test_reused_refresh_token_revokes_the_family(storage: Storage) -> None:
    family = new_family("alice")
    await storage.create_family(family)
    now = int(time.time())
    assert (await storage.rotate_refresh(family.family, "r1", "r2", "a2", now, now)).status == "ok"
    reused = await storage.rotate_refresh(family.family, "r1", "r9", "a9", now, now)
    assert reused.status == "reused"
    assert reused.family is not None
    assert (reused.family.access_jti, reused.family.revoked) == ("a2", False)
    # even the legitimate current token is dead now
    after = await storage.rotate_refresh(family.family, "r2", "r3", "a3", now, now)
    assert after.status == "revoked"
    assert after.family is not None and after.family.revoked
    assert await storage.current_family("alice") is None


async def test_unknown_and_expired_families(storage: Storage) -> None:
    now = int(time.time())
    unknown = await storage.rotate_refresh("nope", "r1", "r2", "a2", now, now)
    assert (unknown.status, unknown.family) == ("unknown", None)
    family = new_family("alice", ttl=60)
    await storage.create_family(family)
    late = family.expires_at
    assert (await storage.rotate_refresh(family.family, "r1", "r2", "a2", late, late)).status == (
        "unknown"
    )
    assert await storage.revoke_family("nope") is None


async def test_revoke_family(storage: Storage) -> None:
    family = new_family("alice")
    await storage.create_family(family)
    before = await storage.revoke_family(family.family)
    assert before == family
    now = int(time.time())
    assert (await storage.rotate_refresh(family.family, "r1", "r2", "a2", now, now)).status == (
        "revoked"
    )
    assert await storage.current_family("alice") is None


async def test_current_family(storage: Storage) -> None:
    assert await storage.current_family("alice") is None
    first = new_family("alice", "s1")
    await storage.create_family(first)
    assert await storage.current_family("alice") == first
    second = new_family("alice", "s2")
    await storage.create_family(second)  # a new login replaces the current one
    assert await storage.current_family("alice") == second
    await storage.clear_current_family("alice", first.family)  # not current: no effect
    assert await storage.current_family("alice") == second
    await storage.clear_current_family("alice", second.family)
    assert await storage.current_family("alice") is None
    now = int(time.time())  # the family itself still works for refresh
    assert (await storage.rotate_refresh(second.family, "r1", "r2", "a2", now, now)).status == "ok"


async def test_expired_family_is_not_current(storage: Storage) -> None:
    family = new_family("alice", ttl=-1)
    await storage.create_family(family)
    assert await storage.current_family("alice") is None


async def test_revoke_user_families(storage: Storage) -> None:
    first, second, done = new_family("alice", "s1"), new_family("alice", "s2"), new_family("alice")
    other = new_family("bob")
    for family in (first, done, second, other):
        await storage.create_family(family)
    await storage.revoke_family(done.family)
    revoked = await storage.revoke_user_families("alice")
    # The live ones, as they were (their latest access tokens are revoked by the caller).
    assert sorted(revoked, key=lambda f: f.family) == sorted(
        [first, second], key=lambda f: f.family
    )
    now = int(time.time())
    for family in (first, second):
        outcome = await storage.rotate_refresh(family.family, "r1", "r2", "a2", now, now)
        assert outcome.status == "revoked"
    assert await storage.current_family("alice") is None
    assert (await storage.rotate_refresh(other.family, "r1", "r2", "a2", now, now)).status == "ok"
    assert await storage.revoke_user_families("alice") == []
    assert await storage.revoke_user_families("nobody") == []


# -- token generation floors ---------------------------------------------------------------------
async def test_token_floors_rise_and_expire(storage: Storage) -> None:
    now = int(time.time())
    now_us = now * 1_000_000
    assert await storage.token_generation("alice", now) == 0
    first = await storage.raise_token_floor("alice", now_us, now + 60)
    assert first == now_us
    assert await storage.token_generation("alice", now) == first
    # Raised again in the same µs, or by a node whose clock is behind: still strictly higher.
    second = await storage.raise_token_floor("alice", now_us - 5, now + 30)
    assert second == first + 1
    assert await storage.token_floors(now) == [TokenFloor("alice", second, now + 60)]
    assert await storage.token_generation("bob", now) == 0
    # Once every token it revokes has expired, the floor is gone (and pruned)...
    assert await storage.token_generation("alice", now + 61) == 0
    assert await storage.token_floors(now + 61) == []
    assert await storage.token_generation("alice", now) == 0
    # ... and the next one starts from the clock again, above every earlier floor.
    third = await storage.raise_token_floor("alice", (now + 61) * 1_000_000, now + 120)
    assert third > second


async def test_token_floor_outlives_the_account(storage: Storage) -> None:
    """A name deleted and registered again: tokens of the new account carry a generation at
    or above the floor raised when the old one was deleted."""
    now = int(time.time())
    assert await storage.create_user(new_user("alice"))
    floor = await storage.raise_token_floor("alice", time.time_ns() // 1000, now + 60)
    assert await storage.delete_user("alice")
    assert await storage.create_user(new_user("alice"))
    assert await storage.token_generation("alice", now) == floor


async def test_token_floors_are_shared_between_nodes(
    make_storage: StorageFactory, backend: str
) -> None:
    if backend == "memory":
        pytest.skip("the memory backend is one node")
    a, b = await make_storage(), await make_storage()
    now = int(time.time())
    floor = await a.raise_token_floor("alice", time.time_ns() // 1000, now + 60)
    assert await b.token_generation("alice", now) == floor
    assert await b.raise_token_floor("alice", 1, now + 60) == floor + 1
    assert await a.token_floors(now) == [TokenFloor("alice", floor + 1, now + 60)]


# -- delete_user ---------------------------------------------------------------------------------
async def test_delete_user_removes_sessions_and_state(make_storage: StorageFactory) -> None:
    storage = await make_storage(batch_interval_ms=60_000)
    await storage.create_user(new_user("alice"))
    await storage.create_user(new_user("bob"))
    mine = [new_session("alice"), new_session("alice")]
    theirs = new_session("bob")
    for s in (*mine, theirs):
        await storage.create_session(s)
    await storage.update_session(mine[0].session_id, data={"pending": True})
    await storage.set_connection("alice", ConnectionRecord("s", "gw", True, time.time()))
    family = new_family("alice")
    await storage.create_family(family)

    assert await storage.delete_user("alice")
    await storage.flush()  # the pending write must not resurrect the session
    assert await storage.get_user("alice") is None
    for s in mine:
        assert await storage.get_session(s.session_id) is None
    assert await storage.list_user_sessions("alice") == []
    assert await storage.get_connection("alice") is None
    assert await storage.current_family("alice") is None
    now = int(time.time())
    assert (await storage.rotate_refresh(family.family, "r1", "r2", "a2", now, now)).status == (
        "unknown"
    )
    assert await storage.get_session(theirs.session_id) is not None
    stats = await storage.stats()
    assert (stats.total_users, stats.active_sessions) == (1, 1)


async def test_ping_and_close_are_idempotent(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.ping()
    await storage.start()  # a second start is a no-op


async def test_backend_info(storage: Storage, backend: str) -> None:
    info = await storage.backend_info()
    if backend == "memory":
        assert info is None
        return
    assert info is not None
    for field in ("connected_clients", "used_memory_human", "used_memory_peak_human"):
        assert field in info
    for field in ("keyspace_hits", "keyspace_misses", "total_commands_processed"):
        assert int(info[field]) >= 0


# -- dynamic routes ------------------------------------------------------------------------------
def new_route(name: str, **changes: object) -> RouteRecord:
    route = RouteRecord(
        name=name,
        base_url="http://127.0.0.1:9",
        path="/v1/echo",
        method="POST",
        headers={"X-Api-Key": "k-" + name},
        timeout=2.5,
        require_auth=True,
        ws_supported=False,
    )
    for key, value in changes.items():
        setattr(route, key, value)
    return route


async def test_routes_put_list_replace_delete(storage: Storage) -> None:
    assert await storage.list_routes() == []
    beta, alpha = new_route("beta", ws_supported=True), new_route("alpha", method="GET")
    await storage.put_route(beta)
    await storage.put_route(alpha)
    assert await storage.list_routes() == [alpha, beta]  # every field kept, ordered by name

    replacement = new_route("beta", base_url="https://example.com:8443", headers={}, timeout=300.0)
    await storage.put_route(replacement)
    assert await storage.list_routes() == [alpha, replacement]

    assert await storage.delete_route("alpha")
    assert not await storage.delete_route("alpha")
    assert not await storage.delete_route("never-registered")
    assert await storage.list_routes() == [replacement]


async def test_routes_are_copies(storage: Storage) -> None:
    route = new_route("r1")
    await storage.put_route(route)
    route.headers["X-Injected"] = "1"
    (listed,) = await storage.list_routes()
    assert listed.headers == {"X-Api-Key": "k-r1"}
    listed.headers["X-Other"] = "2"
    listed.timeout = 1.0
    assert await storage.list_routes() == [new_route("r1")]


async def test_routes_are_shared_between_nodes(make_storage: StorageFactory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory backend is one node")
    a, b = await make_storage(), await make_storage()
    await a.put_route(new_route("shared"))
    assert await b.list_routes() == [new_route("shared")]
    assert await b.delete_route("shared")
    assert await a.list_routes() == []
