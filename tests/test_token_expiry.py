"""Sockets die with their token: one timer for the earliest expiry, refreshed tokens skipped, and
a heap that does not keep closed connections' entries without bound."""

from __future__ import annotations

import asyncio
import time

from pygw.ws.connection import Connection
from pygw.ws.expiry import COMPACT_SLACK, TokenExpiry
from pygw.ws.registry import ConnectionRegistry


class RecordingConnection(Connection):
    closed: list[tuple[str, int, str]] = []

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.append((self.user_id, code, reason))


async def test_closes_expired_sockets_and_skips_refreshed_ones() -> None:
    registry = ConnectionRegistry("node")
    expiry = TokenExpiry(registry)
    RecordingConnection.closed = []
    now = int(time.time())
    soon, refreshed, later = (
        RecordingConnection(user_id=name, exp=now + 1) for name in ("soon", "refreshed", "later")
    )
    later.exp = now + 3600
    for conn in (later, soon, refreshed):
        registry.add(conn)
        expiry.track(conn)
    expiry.start()
    try:
        refreshed.exp = now + 3600  # a refresh_token frame: a new entry, the old one skipped
        expiry.track(refreshed)
        await asyncio.sleep(now + 1 - time.time() + 0.2)
        assert RecordingConnection.closed == [("soon", 1008, "Token expired")]
    finally:
        expiry.stop()


def test_entries_of_closed_connections_do_not_pile_up() -> None:
    registry = ConnectionRegistry("node")
    expiry = TokenExpiry(registry)
    far = int(time.time()) + 3600
    for _ in range(3 * COMPACT_SLACK):  # connections that closed before their token expired
        expiry.track(Connection(user_id="gone", exp=far))
    assert len(expiry) <= COMPACT_SLACK + 1
