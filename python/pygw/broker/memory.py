"""In-process broker for the embedded, single-node setup.

History lives in the native ring buffers (``pygw._native.HistoryBuffers``); delivery and control
messages are direct calls to the node.

A channel's stream (its epoch, offsets and history) is dropped once idle for as long as the
Redis broker keeps a channel's keys (``meta_ttl``, ``PYGW_CHANNEL_META_TTL``, at least its
``history_ttl`` after the last publication): subscribing to ever new channel names cannot grow
the process without bound (security review item 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from pygw._native import HistoryBuffers, encode_message
from pygw.broker.base import Broker, BrokerHandler, Publication, Recovery
from pygw.core.channels import PLAIN_PUBLISH, PublishOptions
from pygw.core.control import ControlMessage


class MemoryBroker(Broker):
    name = "memory"

    def __init__(self, meta_ttl: float = 86400.0) -> None:
        self._handler: BrokerHandler | None = None
        self._history = HistoryBuffers()
        self._presence: dict[str, dict[str, dict[str, Any]]] = {}
        self.meta_ttl = meta_ttl
        self._keep_until: dict[str, float] = {}
        """Channel -> when its stream may be dropped (every stream has an entry)."""
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="pygw-channel-sweep")

    async def close(self) -> None:
        self._handler = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.meta_ttl))
            self.drop_idle(time.time())

    def drop_idle(self, now: float) -> int:
        """Drop the streams idle past their time (see the module); returns how many."""
        idle = [channel for channel, until in self._keep_until.items() if until <= now]
        for channel in idle:
            del self._keep_until[channel]
            self._history.remove(channel)
        return len(idle)

    def _touched(self, channel: str) -> None:
        """A read that creates the stream keeps it ``meta_ttl`` (an existing one keeps its
        time, as Redis' ``EXPIRE NX``)."""
        if channel not in self._keep_until:
            self._keep_until[channel] = time.time() + self.meta_ttl

    async def publish_control(self, message: ControlMessage) -> None:
        if self._handler is not None:
            self._handler.on_control(message)

    async def publish(
        self,
        channel: str,
        data_json: bytes,
        options: PublishOptions = PLAIN_PUBLISH,
    ) -> Publication:
        if options.with_offset:
            offset, epoch, envelope = self._history.publish(
                channel, data_json, options.history_size, options.history_ttl
            )
            keep = self.meta_ttl if self.meta_ttl >= options.history_ttl else options.history_ttl
            self._keep_until[channel] = time.time() + keep
        else:
            offset, epoch, envelope = 0, "", encode_message(channel, data_json, None)
        if self._handler is not None:
            self._handler.on_publication(channel, offset, envelope, time.time_ns() // 1000)
        return Publication(offset, epoch, envelope)

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    async def top(self, channel: str) -> tuple[str, int]:
        self._touched(channel)
        return self._history.top(channel)

    async def recover(self, channel: str, epoch: str, offset: int) -> Recovery:
        self._touched(channel)
        envelopes, recovered, current_epoch, top = self._history.recover(channel, epoch, offset)
        return Recovery(envelopes, recovered, current_epoch, top)

    async def history(
        self, channel: str, since: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        return self._history.history(channel, since, limit)

    async def gather(
        self, name: str, args: dict[str, Any], wait: float = 1.0
    ) -> list[dict[str, Any]]:
        return [] if self._handler is None else [self._handler.answer(name, args)]

    async def nodes(self) -> dict[str, dict[str, Any]]:
        stats = self.stats_provider() if self.stats_provider is not None else {}
        return {str(stats.get("node_id", "local")): stats}

    async def presence_join(self, channel: str, client_id: str, info: dict[str, Any]) -> None:
        self._presence.setdefault(channel, {})[client_id] = info

    async def presence_leave(self, channel: str, client_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(client_id, None)
            if not members:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, dict[str, Any]]:
        return dict(self._presence.get(channel, {}))
