"""This node's WebSocket clients: upgrade, client messages, channels, keep-alive, delivery.

Delivery to local subscribers is a uWS topic publish per channel (one per publication, never one
Python call per subscriber) of bytes encoded once. Publications that arrive while uWS is running
a callback are queued and published from asyncio right after, because uWS batches per-socket
writes only for publishes made outside its callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pygw._native import ClientFrame, FrameError, TokenError, decode_frame
from pygw.core.errors import BackendUnavailable
from pygw.core.timeutil import iso_from_unix, now_iso
from pygw.http.errors import HTTPError, closing_error_response
from pygw.store.base import ConnectionRecord
from pygw.transport import eager, uws
from pygw.transport.types import Response, UpgradeRequest
from pygw.ws.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    Connection,
)

if TYPE_CHECKING:
    from pygw.gateway import Gateway

log = logging.getLogger("pygw.ws")

ERROR_WINDOW = 10.0
"""More than ``PYGW_WS_MAX_ERRORS`` error replies within this many seconds close the socket."""

SWEEP_INTERVAL = 0.1
"""Seconds between checks of send buffers (only after deliveries)."""
SWEEP_BATCH = 5000
"""Connections checked per tick."""

PING_GROUPS = 256
"""Keep-alive slices: one is pinged every ``ping_interval / PING_GROUPS`` (~0.1 s at 25 s), so a
client population answers in a steady trickle. With 16 slices, 1/16 of all connections (625 of
10k) were pinged in the same instant every 1.6 s, and a 10k-VU k6 ramp measured message round
trip p99 44 ms instead of 4 ms without those rounds."""
PING_TOPICS = tuple(b"\x00ping:%d" % i for i in range(PING_GROUPS))
"""Every connection is subscribed to one of these (by connection id) for keep-alive pings."""
MIN_PING_TICK = 0.05
"""Shortest keep-alive timer period: short intervals ping several slices per tick instead."""

# Error frame codes (HTTP-like, stable).
E_BAD_REQUEST = 400
E_FORBIDDEN = 403
E_NOT_FOUND = 404
E_RATE_LIMITED = 429
E_INTERNAL = 500
E_UNAVAILABLE = 503

Handler = Callable[[Connection, ClientFrame], Awaitable[Any] | Any]
"""A client message handler. If it returns a dict, that is sent as the reply (``id`` echoed)."""


@dataclass(slots=True)
class MessageType:
    handler: Handler
    roles: frozenset[str] | None
    """Roles allowed to send this type; None = any authenticated role."""


class ClientError(Exception):
    """Raised inside handlers to answer with an error frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def ping_schedule(interval: float) -> tuple[float, int]:
    """(seconds between keep-alive ticks, slices pinged per tick) for a ping ``interval``: every
    slice once per interval, ticks no closer than MIN_PING_TICK (25 s: a slice every 0.098 s;
    0.3 s: 43 slices every 0.05 s)."""
    slices = min(PING_GROUPS, max(1, math.ceil(MIN_PING_TICK * PING_GROUPS / interval)))
    return interval / math.ceil(PING_GROUPS / slices), slices


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"


