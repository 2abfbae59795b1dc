"""Gateway behaviour that needs Redis: durability on SIGTERM, write batching, outages,
legacy data, several workers and several nodes sharing one Redis."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import httpx
import orjson
import redis

from conftest import login, new_account, register, unique
from gateway_process import GatewayProcess
from redis_server import RedisServer


def command_calls(r: redis.Redis, names: tuple[str, ...]) -> int:
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


SESSION_COMMANDS = ("get", "getex", "set", "evalsha", "eval", "hget", "hgetall", "zadd", "expire")


def test_sigterm_flushes_every_acknowledged_update(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A long batch interval: nothing is flushed by the timer before the SIGTERM.
    gw = GatewayProcess(
        redis_url=redis_server.url,
        env={"BATCH_WRITE_INTERVAL_MS": "600000"},
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(4)]
            acked = 0
            for i in range(1000):
                a = accounts[i % 4]
                r = client.post(
                    f"/sessions/update/{a.session_id}",
                    json={"data": {f"k{i}": i}},
                    headers=a.headers,
                )
                assert r.status_code == 200, r.text
                acked += 1
        gw.signal(signal.SIGTERM)
        assert gw.wait(20) == 0, gw.log_tail()
    finally:
        gw.stop()
    assert acked == 1000
    with redis.Redis.from_url(redis_server.url) as r:
        found = 0
        for i, a in enumerate(accounts):
            data = orjson.loads(r.get(f"sessions:{a.session_id}"))["data"]
            for j in range(i, 1000, 4):
                assert data[f"k{j}"] == j
                found += 1
    assert found == 1000


def test_updates_to_one_session_within_an_interval_are_batched(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    gw = GatewayProcess(
        redis_url=redis_server.url,
        env={"BATCH_WRITE_INTERVAL_MS": "5000"},
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        with (
            httpx.Client(base_url=gw.url, timeout=10) as client,
            redis.Redis.from_url(redis_server.url) as r,
        ):
            account = new_account(client)
            before = command_calls(r, SESSION_COMMANDS)
            for i in range(100):
                resp = client.post(
                    f"/sessions/update/{account.session_id}",
                    json={"data": {"n": i}},
                    headers=account.headers,
                )
                assert resp.status_code == 200
                assert resp.json()["data"]["n"] == i
            during = command_calls(r, SESSION_COMMANDS) - before
            # The read-your-own-writes view answers the next read without waiting for a flush.
            got = client.get(f"/sessions/{account.session_id}", headers=account.headers).json()
            assert got["data"]["n"] == 99
    finally:
        gw.stop()
    assert during <= 10, f"{during} Redis commands for 100 updates"
    with redis.Redis.from_url(redis_server.url) as r:
        stored = orjson.loads(r.get(f"sessions:{account.session_id}"))
    assert stored["data"]["n"] == 99  # flushed at shutdown


def test_redis_outage_gives_503_and_recovers(redis_server: RedisServer, tmp_path: Path) -> None:
    gw = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "gw.log").start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            account = new_account(client)
            with redis.Redis.from_url(redis_server.url) as r:
                r.config_set("save", "3600 1")  # dump on shutdown, reload on start
            redis_server.stop()
            r = client.get("/health")
            assert r.status_code == 503
            assert r.json()["status"] == "unhealthy"
            r = client.post(
                "/sessions/login", json={"username": account.username, "password": account.password}
            )
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["error"] == "Service Unavailable"
            assert body["path"] == "/sessions/login"
            r = client.get(f"/sessions/{account.session_id}", headers=account.headers)
            assert r.status_code == 503
            redis_server.start()
            deadline = time.monotonic() + 10
            while client.get("/health").status_code != 200:
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.1)
            # State written before the outage survived it (the server reloaded its dump).
            r = client.get(f"/sessions/{account.session_id}", headers=account.headers)
            assert r.status_code == 200, r.text
            relog = login(client, account.username, account.password)
            assert (
                client.get(f"/sessions/{relog.session_id}", headers=relog.headers).status_code
                == 200
            )
    finally:
        gw.stop()


def test_legacy_sha256_password_is_accepted_once_and_upgraded(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with redis.Redis.from_url(redis_server.url) as r:
        r.hset(
            "users:legacy_user",
            mapping={
                "password": hashlib.sha256(b"old-password").hexdigest(),
                "email": "legacy@example.com",
                "role": "user",
            },
        )
    with GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "gw.log") as gw:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            account = login(client, "legacy_user", "old-password")
            assert account.token
            bad = client.post(
                "/sessions/login", json={"username": "legacy_user", "password": "wrong-pass"}
            )
            assert bad.status_code == 401
        with redis.Redis.from_url(redis_server.url) as r:
            stored = r.hget("users:legacy_user", "password").decode()
        assert stored.startswith("$argon2id$")
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            assert login(client, "legacy_user", "old-password").token


def test_role_set_directly_in_redis_applies_at_next_login(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with (
        GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url, timeout=10) as client,
    ):
        account = new_account(client)
        assert client.get("/admin/users", headers=account.headers).status_code == 403
        with redis.Redis.from_url(redis_server.url) as r:
            r.hset(f"users:{account.username}", "role", "admin")
        again = login(client, account.username, account.password)
        assert client.get("/admin/users", headers=again.headers).status_code == 200


def test_two_nodes_share_users_sessions_and_revocation(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "a.log").start()
    b = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "b.log").start()
    try:
        with (
            httpx.Client(base_url=a.url, timeout=10) as ca,
            httpx.Client(base_url=b.url, timeout=10) as cb,
        ):
            account = new_account(ca)
            r = cb.post(
                f"/sessions/update/{account.session_id}",
                json={"data": {"from": "b"}},
                headers=account.headers,
            )
            assert r.status_code == 200
            cb.post("/sessions/logout", headers=account.headers)
            # Revocation reaches node A through the control channel.
            deadline = time.monotonic() + 2
            while True:
                r = ca.get(f"/sessions/users/{account.username}/sessions", headers=account.headers)
                if r.status_code == 401:
                    break
                assert time.monotonic() < deadline, r.text
                time.sleep(0.02)
            assert r.json()["error"] == "Token revoked"
    finally:
        a.stop()
        b.stop()


def test_workers_share_the_port(redis_server: RedisServer, tmp_path: Path) -> None:
    gw = GatewayProcess(
        redis_url=redis_server.url, args=["--workers", "2"], log_path=tmp_path / "gw.log"
    ).start()
    try:
        ids = set()
        deadline = time.monotonic() + 15
        while len(ids) < 2 and time.monotonic() < deadline:
            # A new connection each time so the kernel spreads them over both listeners.
            with httpx.Client(base_url=gw.url, timeout=5) as client:
                r = client.get("/health")
                if r.status_code == 200:
                    ids.add(r.json()["gateway_id"])
        assert len(ids) == 2, ids
        with httpx.Client(base_url=gw.url, timeout=5) as client:
            username = unique()
            register(client, username)
            # Logins and token checks work whichever worker answers.
            for _ in range(6):
                account = login(client, username)
                with httpx.Client(base_url=gw.url, timeout=5) as other:
                    r = other.get(f"/sessions/{account.session_id}", headers=account.headers)
                    assert r.status_code == 200, r.text
        gw.signal(signal.SIGTERM)
        assert gw.wait(20) == 0
    finally:
        gw.stop()
