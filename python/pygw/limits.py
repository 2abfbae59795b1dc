"""Rate limits: GCRA per key, by class, in-process or shared through Redis.

Classes (settings ``PYGW_RATE_<CLASS>``, format ``count/seconds[:burst]``, see docs/RATE_LIMITS.md):

- ``login``      login attempts per username (checked before the password hash is computed)
- ``login_ip``   login attempts per client IP
- ``http``       HTTP requests per authenticated user, else per client IP (off by default)
- ``ws_connect`` WebSocket upgrades per client IP
- ``ws_message`` client WebSocket messages per connection (always in-process, native)

One interface (:class:`Bucket`: ``check(key) -> seconds to wait``, 0.0 = allowed) and two
backends: :class:`MemoryBucket` (the native ``RateLimiter``, this process only) and
:class:`RedisBucket` (one atomic Lua GCRA script per check, keys ``pygw:rl:<class>:<key>``,
Redis server time, a TTL that ends when the key is back to fresh). When Redis cannot answer, a
Redis bucket falls back to its own in-process limiter and logs a warning: limits then hold per
node instead of cluster-wide, and no request turns into a 503 because of them.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pygw._native import RateLimiter, TokenError
from pygw.core.netaddr import ip_key
from pygw.core.rates import RATE_CLASSES, SHARED_CLASSES, Rate, parse_rate
from pygw.http.errors import HTTPError, closing_error_response, too_many_requests
from pygw.redis_client import UNREACHABLE, LuaScript, connect

if TYPE_CHECKING:
    from pygw.config import Settings
    from pygw.gateway import Gateway
    from pygw.http.app import Hook
    from pygw.metrics import Metrics
    from pygw.transport.types import Response

log = logging.getLogger("pygw.limits")

KEY_PREFIX = "pygw:rl:"
WARN_EVERY = 30.0
"""Seconds between two "Redis unavailable, limiting per node" warnings of one class."""
HTTP_EXEMPT = frozenset({"/health", "/ws/health", "/health/connections", "/metrics"})
"""Routes never counted by the ``http`` class (load balancers and scrapers poll them)."""

REDIS_TIMEOUT = 0.5
"""Socket timeout of the limiter's Redis client: a hung Redis delays a check by at most this
before the check falls back to the in-process limiter."""
REDIS_CONNECTIONS = 64
"""Connections per node; more concurrent checks queue for one (up to REDIS_TIMEOUT)."""

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, *UNREACHABLE)
"""What makes a shared check fall back to the local limiter (unreachable, read-only, OOM...)."""


# ------------------------------------------------------------------------------ backends
class Bucket(Protocol):
    """One class's limiter: ``check(key)`` consumes ``cost`` and returns 0.0 if allowed, else
    the seconds to wait (nothing consumed); ``math.inf`` when ``cost`` exceeds the burst."""

    shared: bool

    async def check(self, key: str, cost: int = 1) -> float: ...

    def check_local(self, key: str, cost: int = 1) -> float: ...

    async def reset(self, key: str) -> None:
        """Forget ``key`` (back to a full burst)."""


class MemoryBucket:
    """This process only: the native GCRA limiter (about 100 ns a check, no I/O)."""

    shared = False

    def __init__(self, rate: Rate, max_keys: int = 200_000) -> None:
        self.rate = rate
        self.native = RateLimiter(rate.per_second, rate.burst, max_keys=max_keys)

    def check_local(self, key: str, cost: int = 1) -> float:
        return self.native.check(key, None, cost)

    async def check(self, key: str, cost: int = 1) -> float:
        return self.native.check(key, None, cost)

    async def reset(self, key: str) -> None:
        self.native.remove(key)


# KEYS[1]: the key. ARGV: emission interval (µs), burst, cost[, now (µs)]; without ``now`` the
# Redis server's clock is used, so every node agrees whatever their own clocks say.
# The key holds the theoretical arrival time (TAT, µs) and expires when it is back to fresh.
# Returns 0 if allowed (cost consumed), else the µs to wait (nothing written); -1: cost > burst.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
if cost > burst then return -1 end
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  stored = tonumber(stored)
  if stored and stored > now then tat = stored end
end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return 0
"""


class RedisBucket:
    """Shared by every node through Redis: one EVALSHA per check (reloaded after NOSCRIPT).

    Any Redis failure falls back to :attr:`local` (this process's own limiter with the same
    rate) and a warning at most every ``WARN_EVERY`` seconds."""

    shared = True

    def __init__(self, cls: str, rate: Rate, client: Redis, local: MemoryBucket) -> None:
        self.cls = cls
        self.rate = rate
        self.client = client
        self.local = local
        self.prefix = f"{KEY_PREFIX}{cls}:"
        self.script = LuaScript("gcra", GCRA_LUA)
        self._args = (rate.interval_us, rate.burst)
        self._warned = -math.inf
        self._fallbacks = 0

    def check_local(self, key: str, cost: int = 1) -> float:
        return self.local.check_local(key, cost)

    async def check(self, key: str, cost: int = 1) -> float:
        try:
            wait_us = await self.run(key, cost)
        except REDIS_FAILURES as exc:
            self._fell_back(exc)
            return self.local.check_local(key, cost)
        if wait_us == 0:
            return 0.0
        return math.inf if wait_us < 0 else wait_us / 1_000_000

    async def reset(self, key: str) -> None:
        self.local.native.remove(key)
        try:
            await self.client.delete(self.prefix + key)
        except REDIS_FAILURES as exc:
            self._fell_back(exc)

    async def run(self, key: str, cost: int = 1, now_us: int | None = None) -> int:
        """The raw script call: 0, µs to wait, or -1 (``now_us`` is for tests)."""
        args: tuple[int, ...] = (*self._args, cost)
        if now_us is not None:
            args = (*args, now_us)
        return int(await self.script.run(self.client, [self.prefix + key], args))

    def _fell_back(self, exc: BaseException) -> None:
        self._fallbacks += 1
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "rate limit %r: Redis unavailable (%s: %s); limiting per node until it returns"
                " (%d checks so far)",
                self.cls,
                type(exc).__name__,
                exc,
                self._fallbacks,
            )


