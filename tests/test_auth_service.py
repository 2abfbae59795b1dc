"""AuthService on the memory backend: the password work of logins and registrations, reserved
admin names and their bootstrap (what end-to-end tests cannot observe without timing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pygw.auth.passwords import PasswordHasher
from pygw.auth.service import AuthService
from pygw.auth.tokens import TokenService
from pygw.broker.memory import MemoryBroker
from pygw.config import ConfigError, Settings
from pygw.core.errors import BadRequest, Conflict, Unauthenticated
from pygw.store.memory import MemoryStorage


class CountingHasher(PasswordHasher):
    """Counts the argon2 work done in the pool (hashes and verifications)."""

    def __init__(self) -> None:
        super().__init__(memory_kib=1024, time_cost=1, threads=2)
        self.hashed = 0
        self.verified: list[str] = []

    def hash_sync(self, password: str) -> str:
        self.hashed += 1
        return super().hash_sync(password)

    def verify_sync(self, stored: str, password: str) -> tuple[bool, str | None]:
        self.verified.append(stored)
        return super().verify_sync(stored, password)


def make_auth(**env: str) -> tuple[AuthService, CountingHasher, MemoryStorage]:
    settings = Settings.from_env({"SECRET_KEY": "unit-test-secret-0123456789abcdef", **env})
    storage = MemoryStorage(60)
    hasher = CountingHasher()
    auth = AuthService(settings, storage, MemoryBroker(), TokenService(settings), hasher)
    return auth, hasher, storage


@pytest.fixture
async def auth() -> AsyncIterator[tuple[AuthService, CountingHasher, MemoryStorage]]:
    service, hasher, storage = make_auth(PYGW_ADMIN_USERS="boss")
    await service.start()
    yield service, hasher, storage
    hasher.close()


async def test_unknown_username_costs_the_same_argon2_work_as_a_wrong_password(
    auth: tuple[AuthService, CountingHasher, MemoryStorage],
) -> None:
    service, hasher, _ = auth
    await service.register("alice", "alice@example.com", "correct-horse-1")
    hasher.verified.clear()
    with pytest.raises(Unauthenticated, match="Invalid username or password"):
        await service.login("alice", "wrong-password")
    with pytest.raises(Unauthenticated, match="Invalid username or password"):
        await service.login("nobody", "wrong-password")
    real, dummy = hasher.verified
    assert real != dummy
    assert dummy.split("$")[:4] == real.split("$")[:4]  # argon2id, same m, t, p


async def test_registration_checks_the_name_before_hashing(
    auth: tuple[AuthService, CountingHasher, MemoryStorage],
) -> None:
    service, hasher, storage = auth
    await service.register("alice", "alice@example.com", "correct-horse-1")
    hashed = hasher.hashed
    with pytest.raises(Conflict, match="Username already exists"):
        await service.register("alice", "evil@example.com", "another-password")
    assert hasher.hashed == hashed, "an existing name must cost no hash"
    user = await storage.get_user("alice")
    assert user is not None and user.email == "alice@example.com"


async def test_admin_names_are_reserved_and_never_granted_at_registration(
    auth: tuple[AuthService, CountingHasher, MemoryStorage],
) -> None:
    service, hasher, storage = auth
    hashed = hasher.hashed
    with pytest.raises(BadRequest, match="Username is reserved"):
        await service.register("boss", "boss@example.com", "correct-horse-1")
    assert await storage.get_user("boss") is None and hasher.hashed == hashed
    await service.register("bossy", "b@example.com", "correct-horse-1")
    assert (await service.login("bossy", "correct-horse-1")).role == "user"


async def test_operator_creates_the_listed_admins() -> None:
    """With PYGW_ADMIN_PASSWORD the listed admins that do not exist are created at start;
    existing accounts of listed names are admins at login."""
    service, hasher, storage = make_auth(
        PYGW_ADMIN_USERS="boss,chief", PYGW_ADMIN_PASSWORD="operator-pass-1"
    )
    try:
        assert await service.create_user("chief", "c@example.com", "chiefs-own-pass", "user")
        await service.start()
        boss = await storage.get_user("boss")
        assert boss is not None and boss.role == "admin"
        assert (await service.login("boss", "operator-pass-1")).role == "admin"
        # An existing account keeps its password and becomes admin when it logs in.
        with pytest.raises(Unauthenticated):
            await service.login("chief", "operator-pass-1")
        assert (await service.login("chief", "chiefs-own-pass")).role == "admin"
    finally:
        hasher.close()


async def test_without_a_password_missing_admins_are_only_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, hasher, storage = make_auth(PYGW_ADMIN_USERS="boss")
    try:
        await service.start()
        assert await storage.get_user("boss") is None
        assert "pygw users create boss --role admin" in caplog.text
    finally:
        hasher.close()


async def test_a_role_change_revokes_the_users_tokens_but_setting_the_same_role_does_not(
    auth: tuple[AuthService, CountingHasher, MemoryStorage],
) -> None:
    service, _, _ = auth
    await service.register("alice", "alice@example.com", "correct-horse-1")
    token = (await service.login("alice", "correct-horse-1")).access.token
    assert await service.set_role("alice", "user")  # unchanged: nothing revoked
    assert service.verify_access(token).role == "user"
    assert await service.set_role("alice", "admin")
    with pytest.raises(Unauthenticated, match="Token revoked"):
        service.verify_access(token)
    assert not await service.set_role("nobody", "admin")


def test_admin_password_setting(tmp_path: Path) -> None:
    secret = tmp_path / "admin-password"
    secret.write_text("from-a-file-123\n")
    assert Settings.from_env({"PYGW_ADMIN_PASSWORD": f"@{secret}"}).admin_password == (
        "from-a-file-123"
    )
    assert Settings.from_env({"PYGW_ADMIN_PASSWORD": "inline-pass"}).admin_password == "inline-pass"
    with pytest.raises(ConfigError, match="PYGW_ADMIN_PASSWORD must have at least 8 characters"):
        Settings.from_env({"PYGW_ADMIN_PASSWORD": "short"})
