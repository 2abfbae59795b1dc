"""Account and login flows: register, login (which replaces the previous login), refresh with
rotation and reuse detection, logout, account deletion, and revocation on every node."""

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
from pygw.broker.publish import ChannelPublisher
from pygw.config import Settings
from pygw.core.control import Revoke
from pygw.core.errors import Conflict, Forbidden, Unauthenticated
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
        publisher: ChannelPublisher,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.storage = storage
        self.broker = broker
        self.tokens = tokens
        self.passwords = passwords
        self.publisher = publisher
        self.admin_users = frozenset(settings.admin_users)
        self.api_keys = tuple(k.encode() for k in settings.api_keys)

    # -- start-up ------------------------------------------------------------------------------
    async def load_revocations(self) -> int:
        """Copy every still-valid revoked jti from storage into the native verifier."""
        revoked = await self.storage.revoked_tokens(int(time.time()))
        for jti, exp in revoked:
            self.tokens.revoke_local(jti, exp)
        return len(revoked)

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
        role = "admin" if username in self.admin_users else "user"
        hashed = await self.passwords.hash(password)
        created = await self.storage.create_user(
            UserRecord(username=username, email=email, password=hashed, role=role)
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
            await self.end_family(previous, "Session replaced by a new login")

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
        result = await self._issue_pair(username, role, session_id, family=uuid.uuid4().hex)
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
        self, username: str, role: str, session_id: str, family: str
    ) -> LoginResult:
        access = self.tokens.issue(
            username=username, role=role, session_id=session_id, family=family
        )
        refresh = self.tokens.issue(
            username=username, role=role, session_id=session_id, family=family, typ="refresh"
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
        user = await self.storage.get_user(claims.sub)
        if user is None:
            raise Unauthenticated("Invalid token")
        role = user.role or "user"
        access = self.tokens.issue(
            username=claims.sub, role=role, session_id=claims.sid, family=claims.fam
        )
        refresh = self.tokens.issue(
            username=claims.sub, role=role, session_id=claims.sid, family=claims.fam, typ="refresh"
        )
        outcome = await self.storage.rotate_refresh(
            claims.fam, claims.jti, refresh.jti, access.jti, access.exp, int(time.time())
        )
        self.metrics.auth[f"refresh_{outcome.status}"] += 1
        if outcome.status == "ok":
            return LoginResult(access, refresh, claims.sub, role, claims.sid)
        if outcome.status == "reused" and outcome.family is not None:
            log.warning("refresh token reuse by %s: family %s revoked", claims.sub, claims.fam)
            await self._kill_family_tokens(outcome.family, "Refresh token reuse detected")
            raise Unauthenticated("Token revoked")
        if outcome.status == "revoked":
            raise Unauthenticated("Token revoked")
        raise Unauthenticated("Invalid token")

    async def logout(self, claims: Claims) -> None:
        await self.revoke(claims.jti, claims.exp)
        family = await self.storage.revoke_family(claims.fam) if claims.fam else None
        if family is not None:
            await self._kill_family_tokens(family, "Logged out")
            await self.storage.clear_current_family(claims.sub, family.family)
        else:
            await self.disconnect(claims.sub, None, "Logged out")
        if claims.sid:
            await self.storage.delete_session(claims.sid)
        await self.storage.delete_connection(claims.sub)

    async def delete_account(self, claims: Claims) -> None:
        await self.revoke(claims.jti, claims.exp)
        if claims.fam:
            family = await self.storage.revoke_family(claims.fam)
            if family is not None:
                await self.revoke(family.access_jti, family.access_exp)
        await self.storage.delete_user(claims.sub)
        await self.disconnect(claims.sub, None, "Account deleted")

    # -- revocation --------------------------------------------------------------------------------
    async def end_family(self, family: RefreshFamily, reason: str) -> None:
        """End a login: its refresh chain, its latest access token, its sockets and session."""
        revoked = await self.storage.revoke_family(family.family)
        await self._kill_family_tokens(revoked or family, reason)
        await self.storage.delete_session(family.session_id)

    async def _kill_family_tokens(self, family: RefreshFamily, reason: str) -> None:
        await self.revoke(family.access_jti, family.access_exp)
        await self.disconnect(family.username, family.family, reason)

    async def revoke(self, jti: str | None, exp: int) -> None:
        """Revoke on this node at once, in storage for nodes that start later, and on every
        running node through the control bus."""
        if not jti or exp <= time.time():
            return
        self.tokens.revoke_local(jti, exp)
        await self.storage.revoke_token(jti, exp)
        await self.broker.publish_control(Revoke(jti, exp))

    async def disconnect(self, username: str, family: str | None, reason: str) -> None:
        """Close the user's sockets on every node with 1000 (those of one login if ``family``)."""
        await self.publisher.disconnect(username, reason, family=family)


def ensure_owner_or_admin(claims: Claims, owner: str, message: str) -> None:
    if claims.sub != owner and claims.role != "admin":
        raise Forbidden(message)
