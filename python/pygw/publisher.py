"""Publish to pygw channels and users from any Python process that can reach the Redis.

    from pygw import Publisher

    async with Publisher("redis://localhost:6379") as pub:
        await pub.publish("news:today", {"headline": "..."})
        await pub.push("alice", {"type": "invoice", "id": 7})

It speaks to the gateways through Redis exactly as a gateway node does (same offsets, history and
frames), so subscribers on every node get each publication once. Pass the gateways' namespace
configuration (or set ``PYGW_NAMESPACES`` like for the gateways) so history is kept where the
gateways expect it.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import orjson

from pygw._native import ChannelPolicy
from pygw.broker.base import Publication
from pygw.broker.publish import ChannelPublisher
from pygw.broker.redis import RedisBroker
from pygw.config import Settings, namespaces_from_env


class Publisher:
    def __init__(
        self,
        redis_url: str,
        *,
        namespaces: list[dict[str, Any]] | None = None,
        cluster: bool = False,
        channel_meta_ttl: float | None = None,
    ) -> None:
        """``cluster``: ``redis_url`` names a node of a Redis Cluster (as the gateways'
        ``PYGW_REDIS_CLUSTER``); ``channel_meta_ttl``: as the gateways'
        ``PYGW_CHANNEL_META_TTL`` (default: that variable, else one day)."""
        if namespaces is None:
            namespaces = namespaces_from_env()
        if channel_meta_ttl is None:
            channel_meta_ttl = Settings.from_env(
                {"PYGW_CHANNEL_META_TTL": os.environ.get("PYGW_CHANNEL_META_TTL", "")}
            ).channel_meta_ttl
        policy = ChannelPolicy(orjson.dumps(namespaces), True)
        self._broker = RedisBroker(
            redis_url,
            node_id=f"publisher-{uuid.uuid4().hex[:8]}",
            cluster=cluster,
            meta_ttl=channel_meta_ttl,
        )
        self._publisher = ChannelPublisher(self._broker, policy)

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish JSON-serialisable ``data`` to ``channel`` on every node."""
        return await self._publisher.publish(channel, orjson.dumps(data))

    async def push(self, user_id: str, data: Any) -> None:
        """Send to every connection of ``user_id`` on every node."""
        await self._publisher.push(user_id, orjson.dumps(data))

    async def disconnect(self, user_id: str, reason: str = "Disconnected by server") -> None:
        """Close every connection of ``user_id`` on every node (1000)."""
        await self._publisher.disconnect(user_id, reason)

    async def close(self) -> None:
        await self._broker.redis.aclose()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
