"""A rolling deploy as users run it: Debian's nginx with ``docker/nginx.conf`` in front of three
Redis-backed pygw nodes (tests/deployment.py), restarted one by one (SIGTERM, drain, exit, a new
process on the same port, ready) while a publisher keeps publishing through nginx and
``CLIENTS`` real WebSocket clients (``pygw.client``) stay subscribed through nginx.

Each client is closed with 1001 by its draining node, reconnects through nginx with backoff and
resubscribes with ``since`` its last offset. Asserted: every acknowledged publication reaches
every client exactly once and in order (nothing lost while it is still in history, no gap), no
publish is refused, and every reconnect completes within the drain window plus a bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import new_account, unique
from deployment import Deployment, client_address, http_client
from pygw.client import Client, Disconnect, Gap, Message, Subscribed

API_KEY = "rolling-key"
CLIENTS = 60
DRAIN_SECONDS = 2.0
PUBLISH_INTERVAL = 0.02
"""50 publications a second, during the whole restart."""
RECONNECT_BOUND = 3.0
"""Seconds a client may take beyond the drain window to be back and resubscribed."""
ENV = {
    "PYGW_API_KEYS": API_KEY,
    "PYGW_DRAIN_SECONDS": str(DRAIN_SECONDS),
    # Every test client comes from 127.0.0.1: the per-address upgrade limit (20/s) would hold
    # back the reconnects of 60 "users" that in a real deployment come from 60 addresses.
    "PYGW_RATE_WS_CONNECT": "0",
    "PYGW_NAMESPACES": orjson.dumps(
        [{"name": "hist", "history_size": 10_000, "history_ttl": 600}]
    ).decode(),
}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with Deployment(tmp_path, env=ENV) as dep:
        yield dep


class Watcher:
    """One client's record: offsets received, and how long each reconnect took."""

    def __init__(self) -> None:
        self.received: list[tuple[int, object]] = []
        self.gaps: list[Gap] = []
        self.lost_at: float | None = None
        self.reconnects: list[float] = []
        self.codes: list[int] = []
        """Close codes of established connections."""
        self.failed_attempts = 0
        """Reconnect attempts that never got ``connected`` (e.g. an upgrade a draining node
        refused, or one nginx sent to a node not listening yet)."""
        self.up = False

    def on_message(self, message: Message) -> None:
        assert message.offset is not None
        self.received.append((message.offset, message.data))

    def on_connected(self, _welcome: object) -> None:
        self.up = True

    def on_disconnected(self, event: Disconnect) -> None:
        if self.up:
            self.codes.append(event.code)
        else:
            self.failed_attempts += 1
        self.up = False
        if self.lost_at is None:
            self.lost_at = time.monotonic()

    def on_subscribed(self, event: Subscribed) -> None:
        if event.resubscribed and self.lost_at is not None:
            self.reconnects.append(time.monotonic() - self.lost_at)
            self.lost_at = None


async def publish_until(
    dep: Deployment, channel: str, stop: asyncio.Event, acked: list[tuple[int, int]]
) -> list[str]:
    """Publish numbered messages through nginx until ``stop``; the failures, as text."""
    failures: list[str] = []
    async with httpx.AsyncClient(
        base_url=dep.url, headers={"X-API-Key": API_KEY}, timeout=10
    ) as api:
        n = 0
        while not stop.is_set():
            try:
                r = await api.post("/api/publish", json={"channel": channel, "data": n})
            except httpx.HTTPError as exc:
                failures.append(f"{n}: {exc!r}")
            else:
                if r.status_code == 200:
                    acked.append((r.json()["offset"], n))
                else:
                    failures.append(f"{n}: {r.status_code} {r.text}")
            n += 1
            await asyncio.sleep(PUBLISH_INTERVAL)
    return failures


async def test_rolling_restart_through_nginx_loses_nothing(deployment: Deployment) -> None:
    dep = deployment
    channel = f"hist:{unique('rolling')}"
    with http_client(dep.url, client_address()) as http:
        user = new_account(http)
    watchers = [Watcher() for _ in range(CLIENTS)]
    clients = [
        Client(dep.ws_url, token=user.token, min_reconnect_delay=0.2, max_reconnect_delay=2.0)
        for _ in range(CLIENTS)
    ]
    try:
        for client, watcher in zip(clients, watchers, strict=True):
            client.on("connected", watcher.on_connected)
            client.on("disconnected", watcher.on_disconnected)
            await client.connect()
            sub = await client.subscribe(channel, on_message=watcher.on_message)
            sub.on("subscribed", watcher.on_subscribed)
            sub.on("gap", watcher.gaps.append)
        nodes_before = {c.welcome["gateway_id"] for c in clients if c.welcome}
        assert nodes_before == {dep.node_id(i) for i in range(len(dep.nodes))}

        stop = asyncio.Event()
        acked: list[tuple[int, int]] = []
        publisher = asyncio.create_task(publish_until(dep, channel, stop, acked))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for i in range(len(dep.nodes)):
            code = await asyncio.to_thread(dep.stop_node, i, 30.0)
            assert code == 0, dep.nodes[i].log_tail()
            await asyncio.to_thread(dep.start_node, i, 30.0)
        restart_seconds = time.monotonic() - started
        await asyncio.sleep(0.5)
        stop.set()
        failures = await publisher

        assert failures == [], failures[:10]
        assert len(acked) > 100
        expected = sorted(acked)
        assert [n for _, n in expected] == sorted(n for _, n in acked)  # offsets follow order
        last = expected[-1][0]
        async with asyncio.timeout(10):
            while any(not w.received or w.received[-1][0] < last for w in watchers):  # noqa: ASYNC110 - polling other tasks' lists
                await asyncio.sleep(0.05)

        for i, w in enumerate(watchers):
            assert w.gaps == [], (i, w.gaps)
            got = [(offset, data) for offset, data in w.received if offset >= expected[0][0]]
            offsets = [o for o, _ in got]
            assert offsets == sorted(set(offsets)), f"client {i}: duplicates or disorder"
            assert got == expected, f"client {i}: {len(expected) - len(got)} message(s) lost"
        # Each client was on one node that drained, and maybe again on a node restarted later.
        assert all(w.codes and set(w.codes) <= {1001} for w in watchers), {
            c for w in watchers for c in w.codes
        }
        times = [t for w in watchers for t in w.reconnects]
        assert all(w.lost_at is None for w in watchers)
        worst = max(times)
        print(
            f"\nrolling restart of {len(dep.nodes)} nodes: {restart_seconds:.1f} s, "
            f"{len(acked)} publications, {CLIENTS} clients, {len(times)} reconnects, "
            f"max reconnect {worst:.2f} s, "
            f"{sum(w.failed_attempts for w in watchers)} failed reconnect attempts, lost 0"
        )
        assert worst < DRAIN_SECONDS + RECONNECT_BOUND, sorted(times)[-5:]
    finally:
        for client in clients:
            await client.close()
