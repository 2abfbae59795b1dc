"""Account and login flows: register, login (which replaces the previous login), refresh with
rotation and reuse detection, logout, password change, account deletion, role changes, and
revocation on every node.

Revocation has two levels (docs/SECURITY.md):

- a user's *token generation floor* (:meth:`AuthService.revoke_user`): every access token of the
  user issued before it is refused by every node at once, and the sockets opened with them close.
  Logout, password change, account deletion, a role change, a new login replacing the previous
  one and refresh-token reuse raise it. Tokens carry the generation read from storage when they
  are issued, so no clocks are compared, and a name deleted and registered again starts above
  every token of the old account;
- refresh tokens are governed by their family in storage (rotation, reuse detection); logout,
  password change and deletion revoke every family of the user.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pygw._native import Claims, ExpiredToken, InvalidToken, RevokedToken
from pygw.auth.passwords import PasswordHasher
from pygw.auth.tokens import IssuedToken, TokenService
from pygw.broker.base import Broker
from pygw.config import Settings
from pygw.core.codes import CLOSE_NORMAL, CLOSE_POLICY
from pygw.core.control import Revoke, RevokeUser
from pygw.core.errors import BadRequest, Conflict, Forbidden, Unauthenticated
from pygw.core.timeutil import now_iso
from pygw.metrics import Metrics
from pygw.store.base import ConnectionRecord, RefreshFamily, SessionRecord, Storage, UserRecord

log = logging.getLogger("pygw.auth")


def new_session_data() -> dict[str, Any]:
    return {"conversation": [], "api_key": None}


@dataclass(slots=True)
class LoginResult:
    access: IssuedToken
    refresh: IssuedToken
    username: str
    role: str
    session_id: str


class AuthService:
    """Everything about who the caller is. Also the HTTP :class:`Authenticator`."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        broker: Broker,
        tokens: TokenService,
        passwords: PasswordHasher,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.storage = storage
        self.broker = broker
        self.tokens = tokens
        self.passwords = passwords
        self.admin_users = frozenset(settings.admin_users)
        self.api_keys = tuple(k.encode() for k in settings.api_keys)

    # -- start-up ------------------------------------------------------------------------------
    async def start(self) -> int:
        """At node start: the dummy hash for unknown usernames, the bootstrap admins, and the
        revocations; returns how many revocations were loaded."""
        await self.passwords.prepare()
        await self.bootstrap_admins()
        return await self.load_revocations()

    async def bootstrap_admins(self) -> None:
        """``PYGW_ADMIN_USERS`` names are reserved for the operator: registration refuses them.
        With ``PYGW_ADMIN_PASSWORD`` the missing ones are created now with role admin (the
        operator's act); without it they are only reported, to be made with
        ``pygw users create <name> --role admin``."""
        password = self.settings.admin_password
        for name in sorted(self.admin_users):
            if await self.storage.get_user(name) is not None:
                continue
            if not password:
                log.warning(
                    "PYGW_ADMIN_USERS lists %r, which does not exist (registration refuses the"
                    " name): create it with `pygw users create %s --role admin`",
                    name,
                    name,
                )
            elif await self.create_user(name, f"{name}@localhost", password, "admin"):
                log.info("created admin account %r (PYGW_ADMIN_PASSWORD)", name)

    async def load_revocations(self) -> int:
        """Copy every still-valid revoked jti and user floor from storage into the native
        verifier (at start, and after the broker lost and regained the other nodes)."""
        now = int(time.time())
        revoked = await self.storage.revoked_tokens(now)
        for jti, exp in revoked:
            self.tokens.revoke_local(jti, exp)
        floors = await self.storage.token_floors(now)
        for floor in floors:
            self.tokens.revoke_user_local(floor.user, floor.gen, floor.until)
        return len(revoked) + len(floors)

    # -- authentication (sync: runs on every request) --------------------------------------------
    def verify_access(self, token: str) -> Claims:
        """Verify an access token; raises Unauthenticated with the contract's messages."""
        try:
            return self.tokens.verify(token)
        except ExpiredToken:
            self.metrics.auth["token_expired"] += 1
            raise Unauthenticated("Token expired") from None
        except RevokedToken:
            self.metrics.auth["token_revoked"] += 1
            raise Unauthenticated("Token revoked") from None
        except InvalidToken:
            self.metrics.auth["token_invalid"] += 1
            raise Unauthenticated("Invalid token", detail="Token verification failed") from None

    def api_key_valid(self, key: str) -> bool:
        raw = key.encode()
        # Compare against every key so timing does not reveal which prefix matched.
        return any([hmac.compare_digest(raw, k) for k in self.api_keys])

    # -- accounts --------------------------------------------------------------------------------
    async def register(self, username: str, email: str, password: str) -> None:
        """A new account, always with role user. The name is checked before the (costly)
        hash, which runs in the passwords' bounded lane so logins keep their share."""
        if username in self.admin_users:
            raise BadRequest("Username is reserved")
        if await self.storage.get_user(username) is not None:
            raise Conflict("Username already exists")
        hashed = await self.passwords.hash_bounded(password)
        created = await self.storage.create_user(
            UserRecord(username=username, email=email, password=hashed, role="user")
        )
        if not created:
            raise Conflict("Username already exists")

    async def create_user(self, username: str, email: str, password: str, role: str) -> bool:
        """For the CLI: create (or fail if present) a user with an explicit role."""
        hashed = await self.passwords.hash(password)
        return await self.storage.create_user(
            UserRecord(username=username, email=email, password=hashed, role=role)
        )

    async def login(self, username: str, password: str) -> LoginResult:
        user = await self.storage.get_user(username)
        if user is None:
            await self.passwords.verify_unknown(password)  # the same work as a wrong password
            self.metrics.auth["login_failure"] += 1
            raise Unauthenticated("Invalid username or password")
        ok, rehashed = await self.passwords.verify(user.password, password)
        if not ok:
            self.metrics.auth["login_failure"] += 1
            raise Unauthenticated("Invalid username or password")
        self.metrics.auth["login_success"] += 1
        role = user.role or "user"
        fields: dict[str, str] = {"last_login": now_iso()}
        if username in self.admin_users and role != "admin":
            role = "admin"
            fields["role"] = role
        if rehashed is not None:
            fields["password"] = rehashed
        # A new login replaces the previous one: its tokens die, its sockets close.
        previous = await self.storage.current_family(username)
        if previous is not None:
            await self.end_family(previous)
            gen = await self.revoke_user(username, "Session replaced by a new login")
        else:
            gen = await self.storage.token_generation(username, int(time.time()))

        session_id = str(uuid.uuid4())
        now = now_iso()
        await self.storage.create_session(
            SessionRecord(
                session_id=session_id,
                user_id=username,
                chat_id=None,
                data=new_session_data(),
                created_at=now,
                last_access=now,
            )
        )
        result = await self._issue_pair(username, role, session_id, uuid.uuid4().hex, gen)
        await asyncio.gather(
            self.storage.update_user(username, fields),
            self.storage.set_connection(
                username,
                ConnectionRecord(
                    session_id=session_id,
                    gateway_id=self.settings.gateway_id,
                    ws_connected=False,
                    last_seen=time.time(),
                ),
            ),
        )
        return result

    async def _issue_pair(
        self, username: str, role: str, session_id: str, family: str, gen: int
    ) -> LoginResult:
        access = self.tokens.issue(
            username=username, role=role, session_id=session_id, family=family, gen=gen
        )
        refresh = self.tokens.issue(
            username=username,
            role=role,
            session_id=session_id,
            family=family,
            typ="refresh",
            gen=gen,
        )
        await self.storage.create_family(
            RefreshFamily(
                family=family,
                username=username,
                session_id=session_id,
                refresh_jti=refresh.jti,
                access_jti=access.jti,
                access_exp=access.exp,
                expires_at=refresh.exp,
            )
        )
        return LoginResult(access, refresh, username, role, session_id)

    async def refresh(self, refresh_token: str) -> LoginResult:
        try:
            claims = self.tokens.verify(refresh_token, typ="refresh")
        except ExpiredToken:
            raise Unauthenticated("Token expired") from None
        except (InvalidToken, RevokedToken):
            raise Unauthenticated("Invalid token") from None
        if claims.fam is None or claims.jti is None or claims.sid is None:
            raise Unauthenticated("Invalid token")
        user, gen = await asyncio.gather(
            self.storage.get_user(claims.sub),
            self.storage.token_generation(claims.sub, int(time.time())),
        )
        if user is None:
            raise Unauthenticated("Invalid token")
        role = user.role or "user"
        access = self.tokens.issue(
            username=claims.sub, role=role, session_id=claims.sid, family=claims.fam, gen=gen
        )
        refresh = self.tokens.issue(
            username=claims.sub,
            role=role,
            session_id=claims.sid,
            family=claims.fam,
            typ="refresh",
            gen=gen,
        )
        outcome = await self.storage.rotate_refresh(
            claims.fam, claims.jti, refresh.jti, access.jti, access.exp, int(time.time())
        )
        self.metrics.auth[f"refresh_{outcome.status}"] += 1
        if outcome.status == "ok":
            return LoginResult(access, refresh, claims.sub, role, claims.sid)
        if outcome.status == "reused" and outcome.family is not None:
            log.warning("refresh token reuse by %s: family %s revoked", claims.sub, claims.fam)
            await self.revoke(outcome.family.access_jti, outcome.family.access_exp)
            await self.revoke_user(claims.sub, "Refresh token reuse detected")
            raise Unauthenticated("Token revoked")
        if outcome.status == "revoked":
            raise Unauthenticated("Token revoked")
        raise Unauthenticated("Invalid token")

    async def logout(self, claims: Claims) -> None:
        """Every token of the user issued so far dies (access tokens by the floor, refresh
        tokens with their families), on every node; the user's sockets close (1000)."""
        await self.revoke(claims.jti, claims.exp)
        await self._end_user_families(claims.sub)
        await self.revoke_user(claims.sub, "Logged out")
        if claims.fam:
            await self.storage.clear_current_family(claims.sub, claims.fam)
        if claims.sid:
            await self.storage.delete_session(claims.sid)
        await self.storage.delete_connection(claims.sub)

    async def change_password(self, claims: Claims, current: str, new: str) -> None:
        """Check ``current``, store ``new``; then every login of the user ends like a logout
        (the client logs in again with the new password)."""
        user = await self.storage.get_user(claims.sub)
        if user is None:
            raise Unauthenticated("Invalid token")
        ok, _ = await self.passwords.verify(user.password, current)
        if not ok:
            self.metrics.auth["login_failure"] += 1
            raise BadRequest("Current password is incorrect")
        hashed = await self.passwords.hash(new)
        if not await self.storage.update_user(claims.sub, {"password": hashed}):
            raise Unauthenticated("Invalid token")
        await self._end_user_families(claims.sub)
        await self.revoke_user(claims.sub, "Password changed")
        await self.storage.delete_connection(claims.sub)

    async def delete_account(self, claims: Claims) -> None:
        await self.revoke(claims.jti, claims.exp)
        # The floor outlives the account: a new account of the same name starts above it.
        await self.revoke_user(claims.sub, "Account deleted")
        await self.storage.delete_user(claims.sub)

    async def set_role(self, username: str, role: str) -> bool:
        """Store the role; the user's tokens (which carry the old one) stop working at once
        and their sockets close with 1008 "Role changed" on every node: the client refreshes
        (the refresh reads the new role) and reconnects. False if there is no such user.
        Setting the role a user already has changes nothing (their tokens stay valid)."""
        user = await self.storage.get_user(username)
        if user is None:
            return False
        if (user.role or "user") == role:
            return True
        if not await self.storage.update_user(username, {"role": role}):
            return False
        await self.revoke_user(username, "Role changed", CLOSE_POLICY)
        return True

    # -- revocation --------------------------------------------------------------------------------
    async def end_family(self, family: RefreshFamily) -> None:
        """End a login's refresh chain, its latest access token and its session (its sockets
        close with the floor raise that goes with this)."""
        revoked = await self.storage.revoke_family(family.family)
        await self.revoke((revoked or family).access_jti, (revoked or family).access_exp)
        await self.storage.delete_session(family.session_id)

    async def _end_user_families(self, username: str) -> None:
        for family in await self.storage.revoke_user_families(username):
            await self.revoke(family.access_jti, family.access_exp)

    async def revoke_user(self, username: str, reason: str, code: int = CLOSE_NORMAL) -> int:
        """Revoke every access token of ``username`` issued so far, here at once and on every
        node through the control bus, and close the sockets opened with them (``code``,
        ``reason``); returns the generation tokens issued from now on carry."""
        now_us = time.time_ns() // 1000
        # Tokens issued before now expire by now + their lifetime: then the floor may go.
        until = now_us // 1_000_000 + self.tokens.access_ttl + 1
        gen = await self.storage.raise_token_floor(username, now_us, until)
        self.tokens.revoke_user_local(username, gen, until)
        await self.broker.publish_control(RevokeUser(username, gen, until, code, reason))
        return gen

    async def revoke(self, jti: str | None, exp: int) -> None:
        """Revoke on this node at once, in storage for nodes that start later, and on every
        running node through the control bus."""
        if not jti or exp <= time.time():
            return
        self.tokens.revoke_local(jti, exp)
        await self.storage.revoke_token(jti, exp)
        await self.broker.publish_control(Revoke(jti, exp))


def ensure_owner_or_admin(claims: Claims, owner: str, message: str) -> None:
    if claims.sub != owner and claims.role != "admin":
        raise Forbidden(message)
