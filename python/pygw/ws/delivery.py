"""Local delivery: a publication reaches this node's subscribers as one uWS topic publish of
bytes encoded once (never one Python call per subscriber), and clients that stop reading are cut
off before their queues grow without bound.

Publications that arrive while uWS is running a callback are queued and published from asyncio
right after, because uWS batches per-socket writes only for publishes made outside its
callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

from pygw.core.codes import CLOSE_TRY_AGAIN
from pygw.metrics import Metrics
from pygw.ws.connection import Connection
from pygw.ws.registry import ConnectionRegistry
from pygw.ws.streams import StreamTopics

log = logging.getLogger("pygw.ws")

SWEEP_INTERVAL = 0.1
"""Seconds between checks of send buffers (only after deliveries)."""
SWEEP_BATCH = 5000
"""Connections checked per tick."""
RECENT = 256
"""Publications kept per channel with history, so a subscribe that read history just before a
publication arrived can send what it missed (see ``channels.Subscriptions.subscribe``)."""


class TopicServer(Protocol):
    """What delivery needs of the transport's server."""

    def publish(self, topic: bytes, message: bytes) -> bool: ...

    def num_subscribers(self, topic: bytes) -> int: ...

    def write_streams(self, streams: Any, data: bytes) -> int: ...

    @property
    def in_uv(self) -> bool: ...


class Delivery:
    def __init__(
        self, registry: ConnectionRegistry, metrics: Metrics, backpressure_limit: int
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.backpressure_limit = backpressure_limit
        self.recent: dict[str, deque[tuple[int, bytes]]] = {}
        """Channels with history that have local subscribers -> their latest publications."""
        self.positions: dict[str, tuple[str, int]] = {}
        """Channels with history -> (epoch, offset) this node has delivered up to, as far as it
        knows (seeded when a connection subscribes; see :meth:`delivered_up_to`)."""
        self.held: dict[str, list[tuple[int, bytes]]] = {}
        """Channels whose live publications wait while what was missed is fetched (see
        :mod:`pygw.ws.replay`)."""
        self.streams = StreamTopics()
        """SSE and NDJSON streams by topic: fed with the same envelopes as the uWS topics."""
        self._server: TopicServer | None = None
        self._queued: list[tuple[str, int, bytes]] = []
        self._delivered = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_queue: list[Connection] | None = None
        self._sweep_pos = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, server: TopicServer) -> None:
        self._server = server
        self.streams.start(server)
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    @property
    def server(self) -> TopicServer:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return self._server

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, channel: str, offset: int, envelope: bytes) -> int:
        """Hand a publication to this node's subscribers; returns how many it goes to."""
        if self.held:
            held = self.held.get(channel)
            if held is not None:
                held.append((offset, envelope))
                return 0
        self._delivered = True
        recent = self.recent.get(channel)
        if recent is not None:
            recent.append((offset, envelope))
        topic = channel.encode()
        server = self.server
        if server.in_uv:
            if not self._queued:
                asyncio.get_running_loop().call_soon(self._flush_queued)
            self._queued.append((channel, offset, envelope))
        else:
            self._publish(channel, topic, offset, envelope)
        return server.num_subscribers(topic) + self.streams.count(topic)

    def _publish(self, channel: str, topic: bytes, offset: int, envelope: bytes) -> None:
        """One publication to the uWS topic and, wrapped once per stream format, to the streams
        subscribed to it (SSE events carry ``id: <epoch>:<offset>``)."""
        self.server.publish(topic, envelope)
        streams = self.streams
        if topic in streams.topics:
            known = self.positions.get(channel) if offset else None
            event_id = b"%s:%d" % (known[0].encode(), offset) if known else None
            streams.publish(topic, envelope, event_id)

    def _flush_queued(self) -> None:
        queued, self._queued = self._queued, []
        for channel, offset, envelope in queued:
            self._publish(channel, channel.encode(), offset, envelope)

    def subscribers(self, channel: str) -> int:
        """Local subscribers of ``channel`` right now (WebSockets and streams)."""
        topic = channel.encode()
        return self.server.num_subscribers(topic) + self.streams.count(topic)

    def keep_recent(self, channel: str) -> None:
        self.recent[channel] = deque(maxlen=RECENT)

    def forget_recent(self, channel: str) -> None:
        self.recent.pop(channel, None)
        self.positions.pop(channel, None)

    def seen(self, channel: str, epoch: str, offset: int) -> None:
        """A subscriber of ``channel`` was told the stream is at ``(epoch, offset)``."""
        if channel not in self.recent:
            return
        known = self.positions.get(channel)
        if known is None or known[0] != epoch or known[1] < offset:
            self.positions[channel] = (epoch, offset)

    def delivered_up_to(self, channel: str) -> tuple[str, int] | None:
        """(epoch, offset) of the latest publication of ``channel`` this node delivered (or
        that its subscribers were told of); None if it has no subscriber of it."""
        known = self.positions.get(channel)
        if known is None:
            return None
        recent = self.recent.get(channel)
        if recent:
            return known[0], max(known[1], recent[-1][0])
        return known

    def hold(self, channel: str) -> None:
        """Keep live publications of ``channel`` back until :meth:`release`."""
        self.held.setdefault(channel, [])

    def release(self, channel: str, missed: list[tuple[int, bytes]], epoch: str) -> int:
        """Deliver the ``missed`` publications and those held back, once each and in offset
        order, skipping what was delivered already; returns how many were delivered."""
        held = self.held.pop(channel, [])
        known = self.delivered_up_to(channel)
        last = known[1] if known is not None and known[0] == epoch else 0
        pending = dict(missed)
        pending.update(held)
        delivered = 0
        for offset in sorted(pending):
            if offset > last:
                self.deliver(channel, offset, pending[offset])
                last = offset
                delivered += 1
        if channel in self.recent:
            self.positions[channel] = (epoch, last)
        return delivered

    # -- slow readers ---------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Close, with 1013 and a close frame, clients whose send buffer passed the limit.

        A pass starts only after deliveries (nothing else grows buffers) and checks at most
        SWEEP_BATCH connections per tick, so its cost stays small with 100k connections. If a
        burst outruns it, uWS terminates the socket at 8x the limit (no close frame then)."""
        if self._sweep_queue is None and self._delivered:
            self._delivered = False
            self._sweep_queue = list(self.registry.conns.values())
            self._sweep_pos = 0
        queue = self._sweep_queue
        if queue is not None:
            limit = self.backpressure_limit
            end = self._sweep_pos + SWEEP_BATCH
            for conn in queue[self._sweep_pos : end]:
                if conn.ws is None or conn.closing:
                    continue
                amount = conn.buffered_amount()
                if amount > limit:
                    self.metrics.rate_limited["backpressure"] += 1
                    log.info("closing %r: %d bytes queued (limit %d)", conn, amount, limit)
                    conn.close(CLOSE_TRY_AGAIN, "Backpressure limit exceeded")
            self._sweep_pos = end
            if end >= len(queue):
                self._sweep_queue = None
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)
