"""Publications made while this node's broker link was down reach its subscribers anyway.

When Redis restarts (or the link drops), publications accepted by Redis before this node's
subscriptions are back reach no subscriber of this node: a few per restart even when the link
is back within 0.1 s. For every channel with history that has local subscribers, when the link
comes back, live publications are held back; once the subscription is confirmed again, the
history since the last offset this node delivered is read, and the missed publications and the
held ones are delivered once each, in offset order (:meth:`Delivery.release`).

If Redis lost the channel's history (a new epoch: Redis restarted without persistence), every
publication of the new epoch is delivered. If history no longer holds everything missed (more
publications than ``history_size``, or older than ``history_ttl``), what it holds is delivered
and the gap is logged; clients that track offsets see it and can resubscribe with ``since``.
"""

from __future__ import annotations

import asyncio
import logging

from pygw._native import encode_message
from pygw.broker.base import Broker
from pygw.core.errors import BackendUnavailable
from pygw.core.tasks import BackgroundTasks
from pygw.ws.delivery import Delivery

log = logging.getLogger("pygw.ws")

ATTEMPTS = 5
"""Tries to resubscribe and read a channel's history (0.2 s, 0.4 s, ... apart) before its held
publications are let through without what was missed."""


class ChannelReplay:
    def __init__(self, broker: Broker, delivery: Delivery, tasks: BackgroundTasks) -> None:
        self.broker = broker
        self.delivery = delivery
        self.tasks = tasks

    def link_back(self) -> int:
        """The broker link was re-established: hold back and replay every channel with history
        that has local subscribers; returns how many channels."""
        channels = [ch for ch in self.delivery.positions if ch not in self.delivery.held]
        for channel in channels:
            self.delivery.hold(channel)
            self.tasks.spawn(self._replay(channel))
        return len(channels)

    async def _replay(self, channel: str) -> None:
        for attempt in range(ATTEMPTS):
            try:
                missed, epoch = await self._missed(channel)
            except (BackendUnavailable, TimeoutError, ConnectionError) as exc:
                if attempt < ATTEMPTS - 1:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                log.error("replay of %s after a broker resync failed: %s", channel, exc)
                known = self.delivery.delivered_up_to(channel)
                self.delivery.release(channel, [], known[0] if known else "")
                return
            except BaseException:
                self.delivery.held.pop(channel, None)
                raise
            delivered = self.delivery.release(channel, missed, epoch)
            if delivered:
                log.info("replayed %s after a broker resync: %d publication(s)", channel, delivered)
            return

    async def _missed(self, channel: str) -> tuple[list[tuple[int, bytes]], str]:
        """(offset, envelope) of what history holds after this node's last delivery, once the
        subscription is confirmed again (publications from then on arrive live), and the epoch."""
        await self.broker.subscribe(channel)
        epoch, top = await self.broker.top(channel)
        known = self.delivery.delivered_up_to(channel)
        since = known[1] if known is not None and known[0] == epoch else 0
        if top <= since:
            return [], epoch
        entries = await self.broker.history(channel, since, limit=top - since)
        if not entries or entries[0][0] != since + 1:
            first = entries[0][0] if entries else top + 1
            log.warning(
                "%s: publications %d-%d were missed during a broker outage and are no longer "
                "in history",
                channel,
                since + 1,
                first - 1,
            )
        return [(offset, encode_message(channel, data, offset)) for offset, data in entries], epoch
