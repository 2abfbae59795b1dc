"""This node's WebSocket endpoint (``/ws/connect``): the transport's ``WSApp``.

It accepts or refuses upgrades (connection cap, connect rate, Origin, token, session), welcomes
opened connections, keeps their connection records, and composes the parts that do the rest:

- :mod:`pygw.ws.registry`: open connections by id and by user;
- :mod:`pygw.ws.messages`: client message dispatch, replies and error frames;
- :mod:`pygw.ws.channels`: subscriptions, the channel messages, history recovery, presence;
- :mod:`pygw.ws.delivery`: encoded-once delivery to uWS topics and the slow-reader cut-off;
- :mod:`pygw.ws.replay`: what was published while the broker link was down, after it returns;
- :mod:`pygw.ws.keepalive`: server pings and the pong timeout;
- :mod:`pygw.ws.expiry`: 1008 "Token expired" when the socket's access token expires.

Built in here: the ``ping``, ``pong`` and ``update_api_key`` messages of the original gateway;
``presence`` (who is in a channel the connection is subscribed to); and ``refresh_token`` (a pygw
addition): ``{"type":"refresh_token","token":<access token>}`` replaces the socket's token
with a newer one of the same login (from ``POST /sessions/refresh``), answered
``{"type":"token_refreshed","exp":<UNIX seconds>}``, so the socket outlives the token it was
opened with. Revocations close sockets too: :meth:`Hub.revoke_user` (a user's token generation
floor rose) and :meth:`Hub.recheck` (after a broker resync).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from pygw._native import Claims, ClientFrame, ExpiredToken, RevokedToken, TokenError
from pygw.auth.tokens import TokenService
from pygw.broker.base import Broker
from pygw.broker.publish import ChannelPublisher
from pygw.config import Settings
from pygw.core.channels import user_channel
from pygw.core.codes import CLOSE_GOING_AWAY, CLOSE_POLICY
from pygw.core.errors import BadRequest, Forbidden, TooManyRequests, Unauthenticated
from pygw.core.netaddr import ClientAddress
from pygw.core.tasks import BackgroundTasks
from pygw.core.timeutil import json_seconds
from pygw.http.errors import HTTPError, closing_error_response, from_domain
from pygw.limits import Limits
from pygw.metrics import Metrics, close_code_label
from pygw.store.base import ConnectionRecord, Storage
from pygw.transport import eager
from pygw.transport.types import Response, UpgradeRequest
from pygw.ws.channels import ChannelRules, Subscriptions
from pygw.ws.connection import Connection
from pygw.ws.delivery import Delivery, TopicServer
from pygw.ws.expiry import TokenExpiry
from pygw.ws.keepalive import Keepalive, ping_topic
from pygw.ws.messages import Handler, Messages, OriginalFrames
from pygw.ws.origins import WebSocketOrigins
from pygw.ws.registry import ConnectionRegistry
from pygw.ws.replay import ChannelReplay
from pygw.ws.streamopen import open_stream

log = logging.getLogger("pygw.ws")

DRAIN_STEP = 0.1
"""Seconds between two batches of closes while draining."""


class Hub:
    query_names: tuple[str, ...] = ("token", "session_id")
    header_names: tuple[str, ...] = (
        "origin",
        "host",
        "x-forwarded-for",
        "x-real-ip",
        "user-agent",
    )

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenService,
        storage: Storage,
        broker: Broker,
        publisher: ChannelPublisher,
        rules: ChannelRules,
        limits: Limits,
        client_address: ClientAddress,
        metrics: Metrics,
        tasks: BackgroundTasks,
    ) -> None:
        self.settings = settings
        self.node_id = settings.gateway_id
        self.tokens = tokens
        self.storage = storage
        self.broker = broker
        self.limits = limits
        self.client_address = client_address
        self.origins = WebSocketOrigins(settings.ws_allowed_origins, settings.public_url)
        self.metrics = metrics
        self.tasks = tasks
        self.registry = ConnectionRegistry(self.node_id)
        self.delivery = Delivery(self.registry, metrics, settings.ws_max_backpressure)
        self.subscriptions = Subscriptions(
            broker=broker,
            publisher=publisher,
            rules=rules,
            delivery=self.delivery,
            tasks=tasks,
            node_id=self.node_id,
            max_per_connection=settings.ws_max_subscriptions,
        )
        self.replay = ChannelReplay(broker, self.delivery, tasks)
        frames = OriginalFrames if settings.ws_frames == "original" else Messages
        self.messages = frames(
            metrics=metrics,
            tasks=tasks,
            rate_check=limits.ws_message,
            max_message_bytes=settings.ws_max_message_bytes,
            max_errors=settings.ws_max_errors,
            configured_roles=settings.message_roles,
        )
        self.draining = False
        """Set when the node drains: upgrades are refused with 503 (connect elsewhere)."""
        self.keepalive = Keepalive(
            self.registry, settings.ping_interval, settings.inactivity_timeout
        )
        self.expiry = TokenExpiry(self.registry)
        # The transport calls these directly (the message path is the hot one).
        self.on_message = self.messages.dispatch
        metrics.messages_in_by_type = self.messages.received_by_type
        for name, handler in (
            ("ping", self._on_ping),
            ("pong", self._on_pong),
            ("update_api_key", self._on_update_api_key),
            ("refresh_token", self._on_refresh_token),
            ("subscribe", self.subscriptions.on_subscribe),
            ("unsubscribe", self.subscriptions.on_unsubscribe),
            ("publish", self.subscriptions.on_publish),
            ("presence", self._on_presence),
        ):
            self.register(name, handler)

    def register(self, type_: str, handler: Handler, roles: Iterable[str] | None = None) -> None:
        """Handle client messages of ``type_`` (see :meth:`Messages.register`)."""
        self.messages.register(type_, handler, roles)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, server: TopicServer) -> None:
        self.delivery.start(server)
        streams = self.delivery.streams

        def ping(topic: bytes, frame: bytes) -> None:
            server.publish(topic, frame)
            if topic in streams.topics:
                streams.ping(topic, frame)

        self.keepalive.start(ping)
        self.expiry.start()

    def stop(self) -> None:
        self.expiry.stop()
        self.keepalive.stop()
        self.delivery.stop()

    async def drain(self, seconds: float, hurry: asyncio.Event | None = None) -> None:
        """Refuse new upgrades and close every connection with 1001 "Server draining", in
        batches spread evenly over ``seconds`` (the last batch at the end), so the clients
        reconnect to the other nodes in a trickle rather than a storm. Ends at once when
        ``hurry`` is set (a second SIGTERM)."""
        self.draining = True
        conns = list(self.registry.conns.values())
        steps = max(1, math.ceil(seconds / DRAIN_STEP))
        per_step = math.ceil(len(conns) / steps) if conns else 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in range(steps):
            for conn in conns[step * per_step : (step + 1) * per_step]:
                conn.close(CLOSE_GOING_AWAY, "Server draining")
            delay = start + (step + 1) * seconds / steps - loop.time()
            if delay > 0:
                if hurry is None:
                    await asyncio.sleep(delay)
                else:
                    try:
                        await asyncio.wait_for(hurry.wait(), delay)
                        log.info("second signal: ending the drain now")
                        return
                    except TimeoutError:
                        pass

    # -- what the rest of the node reads ---------------------------------------------------------
    @property
    def connection_count(self) -> int:
        return self.registry.connection_count

    @property
    def user_count(self) -> int:
        return self.registry.user_count

    @property
    def session_count(self) -> int:
        return self.registry.session_count

    def deliver(self, channel: str, offset: int, envelope: bytes) -> int:
        return self.delivery.deliver(channel, offset, envelope)

    def subscribers(self, channel: str) -> int:
        return self.delivery.subscribers(channel)

    def local_connections(self, user_id: str) -> int:
        return len(self.registry.user_connections(user_id))

    def is_online(self, user_id: str) -> bool:
        return self.registry.is_online(user_id)

    def describe(self, limit: int = 1000, user: str | None = None) -> dict[str, Any]:
        return self.registry.describe(limit, user)

    async def open_stream(self, kind: str, **request: Any) -> Response:
        """An SSE or NDJSON stream (:func:`pygw.ws.streamopen.open_stream`)."""
        return await open_stream(self, kind, **request)

    # -- upgrade and open ----------------------------------------------------------------------
    async def upgrade(self, request: UpgradeRequest) -> Connection | Response | None:
        return await self.admit(
            request.path,
            request.headers,
            request.client_ip,
            request.query.get("token", ""),
            request.query.get("session_id"),
        )

    async def admit(
        self,
        path: str,
        headers: dict[str, str],
        client_ip: str,
        token: str,
        session_id: str | None,
        make: Callable[..., Connection] = Connection,
    ) -> Connection | Response:
        """Whether a client may connect (WebSocket upgrades and HTTP streams alike): a
        Response to refuse with (503 full or draining, 429 connect rate, 403 foreign Origin),
        else the connection ``make(...)`` built, with ``refused`` set when its token or session
        is not valid."""
        if self.registry.full or self.draining:
            self.metrics.connections_refused += 1
            why = "Server draining" if self.draining else "Connection limit reached"
            refusal = HTTPError(503, detail=why, headers=[("Retry-After", "1")])
            return closing_error_response(refusal, path)
        remote = self.client_address.resolve(headers, client_ip)
        wait = await self.limits.ws_connect(remote)
        if wait:  # HTTP 429 with the envelope and Retry-After, no upgrade
            return closing_error_response(from_domain(TooManyRequests(wait)), path)
        foreign = self.origins.refusal(headers.get("origin"), headers.get("host"))
        if foreign is not None:
            return closing_error_response(HTTPError(403, detail=foreign), path)
        try:
            claims = self.tokens.verify(token, cache=False)
        except TokenError:
            self.metrics.auth_failures += 1
            return make(remote=remote, refused="Invalid token")
        session_id = session_id or claims.sid or ""
        if session_id != claims.sid:
            session = await self.storage.get_session(session_id) if session_id else None
            if session is None or session.user_id != claims.sub:
                return make(remote=remote, refused="Session mismatch")
        conn = make(
            user_id=claims.sub,
            role=sys.intern(claims.role),  # one string per role, not one per socket
            session_id=session_id,
            family=claims.fam,
            remote=remote,
            exp=claims.exp,
            gen=claims.gen,
            jti=claims.jti,
        )
        # Be reachable by pushes before the client learns it is connected: user channels need
        # no subscription of their own (the broker's user shards are subscribed at start), so
        # this returns without suspending unless the broker's link is down.
        await self.broker.subscribe(user_channel(conn.user_id))
        return conn

    def on_open(self, conn: Connection) -> None:
        if conn.refused is not None:
            conn.close(CLOSE_POLICY, conn.refused)
            return
        first = self.registry.add(conn)
        self.expiry.track(conn)
        # A revocation may have arrived while the upgrade awaited (before the registry knew
        # this connection): check the token once more.
        why = self.tokens.still_valid(conn.user_id, conn.jti, conn.gen, conn.exp, int(time.time()))
        if why is not None:
            conn.close(CLOSE_POLICY, why)
        conn.subscribe_topic(ping_topic(conn.id))
        conn.subscribe_topic(user_channel(conn.user_id).encode())
        settings = self.settings
        conn.send(
            {
                "type": "connected",
                "message": conn.welcome,
                "user_id": conn.user_id,
                "session_id": conn.session_id,
                "gateway_id": self.node_id,
                "ping_interval": json_seconds(settings.ping_interval),
                "inactivity_timeout": json_seconds(settings.inactivity_timeout),
            }
        )
        self.metrics.connections_opened += 1
        if first:
            now = conn.connected_at
            self._background(
                self.storage.set_connection(
                    conn.user_id,
                    ConnectionRecord(
                        session_id=conn.session_id,
                        gateway_id=self.node_id,
                        ws_connected=True,
                        last_seen=now,
                        connected_at=now,
                    ),
                )
            )

    def on_close(self, conn: Connection, code: int, reason: bytes) -> None:
        registered, last = self.registry.remove(conn)
        if not registered:
            return  # refused at upgrade: never registered
        self.limits.connection_closed(conn.id)
        self.metrics.connections_closed += 1
        self.metrics.ws_closes[close_code_label(code)] += 1
        if last:
            self._background(self._mark_offline(conn))
        self.subscriptions.leave_all(conn)

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a storage write now, in the uWS callback, continuing in a tracked Task only if it
        must wait: both backends' connection records finish without waiting (memory, or
        Redis's write-behind), and a Task per connect was ~15% of a connect storm's CPU."""
        try:
            _result, task = eager.start(coro)
        except Exception as exc:
            log.warning("background task failed: %r", exc)
            return
        if task is not None:
            self.tasks.track(task)

    async def rewrite_connection_records(self) -> int:
        """Write every connected user's record again (online, on this node): after a Redis
        outage the records may have been lost, or marked offline by another node that took
        this one for dead. Returns how many users."""
        now = time.time()
        users = list(self.registry.users.items())
        for user_id, conns in users:
            if not conns:
                continue
            first = min(conns, key=lambda c: c.connected_at)
            await self.storage.set_connection(
                user_id,
                ConnectionRecord(
                    session_id=first.session_id,
                    gateway_id=self.node_id,
                    ws_connected=True,
                    last_seen=now,
                    connected_at=first.connected_at,
                ),
            )
        return len(users)

    async def _mark_offline(self, conn: Connection) -> None:
        if self.registry.is_online(conn.user_id):
            return  # reconnected meanwhile
        await self.storage.set_connection(
            conn.user_id,
            ConnectionRecord(
                session_id=conn.session_id,
                gateway_id=self.node_id,
                ws_connected=False,
                last_seen=time.time(),
                connected_at=None,
            ),
        )

    # -- revocation ------------------------------------------------------------------------------
    def revoke_user(self, user_id: str, gen: int, code: int, reason: str) -> int:
        """Close ``user_id``'s sockets opened with a token of a generation below ``gen``."""
        closed = 0
        for conn in list(self.registry.user_connections(user_id)):
            if conn.gen < gen:
                conn.close(code, reason)
                closed += 1
        return closed

    def recheck(self) -> int:
        """Close every socket whose token is now expired or revoked (after the revocations were
        reloaded from storage, e.g. when the broker reconnects after missing messages)."""
        now = int(time.time())
        closed = 0
        for conn in list(self.registry.conns.values()):
            why = self.tokens.still_valid(conn.user_id, conn.jti, conn.gen, conn.exp, now)
            if why is not None:
                conn.close(CLOSE_POLICY, why)
                closed += 1
        return closed

    def on_pong(self, conn: Connection) -> None:
        conn.last_seen = time.monotonic()

    def on_drain(self, conn: Connection) -> None:
        return None

    # -- the original gateway's messages ---------------------------------------------------------
    def _on_ping(self, conn: Connection, frame: ClientFrame) -> dict[str, Any]:
        return {"type": "pong", "timestamp": time.time()}

    def _on_pong(self, conn: Connection, frame: ClientFrame) -> None:
        return None

    def _on_refresh_token(self, conn: Connection, frame: ClientFrame) -> dict[str, Any]:
        body = frame.json()
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BadRequest("Missing field: token")
        claims = self._verify(token)
        if claims.sub != conn.user_id or (conn.family is not None and claims.fam != conn.family):
            raise Forbidden("Token of another login")
        conn.exp, conn.gen, conn.jti, conn.role = claims.exp, claims.gen, claims.jti, claims.role
        self.expiry.track(conn)
        return {"type": "token_refreshed", "exp": claims.exp}

    def _verify(self, token: str) -> Claims:
        try:
            return self.tokens.verify(token)
        except ExpiredToken:
            raise Unauthenticated("Token expired") from None
        except RevokedToken:
            raise Unauthenticated("Token revoked") from None
        except TokenError:
            raise Unauthenticated("Invalid token") from None

    def _on_update_api_key(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        if frame.key is None:
            raise BadRequest("Missing field: key")
        return self._update_api_key(conn, frame.key)

    async def _update_api_key(self, conn: Connection, key: str) -> dict[str, Any]:
        await self.storage.update_session(conn.session_id, data={"api_key": key}, returning=False)
        return {
            "type": "ack",
            "message": "API key update acknowledged",
            "api_key": key,
            "data": None,
            "session_id": conn.session_id,
            "gateway_id": self.node_id,
        }

    # -- presence of a channel the connection is in -----------------------------------------------
    def _on_presence(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any]:
        """``{"type":"presence","channel":C}`` -> ``{"type":"presence","channel","presence",
        "count"}``: the channel's checks as for a subscription (400 invalid, 404 unknown
        namespace), 403 unless this connection is subscribed, 400 if its namespace tracks no
        presence."""
        channel = self.subscriptions.check("subscribe", conn, frame)
        if conn.channels is None or channel not in conn.channels:
            raise Forbidden(f"Not subscribed to '{channel}'")
        if not self.subscriptions.rules.options(channel)[2]:
            raise BadRequest(f"No presence on '{channel}': its namespace does not track it")
        return self._presence(channel)

    async def _presence(self, channel: str) -> dict[str, Any]:
        members = await self.subscriptions.broker.presence(channel)
        return {"type": "presence", "channel": channel, "presence": members, "count": len(members)}
