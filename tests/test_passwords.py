"""argon2id hashing with OWASP defaults, off the event loop, and the legacy SHA-256 upgrade."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

from pygw.auth.passwords import PasswordHasher
from pygw.config import ConfigError, Settings
from pygw.core.errors import TooManyRequests


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


async def test_unknown_usernames_cost_one_verification_with_the_same_parameters() -> None:
    hasher = PasswordHasher(memory_kib=1024, time_cost=1, threads=1)
    checked: list[str] = []
    original = hasher.verify_sync

    def spy(stored: str, password: str) -> tuple[bool, str | None]:
        checked.append(stored)
        return original(stored, password)

    hasher.verify_sync = spy  # type: ignore[method-assign]
    try:
        real = await hasher.hash("correct horse")
        await hasher.prepare()  # the dummy hash is made at start-up
        await hasher.verify_unknown("a guess")
        await hasher.verify_unknown("another guess")
        assert len(checked) == 2 and checked[0] == checked[1]
        # "$argon2id$v=19$m=1024,t=1,p=1$...": the same algorithm and cost as real hashes.
        assert checked[0].split("$")[:4] == real.split("$")[:4]
    finally:
        hasher.close()


async def test_logins_keep_a_thread_while_registrations_flood() -> None:
    """Registrations hash in a bounded lane (threads - 1 at once): a login's verification does
    not queue behind a flood of them."""
    hasher = PasswordHasher(memory_kib=4096, time_cost=1, threads=2)
    try:
        stored = await hasher.hash("correct horse")
        assert hasher.bounded_slots == 1
        flood = [asyncio.create_task(hasher.hash_bounded(f"new-{i}")) for i in range(30)]
        await asyncio.sleep(0)
        assert await hasher.verify(stored, "correct horse") == (True, None)
        still_waiting = sum(not task.done() for task in flood)
        assert still_waiting >= 25, f"the login waited for {30 - still_waiting} registrations"
        hashes = await asyncio.gather(*flood)
        assert all(h.startswith("$argon2id$") for h in hashes)
    finally:
        hasher.close()


async def test_registrations_beyond_the_waiting_bound_are_refused() -> None:
    hasher = PasswordHasher(memory_kib=4096, time_cost=1, threads=2, max_waiting=3)
    try:
        queued = [asyncio.create_task(hasher.hash_bounded(f"new-{i}")) for i in range(4)]
        await asyncio.sleep(0)  # one hashing, three waiting
        with pytest.raises(TooManyRequests) as refused:
            await hasher.hash_bounded("one too many")
        assert refused.value.retry_after == 1.0
        assert len(await asyncio.gather(*queued)) == 4
        assert (await hasher.hash_bounded("later")).startswith("$argon2id$")
    finally:
        hasher.close()


def test_the_waiting_bound_is_a_setting() -> None:
    """PYGW_REGISTER_MAX_WAITING sets the bound above (default 64); a negative one is refused."""
    assert Settings.from_env({}).register_max_waiting == 64
    assert Settings.from_env({"PYGW_REGISTER_MAX_WAITING": "500"}).register_max_waiting == 500
    with pytest.raises(ConfigError, match="PYGW_REGISTER_MAX_WAITING must be >= 0"):
        Settings.from_env({"PYGW_REGISTER_MAX_WAITING": "-1"})
