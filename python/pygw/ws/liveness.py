"""Users of a dead node go offline.

A node stopped gracefully marks its users offline as their sockets close; one killed (SIGKILL, a
crash, a lost host) leaves connection records that say they are online on it. Each node writes
a heartbeat that expires ``HEARTBEAT_TTL`` seconds after its last beat (see the broker); every
node, every :data:`REAP_EVERY` seconds, lists the live nodes and has storage mark offline the
records of any other gateway (:meth:`pygw.store.base.Storage.reap_connections`).

A gateway is reaped only once it was missing from two lists in a row, so that a node whose
heartbeat lapsed during a Redis outage and is back within one period keeps its users; a node
that lost Redis for longer writes its users' records again when its link returns
(:meth:`pygw.ws.hub.Hub.rewrite_connection_records`). Bound: the records of a killed node say
offline at most ``HEARTBEAT_TTL + 2 * REAP_EVERY`` seconds (25 s) after its last heartbeat.
"""

from __future__ import annotations

import asyncio
import logging

from pygw.broker.base import Broker
from pygw.core.errors import BackendUnavailable
from pygw.core.tasks import BackgroundTasks
from pygw.store.base import Storage

log = logging.getLogger("pygw.ws")

REAP_EVERY = 5.0


class ConnectionReaper:
    def __init__(
        self,
        storage: Storage,
        broker: Broker,
        tasks: BackgroundTasks,
        *,
        node_id: str,
        interval: float = REAP_EVERY,
    ) -> None:
        self.storage = storage
        self.broker = broker
        self.tasks = tasks
        self.node_id = node_id
        self.interval = interval
        self._seen: set[str] = set()
        """Live gateways at the previous reap (a gateway is reaped once absent from two)."""
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Before this node accepts a socket: records left online under its own id (a previous
        process with the same ``PYGW_GATEWAY_ID`` that was killed) go offline now; then reap
        every ``interval`` seconds."""
        try:
            live = set(await self.broker.nodes())
            self._seen = live | {self.node_id}
            await self.storage.reap_connections(live - {self.node_id})
        except BackendUnavailable as exc:
            log.warning("could not check for dead gateways' connection records: %s", exc)
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self.tasks.spawn(self.reap())
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    async def reap(self) -> int:
        """Mark offline the records of gateways absent from this list and the previous one."""
        try:
            live = set(await self.broker.nodes()) | {self.node_id}
            spared = live | self._seen
            self._seen = live
            return await self.storage.reap_connections(spared)
        except BackendUnavailable as exc:
            log.debug("reap of dead gateways' connection records skipped: %s", exc)
            return 0
