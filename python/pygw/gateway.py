"""The gateway node: wires settings, storage, broker, auth, the WebSocket hub and the HTTP API
onto one uWS server, and runs it until SIGTERM/SIGINT (flushing pending writes first).

Embedding::

    from pygw import Gateway

    gw = Gateway(redis_url="redis://localhost:6379")

    @gw.on("chat_message")
    async def chat(conn, message):
        await gw.publish(f"room:{message['room']}", {"from": conn.user_id, "text": message["text"]})
        return {"type": "chat_ok"}

    gw.run(port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import orjson

from pygw import __version__
from pygw._native import ChannelPolicy
from pygw.auth.passwords import PasswordHasher
from pygw.auth.service import AuthService
from pygw.auth.tokens import TokenService
from pygw.broker.base import Broker, Publication
from pygw.broker.publish import ChannelPublisher
from pygw.config import FD_RESERVE, Settings
from pygw.core import control
from pygw.core.errors import BackendUnavailable
from pygw.core.netaddr import ClientAddress
from pygw.http.app import HTTPApplication
from pygw.http.cors import CORS, OriginMatcher
from pygw.http.routing import Router
from pygw.limits import Limits
from pygw.metrics import Metrics
from pygw.proxy import ProxyService
from pygw.store.base import Storage
from pygw.transport.uws import UWSServer, WSOptions
from pygw.ws.connection import Connection
from pygw.ws.hub import Hub

log = logging.getLogger("pygw")

MessageHandler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def create_backends(settings: Settings) -> tuple[Storage, Broker]:
    if settings.redis_url:
        from pygw.broker.redis import RedisBroker
        from pygw.store.redis import RedisStorage

        storage: Storage = RedisStorage(
            settings.redis_url,
            session_ttl=settings.session_ttl,
            batch_interval_ms=settings.batch_write_interval_ms,
            client_name=f"pygw:{settings.gateway_id}",
        )
        broker: Broker = RedisBroker(settings.redis_url, node_id=settings.gateway_id)
        return storage, broker
    from pygw.broker.memory import MemoryBroker
    from pygw.store.memory import MemoryStorage

    return MemoryStorage(settings.session_ttl), MemoryBroker()


def raise_open_file_limit() -> int:
    """Every WebSocket is a file descriptor: lift the soft limit to the hard one (a stock 1024
    would cap the gateway near a thousand connections). Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    if soft < 65536:
        log.warning("open-file limit is %d: at most about that many connections", soft)
    return soft


