"""Redis broker: publications and control messages reach every node through Redis pub/sub
(sharded pub/sub on a Redis Cluster).

A publication is one Lua script (one round trip): it assigns the channel's next offset, appends
to the channel's history list if configured, builds the client frame once and PUBLISHes it
(SPUBLISHes on a cluster, in the channel's own slot) with a small ``<offset>:<publish µs>:``
prefix. Every node subscribed to the channel — the publishing node included — receives it
exactly once and hands the frame to uWS untouched.

Pushes to a user (``user:<id>``) go to one of a fixed set of user-shard channels that every node
subscribes to at start, so a connection needs no subscription of its own (see ``_layout``).

Keys and channels: see :mod:`pygw.broker._layout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from typing import Any

import orjson

from pygw._native import encode_message
from pygw.broker._layout import CLUSTER, SINGLE
from pygw.broker.base import Broker, BrokerHandler, Publication, Recovery
from pygw.broker.pubsub import PubSubLink
from pygw.broker.sharded import ShardedPubSub
from pygw.core import control
from pygw.core.channels import PLAIN_PUBLISH, PublishOptions, is_user_channel
from pygw.core.errors import BackendUnavailable
from pygw.redis_client import LuaScript, connect, unavailable_on_error

log = logging.getLogger("pygw.broker")

META_TTL = 7 * 86400
"""Seconds a channel's presence hash is kept after its last join."""
CHANNEL_META_TTL = 86400.0
"""Default seconds a channel's offsets are kept (``PYGW_CHANNEL_META_TTL``)."""
HEARTBEAT_EVERY = 5.0
HEARTBEAT_TTL = 15

