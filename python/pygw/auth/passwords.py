"""argon2id password hashing off the event loop.

At OWASP's parameters (m=19 MiB, t=2, p=1) one core verifies roughly 50 passwords a second, so
login throughput is bounded by the hash *by design*: the pool has one thread per core (argon2-cffi
releases the GIL while hashing) and logins queue behind it instead of blocking the event loop.

Two guarantees for the login path:

- an unknown username costs the same argon2 work as a wrong password (:meth:`verify_unknown`
  verifies against a dummy hash made with the same parameters), so response times do not tell
  which usernames exist;
- registrations hash in a bounded lane (:meth:`hash_bounded`): at most ``threads - 1`` at once
  (at least one), so a registration flood never fills the pool's queue and logins keep at least
  one thread; registrations waiting beyond ``max_waiting`` are refused (429) instead of queueing
  without bound.

A legacy unsalted SHA-256 hex digest (what the original gateway stored) is accepted once; the
caller replaces it with an argon2id hash after that successful login.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pygw.core.errors import TooManyRequests

_LEGACY_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = 2,
        memory_kib: int = 19 * 1024,
        parallelism: int = 1,
        threads: int = 0,
        max_waiting: int = 64,
    ) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="pygw-argon2")
        self.bounded_slots = max(1, self.threads - 1)
        """Hashes of :meth:`hash_bounded` (registrations) running at once."""
        self.max_waiting = max_waiting
        self._bounded = asyncio.Semaphore(self.bounded_slots)
        self._waiting = 0
        self._dummy: str | None = None

    # -- blocking primitives (run in the pool) ------------------------------------------------
    def hash_sync(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify_sync(self, stored: str, password: str) -> tuple[bool, str | None]:
        """(matches, replacement hash or None)."""
        if _LEGACY_SHA256.match(stored):
            digest = hashlib.sha256(password.encode()).hexdigest()
            if hmac.compare_digest(digest, stored):
                return True, self._argon2.hash(password)
            return False, None
        try:
            self._argon2.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if self._argon2.check_needs_rehash(stored):
            return True, self._argon2.hash(password)
        return True, None

    # -- async API -----------------------------------------------------------------------------
    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hash_sync, password)

    async def verify(self, stored: str, password: str) -> tuple[bool, str | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.verify_sync, stored, password)

    async def prepare(self) -> None:
        """Make the dummy hash of :meth:`verify_unknown` now (at start-up) rather than on the
        first unknown username (whose answer would then take twice as long)."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(24))

    async def verify_unknown(self, password: str) -> None:
        """The work of a failed verification, for a username that does not exist."""
        await self.prepare()
        assert self._dummy is not None
        await self.verify(self._dummy, password)

    async def hash_bounded(self, password: str) -> str:
        """:meth:`hash` in the bounded lane (registrations): TooManyRequests when
        ``max_waiting`` callers already wait for a slot."""
        if self._bounded.locked() and self._waiting >= self.max_waiting:
            raise TooManyRequests(1.0)
        self._waiting += 1
        try:
            await self._bounded.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self.hash(password)
        finally:
            self._bounded.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