class Gateway:
    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else Settings.from_env(**overrides)
        s = self.settings
        self.version = __version__
        self.node_id = s.gateway_id
        self.metrics = Metrics()
        self.storage, self.broker = create_backends(s)
        self.broker.stats_provider = self.node_stats
        self.storage.on_flush = self._observe_flush
        self.passwords = PasswordHasher(
            time_cost=s.argon2_time_cost,
            memory_kib=s.argon2_memory_kib,
            parallelism=s.argon2_parallelism,
            threads=s.password_threads,
        )
        self.tokens = TokenService(s)
        self.policy = ChannelPolicy(orjson.dumps(s.namespaces), s.allow_unknown_namespaces)
        self.publisher = ChannelPublisher(self.broker, self.policy)
        self.auth = AuthService(
            s, self.storage, self.broker, self.tokens, self.passwords, self.publisher, self.metrics
        )
        self.limits = Limits(s, self.metrics)
        self._client_address = ClientAddress(s.trusted_proxies)
        self.hub = Hub(self)
        self.router = Router()
        self._server: UWSServer | None = None
        self.port = s.port
        self.started_monotonic = time.monotonic()
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested: asyncio.Event | None = None
        self._stopped = False
        self.proxy = ProxyService(self)
        self._build_routes()
        rate_hook = self.limits.http_hook(self)
        self.http = HTTPApplication(
            self.router,
            self.auth,
            max_body_bytes=s.max_body_bytes,
            hooks=[rate_hook] if rate_hook is not None else None,
            cors=CORS(s.cors_origins, s.cors_allow_credentials),
            metrics=self.metrics,
            access_log=s.access_log,
            forwarded_headers=bool(s.trusted_proxies),
        )
        self.ws_origins = OriginMatcher(s.ws_allowed_origins)

    def _build_routes(self) -> None:
        from pygw.routes import admin, docs, health, ops, proxy, push, sessions

        for module in (sessions, health, admin, push, ops, proxy):
            self.router.include(module.build(self))
        # Docs last: the OpenAPI document describes every route registered before it.
        self.router.include(docs.build(self))

    # -- embedding API -----------------------------------------------------------------------------
    def on(
        self, type_: str, roles: Iterable[str] | None = None
    ) -> Callable[[MessageHandler], MessageHandler]:
        """Register a handler for client messages of ``type_``.

        The handler gets the connection and the whole message as a dict; a dict it returns is
        sent back as the reply (with the message's ``id`` echoed)."""

        def register(handler: MessageHandler) -> MessageHandler:
            def call(conn: Connection, frame: Any) -> Awaitable[dict[str, Any] | None]:
                message = frame.json()
                return handler(conn, message if isinstance(message, dict) else {})

            self.hub.register(type_, call, roles)
            return handler

        return register

    async def publish(self, channel: str, data: Any) -> Publication:
        """Publish to a channel on every node (JSON-serialisable ``data``)."""
        return await self.publish_raw(channel, orjson.dumps(data))

    async def publish_raw(self, channel: str, data_json: bytes) -> Publication:
        return await self.publisher.publish(channel, data_json)

    async def push(self, user_id: str, data: Any) -> Publication:
        """Send to every connection of ``user_id`` on every node."""
        return await self.publisher.push(user_id, orjson.dumps(data))

    # -- broker events (BrokerHandler) -----------------------------------------------------------
    def on_publication(
        self, channel: str, offset: int, envelope: bytes, published_us: int = 0
    ) -> None:
        metrics = self.metrics
        metrics.publications += 1
        metrics.deliveries += self.hub.deliver(channel, offset, envelope)
        if published_us:
            metrics.publish_latency.observe(max(0.0, time.time() - published_us / 1e6))

    def on_control(self, message: control.ControlMessage) -> None:
        if isinstance(message, control.Revoke):
            self.tokens.revoke_local(message.jti, message.exp)
        elif isinstance(message, control.Disconnect):
            self.hub.disconnect_user(message.user, message.family, message.code, message.reason)
        elif isinstance(message, control.RoutesChanged):
            self.proxy.request_reload()

    def answer(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """This node's answer to a cluster-wide query (``Broker.gather``)."""
        if name == "connections":
            return self.hub.describe(limit=int(args.get("limit", 1000)), user=args.get("user"))
        return {"gateway_id": self.node_id, "error": f"unknown query {name!r}"}

    def on_resync(self) -> None:
        self.spawn(self.auth.load_revocations())
        self.proxy.request_reload()

    # -- helpers used by routes and the hub ------------------------------------------------------
    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def server(self) -> UWSServer:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return self._server

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference and logging its failure."""
        task = asyncio.get_running_loop().create_task(coro)
        return self.track(task)

    def track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    def client_ip(self, headers: dict[str, str], peer: str) -> str:
        """The peer address, or the forwarded client address when the peer is a trusted proxy
        (``PYGW_TRUSTED_PROXIES``)."""
        return self._client_address.resolve(headers, peer)

    def check_ws_origin(self, origin: str | None) -> str | None:
        """None if the WebSocket Origin is allowed, else why not (cross-site WebSocket hijacking
        protection; clients that send no Origin are not browsers and are let through)."""
        if origin is None or not self.ws_origins.enabled or self.ws_origins.allows(origin):
            return None
        return f"Origin {origin} not allowed"

    def check_ws_rate(self, conn: Connection) -> bool:
        return self.limits.ws_message(conn.id)

    def _observe_flush(self, sessions: int, seconds: float) -> None:
        self.metrics.flush_batch_size.observe(sessions)
        self.metrics.flush_seconds.observe(seconds)

    def node_stats(self) -> dict[str, Any]:
        """What this node reports to the others (heartbeat)."""
        return {
            "node_id": self.node_id,
            "connections": self.hub.connection_count,
            "users": self.hub.user_count,
            "port": self.port,
        }

    async def cluster_connections(self) -> dict[str, int] | None:
        """Connections per live node (None if the backend cannot tell right now)."""
        try:
            nodes = await self.broker.nodes()
        except BackendUnavailable:
            return None
        counts = {node: int(info.get("connections", 0)) for node, info in nodes.items()}
        counts[self.node_id] = self.hub.connection_count
        return counts

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> int:
        s = self.settings
        fd_limit = raise_open_file_limit()
        self.hub.max_connections = s.ws_max_connections or max(fd_limit - FD_RESERVE, 1)
        await self.storage.start()
        await self.broker.start(self)
        revoked = await self.auth.load_revocations()
        await self.proxy.start()
        loop = asyncio.get_running_loop()
        self._server = UWSServer(
            loop,
            self.http,
            self.hub,
            WSOptions(
                # Frames over the limit are refused by the hub with 1009 and a close frame; uWS
                # itself cuts the TCP stream (no close frame) at 4x, so it never buffers more.
                max_payload_length=max(s.ws_max_message_bytes * 4, 64 * 1024),
                idle_timeout=int(min(960, max(8, s.inactivity_timeout * 2))),
                # The hub closes slow readers at the limit (1013); uWS cuts at 8x as a backstop.
                max_backpressure=s.ws_max_backpressure * 8,
            ),
            http_batch=s.http_batch,
        )
        self.port = self._server.listen(host or s.host, s.port if port is None else port)
        self.hub.start()
        self.started_monotonic = time.monotonic()
        log.info(
            "pygw %s listening on %s:%d (gateway %s, %s backend, %d revoked tokens loaded)",
            self.version,
            host or s.host,
            self.port,
            self.node_id,
            self.storage.name,
            revoked,
        )
        return self.port

    async def stop(self) -> None:
        """Stop accepting, close sockets (1001), flush pending writes, release everything."""
        if self._stopped:
            return
        self._stopped = True
        server = self._server
        if server is not None:
            server.close_listener()
            self.hub.stop()
            closed = self.hub.close_all()
            if closed:
                await asyncio.sleep(0.05)  # let the close frames leave
        await self.proxy.close()
        try:
            await self.storage.close()
        except Exception:
            log.exception("flushing storage on shutdown failed")
        await self.broker.close()
        await self.limits.close()
        for task in list(self._tasks):
            task.cancel()
        self.passwords.close()
        if server is not None:
            server.close()
            self._server = None
        log.info("pygw stopped")

    def request_stop(self) -> None:
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self, host: str | None = None, port: int | None = None) -> None:
        """Start, run until SIGTERM/SIGINT or :meth:`request_stop`, then stop gracefully."""
        self._stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        await self.start(host, port)
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def run(self, host: str | None = None, port: int | None = None) -> None:
        asyncio.run(self.serve(host, port))