PUBLISH = LuaScript(
    "publish",
    """
local offset = 0
local epoch = ''
local envelope
if ARGV[8] == '1' then
  epoch = redis.call('HGET', KEYS[1], 'epoch')
  if not epoch then
    epoch = ARGV[7]
    redis.call('HSET', KEYS[1], 'epoch', epoch)
    redis.call('DEL', KEYS[2])
  end
  offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
  redis.call('HSET', KEYS[1], 'ttl', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[9]))
  envelope = '{"type":"message","channel":' .. ARGV[1] .. ',"data":' .. ARGV[2]
    .. ',"offset":' .. offset .. '}'
  local size = tonumber(ARGV[3])
  if size > 0 then
    redis.call('RPUSH', KEYS[2], offset .. ':' .. ARGV[5] .. ':' .. ARGV[2])
    redis.call('LTRIM', KEYS[2], -size, -1)
    -- the newest entry is too old once history_ttl has passed: the list goes with it
    local history_ms = tonumber(ARGV[4])
    redis.call('PEXPIRE', KEYS[2], history_ms > 0 and history_ms or tonumber(ARGV[9]))
  end
else
  envelope = '{"type":"message","channel":' .. ARGV[1] .. ',"data":' .. ARGV[2] .. '}'
end
redis.call(ARGV[10], ARGV[6], offset .. ':' .. ARGV[5] .. ':' .. envelope)
return {offset, epoch}
""",
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _new_epoch() -> str:
    return secrets.token_hex(4)


class RedisBroker(Broker):
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        node_id: str,
        cluster: bool = False,
        socket_timeout: float = 2.0,
        meta_ttl: float = CHANNEL_META_TTL,
    ) -> None:
        self.url = url
        self.meta_ttl_ms = max(1000, round(meta_ttl * 1000))
        """A channel's offsets (``chmeta``) are kept this long after its last publication, or
        its first subscription if it has none; at least the channel's ``history_ttl``. A
        history list is kept ``history_ttl`` after its last publication (``meta_ttl`` when
        the namespace sets no ``history_ttl``)."""
        self.node_id = node_id
        self.keys = CLUSTER if cluster else SINGLE
        self.redis = connect(
            url,
            cluster=cluster,
            socket_timeout=socket_timeout,
            client_name=f"pygw-broker:{node_id}",
        )
        self._handler: BrokerHandler | None = None
        self._link: PubSubLink | ShardedPubSub = (
            ShardedPubSub(url, self._on_message, self._on_reconnect)
            if cluster
            else PubSubLink(url, self._on_message, self._on_reconnect)
        )
        self._user_shards = self.keys.user_shards
        self._heartbeat: asyncio.Task[None] | None = None
        self._replies: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, handler: BrokerHandler) -> None:
        """Subscribe to the control channel and every user-shard channel (waiting up to the
        connect timeout; the link keeps trying in the background if Redis is away)."""
        self._handler = handler
        await self._link.start({self.keys.control, *self._user_shards})
        # Alive before anything else hears of this node: presence entries of a node without a
        # heartbeat are dropped as stale by the others.
        await self._beat_once()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        with contextlib.suppress(Exception):
            await self.redis.delete(self.keys.node(self.node_id))
            await self.redis.srem(self.keys.nodes, self.node_id)
        await self._link.close()
        await self.redis.aclose()
        self._handler = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            await self._beat_once()

    async def _beat_once(self) -> None:
        """Write this node's heartbeat (its stats, with a TTL) and its entry in the node set."""
        key = self.keys.node(self.node_id)
        stats = self.stats_provider() if self.stats_provider is not None else {}
        stats["ts"] = time.time()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(key, orjson.dumps(stats), ex=HEARTBEAT_TTL)
                pipe.sadd(self.keys.nodes, self.node_id)
                await pipe.execute()
        except Exception as exc:  # Redis away: try again next beat
            log.debug("heartbeat failed: %s", exc)

    # -- incoming ----------------------------------------------------------------------------------
    def _on_message(self, channel: bytes, payload: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        if channel in self._user_shards:  # <offset>:<µs>:<name length>:<user channel><frame>
            _zero, published, rest = payload.split(b":", 2)
            size, rest = rest.split(b":", 1)
            n = int(size)
            name = rest[:n].decode()
            handler.on_publication(name, 0, rest[n:], int(published))
            return
        if channel == self.keys.control:
            message = control.decode(payload)
            if isinstance(message, control.Query):
                answer = handler.answer(message.name, message.args)
                reply = asyncio.get_running_loop().create_task(
                    self._reply(message.reply_to, answer)
                )
                self._replies.add(reply)
                reply.add_done_callback(self._replies.discard)
            elif message is not None:
                handler.on_control(message)
            else:
                log.warning("ignoring a control message this node does not understand")
            return
        offset, published, envelope = payload.split(b":", 2)
        handler.on_publication(self.keys.channel_of(channel), int(offset), envelope, int(published))

    def _on_reconnect(self) -> None:
        # Alive again at once: a heartbeat that lapsed during the outage would get this node's
        # users marked offline by the others (see pygw.ws.liveness).
        beat = asyncio.get_running_loop().create_task(self._beat_once())
        self._replies.add(beat)
        beat.add_done_callback(self._replies.discard)
        if self._handler is not None:
            self._handler.on_resync()

    # -- control -----------------------------------------------------------------------------------
    async def publish_control(self, message: control.ControlMessage) -> None:
        with unavailable_on_error("control"):
            await self._publish_raw(self.keys.control, control.encode(message, self.node_id))

    async def _publish_raw(self, target: bytes, payload: bytes) -> None:
        if self.keys.cluster:
            await self.redis.spublish(target, payload)
        else:
            await self.redis.publish(target, payload)

    async def _reply(self, key: str, answer: dict[str, Any]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, orjson.dumps({**answer, "node": self.node_id}))
                pipe.expire(key, 30)
                await pipe.execute()
        except Exception as exc:  # the asker times out without this node's answer
            log.warning("could not answer a cluster query: %s", exc)

    async def gather(
        self, name: str, args: dict[str, Any], wait: float = 1.0
    ) -> list[dict[str, Any]]:
        expected = len(await self.nodes()) or 1
        key = f"pygw:reply:{secrets.token_hex(8)}"
        await self.publish_control(control.Query(name, args, key))
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        with unavailable_on_error("gather"):
            while len(answers) < expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                item = await self.redis.blpop([key], timeout=max(0.01, left))
                if item is None:
                    break
                answers.append(orjson.loads(item[1]))
            await self.redis.delete(key)
        return answers

    # -- channels ----------------------------------------------------------------------------------
    async def publish(
        self,
        channel: str,
        data_json: bytes,
        options: PublishOptions = PLAIN_PUBLISH,
    ) -> Publication:
        now_us = time.time_ns() // 1000
        if is_user_channel(channel):
            envelope = encode_message(channel, data_json, None)
            name = channel.encode()
            payload = b"0:%d:%d:%s%s" % (now_us, len(name), name, envelope)
            with unavailable_on_error("publish"):
                await self._publish_raw(self.keys.user_shard(channel), payload)
            return Publication(0, "", envelope)
        target = self.keys.pubsub(channel)
        if not options.with_offset:
            envelope = encode_message(channel, data_json, None)
            with unavailable_on_error("publish"):
                await self._publish_raw(target, b"0:%d:%s" % (now_us, envelope))
            return Publication(0, "", envelope)
        args = (
            orjson.dumps(channel),
            data_json,
            options.history_size,
            int(options.history_ttl * 1000),
            now_us,
            target,
            _new_epoch(),
            1,
            max(self.meta_ttl_ms, math.ceil(options.history_ttl * 1000)),
            self.keys.publish_command,
        )
        keys = (self.keys.meta(channel), self.keys.history(channel))
        with unavailable_on_error("publish"):
            offset, epoch = await PUBLISH.run(self.redis, keys, args)
        epoch_s = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return Publication(int(offset), epoch_s, encode_message(channel, data_json, int(offset)))

    async def subscribe(self, channel: str) -> None:
        """A user channel needs no subscription of its own: this returns at once (without
        suspending) while the link carrying its user shard is up, else waits for it."""
        target = self.keys.user_shard(channel) if is_user_channel(channel) else None
        if target is not None and self._link.is_confirmed(target):
            return
        try:
            await self._link.subscribe(target or self.keys.pubsub(channel))
        except (TimeoutError, ConnectionError):
            raise BackendUnavailable("Redis pub/sub unavailable (subscribe timed out)") from None

    async def unsubscribe(self, channel: str) -> None:
        if not is_user_channel(channel):  # user shards stay subscribed
            self._link.unsubscribe(self.keys.pubsub(channel))

    async def _meta(self, channel: str, with_history: bool) -> tuple[str, int, float, list[bytes]]:
        """(epoch, top, ttl seconds, raw history entries); creates the epoch if missing."""
        meta = self.keys.meta(channel)
        with unavailable_on_error("history"):
            # One slot on a cluster too: the pipeline goes to one node, in order.
            pipe = self.redis.pipeline(transaction=not self.keys.cluster)
            pipe.hsetnx(meta, "epoch", _new_epoch())
            pipe.pexpire(meta, self.meta_ttl_ms, nx=True)
            pipe.hmget(meta, "epoch", "offset", "ttl")
            if with_history:
                pipe.lrange(self.keys.history(channel), 0, -1)
            results = await pipe.execute()
        epoch, top, ttl_ms = results[2]
        entries = results[3] if with_history else []
        return (
            epoch.decode(),
            int(top or 0),
            int(ttl_ms or 0) / 1000.0,
            entries,
        )

    @staticmethod
    def _parse(entries: list[bytes], ttl: float) -> list[tuple[int, bytes]]:
        cutoff_us = (time.time() - ttl) * 1e6 if ttl > 0 else 0
        out = []
        for raw in entries:
            off, ts, data = raw.split(b":", 2)
            if int(ts) >= cutoff_us:
                out.append((int(off), data))
        return out

    async def top(self, channel: str) -> tuple[str, int]:
        epoch, top, _ttl, _ = await self._meta(channel, with_history=False)
        return epoch, top

    async def recover(self, channel: str, epoch: str, offset: int) -> Recovery:
        current, top, ttl, raw = await self._meta(channel, with_history=True)
        entries = [(off, data) for off, data in self._parse(raw, ttl) if off > offset]
        recovered = (
            current == epoch
            and offset <= top
            and (offset == top or (bool(entries) and entries[0][0] == offset + 1))
        )
        envelopes = [encode_message(channel, data, off) for off, data in entries]
        return Recovery(envelopes, recovered, current, top)

    async def history(
        self, channel: str, since: int = 0, limit: int = 100
    ) -> list[tuple[int, bytes]]:
        _epoch, _top, ttl, raw = await self._meta(channel, with_history=True)
        return [(off, data) for off, data in self._parse(raw, ttl) if off > since][:limit]

    # -- nodes and presence ------------------------------------------------------------------------
    async def nodes(self) -> dict[str, dict[str, Any]]:
        with unavailable_on_error("nodes"):
            ids = sorted(_text(m) for m in await self.redis.smembers(self.keys.nodes))
            if not ids:
                return {}
            values = await self.redis.mget([self.keys.node(i) for i in ids])
            dead = [i for i, v in zip(ids, values, strict=True) if v is None]
            if dead:
                await self.redis.srem(self.keys.nodes, *dead)
        return {i: orjson.loads(v) for i, v in zip(ids, values, strict=True) if v is not None}

    async def presence_join(self, channel: str, client_id: str, info: dict[str, Any]) -> None:
        key = self.keys.presence(channel)
        with unavailable_on_error("presence"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(key, client_id, orjson.dumps({**info, "node": self.node_id}))
            pipe.expire(key, META_TTL)
            await pipe.execute()

    async def presence_leave(self, channel: str, client_id: str) -> None:
        with unavailable_on_error("presence"):
            await self.redis.hdel(self.keys.presence(channel), client_id)

    async def presence(self, channel: str) -> dict[str, dict[str, Any]]:
        key = self.keys.presence(channel)
        with unavailable_on_error("presence"):
            raw = await self.redis.hgetall(key)
            members = {_text(k): orjson.loads(v) for k, v in raw.items()}
            nodes = sorted({str(m.get("node")) for m in members.values()})
            alive = await self.redis.mget([self.keys.node(n) for n in nodes]) if nodes else []
            dead = {n for n, v in zip(nodes, alive, strict=True) if v is None and n != self.node_id}
            stale = [k for k, m in members.items() if str(m.get("node")) in dead]
            if stale:
                await self.redis.hdel(key, *stale)
        return {k: m for k, m in members.items() if k not in stale}
