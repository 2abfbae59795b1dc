"""Rate limits of one gateway, by class (settings ``PYGW_RATE_<CLASS>``, format
``count/seconds[:burst]``, see docs/RATE_LIMITS.md):

- ``login``      login attempts per (username, client IP): the lockout-style limit, so an
                 attacker elsewhere cannot lock a user out (checked before any password work)
- ``login_ip``   login attempts per client IP
- ``login_user`` login attempts per username from anywhere: over it attempts are *slowed down*
                 (up to LOGIN_SLOWDOWN_MAX seconds each), never refused
- ``register``   registrations per client IP
- ``http``       HTTP requests per authenticated user, else per client IP (off by default; the
                 HTTP layer applies it, :mod:`pygw.http.ratelimit`)
- ``ws_connect`` WebSocket upgrades per client IP
- ``ws_message`` client WebSocket messages per connection (always in-process, native)

The buckets themselves are in :mod:`pygw.limits.buckets` (in-process) and
:mod:`pygw.limits.shared` (through Redis, imported only when a Redis URL is set).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pygw._native import RateLimiter
from pygw.config import Settings
from pygw.core.errors import TooManyRequests
from pygw.core.netaddr import ip_key
from pygw.core.rates import RATE_CLASSES, SHARED_CLASSES, Rate, parse_rate
from pygw.limits.buckets import Bucket, MemoryBucket
from pygw.metrics import Metrics

if TYPE_CHECKING:
    from pygw.redis_client import Client

__all__ = ["Bucket", "Limits", "MemoryBucket"]

log = logging.getLogger("pygw.limits")

LOGIN_SLOWDOWN_MAX = 2.0
"""Longest delay the ``login_user`` class adds to one attempt (seconds)."""


def login_key(username: str, client_ip: str) -> str:
    """The ``login`` class's key: the address's rate-limit key first (it never contains
    ``|``), so no (name, address) pair can collide with another."""
    return f"{ip_key(client_ip)}|{username}"


class Limits:
    """Every class of one gateway. Disabled classes have no bucket and cost nothing."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.rates: dict[str, Rate | None] = {
            cls: parse_rate(getattr(settings, f"rate_{cls}")) for cls in RATE_CLASSES
        }
        self.client: Client | None = None
        self.buckets: dict[str, Bucket] = {}
        shared = [cls for cls in SHARED_CLASSES if self.rates[cls] is not None]
        if settings.redis_url and shared:
            from pygw.limits.shared import RedisBucket, redis_client

            self.client = redis_client(
                settings.redis_url, f"pygw:{settings.gateway_id}:rl", settings.redis_cluster
            )
        for cls in shared:
            rate = self.rates[cls]
            assert rate is not None
            local = MemoryBucket(rate)
            self.buckets[cls] = (
                RedisBucket(cls, rate, self.client, local) if self.client is not None else local
            )
        self.sleep = asyncio.sleep
        """How ``login_user`` slows an attempt down (replaceable in tests)."""
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
        """Raise TooManyRequests if ``key`` is over ``cls``'s limit."""
        wait = await self.check(cls, key)
        if wait:
            raise TooManyRequests(wait)

    async def login(self, username: str, client_ip: str) -> None:
        """Before any password work: per client IP first (a refused address consumes nothing
        else), then per (username, address) — both refuse with 429 —, then per username from
        anywhere, which only delays the attempt. Every attempt counts until
        :meth:`login_succeeded` clears the user's counts."""
        if "login_ip" in self.buckets:
            await self.enforce("login_ip", ip_key(client_ip))
        if "login" in self.buckets:
            await self.enforce("login", login_key(username, client_ip))
        if "login_user" in self.buckets:
            wait = await self.check("login_user", username)
            if wait:
                await self.sleep(min(wait, LOGIN_SLOWDOWN_MAX))

    async def login_succeeded(self, username: str, client_ip: str) -> None:
        """A correct password clears the (username, address) failures and slows the username
        down no longer (the per-IP count stays: an attacker's own account must not reset the
        address's allowance)."""
        for cls, key in (("login", login_key(username, client_ip)), ("login_user", username)):
            bucket = self.buckets.get(cls)
            if bucket is not None:
                await bucket.reset(key)

    async def register(self, client_ip: str) -> None:
        """Before the name is looked up or the password hashed: registrations per address."""
        if "register" in self.buckets:
            await self.enforce("register", ip_key(client_ip))

    async def ws_connect(self, client_ip: str) -> float:
        """0.0 if an upgrade from ``client_ip`` may proceed, else the seconds to wait."""
        if "ws_connect" not in self.buckets:
            return 0.0
        return await self.check("ws_connect", ip_key(client_ip))

    def ws_message(self, conn_id: int) -> bool:
        limiter = self.ws_messages
        if limiter is None or limiter.check(conn_id) == 0.0:
            return True
        self.metrics.rate_limited["ws_message"] += 1
        return False

    def connection_closed(self, conn_id: int) -> None:
        if self.ws_messages is not None:
            self.ws_messages.remove(conn_id)

    async def close(self) -> None:
        if self.client is not None:
            from pygw.redis_client import close_client

            client, self.client = self.client, None
            try:
                await close_client(client)
            except Exception as exc:  # closing a pool to a dead Redis must not fail shutdown
                log.debug("closing the rate-limit Redis client: %r", exc)