class Hub:
    query_names: tuple[str, ...] = ("token", "session_id")
    header_names: tuple[str, ...] = ("origin", "x-forwarded-for", "x-real-ip", "user-agent")

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        settings = gw.settings
        self.policy = gw.policy
        self.max_errors = settings.ws_max_errors
        self.max_connections = 1 << 30
        """Set by Gateway.start: PYGW_WS_MAX_CONNECTIONS, or from the open-file limit."""
        self.max_message_bytes = settings.ws_max_message_bytes
        self.configured_roles = {t: frozenset(roles) for t, roles in settings.message_roles.items()}
        self.conns: dict[int, Connection] = {}
        self.users: dict[str, list[Connection]] = {}
        """Each user's connections on this node (a list: most users have one, and an empty set
        alone costs 216 bytes per connected user)."""
        self._channel_refs: dict[str, int] = {}
        self._channel_ready: dict[str, asyncio.Future[None]] = {}
        self._recent: dict[str, deque[tuple[int, bytes]]] = {}
        self._queued: list[tuple[bytes, bytes]] = []
        self.types: dict[str, MessageType] = {}
        self.fallback: Callable[[Connection, ClientFrame], Awaitable[Any] | None] | None = None
        """Consulted for unknown types before answering "Unknown message type" (dynamic routes)."""
        self._ticker: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._delivered = False
        self._sweep_queue: list[Connection] | None = None
        self._sweep_pos = 0
        self.backpressure_limit = settings.ws_max_backpressure
        for name, handler in (
            ("ping", self._on_ping),
            ("pong", self._on_pong),
            ("update_api_key", self._on_update_api_key),
            ("subscribe", self._on_subscribe),
            ("unsubscribe", self._on_unsubscribe),
            ("publish", self._on_publish),
        ):
            self.register(name, handler)

    # -- registry ------------------------------------------------------------------------------
    def register(self, type_: str, handler: Handler, roles: Iterable[str] | None = None) -> None:
        """Handle client messages of ``type_``; ``roles`` limits who may send them (configured
        ``PYGW_MESSAGE_ROLES`` win over what the code says)."""
        configured = self.configured_roles.get(type_)
        allowed = configured if configured is not None else roles
        self.types[type_] = MessageType(
            handler, frozenset(allowed) if allowed is not None else None
        )

    @property
    def connection_count(self) -> int:
        return len(self.conns)

    @property
    def user_count(self) -> int:
        return len(self.users)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ping_group = 0
        self._ping_tick, self._ping_slices = ping_schedule(self.gw.settings.ping_interval)
        self._ticker = loop.call_later(self._ping_tick, self._keepalive)
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep_backpressure)

    def stop(self) -> None:
        for handle in (self._ticker, self._sweeper):
            if handle is not None:
                handle.cancel()
        self._ticker = self._sweeper = None

    def _sweep_backpressure(self) -> None:
        """Close, with 1013 and a close frame, clients whose send buffer passed the limit.

        A pass starts only after deliveries (nothing else grows buffers) and checks at most
        SWEEP_BATCH connections per tick, so its cost stays small with 100k connections. If a
        burst outruns it, uWS terminates the socket at 8x the limit (no close frame then)."""
        if self._sweep_queue is None and self._delivered:
            self._delivered = False
            self._sweep_queue = list(self.conns.values())
            self._sweep_pos = 0
        queue = self._sweep_queue
        if queue is not None:
            limit = self.backpressure_limit
            buffered = uws.ws_buffered_amount
            end = self._sweep_pos + SWEEP_BATCH
            for conn in queue[self._sweep_pos : end]:
                if conn.ws is None or conn.closing:
                    continue
                amount = buffered(conn.ws)
                if amount > limit:
                    self.gw.metrics.rate_limited["backpressure"] += 1
                    log.info("closing %r: %d bytes queued (limit %d)", conn, amount, limit)
                    conn.close(CLOSE_TRY_AGAIN, "Backpressure limit exceeded")
            self._sweep_pos = end
            if end >= len(queue):
                self._sweep_queue = None
        self._sweeper = asyncio.get_running_loop().call_later(
            SWEEP_INTERVAL, self._sweep_backpressure
        )

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "Server shutting down") -> int:
        conns = list(self.conns.values())
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    def _keepalive(self) -> None:
        """Ping the next slice(s) of connections (one topic publish each); every
        ``ping_interval`` each connection has been pinged once and those silent for too long
        are closed.

        Connections are spread over PING_GROUPS topics so clients are not all pinged (and
        answering) in the same millisecond."""
        settings = self.gw.settings
        group = self._ping_group
        frame = b'{"type":"ping","timestamp":%.6f}' % time.time()
        for _ in range(self._ping_slices):
            self.gw.server.publish(PING_TOPICS[group], frame)
            if group == 0:
                deadline = time.monotonic() - settings.inactivity_timeout
                for conn in [c for c in self.conns.values() if c.last_seen < deadline]:
                    conn.close(CLOSE_POLICY, "Pong timeout")
            group = (group + 1) % PING_GROUPS
        self._ping_group = group
        self._ticker = asyncio.get_running_loop().call_later(self._ping_tick, self._keepalive)

    # -- upgrade and open ----------------------------------------------------------------------
    async def upgrade(self, request: UpgradeRequest) -> Connection | Response | None:
        gw = self.gw
        if len(self.conns) >= self.max_connections:
            gw.metrics.connections_refused += 1
            limit = HTTPError(
                503, detail="Connection limit reached", headers=[("Retry-After", "1")]
            )
            return closing_error_response(limit, request.path)
        remote = gw.client_ip(request.headers, request.client_ip)
        too_many = await gw.limits.ws_connect(remote, request.path)
        if too_many is not None:
            return too_many  # HTTP 429 with the envelope and Retry-After, no upgrade
        refusal = gw.check_ws_origin(request.headers.get("origin"))
        if refusal is not None:
            return None
        token = request.query.get("token", "")
        try:
            claims = gw.auth.tokens.verify(token)
        except TokenError:
            gw.metrics.auth_failures += 1
            return Connection(remote=remote, refused="Invalid token")
        session_id = request.query.get("session_id") or claims.sid or ""
        if session_id != claims.sid:
            session = await gw.storage.get_session(session_id) if session_id else None
            if session is None or session.user_id != claims.sub:
                return Connection(remote=remote, refused="Session mismatch")
        conn = Connection(
            user_id=claims.sub,
            role=claims.role,
            session_id=session_id,
            family=claims.fam,
            remote=remote,
        )
        # Be reachable by pushes before the client learns it is connected.
        await self._acquire(user_channel(conn.user_id))
        return conn

    def on_open(self, conn: Connection) -> None:
        if conn.refused is not None:
            conn.close(CLOSE_POLICY, conn.refused)
            return
        gw = self.gw
        self.conns[conn.id] = conn
        peers = self.users.get(conn.user_id)
        if peers is None:
            peers = self.users[conn.user_id] = []
        peers.append(conn)
        ws = conn.ws
        uws.ws_subscribe(ws, PING_TOPICS[conn.id % PING_GROUPS])
        uws.ws_subscribe(ws, user_channel(conn.user_id).encode())
        conn.send(
            {
                "type": "connected",
                "message": "WebSocket connection established",
                "user_id": conn.user_id,
                "session_id": conn.session_id,
                "gateway_id": gw.settings.gateway_id,
                "ping_interval": _seconds(gw.settings.ping_interval),
                "inactivity_timeout": _seconds(gw.settings.inactivity_timeout),
            }
        )
        gw.metrics.connections_opened += 1
        if len(peers) == 1:
            now = now_iso()
            gw.spawn(
                gw.storage.set_connection(
                    conn.user_id,
                    ConnectionRecord(
                        session_id=conn.session_id,
                        gateway_id=gw.settings.gateway_id,
                        ws_connected=True,
                        last_seen=now,
                        connected_at=now,
                    ),
                )
            )

    def on_close(self, conn: Connection, code: int, reason: bytes) -> None:
        if self.conns.pop(conn.id, None) is None:
            return  # refused at upgrade: never registered
        gw = self.gw
        gw.limits.connection_closed(conn.id)
        gw.metrics.connections_closed += 1
        peers = self.users.get(conn.user_id)
        if peers is not None:
            if conn in peers:
                peers.remove(conn)
            if not peers:
                del self.users[conn.user_id]
                gw.spawn(self._mark_offline(conn))
        self._release(user_channel(conn.user_id))
        if conn.channels:
            for channel in conn.channels:
                self._release(channel)
                if self.policy.options(channel)[2]:
                    gw.spawn(gw.broker.presence_leave(channel, self._client_id(conn)))
            conn.channels = None

    async def _mark_offline(self, conn: Connection) -> None:
        if conn.user_id in self.users:
            return  # reconnected meanwhile
        await self.gw.storage.set_connection(
            conn.user_id,
            ConnectionRecord(
                session_id=conn.session_id,
                gateway_id=self.gw.settings.gateway_id,
                ws_connected=False,
                last_seen=now_iso(),
                connected_at=None,
            ),
        )

    def on_pong(self, conn: Connection) -> None:
        conn.last_seen = time.monotonic()

    def on_drain(self, conn: Connection) -> None:
        return None

    # -- client messages -----------------------------------------------------------------------
    def on_message(self, conn: Connection, data: bytes, opcode: int) -> None:
        conn.last_seen = time.monotonic()
        if conn.closing:
            return
        self.gw.metrics.messages_in += 1
        if len(data) > self.max_message_bytes:
            conn.close(CLOSE_TOO_BIG, "Message too big")
            return
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            self.error(conn, exc.code, exc.message, exc.id)
            return
        # Every decoded message counts, whatever its type (dynamic routes and unknown types too);
        # refusals are errors, so a client that keeps flooding is closed 1008 "Too many errors".
        if not self.gw.check_ws_rate(conn):
            self.error(conn, E_RATE_LIMITED, "Rate limit exceeded", frame.id)
            return
        kind = self.types.get(frame.type)
        roles = kind.roles if kind is not None else self.configured_roles.get(frame.type)
        if roles is not None and conn.role not in roles:
            self.error(
                conn,
                E_FORBIDDEN,
                f"Unauthorized: role '{conn.role}' cannot send '{frame.type}'",
                frame.id,
            )
            return
        if kind is None:
            if self.fallback is not None:
                pending = self.fallback(conn, frame)
                if pending is not None:
                    self._run(conn, frame, pending)
                    return
            self.error(conn, E_NOT_FOUND, f"Unknown message type: {frame.type}", frame.id)
            return
        try:
            result = kind.handler(conn, frame)
        except ClientError as exc:
            self.error(conn, exc.code, exc.message, frame.id)
            return
        if result is None:
            return
        if isinstance(result, dict):
            self.reply(conn, frame, result)
            return
        self._run(conn, frame, result)

    def _run(self, conn: Connection, frame: ClientFrame, awaitable: Awaitable[Any]) -> None:
        _result, task = eager.start(self._guard(conn, frame, awaitable))
        if task is not None:
            self.gw.track(task)

    async def _guard(self, conn: Connection, frame: ClientFrame, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except ClientError as exc:
            self.error(conn, exc.code, exc.message, frame.id)
        except BackendUnavailable as exc:
            log.warning("backend unavailable handling %r: %s", frame.type, exc)
            self.error(conn, E_UNAVAILABLE, "Backend unavailable, try again", frame.id)
        except Exception:
            log.exception("handler for %r failed", frame.type)
            self.error(conn, E_INTERNAL, "Internal error", frame.id)
        else:
            if isinstance(result, dict):
                self.reply(conn, frame, result)

    def reply(self, conn: Connection, frame: ClientFrame, message: dict[str, Any]) -> None:
        if frame.id is not None:
            message["id"] = orjson.Fragment(frame.id)
        conn.send(message)
        self.gw.metrics.messages_out += 1

    def error(self, conn: Connection, code: int, message: str, id_raw: bytes | None) -> None:
        payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if id_raw is not None:
            payload["id"] = orjson.Fragment(id_raw)
        conn.send(payload)
        metrics = self.gw.metrics
        metrics.ws_errors += 1
        metrics.messages_out += 1
        now = time.monotonic()
        if now - conn.errors_since > ERROR_WINDOW:
            conn.errors_since = now
            conn.errors = 0
        conn.errors += 1
        if conn.errors > self.max_errors:
            conn.close(CLOSE_POLICY, "Too many errors")

    # -- built-in message types ------------------------------------------------------------------
    def _on_ping(self, conn: Connection, frame: ClientFrame) -> dict[str, Any]:
        return {"type": "pong", "timestamp": time.time()}

    def _on_pong(self, conn: Connection, frame: ClientFrame) -> None:
        return None

    def _on_update_api_key(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        if frame.key is None:
            raise ClientError(E_BAD_REQUEST, "Missing field: key")
        return self._update_api_key(conn, frame.key)

    async def _update_api_key(self, conn: Connection, key: str) -> dict[str, Any]:
        await self.gw.storage.update_session(
            conn.session_id, data={"api_key": key}, returning=False
        )
        return {
            "type": "ack",
            "message": "API key update acknowledged",
            "api_key": key,
            "data": None,
            "session_id": conn.session_id,
            "gateway_id": self.gw.settings.gateway_id,
        }

    def _check_channel(self, action: str, conn: Connection, frame: ClientFrame) -> str:
        channel = frame.channel
        if channel is None:
            raise ClientError(E_BAD_REQUEST, "Missing field: channel")
        code = self.policy.check(action, channel, conn.user_id, conn.role)
        if code == 0:
            return channel
        if code == E_BAD_REQUEST:
            raise ClientError(code, f"Invalid channel: {channel}")
        if code == E_NOT_FOUND:
            raise ClientError(code, f"Unknown channel: {channel}")
        raise ClientError(code, f"Permission denied: cannot {action} '{channel}'")

    def _on_subscribe(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        return self._subscribe(conn, frame, self._check_channel("subscribe", conn, frame))

    async def _subscribe(self, conn: Connection, frame: ClientFrame, channel: str) -> Any:
        broker = self.gw.broker
        size, _ttl, presence = self.policy.options(channel)
        already = conn.channels is not None and channel in conn.channels
        if not already:
            await self._acquire(channel)
        try:
            if frame.since_epoch is not None and frame.since_offset is not None and size > 0:
                rec = await broker.recover(channel, frame.since_epoch, frame.since_offset)
                recovered, epoch, top = rec.recovered, rec.epoch, rec.offset
                # A partial or foreign history would be a silent gap: send nothing instead and
                # let recovered=false tell the client to resynchronise.
                missed = rec.envelopes if recovered else []
            else:
                epoch, top = await broker.top(channel)
                missed, recovered = [], False
        except BaseException:
            if not already:
                self._release(channel)
            raise
        if not conn.open:
            if not already:
                self._release(channel)
            return None
        # From here to the topic subscription nothing awaits, so nothing published meanwhile can
        # slip between the history we send and the live stream.
        for envelope in missed:
            conn.send_bytes(envelope)
        recent = self._recent.get(channel)
        if recent:
            for offset, envelope in recent:
                if offset > top:
                    conn.send_bytes(envelope)
                    top = offset
        if not already:
            uws.ws_subscribe(conn.ws, channel.encode())
            if conn.channels is None:
                conn.channels = set()
            conn.channels.add(channel)
            if presence:
                await broker.presence_join(
                    channel,
                    self._client_id(conn),
                    {"user_id": conn.user_id, "conn_id": conn.id, "gateway_id": self.gw.node_id},
                )
        return {
            "type": "subscribed",
            "channel": channel,
            "epoch": epoch,
            "offset": top,
            "recovered": recovered,
        }

    def _on_unsubscribe(self, conn: Connection, frame: ClientFrame) -> dict[str, Any]:
        channel = frame.channel
        if channel is None:
            raise ClientError(E_BAD_REQUEST, "Missing field: channel")
        if conn.channels is not None and channel in conn.channels:
            conn.channels.discard(channel)
            uws.ws_unsubscribe(conn.ws, channel.encode())
            self._release(channel)
            if self.policy.options(channel)[2]:
                self.gw.spawn(self.gw.broker.presence_leave(channel, self._client_id(conn)))
        return {"type": "unsubscribed", "channel": channel}

    def _on_publish(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        channel = self._check_channel("publish", conn, frame)
        if frame.data is None:
            raise ClientError(E_BAD_REQUEST, "Missing field: data")
        return self._publish(channel, frame.data)

    async def _publish(self, channel: str, data: bytes) -> dict[str, Any]:
        pub = await self.gw.publish_raw(channel, data)
        return {"type": "published", "channel": channel, "offset": pub.offset}

    def _client_id(self, conn: Connection) -> str:
        return f"{self.gw.node_id}:{conn.id}"

    # -- channel reference counting (this node's interest, mirrored in the broker) ---------------
    async def _acquire(self, channel: str) -> None:
        refs = self._channel_refs.get(channel, 0)
        self._channel_refs[channel] = refs + 1
        if refs == 0:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._channel_ready[channel] = ready
            if self.policy.options(channel)[0] > 0:
                self._recent[channel] = deque(maxlen=256)
            try:
                await self.gw.broker.subscribe(channel)
            except BaseException as exc:
                self._channel_ready.pop(channel, None)
                ready.set_exception(exc)
                ready.exception()  # retrieved: waiters get it below
                self._release(channel)
                raise
            ready.set_result(None)
            if self._channel_ready.get(channel) is ready:
                del self._channel_ready[channel]
            return
        waiting = self._channel_ready.get(channel)
        if waiting is not None:
            try:
                await asyncio.shield(waiting)
            except BaseException:
                self._release(channel)
                raise

    def _release(self, channel: str) -> None:
        refs = self._channel_refs.get(channel, 0) - 1
        if refs > 0:
            self._channel_refs[channel] = refs
            return
        self._channel_refs.pop(channel, None)
        self._recent.pop(channel, None)
        self.gw.spawn(self.gw.broker.unsubscribe(channel))

    def subscribers(self, channel: str) -> int:
        return self.gw.server.num_subscribers(channel.encode())

    # -- delivery ------------------------------------------------------------------------------
    def deliver(self, channel: str, offset: int, envelope: bytes) -> int:
        """Hand a publication to this node's subscribers (called by the broker); returns how
        many local subscribers it goes to."""
        self._delivered = True
        recent = self._recent.get(channel)
        if recent is not None:
            recent.append((offset, envelope))
        topic = channel.encode()
        server = self.gw.server
        if server.bridge.in_uv:
            if not self._queued:
                asyncio.get_running_loop().call_soon(self._flush_queued)
            self._queued.append((topic, envelope))
        else:
            server.publish(topic, envelope)
        return server.num_subscribers(topic)

    def _flush_queued(self) -> None:
        queued, self._queued = self._queued, []
        publish = self.gw.server.publish
        for topic, envelope in queued:
            publish(topic, envelope)

    def describe(self, limit: int = 1000, user: str | None = None) -> dict[str, Any]:
        """This node's live connections (at most ``limit``; those of ``user`` if given)."""
        if user is not None:
            conns: Iterable[Connection] = self.users.get(user, ())
            count = len(self.users.get(user, ()))
        else:
            conns, count = self.conns.values(), len(self.conns)
        now = time.monotonic()
        listed: list[dict[str, Any]] = []
        for conn in conns:
            if len(listed) >= limit:
                break
            listed.append(
                {
                    "conn_id": conn.id,
                    "user_id": conn.user_id,
                    "role": conn.role,
                    "session_id": conn.session_id,
                    "remote": conn.remote,
                    "connected_at": iso_from_unix(conn.connected_at),
                    "idle_seconds": round(now - conn.last_seen, 3),
                    "channels": sorted(conn.channels or ()),
                }
            )
        return {"gateway_id": self.gw.node_id, "count": count, "connections": listed}

    def disconnect_user(self, user_id: str, family: str | None, code: int, reason: str) -> int:
        peers = self.users.get(user_id)
        if not peers:
            return 0
        closed = 0
        for conn in list(peers):
            if family is None or conn.family is None or conn.family == family:
                conn.close(code, reason)
                closed += 1
        return closed
