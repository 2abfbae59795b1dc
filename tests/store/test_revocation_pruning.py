"""The stored revocation list is pruned (security review item 14) on every backend: ids of
expired tokens go when a token is revoked and when a node prunes periodically; live ones stay,
and revocation still holds for them."""

from __future__ import annotations

import asyncio
import time

import pytest

from pygw.config import Settings
from pygw.gateway import Gateway
from pygw.store.base import REVOKED_KEPT_AFTER_EXPIRY, Storage


async def stored_count(storage: Storage) -> int:
    """Revoked ids the backend holds, expired or not (Redis: ZCARD of the revocation zset)."""
    return int((await storage.stats()).extra["revoked_tokens"])


async def test_revoking_prunes_what_expired(storage: Storage) -> None:
    now = int(time.time())
    for n in range(200):  # stored long ago; their tokens have expired since
        await storage.revoke_token(f"old-{n}", now - 3600 + n)
    await storage.revoke_token("live", now + 600)
    assert await stored_count(storage) == 1
    assert await storage.revoked_tokens(now) == [("live", now + 600)]


async def test_periodic_prune_drops_expired_and_keeps_live(storage: Storage) -> None:
    now = int(time.time())
    for n in range(50):
        await storage.revoke_token(f"live-{n}", now + 60 + n)
    for n in range(50):
        await storage.revoke_token(f"soon-{n}", now + 5)
    await storage.raise_token_floor("alice", now * 1_000_000, now + 5)
    await storage.raise_token_floor("bob", now * 1_000_000, now + 600)
    # 10 s later: the "soon" tokens have expired, the live ones have not.
    assert await storage.prune_revocations(now + 10) == 50
    assert await stored_count(storage) == 50
    kept = await storage.revoked_tokens(now + 10)
    assert sorted(kept) == sorted((f"live-{n}", now + 60 + n) for n in range(50))
    assert [f.user for f in await storage.token_floors(now + 10)] == ["bob"]
    assert await storage.prune_revocations(now + 10) == 0


async def test_revoking_again_keeps_the_later_expiry_through_pruning(storage: Storage) -> None:
    now = int(time.time())
    await storage.revoke_token("j", now + 5)
    await storage.revoke_token("j", now + 500)
    assert await storage.prune_revocations(now + 10) == 0
    assert await storage.revoked_tokens(now + 10) == [("j", now + 500)]


async def test_a_node_prunes_stored_revocations_periodically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's periodic prune reaches its storage (memory backend, in this process)."""
    monkeypatch.setattr("pygw.gateway.REVOKED_KEPT_AFTER_EXPIRY", 0)  # no margin: no waiting
    gateway = Gateway(Settings.from_env({}, secret_key="k" * 32))
    storage = gateway.storage
    now = int(time.time())
    await storage.revoke_token("expiring", now + 1)
    await storage.revoke_token("live", now + 600)
    await asyncio.sleep(max(0.0, now + 2 - time.time()))  # "expiring" is past its expiry
    gateway._prune_tokens()  # what the node runs every TOKEN_PRUNE_EVERY seconds
    try:
        await gateway.tasks.wait()
        assert await stored_count(storage) == 1
        assert await storage.revoked_tokens(int(time.time())) == [("live", now + 600)]
    finally:
        if gateway._prune_timer is not None:
            gateway._prune_timer.cancel()


async def test_revoking_keeps_ids_for_a_clock_margin_past_expiry(storage: Storage) -> None:
    """Another node's clock may be behind: an id goes only REVOKED_KEPT_AFTER_EXPIRY s later."""
    now = int(time.time())
    await storage.revoke_token("just-expired", now - 5)
    await storage.revoke_token("long-expired", now - REVOKED_KEPT_AFTER_EXPIRY - 5)
    await storage.revoke_token("live", now + 600)
    assert await stored_count(storage) == 2
    kept = sorted(await storage.revoked_tokens(now - 10))
    assert kept == [("just-expired", now - 5), ("live", now + 600)]
