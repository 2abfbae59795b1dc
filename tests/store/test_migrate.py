"""``pygw migrate-to-cluster``: a one-Redis deployment (the original gateway's keys and pygw's
own) copied into a real Redis Cluster reads back the same through the cluster backend."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import orjson
import redis

from pygw.broker.redis import RedisBroker
from pygw.core.channels import PublishOptions
from pygw.core.timeutil import now_iso
from pygw.migrate import migrate_to_cluster
from pygw.store._layout import CLUSTER as STORE
from pygw.store.base import ConnectionRecord, RefreshFamily, RouteRecord, SessionRecord, UserRecord
from pygw.store.redis import RedisStorage
from redis_cluster import RedisClusterServers
from redis_server import RedisServer


class _NoHandler:
    def on_publication(self, *args: object) -> None: ...
    def on_control(self, *args: object) -> None: ...
    def answer(self, *args: object) -> dict[str, object]:
        return {}

    def on_resync(self) -> None: ...


async def fill_single_redis(url: str) -> dict[str, object]:
    """What a deployment on one Redis holds: the original gateway's raw keys and pygw's."""
    legacy_hash = hashlib.sha256(b"secret").hexdigest()
    with redis.Redis.from_url(url, decode_responses=True) as raw:
        raw.hset("users:old", mapping={"password": legacy_hash, "email": "old@example.com"})
        raw.set(
            "sessions:legacy-sid",
            '{"user_id": "old", "data": {"conversation": [1], "big": 9007199254740993},'
            ' "created_at": "2024-05-01T10:00:00"}',
            ex=600,
        )
        raw.hset("connections:old", mapping={"session_id": "legacy-sid", "ws_connected": "1"})
        raw.set("unrelated:key", "not pygw's")
    single = RedisStorage(url, session_ttl=300, batch_interval_ms=60_000)
    await single.start()
    now = int(time.time())
    try:
        await single.create_user(UserRecord("alice", "a@example.com", "argon-hash", "admin"))
        session = SessionRecord("s-alice", "alice", "chat", {"api_key": "k"}, now_iso(), now_iso())
        await single.create_session(session)
        await single.update_session("s-alice", data={"n": 1})
        await single.set_connection("alice", ConnectionRecord("s-alice", "gw", True, time.time()))
        await single.create_family(
            RefreshFamily("fam-1", "alice", "s-alice", "r1", "a1", now + 900, now + 3600)
        )
        await single.revoke_token("jti-1", now + 600)
        await single.put_route(RouteRecord("echo", "http://127.0.0.1:9", "/e", "POST"))
        await single.flush()
    finally:
        await single.close()
    broker = RedisBroker(url, node_id="migrating")
    await broker.start(_NoHandler())
    try:
        for i in range(5):
            pub = await broker.publish("hist:room", orjson.dumps(i), PublishOptions(10, 600))
    finally:
        await broker.close()
    return {"epoch": pub.epoch, "now": now}


async def test_single_redis_data_reads_back_from_the_cluster(
    clean_redis: RedisServer, clean_cluster: RedisClusterServers
) -> None:
    facts = await fill_single_redis(clean_redis.url)
    dry = await migrate_to_cluster(clean_redis.url, clean_cluster.url, dry_run=True)
    assert dry.copied["users"] == 2 and dry.copied["sessions"] == 2
    with redis.RedisCluster.from_url(clean_cluster.url) as raw:
        assert raw.dbsize() == 0  # a dry run writes nothing
    report = await migrate_to_cluster(clean_redis.url, clean_cluster.url)
    assert report.copied == {
        "users": 2,
        "sessions": 2,
        "connections": 2,
        "refresh families": 1,
        "user families": 1,
        "current families": 1,
        "channel offsets": 1,
        "channel histories": 1,
        "revoked tokens": 1,
        "routes": 1,
    }
    again = await migrate_to_cluster(clean_redis.url, clean_cluster.url)  # idempotent
    assert again.copied == report.copied

    node = RedisStorage(clean_cluster.url, session_ttl=300, cluster=True)
    await node.start()
    try:
        assert [u.username for u in await node.list_users()] == ["alice", "old"]
        old = await node.get_user("old")
        assert old is not None and old.password == hashlib.sha256(b"secret").hexdigest()
        legacy = await node.get_session("legacy-sid")
        assert legacy is not None and legacy.data == {
            "conversation": [1],
            "big": 9007199254740993,
        }
        assert [s.session_id for s in await node.list_user_sessions("old")] == ["legacy-sid"]
        mine = await node.get_session("s-alice")
        assert mine is not None and (mine.chat_id, mine.data) == ("chat", {"api_key": "k", "n": 1})
        assert (await node.stats()).active_sessions == 2
        record = await node.get_connection("old")
        assert record is not None and record.ws_connected
        family = await node.current_family("alice")
        assert family is not None and family.family == "fam-1"
        now = int(facts["now"])  # type: ignore[call-overload]
        assert (await node.rotate_refresh("fam-1", "r1", "r2", "a2", now, now)).status == "ok"
        assert [jti for jti, _ in await node.revoked_tokens(now)] == ["jti-1"]
        assert [r.name for r in await node.list_routes()] == ["echo"]
    finally:
        await node.close()
    broker = RedisBroker(clean_cluster.url, node_id="migrated", cluster=True)
    await broker.start(_NoHandler())
    try:
        rec = await broker.recover("hist:room", str(facts["epoch"]), 2)
        assert rec.recovered and [orjson.loads(e)["data"] for e in rec.envelopes] == [2, 3, 4]
    finally:
        await broker.close()
    with redis.RedisCluster.from_url(clean_cluster.url) as raw:
        assert raw.get("unrelated:key") is None
        assert 0 < raw.pttl(STORE.session("legacy-sid")) <= 600_000  # its TTL came along


def test_cli_reports_what_it_copies(
    clean_redis: RedisServer, clean_cluster: RedisClusterServers
) -> None:
    with redis.Redis.from_url(clean_redis.url) as raw:
        raw.hset("users:bob", mapping={"password": "h", "email": "b@x"})
    cmd = [sys.executable, "-m", "pygw", "migrate-to-cluster"]
    cmd += ["--from", clean_redis.url, "--to", clean_cluster.url]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)

    dry = run(*cmd, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy" in dry.stdout and "users: 1" in dry.stdout
    done = run(*cmd)
    assert done.returncode == 0, done.stderr
    assert "copied" in done.stdout and "users: 1" in done.stdout
    with redis.RedisCluster.from_url(clean_cluster.url) as raw:
        assert raw.hget("users:{bob}", "email") == b"b@x"
    bad = run(*cmd[:-2], "--to", "redis://127.0.0.1:1")
    assert bad.returncode == 1 and "migration failed" in bad.stderr
