"""The dynamic route table this node keeps in sync with storage (SPEC §2).

Routes live in the storage backend (shared by every node with Redis). A change is written there,
applied to this node's table at once, and announced with a ``RoutesChanged`` control message;
every node (this one too) then reloads its table from storage. Tables are also loaded at start
and reloaded when the broker resynchronises after a lost link. Each route has a circuit breaker
on each node; a new or changed route starts with a closed one.
"""

from __future__ import annotations

import asyncio
import logging

from pygw.broker.base import Broker
from pygw.core.control import RoutesChanged
from pygw.core.errors import BackendUnavailable
from pygw.core.tasks import BackgroundTasks
from pygw.proxy.breaker import CircuitBreaker
from pygw.store.base import RouteRecord, Storage

log = logging.getLogger("pygw.proxy")

RELOAD_RETRY_SECONDS = 1.0


class RouteTable:
    def __init__(
        self,
        storage: Storage,
        broker: Broker,
        tasks: BackgroundTasks,
        *,
        breaker_failures: int,
        breaker_reset_seconds: float,
    ) -> None:
        self.storage = storage
        self.broker = broker
        self.tasks = tasks
        self.breaker_failures = breaker_failures
        self.breaker_reset = breaker_reset_seconds
        self.routes: dict[str, RouteRecord] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self._version = 0
        """Bumped by every change applied locally; a reload that raced one is redone."""
        self._dirty = False
        self._reloader: asyncio.Task[None] | None = None

    def get(self, name: str) -> RouteRecord | None:
        return self.routes.get(name)

    async def start(self) -> None:
        try:
            await self.reload()
        except BackendUnavailable as exc:
            log.warning("dynamic routes not loaded (%s); retrying in the background", exc)
            self.request_reload()

    def close(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None

    async def reload(self) -> None:
        """Replace the table with what storage holds (redone if a local change raced it)."""
        while True:
            version = self._version
            records = await self.storage.list_routes()
            if version == self._version:
                break
        self._install({r.name: r for r in records})

    def request_reload(self) -> None:
        """Reload in the background (coalesced; retried while the backend is unreachable)."""
        self._dirty = True
        if self._reloader is None or self._reloader.done():
            self._reloader = self.tasks.spawn(self._reload_loop())

    async def _reload_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.reload()
            except BackendUnavailable as exc:
                log.warning("reloading dynamic routes failed (%s); retrying", exc)
                self._dirty = True
                await asyncio.sleep(RELOAD_RETRY_SECONDS)

    def _install(self, table: dict[str, RouteRecord]) -> None:
        for name in list(self.breakers):
            if self.routes.get(name) != table.get(name):
                del self.breakers[name]  # a new or changed route starts with a closed circuit
        self.routes = table

    def apply_local(self, name: str, route: RouteRecord | None) -> None:
        """Apply a change this node just wrote to storage (before the control round trip)."""
        self._version += 1
        table = dict(self.routes)
        if route is None:
            table.pop(name, None)
        else:
            table[name] = route
        self._install(table)

    async def put(self, route: RouteRecord) -> None:
        await self.storage.put_route(route)
        self.apply_local(route.name, route)
        await self.broker.publish_control(RoutesChanged())

    async def delete(self, name: str) -> bool:
        removed = await self.storage.delete_route(name)
        self.apply_local(name, None)
        if removed:
            await self.broker.publish_control(RoutesChanged())
        return removed

    def breaker_state(self, name: str) -> str:
        """``closed``, ``open`` or ``half_open`` on this node (closed until first used)."""
        breaker = self.breakers.get(name)
        return CircuitBreaker.CLOSED if breaker is None else breaker.state

    def breaker(self, name: str) -> CircuitBreaker:
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = self.breakers[name] = CircuitBreaker(
                self.breaker_failures, self.breaker_reset
            )
        return breaker