# ------------------------------------------------------------------------------ the gateway's
class Limits:
    """Every class of one gateway. Disabled classes have no bucket and cost nothing."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.rates: dict[str, Rate | None] = {
            cls: parse_rate(getattr(settings, f"rate_{cls}")) for cls in RATE_CLASSES
        }
        self.client: Redis | None = None
        self.buckets: dict[str, Bucket] = {}
        shared = [cls for cls in SHARED_CLASSES if self.rates[cls] is not None]
        if settings.redis_url and shared:
            self.client = redis_client(settings.redis_url, f"pygw:{settings.gateway_id}:rl")
        for cls in shared:
            rate = self.rates[cls]
            assert rate is not None
            local = MemoryBucket(rate)
            self.buckets[cls] = (
                RedisBucket(cls, rate, self.client, local) if self.client is not None else local
            )
        ws_rate = self.rates["ws_message"]
        self.ws_messages: RateLimiter | None = (
            RateLimiter(ws_rate.per_second, ws_rate.burst, max_keys=1_000_000)
            if ws_rate is not None
            else None
        )

    def enabled(self, cls: str) -> bool:
        return cls in self.buckets or (cls == "ws_message" and self.ws_messages is not None)

    async def check(self, cls: str, key: str) -> float:
        """0.0 if allowed (or the class is off), else seconds to wait; counts refusals."""
        bucket = self.buckets.get(cls)
        if bucket is None:
            return 0.0
        wait = await bucket.check(key)
        if wait:
            self.metrics.rate_limited[cls] += 1
        return wait

    async def enforce(self, cls: str, key: str) -> None:
        """Raise HTTPError 429 (envelope, ``Retry-After``) if ``key`` is over ``cls``'s limit."""
        wait = await self.check(cls, key)
        if wait:
            raise _too_many(wait)

    async def login(self, username: str, client_ip: str) -> None:
        """Before any password work: per client IP first (a refused address consumes nothing
        of the username's allowance), then per username. Every attempt counts until
        :meth:`login_succeeded` clears the username's count."""
        if "login_ip" in self.buckets:
            await self.enforce("login_ip", ip_key(client_ip))
        if "login" in self.buckets:
            await self.enforce("login", username)

    async def login_succeeded(self, username: str) -> None:
        """A correct password clears the username's failed attempts (the per-IP count stays:
        an attacker's own account must not reset the address's allowance)."""
        bucket = self.buckets.get("login")
        if bucket is not None:
            await bucket.reset(username)

    async def ws_connect(self, client_ip: str, path: str) -> Response | None:
        """None if the upgrade may proceed, else the 429 response refusing it."""
        if "ws_connect" not in self.buckets:
            return None
        wait = await self.check("ws_connect", ip_key(client_ip))
        if not wait:
            return None
        return closing_error_response(_too_many(wait), path)

    def ws_message(self, conn_id: int) -> bool:
        limiter = self.ws_messages
        if limiter is None or limiter.check(conn_id) == 0.0:
            return True
        self.metrics.rate_limited["ws_message"] += 1
        return False

    def connection_closed(self, conn_id: int) -> None:
        if self.ws_messages is not None:
            self.ws_messages.remove(conn_id)

    def http_hook(self, gw: Gateway) -> Hook | None:
        """The HTTP hook of the ``http`` class (None when it is off): per verified user, else
        per client IP; callers with a valid API key (backends) and health/metrics are exempt."""
        bucket = self.buckets.get("http")
        if bucket is None:
            return None
        auth = gw.auth
        metrics = self.metrics

        def key_of(ctx: Any) -> str | None:
            request = ctx.request
            headers = request.headers
            api_key = headers.get("x-api-key")
            if api_key and auth.api_keys and auth.api_key_valid(api_key):
                return None
            header = headers.get("authorization")
            if header:
                scheme, _, token = header.partition(" ")
                token = token.strip()
                if token and scheme.lower() == "bearer":
                    try:
                        return "u:" + auth.tokens.verify(token).sub
                    except TokenError:
                        pass  # counted per address; authentication answers 401 later
            return "ip:" + ip_key(gw.client_ip(headers, request.client_ip))

        def refuse(wait: float) -> None:
            metrics.rate_limited["http"] += 1
            raise _too_many(wait)

        async def shared_check(key: str) -> None:
            wait = await bucket.check(key)
            if wait:
                refuse(wait)

        def hook(ctx: Any, route: Any) -> Any:
            if route.path in HTTP_EXEMPT:
                return None
            key = key_of(ctx)
            if key is None:
                return None
            if bucket.shared:
                return shared_check(key)
            wait = bucket.check_local(key)
            if wait:
                refuse(wait)
            return None

        return hook

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.aclose()
                await client.connection_pool.disconnect()
            except Exception as exc:  # closing a pool to a dead Redis must not fail shutdown
                log.debug("closing the rate-limit Redis client: %r", exc)


def redis_client(url: str, name: str | None = None) -> Redis:
    """The limiter's own client: short timeouts, so a slow Redis costs a check at most half a
    second before it falls back to the in-process limiter."""
    return connect(
        url, socket_timeout=REDIS_TIMEOUT, client_name=name, max_connections=REDIS_CONNECTIONS
    )


def _too_many(wait: float) -> HTTPError:
    if math.isinf(wait):
        wait = 3600.0
    return too_many_requests(wait)
