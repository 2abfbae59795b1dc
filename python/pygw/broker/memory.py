"""In-process broker for the embedded, single-node setup.

History lives in the native ring buffers (``pygw._native.HistoryBuffers``); delivery and control
messages are direct calls to the node.
"""

from __future__ import annotations

import time
from typing import Any

from pygw._native import HistoryBuffers, encode_message
from pygw.broker.base import Broker, BrokerHandler, Publication, Recovery
from pygw.core.channels import PLAIN_PUBLISH, PublishOptions
from pygw.core.control import ControlMessage


class MemoryBroker(Broker):
    name = "memory"

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._history = HistoryBuffers()
        self._presence: dict[str, dict[str, dict[str, Any]]] = {}

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None

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
        return self._history.top(channel)

    async def recover(self, channel: str, epoch: str, offset: int) -> Recovery:
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
