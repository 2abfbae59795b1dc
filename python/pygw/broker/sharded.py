"""Sharded pub/sub on a Redis Cluster: one subscriber link per primary, each channel on the
primary that owns its slot.

With sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis 7) a message travels only within the
shard that owns its channel's slot, instead of being broadcast to every node of the cluster. A
subscriber must therefore be connected to that shard: this class learns the slot map
(``CLUSTER SLOTS`` from any reachable node), keeps one :class:`PubSubLink` (sharded) per primary
that owns a wanted channel, and moves channels when the map changes.

The map is looked up again when a link reports trouble (its node refused a subscription with
MOVED, dropped one by itself, or the connection was lost), every ``refresh_every`` seconds, and
every ``retry_every`` seconds while some wanted channel is not confirmed. So when a primary dies
and its replica takes over, its channels are subscribed on the new primary as soon as the
cluster says so, and ``on_resync`` tells the node that messages may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.crc import key_slot

from pygw.broker.pubsub import Endpoint, OnMessage, PubSubLink, command

log = logging.getLogger("pygw.broker")

Address = tuple[str, int]
SLOTS = 16384


class ShardedPubSub:
    def __init__(
        self,
        url: str,
        on_message: OnMessage,
        on_resync: Callable[[], None],
        *,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 3.0,
        refresh_every: float = 5.0,
        retry_every: float = 0.2,
    ) -> None:
        self.endpoint = Endpoint(url, connect_timeout=connect_timeout)
        self.on_message = on_message
        self.on_resync = on_resync
        self.subscribe_timeout = subscribe_timeout
        self.refresh_every = refresh_every
        self.retry_every = retry_every
        self.wanted: set[bytes] = set()
        self._slot_owner: list[Address | None] = [None] * SLOTS
        self._known: list[Address] = [(self.endpoint.host, self.endpoint.port)]
        """Nodes to ask for the slot map (the URL's, then every node the map named)."""
        self._links: dict[Address, PubSubLink] = {}
        self._placed: dict[bytes, Address] = {}
        """Channel -> the primary whose link carries it."""
        self._trouble = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.refreshes = 0
        self.moves = 0

    # -- the interface of PubSubLink used by the broker --------------------------------------------
    @property
    def connected(self) -> bool:
        return bool(self._links) and all(link.connected for link in self._links.values())

    def is_confirmed(self, channel: bytes) -> bool:
        addr = self._placed.get(channel)
        return addr is not None and addr in self._links and self._links[addr].is_confirmed(channel)

    async def start(self, initial: set[bytes]) -> None:
        """Learn the slot map, subscribe to ``initial`` (waiting up to the connect timeout) and
        keep everything placed from then on."""
        self.wanted |= initial
        with contextlib.suppress(OSError, ConnectionError, TimeoutError):
            await self._refresh()
        self._task = asyncio.get_running_loop().create_task(self._watch())
        deadline = time.monotonic() + self.endpoint.connect_timeout
        while not all(self.is_confirmed(ch) for ch in initial):
            if time.monotonic() > deadline:
                log.warning("sharded pub/sub not ready at %s yet; retrying", self._known[0])
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(link.close() for link in self._links.values()))
        self._links.clear()

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe on the shard that owns ``channel``; returns once confirmed. Raises
        TimeoutError after ``subscribe_timeout`` (the slot map is looked up again meanwhile
        whenever the shard refuses or cannot be reached)."""
        self.wanted.add(channel)
        deadline = time.monotonic() + self.subscribe_timeout
        while True:
            link = self._place(channel)
            left = deadline - time.monotonic()
            if link is not None:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await asyncio.wait_for(link.subscribe(channel), max(0.01, left))
                    if self.is_confirmed(channel):
                        return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"sharded subscribe of {channel!r} not confirmed")
            self._trouble.set()
            await asyncio.sleep(self.retry_every)

    def unsubscribe(self, channel: bytes) -> None:
        self.wanted.discard(channel)
        addr = self._placed.pop(channel, None)
        link = self._links.get(addr) if addr is not None else None
        if link is not None:
            link.unsubscribe(channel)

    # -- placement ---------------------------------------------------------------------------------
    def _owner(self, channel: bytes) -> Address | None:
        return self._slot_owner[key_slot(channel)]

    def _place(self, channel: bytes) -> PubSubLink | None:
        """Put ``channel`` on the link of its slot's primary (moving it if it was elsewhere)."""
        addr = self._owner(channel)
        if addr is None:
            return None
        old = self._placed.get(channel)
        if old == addr and addr in self._links:
            return self._links[addr]
        if old is not None and old in self._links:
            self._links[old].unsubscribe(channel)
            self.moves += 1
        self._placed[channel] = addr
        link = self._links.get(addr)
        if link is None:
            link = self._links[addr] = PubSubLink(
                "",
                self.on_message,
                self.on_resync,
                endpoint=self.endpoint.at(*addr),
                sharded=True,
                on_trouble=self._trouble.set,
                connect_timeout=self.endpoint.connect_timeout,
                subscribe_timeout=self.subscribe_timeout,
                max_backoff=1.0,
            )
            link.run({channel})
        else:
            link.add(channel)
        return link

    async def _refresh(self) -> None:
        """Read the slot map from the first node that answers; re-place every wanted channel;
        close links no channel uses any more."""
        ranges = await self._slot_map()
        owner: list[Address | None] = [None] * SLOTS
        for start, end, addr in ranges:
            for slot in range(start, end + 1):
                owner[slot] = addr
        self._slot_owner = owner
        self.refreshes += 1
        moved = 0
        for channel in list(self.wanted):
            before = self._placed.get(channel)
            self._place(channel)
            if before is not None and self._placed.get(channel) != before:
                moved += 1
        used = set(self._placed.values())
        for addr in [a for a in self._links if a not in used]:
            link = self._links.pop(addr)
            asyncio.get_running_loop().create_task(link.close())
        if moved:
            log.warning("sharded pub/sub: %d channel(s) moved to a new primary", moved)
            self.on_resync()

    async def _slot_map(self) -> list[tuple[int, int, Address]]:
        last: BaseException | None = None
        for addr in list(self._known):
            try:
                reply = await self._ask(addr)
            except (OSError, ConnectionError, TimeoutError) as exc:
                last = exc
                continue
            if isinstance(reply, Exception):
                last = ConnectionError(str(reply))
                continue
            ranges: list[tuple[int, int, Address]] = []
            for entry in reply:
                start, end, primary = int(entry[0]), int(entry[1]), entry[2]
                host = primary[0].decode() or addr[0]
                ranges.append((start, end, (host, int(primary[1]))))
                for node in entry[2:]:
                    seen = (node[0].decode() or addr[0], int(node[1]))
                    if seen not in self._known:
                        self._known.append(seen)
            if ranges:
                # Ask the node that answered first next time.
                self._known.remove(addr)
                self._known.insert(0, addr)
                return ranges
        raise ConnectionError(f"no cluster node answered CLUSTER SLOTS: {last}")

    async def _ask(self, addr: Address) -> Any:
        reader, writer = await self.endpoint.at(*addr).open()
        try:
            return await self.endpoint.request(reader, writer, command(b"CLUSTER", b"SLOTS"))
        finally:
            writer.close()

    async def _watch(self) -> None:
        """Look the slot map up again on trouble, periodically, and while anything wanted is
        not confirmed."""
        while not self._closing:
            unconfirmed = any(not self.is_confirmed(ch) for ch in self.wanted)
            wait = self.retry_every if unconfirmed else self.refresh_every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trouble.wait(), wait)
                await asyncio.sleep(self.retry_every)  # let a burst of trouble settle
            self._trouble.clear()
            try:
                await self._refresh()
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.debug("sharded pub/sub: slot map unavailable: %s", exc)
