"""argon2id hashing with OWASP defaults, off the event loop, and the legacy SHA-256 upgrade."""

from __future__ import annotations

import asyncio
import hashlib
import threading

from pygw.auth.passwords import PasswordHasher


async def test_default_parameters_are_owasp_argon2id() -> None:
    hasher = PasswordHasher()
    try:
        encoded = await hasher.hash("correct horse")
        assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await hasher.verify(encoded, "correct horse") == (True, None)
        assert await hasher.verify(encoded, "wrong horse") == (False, None)
    finally:
        hasher.close()


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher(threads=2)
    threads: set[str] = set()
    original = hasher.hash_sync

    def spy(password: str) -> str:
        threads.add(threading.current_thread().name)
        return original(password)

    hasher.hash_sync = spy  # type: ignore[method-assign]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(hasher.hash(f"pw{i}") for i in range(6)))
    finally:
        task.cancel()
        hasher.close()
    assert threads and all(name.startswith("pygw-argon2") for name in threads)
    assert ticks > 5  # the loop kept running while hashes were computed


async def test_legacy_sha256_matches_once_and_gets_an_argon2_replacement() -> None:
    hasher = PasswordHasher(memory_kib=1024, time_cost=1)
    try:
        legacy = hashlib.sha256(b"old-secret").hexdigest()
        ok, replacement = await hasher.verify(legacy, "old-secret")
        assert ok
        assert replacement is not None and replacement.startswith("$argon2id$")
        assert await hasher.verify(replacement, "old-secret") == (True, None)
        assert await hasher.verify(legacy, "not-it") == (False, None)
    finally:
        hasher.close()


async def test_weaker_stored_parameters_are_rehashed() -> None:
    weak = PasswordHasher(memory_kib=1024, time_cost=1)
    strong = PasswordHasher(memory_kib=2048, time_cost=2)
    try:
        encoded = await weak.hash("pw")
        ok, replacement = await strong.verify(encoded, "pw")
        assert ok
        assert replacement is not None and "m=2048,t=2" in replacement
    finally:
        weak.close()
        strong.close()
