"""Redis Cluster-only storage behaviour against real clusters (3 primaries + 3 replicas): the
hash-tagged key layout, connection records grouped by slot, and acknowledged writes that
survive a primary dying before it replicated them (WAIT)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from pygw.core.errors import BackendUnavailable
from pygw.core.timeutil import now_iso
from pygw.store._layout import CLUSTER
from pygw.store.base import ConnectionRecord, RefreshFamily, SessionRecord, UserRecord
from pygw.store.redis import RedisStorage
from redis_cluster import RedisClusterServers

ClusterFactory = Callable[..., Awaitable[RedisStorage]]


@pytest.fixture
async def make_node(clean_cluster: RedisClusterServers) -> AsyncIterator[ClusterFactory]:
    """Started cluster storages ("nodes") on the shared cluster, closed afterwards."""
    nodes: list[RedisStorage] = []

    async def factory(**kwargs: Any) -> RedisStorage:
        kwargs.setdefault("session_ttl", 30.0)
        kwargs.setdefault("batch_interval_ms", 60_000)  # tests flush explicitly
        node = RedisStorage(kwargs.pop("url", clean_cluster.url), cluster=True, **kwargs)
        await node.start()
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        await node.close()


def raw_cluster(cluster: RedisClusterServers) -> redis.RedisCluster:
    return redis.RedisCluster.from_url(cluster.url, decode_responses=True)


def new_session(user: str, **data: Any) -> SessionRecord:
    now = now_iso()
    return SessionRecord(
        uuid.uuid4().hex, user, None, {"conversation": [], "api_key": None, **data}, now, now
    )


def slot(key: str) -> int:
    return key_slot(key.encode())


async def test_key_layout_keeps_each_scripts_keys_in_one_slot(
    make_node: ClusterFactory, clean_cluster: RedisClusterServers
) -> None:
    node = await make_node()
    await node.create_user(UserRecord("alice", "a@example.com", "hash"))
    session = new_session("alice")
    await node.create_session(session)
    await node.update_session(session.session_id, data={"api_key": "k"})
    await node.set_connection(
        "alice", ConnectionRecord(session.session_id, "gw", True, time.time())
    )
    await node.flush()
    exp = int(time.time()) + 60
    await node.create_family(RefreshFamily("fam", "alice", session.session_id, "r", "a", exp, exp))
    await node.revoke_token("jti", exp)

    sid = session.session_id
    bucket = CLUSTER.bucket(sid)
    with raw_cluster(clean_cluster) as raw:
        keys = set(raw.keys(target_nodes=redis.RedisCluster.PRIMARIES))
        assert raw.hget("users:{alice}", "email") == "a@example.com"
        assert raw.hget("connections:{alice}", "session_id") == sid
        assert '"api_key":"k"' in raw.get(f"sessions:{bucket}{sid}")
    assert {
        "users:{alice}",
        "connections:{alice}",
        "pygw:user_sessions:{alice}",
        "pygw:user_families:{alice}",
        "pygw:current_family:{alice}",
        f"sessions:{bucket}{sid}",
        f"pygw:session_expiry:{bucket}",
        f"pygw:session_owner:{bucket}",
        "pygw:refresh_family:{fam}",
        "pygw:users",
        "pygw:revoked_tokens",
    } <= keys
    user_slot = slot("users:{alice}")
    assert {slot(k) for k in keys if k.endswith("{alice}")} == {user_slot}
    assert {slot(k) for k in keys if bucket in k} == {slot(f"sessions:{bucket}{sid}")}
    assert bucket.startswith("{s") and bucket.endswith("}")


async def test_connection_records_grouped_by_slot(
    make_node: ClusterFactory, clean_cluster: RedisClusterServers
) -> None:
    """A connect storm on a cluster: records of users in different slots cannot share a script
    call, so each call takes one slot's users; all land, and another node reads them."""
    node, other = await make_node(), await make_node()
    seen = time.time()
    users = [f"u{i}" for i in range(1001)]
    for name in users:
        await node.set_connection(name, ConnectionRecord(f"s-{name}", "gw-1", True, seen))
    await node.flush()
    for name in ("u0", "u500", "u1000"):
        record = await other.get_connection(name)
        assert record == ConnectionRecord(f"s-{name}", "gw-1", True, seen)
    with raw_cluster(clean_cluster) as raw:
        stored = sum(1 for _ in raw.scan_iter(match="connections:{*}", target_nodes=raw.PRIMARIES))
    assert stored == len(users)


