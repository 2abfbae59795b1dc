"""What survives a node killed with SIGKILL and a Redis restart (docs/SECURITY.md, "Faults"):
real gateway processes sharing one real redis-server, clients over loopback."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from wsclient import WS

from conftest import Account, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer

DEAD_NODE_BOUND = 25.0
"""Seconds after a node's last heartbeat within which its users' records say offline
(HEARTBEAT_TTL + 2 * REAP_EVERY, pygw.ws.liveness)."""


def connection_states(base_url: str, accounts: list[Account]) -> dict[str, tuple[str, bool] | None]:
    """user -> (gateway_id, ws_connected) as ``GET /sessions/users/{u}/connection`` says, None
    while there is no record yet (it is written behind)."""
    states: dict[str, tuple[str, bool] | None] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for a in accounts:
            r = client.get(f"/sessions/users/{a.username}/connection", headers=a.headers)
            assert r.status_code in (200, 404), r.text
            body = r.json()
            states[a.username] = (
                (body["gateway_id"], body["ws_connected"]) if r.status_code == 200 else None
            )
    return states


async def test_users_of_a_killed_node_go_offline_within_the_bound(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """30 users connected to node A; A is SIGKILLed: node B reports all of them offline within
    the documented bound (before: their records said online forever)."""
    node_a = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "a.log").start()
    node_b = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "b.log").start()
    sockets: list[WS] = []
    try:
        with httpx.Client(base_url=node_a.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(30)]
        sockets = [await WS.open(node_a.ws_url, a.token, a.session_id) for a in accounts]
        gateway_a = sockets[0].welcome["gateway_id"]
        deadline = time.monotonic() + 5
        while True:  # the records are written behind (one batch interval)
            states = await asyncio.to_thread(connection_states, node_b.url, accounts)
            if all(state == (gateway_a, True) for state in states.values()):
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)

        node_a.signal(signal.SIGKILL)
        killed = time.monotonic()
        node_a.wait(10)
        while True:
            states = await asyncio.to_thread(connection_states, node_b.url, accounts)
            online = [user for user, state in states.items() if state is None or state[1]]
            if not online:
                print(f"offline {time.monotonic() - killed:.1f} s after the SIGKILL")
                break
            waited = time.monotonic() - killed
            assert waited < DEAD_NODE_BOUND + 2, (
                f"{len(online)} user(s) still online {waited:.1f} s after node A was killed"
            )
            await asyncio.sleep(0.5)
        assert all(state is not None and state[0] == gateway_a for state in states.values())
        # A user who reconnects to B is online again, on B (the reaper leaves B's records).
        again = await WS.open(node_b.ws_url, accounts[0].token, accounts[0].session_id)
        sockets.append(again)
        await asyncio.sleep(7)  # past a reap of node B
        states = await asyncio.to_thread(connection_states, node_b.url, accounts[:1])
        assert states[accounts[0].username] == (again.welcome["gateway_id"], True)
    finally:
        for ws in sockets:
            await ws.conn.close()
        node_a.stop()
        node_b.stop()


class Writers:
    """Threads that keep updating their own session (a new key each time) and remember which
    updates were acknowledged (200); refusals (503 while Redis is away) are not counted."""

    def __init__(self, base_url: str, accounts: list[Account]) -> None:
        self.base_url = base_url
        self.accounts = accounts
        self.acked: list[list[int]] = [[] for _ in accounts]
        self.refused = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(i,), daemon=True)
            for i in range(len(accounts))
        ]

    @property
    def total(self) -> int:
        return sum(map(len, self.acked))

    def start(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, total: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.total < total:
            assert time.monotonic() < deadline, f"only {self.total} update(s) acknowledged"
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _write(self, index: int) -> None:
        account = self.accounts[index]
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post(
                        f"/sessions/update/{account.session_id}",
                        json={"data": {f"k{i}": i}},
                        headers=account.headers,
                    )
                except httpx.HTTPError:
                    return  # the node is gone
                if r.status_code == 200:
                    self.acked[index].append(i)
                else:
                    assert r.status_code == 503, r.text  # refused, not acknowledged
                    self.refused += 1
                    time.sleep(0.01)
                i += 1

    def missing(self, redis_url: str) -> list[tuple[str, int]]:
        """Acknowledged updates Redis does not hold."""
        lost: list[tuple[str, int]] = []
        with redis.Redis.from_url(redis_url) as r:
            for account, keys in zip(self.accounts, self.acked, strict=True):
                raw = r.get(f"sessions:{account.session_id}")
                data = orjson.loads(raw)["data"] if raw is not None else {}
                lost += [(account.username, k) for k in keys if data.get(f"k{k}") != k]
        return lost


def wait_until_stored(writers: Writers, redis_url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while lost := writers.missing(redis_url):
        if time.monotonic() > deadline:
            total = writers.total
            raise AssertionError(f"{len(lost)} of {total} acknowledged update(s) lost: {lost[:5]}")
        time.sleep(0.2)


def test_redis_crash_with_aof_loses_no_acknowledged_session_write(tmp_path: Path) -> None:
    """Redis with AOF and ``appendfsync always`` is SIGKILLed and started again (same port)
    while eight clients keep updating their sessions: every update acknowledged before, during
    or after the outage is in Redis afterwards, and a node started after the restart reads it."""
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        gw = GatewayProcess(redis_url=server.url, log_path=tmp_path / "gw.log").start()
        try:
            with httpx.Client(base_url=gw.url, timeout=10) as client:
                accounts = [new_account(client) for _ in range(8)]
            writers = Writers(gw.url, accounts).start()
            try:
                writers.wait_for(500)
                server.kill()
                before_restart = writers.total
                time.sleep(1.0)
                during_outage = writers.total - before_restart
                server.start()
                writers.wait_for(before_restart + 500)
            finally:
                writers.stop()
            wait_until_stored(writers, server.url)
            node_b = GatewayProcess(redis_url=server.url, log_path=tmp_path / "b.log")
            with node_b, httpx.Client(base_url=node_b.url, timeout=10) as client:
                for account, keys in zip(accounts, writers.acked, strict=True):
                    r = client.get(f"/sessions/{account.session_id}", headers=account.headers)
                    assert r.status_code == 200, r.text
                    data = r.json()["data"]
                    assert all(data.get(f"k{k}") == k for k in keys)
        finally:
            gw.stop()
    print(
        f"acknowledged: {before_restart} before the crash, {during_outage} during the outage, "
        f"{writers.total} in all; refused (503): {writers.refused}; lost: 0"
    )
    assert before_restart >= 500
    assert writers.total >= before_restart + 500


def test_sigkill_after_acknowledged_updates_loses_none_with_write_through(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """``PYGW_SESSION_WRITE_THROUGH=true``: eight clients update their sessions and the node is
    SIGKILLed mid-stream; every update answered 200 is in Redis. (The write-behind interval is
    ten minutes here: without write-through nothing after a session's first update would be.)"""
    gw = GatewayProcess(
        redis_url=redis_server.url,
        env={"PYGW_SESSION_WRITE_THROUGH": "true", "BATCH_WRITE_INTERVAL_MS": "600000"},
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(8)]
        writers = Writers(gw.url, accounts).start()
        try:
            writers.wait_for(500)
            gw.signal(signal.SIGKILL)
            gw.wait(10)
        finally:
            writers.stop()
    finally:
        gw.stop()
    assert writers.total >= 500
    lost = writers.missing(redis_server.url)
    assert not lost, f"{len(lost)} of {writers.total} acknowledged update(s) lost: {lost[:5]}"


HISTORY_NAMESPACES = [{"name": "hist", "history_size": 10000, "history_ttl": 600}]
API_KEY = "faults-test-key"


class Publisher:
    """A thread publishing ``{"n": i}`` to one channel through a node's server API as fast as
    it can; remembers which publications were acknowledged (200) and which were not."""

    def __init__(self, base_url: str, channel: str) -> None:
        self.base_url = base_url
        self.channel = channel
        self.acked: list[int] = []
        self.refused: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post(
                        "/api/publish",
                        json={"channel": self.channel, "data": {"n": i}},
                        headers={"X-API-Key": API_KEY},
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.acked if ok else self.refused).append(i)
                if not ok:
                    time.sleep(0.002)
                i += 1


async def test_publications_made_as_redis_returns_reach_every_subscriber_once(
    tmp_path: Path,
) -> None:
    """Two nodes on one redis-server (AOF, so history survives); a subscriber on node B; a
    publisher through node A that keeps going while Redis is restarted three times (same port).
    The subscriber gets every acknowledged publication exactly once, in offset order. Before,
    those Redis accepted before node B's subscription was back (3-4 per restart, more when B's
    link needed a second try) reached nobody."""
    env = {
        "PYGW_NAMESPACES": orjson.dumps(HISTORY_NAMESPACES).decode(),
        "PYGW_API_KEYS": API_KEY,
    }
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    channel = "hist:restarts"
    with RedisServer(extra_args=aof) as server:
        node_a = GatewayProcess(redis_url=server.url, env=env, log_path=tmp_path / "a.log")
        node_b = GatewayProcess(redis_url=server.url, env=env, log_path=tmp_path / "b.log")
        node_a.start()
        node_b.start()
        received: list[dict[str, Any]] = []
        try:
            with httpx.Client(base_url=node_b.url, timeout=10) as client:
                account = new_account(client)
            ws = await WS.open(node_b.ws_url, account.token, account.session_id)
            sub = await ws.request({"type": "subscribe", "channel": channel})
            assert sub["type"] == "subscribed", sub

            async def receive() -> None:
                while True:
                    frame = await ws.recv(timeout=60)
                    if frame.get("type") == "message":
                        received.append(frame)

            reader = asyncio.create_task(receive())
            publisher = Publisher(node_a.url, channel).start()
            try:
                for _ in range(3):
                    await asyncio.sleep(0.5)
                    await asyncio.to_thread(server.restart)
                await asyncio.sleep(1.0)
            finally:
                publisher.stop()
            deadline = time.monotonic() + 10
            wanted = set(publisher.acked)
            while not wanted <= {m["data"]["n"] for m in received}:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything delivered twice arrives by now
            reader.cancel()
            await ws.close()
        finally:
            node_a.stop()
            node_b.stop()
    got = [m["data"]["n"] for m in received]
    missing = sorted(wanted - set(got))
    twice = sorted(n for n, count in Counter(got).items() if count > 1)
    print(
        f"acknowledged {len(wanted)}, refused {len(publisher.refused)}, received {len(got)}, "
        f"missing {len(missing)}, twice {len(twice)}"
    )
    assert publisher.refused, "no publication was refused: Redis was never seen away"
    assert not missing, f"{len(missing)} acknowledged publication(s) never arrived: {missing[:20]}"
    assert not twice, f"delivered more than once: {twice[:20]}"
    assert set(got) <= wanted | set(publisher.refused)
    offsets = [m["offset"] for m in received]
    assert offsets == sorted(offsets), "out of offset order"
