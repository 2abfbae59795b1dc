"""The one way a node (or a process embedding pygw) publishes: data to a channel with the options
its namespace gives, a push to a user, a request to close a user's sockets everywhere."""

from __future__ import annotations

import time

from pygw.broker.base import Broker, Publication
from pygw.core.channels import (
    USER_PUBLISH,
    NamespacePolicy,
    PublishOptions,
    publish_options,
    user_channel,
)
from pygw.core.codes import CLOSE_NORMAL
from pygw.core.control import Disconnect
from pygw.metrics import Metrics


class ChannelPublisher:
    def __init__(
        self, broker: Broker, policy: NamespacePolicy, metrics: Metrics | None = None
    ) -> None:
        self.broker = broker
        self.policy = policy
        self.latency = None if metrics is None else metrics.broker_publish_seconds

    async def publish(self, channel: str, data_json: bytes) -> Publication:
        """Publish JSON text to ``channel`` on every node (offsets and history per namespace)."""
        return await self._publish(channel, data_json, publish_options(self.policy, channel))

    async def push(self, user_id: str, data_json: bytes) -> Publication:
        """Send JSON text to every connection of ``user_id`` on every node."""
        return await self._publish(user_channel(user_id), data_json, USER_PUBLISH)

    async def _publish(
        self, channel: str, data_json: bytes, options: PublishOptions
    ) -> Publication:
        if self.latency is None:
            return await self.broker.publish(channel, data_json, options)
        started = time.perf_counter()
        try:
            return await self.broker.publish(channel, data_json, options)
        finally:
            self.latency.observe(time.perf_counter() - started)

    async def disconnect(
        self,
        user_id: str,
        reason: str = "Disconnected by server",
        *,
        family: str | None = None,
        code: int = CLOSE_NORMAL,
    ) -> None:
        """Close ``user_id``'s sockets on every node (only those of login ``family`` if given)."""
        await self.broker.publish_control(Disconnect(user_id, family, code, reason))