async def test_stats_and_cleanup_walk_every_session_bucket(make_node: ClusterFactory) -> None:
    node = await make_node(session_ttl=0.3)
    sessions = [new_session(f"user{i % 7}") for i in range(60)]
    for s in sessions:
        await node.create_session(s)
    buckets = {CLUSTER.bucket(s.session_id) for s in sessions}
    assert len(buckets) > 40  # spread over many buckets (and so over every shard)
    assert (await node.stats()).active_sessions == 60
    await asyncio.sleep(0.4)
    keep = new_session("user0")
    await node.create_session(keep)
    assert await node.cleanup_sessions() == 60
    assert (await node.stats()).active_sessions == 1
    assert [s.session_id for s in await node.list_user_sessions("user0")] == [keep.session_id]
    assert await node.list_user_sessions("user1") == []


# -- acknowledged writes and failover ----------------------------------------------------------
async def wait_failover(cluster: RedisClusterServers, key: str, old_port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            cluster.wait_ok(timeout=1)
            if cluster.primary_of(key).port != old_port:
                return
        except (TimeoutError, LookupError, redis.RedisError):
            pass
        assert time.monotonic() < deadline, "no replica took over"
        await asyncio.sleep(0.1)


async def test_write_no_replica_confirmed_stays_pending_until_one_does(
    redis_cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    node = RedisStorage(
        redis_cluster.url,
        session_ttl=30,
        batch_interval_ms=60_000,
        cluster=True,
        wait_timeout_ms=200,
    )
    await node.start()
    try:
        session = new_session("alice")
        await node.create_session(session)
        key = CLUSTER.session(session.session_id)
        replica = redis_cluster.replica_of(redis_cluster.primary_of(key))
        await node.update_session(session.session_id, data={"n": 1})
        caplog.set_level(logging.WARNING, logger="pygw.store.redis")
        replica.pause()
        try:
            await node.flush()  # the primary has it; the replica does not confirm
            assert node.pending_writes == 1
            await node.flush()
            assert node.pending_writes == 1
            neighbour = new_session("bob")  # a session on the paused replica's shard
            while CLUSTER.bucket(neighbour.session_id) != CLUSTER.bucket(session.session_id):
                neighbour = new_session("bob")
            with pytest.raises(BackendUnavailable, match="no replica confirmed"):
                await node.create_session(neighbour)  # a synchronous write: not acknowledged
        finally:
            replica.resume()
        assert sum("not confirmed by a replica" in r.getMessage() for r in caplog.records) == 1
        await node.flush()
        assert node.pending_writes == 0
        got = await node.get_session(session.session_id)
        assert got is not None and got.data["n"] == 1
    finally:
        await node.close()


@pytest.mark.parametrize("wait_replicas", [1, 0])
async def test_acknowledged_update_survives_its_primary_dying_before_replicating_it(
    redis_cluster: RedisClusterServers, wait_replicas: int
) -> None:
    """The primary acknowledges a flush its replica never receives, then dies; the replica
    takes over. With WAIT (the default) the node kept the update and writes it to the new
    primary; without it (``wait_replicas=0``) the update is gone: this is what WAIT is for."""
    node = RedisStorage(
        redis_cluster.url,
        session_ttl=60,
        batch_interval_ms=60_000,
        cluster=True,
        wait_replicas=wait_replicas,
        wait_timeout_ms=200,
    )
    await node.start()
    try:
        session = new_session("alice")
        await node.create_session(session)
        sid = session.session_id
        key = CLUSTER.session(sid)
        primary = redis_cluster.primary_of(key)
        replica = redis_cluster.replica_of(primary)
        await node.update_session(sid, data={"acknowledged": True})  # the client got its 200
        replica.pause()
        with redis_cluster.client(primary) as raw:
            # Fill the replication stream: a paused replica's kernel still buffers a few MB,
            # so without this it would receive the update after resuming.
            junk = b"x" * (1 << 20)
            for i in range(48):
                raw.set(f"pygw:junk:{CLUSTER.bucket(sid)}{i}", junk)
        await node.flush()
        with redis_cluster.client(primary) as raw:
            assert b'"acknowledged":true' in raw.get(key)  # the primary applied it...
        primary.kill()  # ...and dies before its replica heard of it
        replica.resume()
        await wait_failover(redis_cluster, key, primary.port)
        deadline = time.monotonic() + 20
        while node.pending_writes:
            assert time.monotonic() < deadline, "the kept update was never written"
            with contextlib.suppress(BackendUnavailable):  # until the cluster serves again
                await node.flush()
            await asyncio.sleep(0.1)
        got = await node.get_session(sid)
        assert got is not None, diagnose(redis_cluster, key)
        assert got.data.get("acknowledged") is (True if wait_replicas else None)
    finally:
        await node.close()


def diagnose(cluster: RedisClusterServers, key: str) -> str:
    """What every live node holds for ``key`` (for a failure message)."""
    lines = []
    for n in cluster.live_nodes():
        with cluster.client(n) as c:
            c.execute_command("READONLY")
            try:
                value = c.get(key)
            except redis.RedisError as exc:
                value = repr(exc).encode()
            lines.append(f"{n.port} {cluster.role(n)}: {value!r}")
    return "\n".join(lines)
