"""Token expiry of open WebSockets: a connection closes with 1008 "Token expired" when the access
token it was opened (or last refreshed) with expires.

One heap of ``(exp, connection id)`` and one timer armed for the earliest expiry, so no work is
done between expiries. A refresh over the socket (``refresh_token``) pushes a new entry; the old
one is skipped when it comes up (its ``exp`` no longer matches the connection's). Entries of
closed connections are dropped when they come up, or earlier by a rebuild once the heap holds
more than twice the open connections.
"""

from __future__ import annotations

import asyncio
import heapq
import time

from pygw.core.codes import CLOSE_POLICY
from pygw.ws.connection import Connection
from pygw.ws.registry import ConnectionRegistry

COMPACT_SLACK = 1024
"""The heap is rebuilt from the open connections when it exceeds twice their number plus this."""


class TokenExpiry:
    def __init__(self, registry: ConnectionRegistry) -> None:
        self.registry = registry
        self._heap: list[tuple[int, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._arm()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_for = None

    def track(self, conn: Connection) -> None:
        """Close ``conn`` when ``conn.exp`` passes (call again after changing it)."""
        if len(self._heap) > 2 * len(self.registry.conns) + COMPACT_SLACK:
            self._compact()
        heapq.heappush(self._heap, (conn.exp, conn.id))
        if self._running and (self._armed_for is None or conn.exp < self._armed_for):
            self._arm()

    def __len__(self) -> int:
        return len(self._heap)

    def _compact(self) -> None:
        self._heap = [(c.exp, c.id) for c in self.registry.conns.values()]
        heapq.heapify(self._heap)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_for = None
        if not self._heap or not self._running:
            return
        exp = self._heap[0][0]
        self._armed_for = exp
        delay = max(0.0, exp - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.time()
        heap = self._heap
        conns = self.registry.conns
        while heap and heap[0][0] <= now:
            exp, conn_id = heapq.heappop(heap)
            conn = conns.get(conn_id)
            if conn is not None and conn.exp == exp:  # not refreshed since
                conn.close(CLOSE_POLICY, "Token expired")
        self._arm()
