"""Live node figures for operators: while an operator's console (or anything else an admin runs)
is subscribed to ``admin:stats`` on some node, every node publishes a snapshot of itself there
once per ``PYGW_STATS_INTERVAL``.

Nobody pays for it otherwise: a node with a local subscriber announces a ``StatsWanted`` control
message every ANNOUNCE_EVERY seconds, and nodes publish only until the last announcement's
deadline. The snapshot carries cumulative counters (the console derives rates from two of them),
so a lost snapshot loses nothing but a point of the graph.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from pygw.broker.base import Broker
from pygw.broker.publish import ChannelPublisher
from pygw.core.channels import is_user_channel
from pygw.core.control import StatsWanted
from pygw.core.tasks import BackgroundTasks
from pygw.metrics import Metrics, rss_bytes
from pygw.ws.hub import Hub

STATS_CHANNEL = "admin:stats"
WATCH_SECONDS = 30.0
"""How long one announcement keeps the nodes publishing."""
ANNOUNCE_EVERY = 10.0
TOP_CHANNELS = 50
"""Channels (the busiest, by local subscribers) listed in a snapshot."""


class NodeStats:
    def __init__(
        self,
        hub: Hub,
        metrics: Metrics,
        broker: Broker,
        publisher: ChannelPublisher,
        tasks: BackgroundTasks,
        *,
        node_id: str,
        interval: float,
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.broker = broker
        self.publisher = publisher
        self.tasks = tasks
        self.node_id = node_id
        self.interval = interval
        self.until = 0.0
        """Publish snapshots until this time (the latest StatsWanted's deadline)."""
        self._announced = 0.0
        self._started = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def wanted(self, message: StatsWanted) -> None:
        self.until = max(self.until, message.until)

    def _tick(self) -> None:
        now = time.time()
        if self.hub.subscribers(STATS_CHANNEL) and now >= self._announced + ANNOUNCE_EVERY:
            self._announced = now
            self.tasks.spawn(self.broker.publish_control(StatsWanted(now + WATCH_SECONDS)))
        if now < self.until:
            self.tasks.spawn(
                self.publisher.publish(STATS_CHANNEL, orjson.dumps(self.snapshot(now)))
            )
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        m = self.metrics
        channels = sorted(
            (
                (channel, count)
                for channel, count in self.hub.subscriptions.local_counts().items()
                if not is_user_channel(channel)
            ),
            key=lambda item: -item[1],
        )[:TOP_CHANNELS]
        return {
            "node": self.node_id,
            "ts": time.time() if now is None else now,
            "uptime": round(time.monotonic() - self._started, 3),
            "connections": self.hub.connection_count,
            "users": self.hub.user_count,
            "messages_in": m.messages_in,
            "messages_out": m.messages_out,
            "deliveries": m.deliveries,
            "publications": m.publications,
            "http_requests": sum(m.http_requests.values()),
            "rss_bytes": rss_bytes(),
            "channels": dict(channels),
        }
