"""argon2id password hashing off the event loop.

At OWASP's parameters (m=19 MiB, t=2, p=1) one core verifies roughly 50 passwords a second, so
login throughput is bounded by the hash *by design*: the pool has one thread per core (argon2-cffi
releases the GIL while hashing) and logins queue behind it instead of blocking the event loop.

A legacy unsalted SHA-256 hex digest (what the original gateway stored) is accepted once; the
caller replaces it with an argon2id hash after that successful login.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_LEGACY_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int = 2,
        memory_kib: int = 19 * 1024,
        parallelism: int = 1,
        threads: int = 0,
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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
