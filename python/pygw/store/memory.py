"""In-process backend: the embedded default when no ``REDIS_URL`` is set (one node only)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygw.core.errors import NotOwner
from pygw.core.timeutil import iso_from_unix
from pygw.store._codec import clone_json
from pygw.store._limits import SessionLimits
from pygw.store._pending import copy_session
from pygw.store.base import (
    REVOKED_KEPT_AFTER_EXPIRY,
    ConnectionRecord,
    RefreshFamily,
    RotateOutcome,
    RouteRecord,
    SessionRecord,
    Storage,
    StorageStats,
    TokenFloor,
    UserRecord,
)

log = logging.getLogger("pygw.store.memory")


@dataclass(slots=True)
class _Stored:
    session: SessionRecord
    expires_at: float
    size: int = 0
    """An upper bound of the session's JSON size, 0 if unknown (see ``SessionLimits``)."""


class MemoryStorage(Storage):
    """Dicts in this process. Writes apply at once; records are copied in and out.

    Sessions expire ``session_ttl`` seconds after their last access (per ``clock``); expired
    ones are invisible at once, dropped when touched, and swept every ``sweep_interval``
    seconds by a task started in :meth:`start`. ``session_max_bytes`` and
    ``session_update_max_bytes`` bound session writes (see :mod:`pygw.store._limits`; 0 = off).
    """

    name = "memory"

    def __init__(
        self,
        session_ttl: float,
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval: float | None = None,
        session_max_bytes: int = 0,
        session_update_max_bytes: int = 0,
    ) -> None:
        self._ttl = session_ttl
        self._limits = SessionLimits(session_max_bytes, session_update_max_bytes)
        self._clock = clock
        self._sweep_interval = (
            sweep_interval if sweep_interval is not None else min(max(session_ttl, 0.1), 60.0)
        )
        self._users: dict[str, UserRecord] = {}
        self._sessions: dict[str, _Stored] = {}
        self._user_sessions: dict[str, dict[str, None]] = {}  # insertion order = oldest first
        self._connections: dict[str, ConnectionRecord] = {}
        self._revoked: dict[str, int] = {}
        self._revoked_by_exp: list[tuple[int, str]] = []
        """A heap of (exp, jti) over ``_revoked`` (and older exps of a jti revoked again)."""
        self._families: dict[str, RefreshFamily] = {}
        self._user_families: dict[str, set[str]] = {}
        self._current: dict[str, str] = {}
        self._routes: dict[str, RouteRecord] = {}
        self._floors: dict[str, tuple[int, int]] = {}
        """User -> (token generation floor, until)."""
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="pygw-memory-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def ping(self) -> None:
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                self._sweep()
                await self.prune_revocations(int(self._clock()) - REVOKED_KEPT_AFTER_EXPIRY)
            except Exception:
                log.exception("session sweep failed")

    # -- users ----------------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> bool:
        if user.username in self._users:
            return False
        self._users[user.username] = dataclasses.replace(user)
        return True

    async def get_user(self, username: str) -> UserRecord | None:
        user = self._users.get(username)
        return None if user is None else dataclasses.replace(user)

    async def update_user(self, username: str, fields: dict[str, str]) -> bool:
        user = self._users.get(username)
        if user is None:
            return False
        known = {f.name for f in dataclasses.fields(UserRecord)} - {"username"}
        for name, value in fields.items():
            if name in known:
                setattr(user, name, value)
        return True

    async def delete_user(self, username: str) -> bool:
        for sid in self._user_sessions.pop(username, {}):
            self._sessions.pop(sid, None)
        self._connections.pop(username, None)
        for family in self._user_families.pop(username, set()):
            self._families.pop(family, None)
        self._current.pop(username, None)
        return self._users.pop(username, None) is not None

    async def list_users(self) -> list[UserRecord]:
        return [dataclasses.replace(u) for _, u in sorted(self._users.items())]

    async def stats(self) -> StorageStats:
        now = self._clock()
        live = sum(1 for s in self._sessions.values() if s.expires_at > now)
        return StorageStats(
            total_users=len(self._users),
            active_sessions=live,
            extra={"revoked_tokens": len(self._revoked)},
        )

    # -- sessions -------------------------------------------------------------------------------
    def _live(self, session_id: str) -> _Stored | None:
        stored = self._sessions.get(session_id)
        if stored is not None and stored.expires_at <= self._clock():
            self._drop(session_id)
            return None
        return stored

    def _drop(self, session_id: str) -> None:
        stored = self._sessions.pop(session_id, None)
        if stored is not None:
            index = self._user_sessions.get(stored.session.user_id)
            if index is not None:
                index.pop(session_id, None)
                if not index:
                    del self._user_sessions[stored.session.user_id]

    def _sweep(self) -> int:
        now = self._clock()
        expired = [sid for sid, s in self._sessions.items() if s.expires_at <= now]
        for sid in expired:
            self._drop(sid)
        return len(expired)

    async def create_session(self, session: SessionRecord) -> None:
        copy = copy_session(session)  # UnstorableValue before anything changes
        self._drop(session.session_id)
        self._sessions[session.session_id] = _Stored(copy, self._clock() + self._ttl)
        self._user_sessions.setdefault(session.user_id, {})[session.session_id] = None

    async def get_session(self, session_id: str) -> SessionRecord | None:
        stored = self._live(session_id)
        if stored is None:
            return None
        stored.expires_at = self._clock() + self._ttl
        return copy_session(stored.session)

    async def update_session(
        self,
        session_id: str,
        *,
        chat_id: str | None = None,
        data: dict[str, Any] | None = None,
        owner: str | None = None,
        returning: bool = True,
    ) -> SessionRecord | None:
        stored = self._live(session_id)
        if stored is None:
            return None
        if owner is not None and stored.session.user_id != owner:
            raise NotOwner(session_id)
        now = self._clock()
        session = stored.session
        patch = clone_json(data) if data else None  # UnstorableValue before anything changes
        stored.size = self._limits.admit(session, chat_id, patch or {}, stored.size)
        if patch:
            session.data.update(patch)
        if chat_id is not None:
            session.chat_id = chat_id
        session.last_access = iso_from_unix(now)
        stored.expires_at = now + self._ttl
        return copy_session(session) if returning else session

    async def delete_session(self, session_id: str) -> None:
        self._drop(session_id)

    async def list_user_sessions(self, username: str) -> list[SessionRecord]:
        now = self._clock()
        return [
            copy_session(stored.session)
            for sid in self._user_sessions.get(username, {})
            if (stored := self._sessions[sid]).expires_at > now
        ]

    async def cleanup_sessions(self) -> int:
        return self._sweep()

    async def flush(self) -> None:
        """Nothing to do: memory writes apply at once."""

    # -- connection records ---------------------------------------------------------------------
    async def set_connection(self, username: str, record: ConnectionRecord) -> None:
        self._connections[username] = _copy_connection(record)

    async def get_connection(self, username: str) -> ConnectionRecord | None:
        record = self._connections.get(username)
        return None if record is None else _copy_connection(record)

    async def delete_connection(self, username: str) -> None:
        self._connections.pop(username, None)

    # -- token state ----------------------------------------------------------------------------
    async def revoke_token(self, jti: str, exp: int) -> None:
        self._prune_revoked(int(self._clock()) - REVOKED_KEPT_AFTER_EXPIRY)
        exp = max(exp, self._revoked.get(jti, exp))
        self._revoked[jti] = exp
        heapq.heappush(self._revoked_by_exp, (exp, jti))

    def _prune_revoked(self, now: int) -> int:
        """Drop entries with ``exp < now``, oldest first (O(log n) each)."""
        heap, revoked = self._revoked_by_exp, self._revoked
        dropped = 0
        while heap and heap[0][0] < now:
            exp, jti = heapq.heappop(heap)
            if revoked.get(jti) == exp:
                del revoked[jti]
                dropped += 1
        return dropped

    async def revoked_tokens(self, now: int) -> list[tuple[str, int]]:
        """Entries with ``exp >= now``; older ones are pruned."""
        self._prune_revoked(now)
        return list(self._revoked.items())

    async def prune_revocations(self, now: int) -> int:
        for user in [u for u, (_, until) in self._floors.items() if until < now]:
            del self._floors[user]
        return self._prune_revoked(now)

    def _family(self, family: str, now: float) -> RefreshFamily | None:
        record = self._families.get(family)
        if record is not None and record.expires_at <= now:
            del self._families[family]
            self._user_families.get(record.username, set()).discard(family)
            return None
        return record

    async def create_family(self, family: RefreshFamily) -> None:
        self._families[family.family] = dataclasses.replace(family)
        self._user_families.setdefault(family.username, set()).add(family.family)
        self._current[family.username] = family.family

    async def rotate_refresh(
        self,
        family: str,
        presented_jti: str,
        new_refresh_jti: str,
        new_access_jti: str,
        new_access_exp: int,
        now: int,
    ) -> RotateOutcome:
        record = self._family(family, now)
        if record is None:
            return RotateOutcome("unknown")
        before = dataclasses.replace(record)
        if record.revoked:
            return RotateOutcome("revoked", before)
        if record.refresh_jti != presented_jti:
            record.revoked = True
            return RotateOutcome("reused", before)
        record.refresh_jti = new_refresh_jti
        record.access_jti = new_access_jti
        record.access_exp = new_access_exp
        return RotateOutcome("ok", before)

    async def revoke_family(self, family: str) -> RefreshFamily | None:
        record = self._family(family, self._clock())
        if record is None:
            return None
        before = dataclasses.replace(record)
        record.revoked = True
        return before

    async def current_family(self, username: str) -> RefreshFamily | None:
        """The current family unless it expired or was revoked."""
        family = self._current.get(username)
        record = None if family is None else self._family(family, self._clock())
        if record is None or record.revoked:
            return None
        return dataclasses.replace(record)

    async def clear_current_family(self, username: str, family: str) -> None:
        if self._current.get(username) == family:
            del self._current[username]

    async def revoke_user_families(self, username: str) -> list[RefreshFamily]:
        now = self._clock()
        revoked = []
        for family in list(self._user_families.get(username, ())):
            record = self._family(family, now)
            if record is not None and not record.revoked:
                revoked.append(dataclasses.replace(record))
                record.revoked = True
        return revoked

    # -- per-user token generations -------------------------------------------------------------
    def _floor(self, username: str, now: int) -> tuple[int, int]:
        floor = self._floors.get(username)
        if floor is None or floor[1] < now:
            return 0, 0
        return floor

    async def token_generation(self, username: str, now: int) -> int:
        return self._floor(username, now)[0]

    async def raise_token_floor(self, username: str, now_us: int, until: int) -> int:
        gen, old_until = self._floor(username, now_us // 1_000_000)
        floor = (max(gen + 1, now_us), max(old_until, until))
        self._floors[username] = floor
        return floor[0]

    async def token_floors(self, now: int) -> list[TokenFloor]:
        for user in [u for u, (_, until) in self._floors.items() if until < now]:
            del self._floors[user]
        return [TokenFloor(u, gen, until) for u, (gen, until) in self._floors.items()]

    # -- dynamic routes -------------------------------------------------------------------------
    async def put_route(self, route: RouteRecord) -> None:
        self._routes[route.name] = dataclasses.replace(route, headers=dict(route.headers))

    async def delete_route(self, name: str) -> bool:
        return self._routes.pop(name, None) is not None

    async def list_routes(self) -> list[RouteRecord]:
        return [
            dataclasses.replace(r, headers=dict(r.headers)) for _, r in sorted(self._routes.items())
        ]


def _copy_connection(r: ConnectionRecord) -> ConnectionRecord:
    """A copy (callers may change theirs), built directly: ``dataclasses.replace`` inspects the
    fields on every call, a fifth of a memory-backed connect's storage cost."""
    return ConnectionRecord(r.session_id, r.gateway_id, r.ws_connected, r.last_seen, r.connected_at)
