"""The rate-limit bucket shared by every node through Redis.

:class:`RedisBucket` runs one atomic Lua GCRA script per check (keys ``pygw:rl:<class>:<key>``,
Redis server time, a TTL that ends when the key is back to fresh). When Redis cannot answer, it
falls back to its own in-process limiter and logs a warning: limits then hold per node instead of
cluster-wide, and no request turns into a 503 because of them.
"""

from __future__ import annotations

import logging
import math
import time

from redis.exceptions import RedisError

from pygw.core.rates import Rate
from pygw.limits.buckets import MemoryBucket
from pygw.redis_client import UNREACHABLE, Client, LuaScript, connect

log = logging.getLogger("pygw.limits")

KEY_PREFIX = "pygw:rl:"
WARN_EVERY = 30.0
"""Seconds between two "Redis unavailable, limiting per node" warnings of one class."""
REDIS_TIMEOUT = 0.5
"""Socket timeout of the limiter's Redis client: a hung Redis delays a check by at most this
before the check falls back to the in-process limiter."""
REDIS_CONNECTIONS = 64
"""Connections per node; more concurrent checks queue for one (up to REDIS_TIMEOUT)."""

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, *UNREACHABLE)
"""What makes a shared check fall back to the local limiter (unreachable, read-only, OOM...)."""


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

    def __init__(self, cls: str, rate: Rate, client: Client, local: MemoryBucket) -> None:
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


def redis_client(url: str, name: str | None = None, cluster: bool = False) -> Client:
    """The limiter's own client: short timeouts, so a slow Redis costs a check at most half a
    second before it falls back to the in-process limiter. Its keys are one per script call,
    so a Redis Cluster needs nothing else."""
    return connect(
        url,
        cluster=cluster,
        socket_timeout=REDIS_TIMEOUT,
        client_name=name,
        max_connections=REDIS_CONNECTIONS,
    )
