"""Rate-limit buckets: one interface, GCRA per key.

:class:`Bucket` is ``check(key) -> seconds to wait`` (0.0 = allowed). :class:`MemoryBucket` is the
native ``RateLimiter`` (this process only). The bucket shared by every node through Redis is in
:mod:`pygw.limits.shared`, imported only when a Redis URL is configured (redis-py costs ~11 MiB
of a gateway's start-up memory).
"""

from __future__ import annotations

from typing import Protocol

from pygw._native import RateLimiter
from pygw.core.rates import Rate


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
