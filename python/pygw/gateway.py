"""The gateway node, and the composition root: it builds every service from the settings, wires
them to each other (each gets only what it uses), runs them on one uWS server, and stops them
gracefully on SIGTERM/SIGINT. It is also the embedding API.

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
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from prometheus_client import start_http_server

from pygw._native import ChannelPolicy, ClientFrame
from pygw.api import build_router
from pygw.api.services import NodeInfo, Services
from pygw.auth.passwords import PasswordHasher
from pygw.auth.service import AuthService
from pygw.auth.tokens import TokenService
from pygw.broker.base import Broker, Publication
from pygw.broker.publish import ChannelPublisher
from pygw.config import FD_RESERVE, Settings
from pygw.core import control
from pygw.core.errors import BackendUnavailable
from pygw.core.netaddr import ClientAddress
from pygw.core.tasks import BackgroundTasks
from pygw.core.version import __version__
from pygw.core.weborigin import WILDCARD_HOSTS
from pygw.http.app import HTTPApplication
from pygw.http.auth import Authenticator
from pygw.http.cors import CORS
from pygw.http.ratelimit import http_rate_hook
from pygw.limits import Limits
from pygw.metrics import Metrics, registry_for
from pygw.proxy import ProxyClient, RouteTable
from pygw.store.base import REVOKED_KEPT_AFTER_EXPIRY, Storage
from pygw.transport.ports import ensure_port_free
from pygw.transport.types import Server
from pygw.transport.uws import COMPRESSION, UWSServer, WSOptions
from pygw.ws.connection import Connection
from pygw.ws.hub import Hub
from pygw.ws.liveness import ConnectionReaper
from pygw.ws.stats import NodeStats

log = logging.getLogger("pygw")

TOKEN_PRUNE_EVERY = 60.0
"""Seconds between two prunes of the verifier (expired cache entries, revocations, floors)."""

MessageHandler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def create_backends(settings: Settings) -> tuple[Storage, Broker]:
    if settings.redis_url:
        from pygw.broker.redis import RedisBroker
        from pygw.store.redis import RedisStorage

        storage: Storage = RedisStorage(
            settings.redis_url,
            session_ttl=settings.session_ttl,
            batch_interval_ms=settings.batch_write_interval_ms,
            write_through=settings.session_write_through,
            client_name=f"pygw:{settings.gateway_id}",
            # Retry the final flush through a short outage, within the shutdown step's bound.
            close_flush_timeout=settings.shutdown_timeout * 0.8,
            cluster=settings.redis_cluster,
            wait_replicas=settings.redis_wait_replicas,
            session_max_bytes=settings.session_max_bytes,
            session_update_max_bytes=settings.session_update_max_bytes,
        )
        broker: Broker = RedisBroker(
            settings.redis_url,
            node_id=settings.gateway_id,
            cluster=settings.redis_cluster,
            meta_ttl=settings.channel_meta_ttl,
        )
        return storage, broker
    from pygw.broker.memory import MemoryBroker
    from pygw.store.memory import MemoryStorage

    memory = MemoryStorage(
        settings.session_ttl,
        session_max_bytes=settings.session_max_bytes,
        session_update_max_bytes=settings.session_update_max_bytes,
    )
    return memory, MemoryBroker(meta_ttl=settings.channel_meta_ttl)


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
        self.settings = s = settings if settings is not None else Settings.from_env(**overrides)
        self.version = __version__
        self.node_id = s.gateway_id
        self.node = NodeInfo(s.gateway_id, __version__, workers=s.workers, port=s.port)
        self.metrics = Metrics()
        self.tasks = BackgroundTasks()
        self.storage, self.broker = create_backends(s)
        self.broker.stats_provider = self.node_stats
        self.storage.on_flush = self._observe_flush
        self.passwords = PasswordHasher(
            time_cost=s.argon2_time_cost,
            memory_kib=s.argon2_memory_kib,
            parallelism=s.argon2_parallelism,
            threads=s.password_threads,
            max_waiting=s.register_max_waiting,
        )
        self.tokens = TokenService(s)
        self.policy = ChannelPolicy(orjson.dumps(s.namespaces), s.allow_unknown_namespaces)
        self.publisher = ChannelPublisher(self.broker, self.policy, self.metrics)
        self.auth = AuthService(
            s, self.storage, self.broker, self.tokens, self.passwords, self.metrics
        )
        self.limits = Limits(s, self.metrics)
        self.client_address = ClientAddress(s.trusted_proxies)
        self.hub = Hub(
            s,
            tokens=self.tokens,
            storage=self.storage,
            broker=self.broker,
            publisher=self.publisher,
            rules=self.policy,
            limits=self.limits,
            client_address=self.client_address,
            metrics=self.metrics,
            tasks=self.tasks,
        )
        self.stats = NodeStats(
            self.hub,
            self.metrics,
            self.broker,
            self.publisher,
            self.tasks,
            node_id=s.gateway_id,
            interval=s.stats_interval,
        )
        self.reaper = ConnectionReaper(self.storage, self.broker, self.tasks, node_id=s.gateway_id)
        self.routes = RouteTable(
            self.storage,
            self.broker,
            self.tasks,
            breaker_failures=s.breaker_failures,
            breaker_reset_seconds=s.breaker_reset_seconds,
        )
        self.proxy = ProxyClient(
            self.routes,
            self.metrics,
            max_connections=s.proxy_max_connections,
            max_response_bytes=s.proxy_max_response_bytes,
            allow_private=s.proxy_allow_private,
        )
        self.hub.messages.fallback = self._ws_route
        router = build_router()
        self.services = Services(
            settings=s,
            node=self.node,
            storage=self.storage,
            broker=self.broker,
            publisher=self.publisher,
            auth=self.auth,
            limits=self.limits,
            client_address=self.client_address,
            connections=self.hub,
            routes=self.routes,
            proxy=self.proxy,
            metrics=self.metrics,
            metrics_registry=registry_for(self.metrics, self._gauges),
            api_routes=router.routes,
        )
        rate_hook = http_rate_hook(self.limits, self.auth, self.client_address)
        self.http = HTTPApplication(
            router,
            Authenticator(self.auth),
            self.services,
            max_body_bytes=s.max_body_bytes,
            hooks=[rate_hook] if rate_hook is not None else None,
            cors=CORS(s.cors_origins, s.cors_allow_credentials),
            metrics=self.metrics,
            access_log=s.access_log,
            forwarded_headers=bool(s.trusted_proxies),
        )
        self._server: Server | None = None
        self._metrics_server: Any = None
        self._prune_timer: asyncio.TimerHandle | None = None
        self._stop_requested: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._stopped = False

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
        return await self.publisher.publish(channel, orjson.dumps(data))

    async def publish_raw(self, channel: str, data_json: bytes) -> Publication:
        """Publish JSON text to a channel on every node."""
        return await self.publisher.publish(channel, data_json)

    async def push(self, user_id: str, data: Any) -> Publication:
        """Send to every connection of ``user_id`` on every node."""
        return await self.publisher.push(user_id, orjson.dumps(data))

    # -- wiring ------------------------------------------------------------------------------------
    def _ws_route(self, conn: Connection, frame: ClientFrame) -> Awaitable[Any] | None:
        """Client messages whose type is a ``ws_supported`` dynamic route go to its backend."""
        route = self.routes.get(frame.type)
        if route is None or not route.ws_supported:
            return None
        return self.proxy.ws_call(route, conn.user_id, conn.session_id, frame.data)

    def _gauges(self) -> dict[str, float]:
        return {
            "ws_connections": self.hub.connection_count,
            "ws_users": self.hub.user_count,
            "uptime_seconds": self.node.uptime,
            "write_behind_pending": self.storage.pending_writes,
        }

    def _observe_flush(self, sessions: int, seconds: float) -> None:
        self.metrics.flush_batch_size.observe(sessions)
        self.metrics.flush_seconds.observe(seconds)

    def node_stats(self) -> dict[str, Any]:
        """What this node reports to the others (heartbeat)."""
        return {
            "node_id": self.node_id,
            "connections": self.hub.connection_count,
            "users": self.hub.user_count,
            "port": self.node.port,
        }

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
        elif isinstance(message, control.RevokeUser):
            self.tokens.revoke_user_local(message.user, message.gen, message.until)
            self.hub.revoke_user(message.user, message.gen, message.code, message.reason)
        elif isinstance(message, control.Disconnect):
            self.hub.registry.disconnect_user(
                message.user, message.family, message.code, message.reason
            )
        elif isinstance(message, control.RoutesChanged):
            self.routes.request_reload()
        elif isinstance(message, control.StatsWanted):
            self.stats.wanted(message)

    def answer(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """This node's answer to a cluster-wide query (``Broker.gather``)."""
        if name == "connections":
            return self.hub.describe(limit=int(args.get("limit", 1000)), user=args.get("user"))
        if name == "channels":
            return {"gateway_id": self.node_id, "channels": self.hub.subscriptions.local_counts()}
        return {"gateway_id": self.node_id, "error": f"unknown query {name!r}"}

    def on_resync(self) -> None:
        self.tasks.spawn(self._resync_revocations())
        self.tasks.spawn(self.hub.rewrite_connection_records())
        self.hub.replay.link_back()
        self.routes.request_reload()

    async def _resync_revocations(self, attempts: int = 5) -> None:
        """Revocations may have been missed while the link was down: reload them from storage
        and close the sockets whose token they revoke."""
        for attempt in range(attempts):
            try:
                await self.auth.load_revocations()
            except BackendUnavailable as exc:
                if attempt == attempts - 1:
                    log.error("could not reload revocations after a resync: %s", exc)
                    return
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            closed = self.hub.recheck()
            if closed:
                log.warning("resync: closed %d socket(s) whose token was revoked meanwhile", closed)
            return

    def _prune_tokens(self) -> None:
        """Drop what the verifier no longer needs (every entry ends with some token's expiry),
        and the stored revocations of tokens that expired (security review item 14)."""
        self.tokens.codec.prune()
        self.tasks.spawn(self._prune_stored_revocations())
        self._prune_timer = asyncio.get_running_loop().call_later(
            TOKEN_PRUNE_EVERY, self._prune_tokens
        )

    async def _prune_stored_revocations(self) -> None:
        try:
            now = int(time.time()) - REVOKED_KEPT_AFTER_EXPIRY
            pruned = await self.storage.prune_revocations(now)
        except BackendUnavailable as exc:
            log.debug("revocations not pruned this time: %s", exc)
            return
        if pruned:
            log.debug("pruned %d expired revocation(s) from storage", pruned)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.node.port

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return self._server

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Start the services and listen on uWS; returns the port."""
        s = self.settings
        host = host or s.host
        port = s.port if port is None else port
        if not s.reuse_port:
            ensure_port_free(host, port)  # before anything else starts: PortInUse
        revoked = await self._start_services()
        server = UWSServer(
            asyncio.get_running_loop(),
            self.http,
            self.hub,
            self.ws_options(),
            http_batch=s.http_batch,
        )
        self.node.port = server.listen(host, port)
        if not s.public_url and host in WILDCARD_HOSTS:
            log.warning(
                "PYGW_PUBLIC_URL is not set and %r names no host: ws_url in session responses "
                "says ws://localhost:%d; set PYGW_PUBLIC_URL to what clients connect to",
                host,
                self.node.port,
            )
        self._serve_on(server, host, revoked)
        return self.node.port

    def ws_options(self) -> WSOptions:
        """The transport's WebSocket limits: backstops behind the hub's own."""
        s = self.settings
        return WSOptions(
            # Frames over the limit are refused by the hub with 1009 and a close frame; the
            # transport itself cuts the connection at 4x, so it never buffers more.
            max_payload_length=max(s.ws_max_message_bytes * 4, 64 * 1024),
            idle_timeout=int(min(960, max(8, s.inactivity_timeout * 2))),
            # The hub closes slow readers at the limit (1013); the transport cuts at 8x.
            max_backpressure=s.ws_max_backpressure * 8,
            compression=COMPRESSION[s.ws_compression],
        )

    async def start_on(self, server: Server, host: str = "", port: int = 0) -> None:
        """Start the services on a server some other program runs (the ASGI adapter). ``port``
        is what the node reports of itself; 0 = not known yet (the ASGI adapter sets
        ``node.port`` from the first request's ``server``, the address the server bound)."""
        self.node.port = port  # before the broker's first heartbeat
        revoked = await self._start_services()
        self._serve_on(server, host or self.settings.host, revoked)

    async def _start_services(self) -> int:
        """Everything a server needs before it takes traffic; returns the revocations loaded."""
        s = self.settings
        fd_limit = raise_open_file_limit()
        self.hub.registry.max_connections = s.ws_max_connections or max(fd_limit - FD_RESERVE, 1)
        await self.storage.start()
        await self.broker.start(self)
        revoked = await self.auth.start()
        self.proxy.start()
        await self.routes.start()
        await self.reaper.start()
        return revoked

    def _serve_on(self, server: Server, host: str, revoked: int) -> None:
        s = self.settings
        self._server = server
        self.node.host = host
        self.hub.start(server)
        self.stats.start()
        self._prune_tokens()
        if s.metrics_port:
            # A small threaded HTTP server of prometheus_client: scrapes read plain counters.
            self._metrics_server, _thread = start_http_server(
                s.metrics_port, host, registry=self.services.metrics_registry
            )
        self.node.started = time.monotonic()
        where = f"listening on {host}:{self.node.port}" if self.node.port else "serving"
        log.info(
            "pygw %s %s (gateway %s, %s backend, %d revocations loaded)",
            self.version,
            where,
            self.node_id,
            self.storage.name,
            revoked,
        )

    async def stop(self) -> None:
        """Shut down without losing an acknowledged write, in bounded time:

        1. drain: not ready (``/health/ready`` 503), new upgrades refused, WebSockets closed
           with 1001 in batches over ``PYGW_DRAIN_SECONDS`` while HTTP is still served;
        2. stop accepting; requests still arriving on open connections get 503 (not
           acknowledged); the remaining sockets are closed (1001);
        3. wait for the requests and handlers in flight to answer;
        4. flush every pending write (after the last acknowledgement), then close the rest.

        Steps 3 and 4 and each closing step are bounded by ``PYGW_SHUTDOWN_TIMEOUT``; one that
        overruns is logged with what it waited for and abandoned, so the process always exits.
        """
        if self._stopped:
            return
        self._stopped = True
        s = self.settings
        server = self._server
        self.node.draining = True
        self.http.draining = True
        if server is not None:
            if s.drain_seconds > 0:
                log.info(
                    "draining for %.1f s: not ready, closing %d WebSocket(s) in batches",
                    s.drain_seconds,
                    self.hub.connection_count,
                )
                await self.hub.drain(s.drain_seconds, self._hurry)
            server.close_listener()
            self.http.closing = True
            self.hub.draining = True
            self.hub.stop()
            if self._prune_timer is not None:
                self._prune_timer.cancel()
            self.stats.stop()
            self.reaper.stop()
            if self.hub.registry.close_all():
                await asyncio.sleep(0.05)  # let the close frames leave
        self.routes.close()
        await self._bounded("requests in flight", self._settle())
        await self._bounded("closing the proxy client", self.proxy.close())
        await self._bounded("the final flush of pending writes", self.storage.close())
        await self._bounded("closing the broker", self.broker.close())
        await self._bounded("closing the rate limiter", self.limits.close())
        self.tasks.cancel_all()
        self.passwords.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if server is not None:
            server.close()
            self._server = None
        log.info("pygw stopped")

    async def _settle(self) -> None:
        """Until no HTTP request and no background work (handlers, record writes) is left."""
        await self.http.wait_idle()
        await self.tasks.wait()

    async def _bounded(self, what: str, step: Awaitable[Any]) -> None:
        """Run one shutdown step for at most ``PYGW_SHUTDOWN_TIMEOUT`` seconds."""
        limit = self.settings.shutdown_timeout
        try:
            async with asyncio.timeout(limit):
                await step
        except TimeoutError:
            log.error("shutdown: gave up waiting for %s after %.1f s", what, limit)
            if what == "requests in flight":
                log.error(
                    "shutdown: %d request(s) and %d task(s) still running",
                    self.http.in_flight,
                    len(self.tasks),
                )
        except Exception:
            log.exception("shutdown: %s failed", what)

    def request_stop(self) -> None:
        """Begin a graceful stop; a second call cuts the drain short."""
        if self._stop_requested is None:
            return
        if self._stop_requested.is_set() and self._hurry is not None:
            self._hurry.set()
        self._stop_requested.set()

    async def serve(self, host: str | None = None, port: int | None = None) -> None:
        """Start, run until SIGTERM/SIGINT or :meth:`request_stop`, then stop gracefully."""
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
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
