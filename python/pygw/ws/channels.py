"""Channels on this node: which connections are subscribed to what, this node's interest in each
channel (reference-counted and mirrored in the broker), and the ``subscribe``, ``unsubscribe``
and ``publish`` client messages with their permission checks, history recovery and presence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from pygw._native import ClientFrame
from pygw.broker.base import Broker
from pygw.broker.publish import ChannelPublisher
from pygw.core.codes import E_BAD_REQUEST, E_NOT_FOUND
from pygw.core.errors import BadRequest, Forbidden, LimitReached, NotFound
from pygw.core.tasks import BackgroundTasks
from pygw.ws.connection import Connection
from pygw.ws.delivery import Delivery


class ChannelRules(Protocol):
    """Namespace permissions and options (``pygw._native.ChannelPolicy``)."""

    def check(self, action: str, channel: str, user_id: str, role: str) -> int:
        """0 if allowed, else 400 (invalid name), 403 (forbidden) or 404 (unknown namespace)."""
        ...

    def options(self, channel: str) -> tuple[int, float, bool]: ...


class Subscriptions:
    def __init__(
        self,
        *,
        broker: Broker,
        publisher: ChannelPublisher,
        rules: ChannelRules,
        delivery: Delivery,
        tasks: BackgroundTasks,
        node_id: str,
        max_per_connection: int = 0,
    ) -> None:
        self.max_per_connection = max_per_connection
        """Channels one connection may be subscribed to (0 = any number)."""
        self.broker = broker
        self.publisher = publisher
        self.rules = rules
        self.delivery = delivery
        self.tasks = tasks
        self.node_id = node_id
        self._refs: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}

    # -- this node's interest in a channel (mirrored in the broker) -------------------------------
    async def acquire(self, channel: str) -> None:
        """Count one more local user of ``channel``; the first one subscribes the node in the
        broker (and later ones wait for that) so publications from then on reach this node."""
        refs = self._refs.get(channel, 0)
        self._refs[channel] = refs + 1
        if refs == 0:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._ready[channel] = ready
            if self.rules.options(channel)[0] > 0:
                self.delivery.keep_recent(channel)
            try:
                await self.broker.subscribe(channel)
            except BaseException as exc:
                self._ready.pop(channel, None)
                ready.set_exception(exc)
                ready.exception()  # retrieved: waiters get it below
                self.release(channel)
                raise
            ready.set_result(None)
            if self._ready.get(channel) is ready:
                del self._ready[channel]
            return
        waiting = self._ready.get(channel)
        if waiting is not None:
            try:
                await asyncio.shield(waiting)
            except BaseException:
                self.release(channel)
                raise

    def release(self, channel: str) -> None:
        refs = self._refs.get(channel, 0) - 1
        if refs > 0:
            self._refs[channel] = refs
            return
        self._refs.pop(channel, None)
        self.delivery.forget_recent(channel)
        self.tasks.spawn(self.broker.unsubscribe(channel))

    def leave_all(self, conn: Connection) -> None:
        """A connection closed: drop its subscriptions (and its presence)."""
        if conn.channels:
            for channel in conn.channels:
                self.release(channel)
                if self.rules.options(channel)[2]:
                    self.tasks.spawn(self.broker.presence_leave(channel, self.client_id(conn)))
            conn.channels = None

    def local_counts(self) -> dict[str, int]:
        """Channel -> how many of this node's connections are subscribed to it."""
        return dict(self._refs)

    def client_id(self, conn: Connection) -> str:
        return f"{self.node_id}:{conn.id}"

    # -- client messages ---------------------------------------------------------------------------
    def check(self, action: str, conn: Connection, frame: ClientFrame) -> str:
        channel = frame.channel
        if channel is None:
            raise BadRequest("Missing field: channel")
        return self.check_channel(action, conn, channel)

    def check_channel(self, action: str, conn: Connection, channel: str) -> str:
        """``channel`` if ``conn`` may ``action`` it, else BadRequest (invalid name), NotFound
        (unknown namespace) or Forbidden."""
        code = self.rules.check(action, channel, conn.user_id, conn.role)
        if code == 0:
            return channel
        if code == E_BAD_REQUEST:
            raise BadRequest(f"Invalid channel: {channel}")
        if code == E_NOT_FOUND:
            raise NotFound(f"Unknown channel: {channel}")
        raise Forbidden(f"Permission denied: cannot {action} '{channel}'")

    def on_subscribe(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        channel = self.check("subscribe", conn, frame)
        since = None
        if frame.since_epoch is not None and frame.since_offset is not None:
            since = (frame.since_epoch, frame.since_offset)
        return self.subscribe(conn, channel, since)

    async def subscribe(
        self, conn: Connection, channel: str, since: tuple[str, int] | None = None
    ) -> Any:
        """Subscribe ``conn`` (already checked) to ``channel``, first sending what it missed
        after ``since`` (epoch, offset) if history holds all of it; the ``subscribed`` reply,
        or None if the connection closed meanwhile. LimitReached past the per-connection cap."""
        already = conn.channels is not None and channel in conn.channels
        if already:
            return await self._subscribe(conn, channel, since, already)
        # Checked and counted before the first await: concurrent subscribes count too.
        cap = self.max_per_connection
        if cap and len(conn.channels or ()) + conn.subscribing >= cap:
            raise LimitReached(
                f"Too many subscriptions: at most {cap} channels per connection"
                " (unsubscribe from one first)"
            )
        conn.subscribing += 1
        try:
            return await self._subscribe(conn, channel, since, already)
        finally:
            conn.subscribing -= 1

    async def _subscribe(
        self, conn: Connection, channel: str, since: tuple[str, int] | None, already: bool
    ) -> Any:
        broker = self.broker
        size, _ttl, presence = self.rules.options(channel)
        if not already:
            await self.acquire(channel)
        since_offset = 0
        try:
            if since is not None and size > 0:
                since_offset = since[1]
                rec = await broker.recover(channel, since[0], since_offset)
                recovered, epoch, top = rec.recovered, rec.epoch, rec.offset
                # A partial or foreign history would be a silent gap: send nothing instead and
                # let recovered=false tell the client to resynchronise.
                missed = rec.envelopes if recovered else []
            else:
                epoch, top = await broker.top(channel)
                missed, recovered = [], False
        except BaseException:
            if not already:
                self.release(channel)
            raise
        if not conn.open:
            if not already:
                self.release(channel)
            return None
        # From here to the topic subscription nothing awaits, so nothing published meanwhile can
        # slip between the history we send and the live stream.
        # Recovered history has no gap: the missed publications are since+1 ... top.
        for i, envelope in enumerate(missed, start=since_offset + 1):
            conn.send_publication(channel, epoch, i, envelope)
        recent = self.delivery.recent.get(channel)
        if recent:
            known = self.delivery.positions.get(channel)
            if known is not None and known[0] != epoch:
                # The channel's offsets expired and started again (PYGW_CHANNEL_META_TTL):
                # what this node kept belongs to the old numbering, not after `top`.
                recent.clear()
            for offset, envelope in recent:
                if offset > top:
                    conn.send_publication(channel, epoch, offset, envelope)
                    top = offset
        self.delivery.seen(channel, epoch, top)
        if not already:
            conn.subscribe_topic(channel.encode())
            if conn.channels is None:
                conn.channels = set()
            conn.channels.add(channel)
            if presence:
                await broker.presence_join(
                    channel,
                    self.client_id(conn),
                    {"user_id": conn.user_id, "conn_id": conn.id, "gateway_id": self.node_id},
                )
        return {
            "type": "subscribed",
            "channel": channel,
            "epoch": epoch,
            "offset": top,
            "recovered": recovered,
        }

    def on_unsubscribe(self, conn: Connection, frame: ClientFrame) -> dict[str, Any]:
        channel = frame.channel
        if channel is None:
            raise BadRequest("Missing field: channel")
        if conn.channels is not None and channel in conn.channels:
            conn.channels.discard(channel)
            conn.unsubscribe_topic(channel.encode())
            self.release(channel)
            if self.rules.options(channel)[2]:
                self.tasks.spawn(self.broker.presence_leave(channel, self.client_id(conn)))
        return {"type": "unsubscribed", "channel": channel}

    def on_publish(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        channel = self.check("publish", conn, frame)
        if frame.data is None:
            raise BadRequest("Missing field: data")
        return self._publish(channel, frame.data)

    async def _publish(self, channel: str, data: bytes) -> dict[str, Any]:
        pub = await self.publisher.publish(channel, data)
        return {"type": "published", "channel": channel, "offset": pub.offset}
