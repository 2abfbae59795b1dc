"""Redis backend, shared by every node, compatible with the original gateway's keys (SPEC §4).

Key layout (``{x}`` is a value, not a hash tag):

=================================  ======  ==============================================
``users:{username}``               hash    password, email, role, last_login (original)
``sessions:{session_id}``          string  JSON user_id, chat_id, data, created_at, last_access
                                           with a PX inactivity TTL (original)
``connections:{username}``         hash    session_id, gateway_id, ws_connected, last_seen,
                                           connected_at (original)
``pygw:users``                     set     usernames, for counting/listing without KEYS
``pygw:users:indexed``             string  set once ``pygw:users`` was back-filled by SCAN
``pygw:user_sessions:{username}``  zset    session ids scored by creation time
``pygw:session_expiry``            zset    session ids scored by expiry time (stats, cleanup)
``pygw:session_owner``             hash    session id -> username (cleanup of expired ids)
``pygw:revoked_tokens``            zset    revoked jti scored by its exp
``pygw:refresh_family:{family}``   hash    a refresh family, EXPIREAT its expires_at
``pygw:user_families:{username}``  set     the user's family ids (deleted with the user)
``pygw:current_family:{username}`` string  the family of the user's current login
``pygw:routes``                    hash    dynamic route name -> JSON (base_url, path, ...)
``pygw:token_floors``              hash    username -> ``<gen>:<until>`` token generation
                                           floors (see RedisStorage.raise_token_floor)
=================================  ======  ==============================================

Session updates are write-behind: see :meth:`RedisStorage.update_session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis

from pygw.core.errors import BackendUnavailable, NotOwner
from pygw.core.timeutil import now_iso
from pygw.redis_client import UNREACHABLE, LuaScript, connect, unavailable_on_error
from pygw.store import _redis_scripts as lua
from pygw.store._codec import (
    clone_json,
    connection_from_hash,
    connection_to_hash,
    family_from_hash,
    family_to_hash,
    pairs_to_dict,
    route_from_json,
    route_to_json,
    session_from_json,
    session_to_json,
    unix_from_iso,
    user_from_hash,
    user_to_hash,
)
from pygw.store._pending import PendingSession, SessionDelta, copy_session
from pygw.store.base import (
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

log = logging.getLogger("pygw.store.redis")

USERS = "users:"
SESSIONS = "sessions:"
CONNECTIONS = "connections:"
_CONNECTIONS_PER_SCRIPT = 1000
"""Connection records replaced by one script call (bounds the time Redis is busy with it)."""
USER_INDEX = "pygw:users"
USER_INDEX_READY = "pygw:users:indexed"
USER_SESSIONS = "pygw:user_sessions:"
SESSION_EXPIRY = "pygw:session_expiry"
SESSION_OWNER = "pygw:session_owner"
REVOKED = "pygw:revoked_tokens"
FAMILY = "pygw:refresh_family:"
USER_FAMILIES = "pygw:user_families:"
CURRENT_FAMILY = "pygw:current_family:"
ROUTES = "pygw:routes"

_CLEANUP_BATCH = 500
_INDEX_RETRY_S = 5.0


class RedisStorage(Storage):
    """Storage in Redis through one ``redis.asyncio`` connection pool (hiredis parser).

    The pool reconnects by itself: a command failing on a dead pooled connection is retried
    once on a new one, and while Redis is down every call fails fast with BackendUnavailable.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        session_ttl: float,
        batch_interval_ms: int = 100,
        socket_timeout: float = 2.0,
        client_name: str | None = None,
        cleanup_interval: float = 60.0,
        close_flush_timeout: float = 2.0,
    ) -> None:
        self._ttl = session_ttl
        self._ttl_ms = max(1, round(session_ttl * 1000))
        self._interval = max(batch_interval_ms, 1) / 1000
        self._cleanup_interval = cleanup_interval
        self._close_flush_timeout = close_flush_timeout
        self._redis: Redis = connect(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            client_name=client_name,
        )
        self._pending: dict[str, PendingSession] = {}
        self._pending_conns: dict[str, ConnectionRecord] = {}
        """Connection records not yet written (the latest per user)."""
        self._inflight_conns: dict[str, ConnectionRecord] = {}
        """Connection records a flush is writing right now."""
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._users_indexed = False
        self._closed = False

    @property
    def pending_writes(self) -> int:
        """How many sessions have changes not yet written to Redis."""
        return len(self._pending)

    def _has_pending(self) -> bool:
        return bool(self._pending or self._pending_conns)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Back-fill the user index if needed and start the write-behind flusher.

        Does not fail when Redis is down: the flusher keeps retrying and calls raise
        BackendUnavailable until it returns.
        """
        if self._task is not None:
            return
        try:
            await self._load_scripts()
            await self._ensure_user_index()
        except BackendUnavailable as exc:
            log.warning("starting without Redis (%s); will retry in the background", exc)
        self._task = asyncio.create_task(self._background(), name="pygw-redis-write-behind")

    async def close(self) -> None:
        """Stop the flusher, flush every pending write (retrying briefly), close the pool."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deadline = time.monotonic() + self._close_flush_timeout
        while self._has_pending():
            try:
                await self._flush_pending()
            except BackendUnavailable:
                if time.monotonic() < deadline:
                    await asyncio.sleep(min(0.1, self._interval))
                    continue
            if self._has_pending() and time.monotonic() >= deadline:
                log.error(
                    "closing: %d pending session update(s) and %d connection record(s) lost",
                    len(self._pending),
                    len(self._pending_conns),
                )
                break
        await self._redis.aclose()

    async def ping(self) -> None:
        with unavailable_on_error("ping"):
            await self._redis.ping()

    async def _background(self) -> None:
        next_cleanup = time.monotonic() + self._cleanup_interval
        next_index = time.monotonic() + _INDEX_RETRY_S
        while True:
            await asyncio.sleep(self._interval)
            try:
                if self._has_pending():
                    with contextlib.suppress(BackendUnavailable):  # logged once per outage
                        await self._flush_pending()
                elif self._outage:  # nothing to flush: notice the end of the outage anyway
                    with contextlib.suppress(BackendUnavailable):
                        await self.ping()
                        self._end_outage()
                now = time.monotonic()
                if not self._users_indexed and now >= next_index:
                    next_index = now + _INDEX_RETRY_S
                    with contextlib.suppress(BackendUnavailable):
                        await self._ensure_user_index()
                if now >= next_cleanup and not self._outage:
                    next_cleanup = now + self._cleanup_interval
                    with contextlib.suppress(BackendUnavailable):
                        await self.cleanup_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("write-behind loop error")

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD every script up front (EVALSHA still falls back if Redis forgets them)."""
        with unavailable_on_error("script load"):
            pipe = self._redis.pipeline(transaction=False)
            for script in lua.ALL_SCRIPTS:
                pipe.script_load(script.source)
            await pipe.execute()

    async def _ensure_user_index(self) -> None:
        """Add users written by the original gateway to ``pygw:users`` (once per deployment)."""
        if self._users_indexed:
            return
        with unavailable_on_error("user index back-fill"):
            if not await self._redis.exists(USER_INDEX_READY):
                names: list[str] = []
                async for key in self._redis.scan_iter(match=USERS + "*", count=1000, _type="hash"):
                    names.append(key[len(USERS) :])
                    if len(names) >= 1000:
                        await self._redis.sadd(USER_INDEX, *names)
                        names.clear()
                if names:
                    await self._redis.sadd(USER_INDEX, *names)
                await self._redis.set(USER_INDEX_READY, "1")
        self._users_indexed = True

    # -- users ----------------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> bool:
        args: list[str] = [user.username]
        for field, value in user_to_hash(user).items():
            args += [field, value]
        with unavailable_on_error("create_user"):
            created = await lua.CREATE_USER.run(
                self._redis, [USERS + user.username, USER_INDEX], args
            )
        return bool(created)

    async def get_user(self, username: str) -> UserRecord | None:
        with unavailable_on_error("get_user"):
            fields: dict[str, str] = await self._redis.hgetall(USERS + username)  # type: ignore[assignment]
        return user_from_hash(username, fields) if fields else None

    async def update_user(self, username: str, fields: dict[str, str]) -> bool:
        args: list[str] = []
        for field, value in fields.items():
            args += [field, str(value)]
        with unavailable_on_error("update_user"):
            updated = await lua.UPDATE_USER.run(self._redis, [USERS + username], args)
        return bool(updated)

    async def delete_user(self, username: str) -> bool:
        for sid in [s for s, p in self._pending.items() if p.view.user_id == username]:
            del self._pending[sid]
        self._pending_conns.pop(username, None)
        keys = [
            USERS + username,
            USER_SESSIONS + username,
            SESSION_EXPIRY,
            SESSION_OWNER,
            CONNECTIONS + username,
            USER_FAMILIES + username,
            CURRENT_FAMILY + username,
            USER_INDEX,
        ]
        # Under the flush lock: an in-flight write of this user's connection record lands first.
        async with self._flush_lock:
            with unavailable_on_error("delete_user"):
                existed, sids = await lua.DELETE_USER.run(
                    self._redis, keys, [username, SESSIONS, FAMILY]
                )
        for sid in sids:
            self._pending.pop(sid, None)
        return bool(existed)

    async def list_users(self) -> list[UserRecord]:
        with unavailable_on_error("list_users"):
            members: set[str] = await self._redis.smembers(USER_INDEX)  # type: ignore[assignment]
            names = sorted(members)
            users: list[UserRecord] = []
            gone: list[str] = []
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                pipe = self._redis.pipeline(transaction=False)
                for name in chunk:
                    pipe.hgetall(USERS + name)
                for name, fields in zip(chunk, await pipe.execute(), strict=True):
                    if fields:
                        users.append(user_from_hash(name, fields))
                    else:
                        gone.append(name)
            if gone:  # deleted behind our back (e.g. by the original gateway)
                await self._redis.srem(USER_INDEX, *gone)
        return users

    async def stats(self) -> StorageStats:
        with unavailable_on_error("stats"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.scard(USER_INDEX)
            pipe.zcount(SESSION_EXPIRY, f"({time.time()}", "+inf")
            pipe.zcard(REVOKED)
            users, sessions, revoked = await pipe.execute()
        return StorageStats(
            total_users=int(users),
            active_sessions=int(sessions),
            extra={"revoked_tokens": int(revoked), "pending_session_writes": len(self._pending)},
        )

    async def backend_info(self) -> dict[str, Any] | None:
        """Redis ``INFO`` (default sections) as a dict."""
        with unavailable_on_error("backend_info"):
            info: dict[str, Any] = await self._redis.info()
        return info

    # -- sessions -------------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        sid = session.session_id
        doc = session_to_json(session)  # UnstorableValue before anything changes
        self._pending.pop(sid, None)
        now = time.time()
        with unavailable_on_error("create_session"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(SESSIONS + sid, doc, px=self._ttl_ms)
            pipe.zadd(
                USER_SESSIONS + session.user_id, {sid: unix_from_iso(session.created_at, now)}
            )
            pipe.zadd(SESSION_EXPIRY, {sid: now + self._ttl})
            pipe.hset(SESSION_OWNER, sid, session.user_id)
            await pipe.execute()

    async def _load_session(self, session_id: str, op: str) -> SessionRecord | None:
        """GETEX the stored session (refreshing its TTL and expiry score); no pending applied."""
        now = time.time()
        with unavailable_on_error(op):
            raw = await lua.GET_SESSION.run(
                self._redis,
                [SESSIONS + session_id, SESSION_EXPIRY, SESSION_OWNER],
                [self._ttl_ms, now + self._ttl, session_id, USER_SESSIONS, now],
            )
        return None if raw is None else session_from_json(session_id, raw)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        stored = await self._load_session(session_id, "get_session")
        pending = self._pending.get(session_id)
        if stored is None:
            if pending is not None:  # deleted by another node: our changes have nowhere to go
                del self._pending[session_id]
            return None
        if pending is not None:
            pending.overlay(stored)
            pending.view = copy_session(stored)
        return stored

    async def update_session(
        self,
        session_id: str,
        *,
        chat_id: str | None = None,
        data: dict[str, Any] | None = None,
        owner: str | None = None,
        returning: bool = True,
    ) -> SessionRecord | None:
        """Write-behind update.

        The first update of a session with no pending entry loads it once (GETEX, which also
        refreshes its TTL); later ones only change the in-memory pending entry. The flusher
        sends every pending entry's coalesced delta in one pipeline of MERGE_SESSION scripts.
        """
        delta = SessionDelta(
            chat_id=chat_id, data=clone_json(data) if data else {}, last_access=now_iso()
        )
        entry = self._pending.get(session_id)
        if entry is None:
            stored = await self._load_session(session_id, "update_session")
            if stored is None:
                return None
            entry = self._pending.get(session_id)  # another update may have won the race
            if entry is None:
                entry = self._pending[session_id] = PendingSession(view=stored)
        if owner is not None and entry.view.user_id != owner:
            raise NotOwner(session_id)
        entry.delta.absorb(delta)
        delta.apply_to(entry.view)
        return copy_session(entry.view) if returning else entry.view

    async def delete_session(self, session_id: str) -> None:
        self._pending.pop(session_id, None)
        with unavailable_on_error("delete_session"):
            await lua.DELETE_SESSION.run(
                self._redis,
                [SESSIONS + session_id, SESSION_EXPIRY, SESSION_OWNER],
                [session_id, USER_SESSIONS],
            )

    async def list_user_sessions(self, username: str) -> list[SessionRecord]:
        with unavailable_on_error("list_user_sessions"):
            sids: list[str] = await self._redis.zrange(USER_SESSIONS + username, 0, -1)  # type: ignore[assignment]
            if not sids:
                return []
            raws = await self._redis.mget([SESSIONS + sid for sid in sids])
            sessions: list[SessionRecord] = []
            stale: list[str] = []
            for sid, raw in zip(sids, raws, strict=True):
                session = None if raw is None else session_from_json(sid, raw)
                if session is None or session.user_id != username:
                    stale.append(sid)
                    continue
                pending = self._pending.get(sid)
                if pending is not None:
                    pending.overlay(session)
                sessions.append(session)
            if stale:
                await self._redis.zrem(USER_SESSIONS + username, *stale)
        return sessions

    async def cleanup_sessions(self) -> int:
        dropped = 0
        with unavailable_on_error("cleanup_sessions"):
            while True:
                n, scanned = await lua.CLEANUP_SESSIONS.run(
                    self._redis,
                    [SESSION_EXPIRY, SESSION_OWNER],
                    [time.time(), _CLEANUP_BATCH, USER_SESSIONS, SESSIONS],
                )
                dropped += int(n)
                if int(scanned) < _CLEANUP_BATCH:
                    return dropped

    async def flush(self) -> None:
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        """Send every pending session delta and every pending connection record, each kind in
        one pipeline; keep them all if Redis is unreachable."""
        async with self._flush_lock:
            await self._flush_sessions()
            await self._flush_connections()

    async def _flush_sessions(self) -> None:
        """Under ``self._flush_lock``."""
        batch: list[tuple[str, PendingSession, SessionDelta]] = []
        for sid, entry in list(self._pending.items()):
            if entry.delta.is_empty():
                del self._pending[sid]
            else:
                batch.append((sid, entry, entry.begin_flush()))
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = await self._merge(batch)
        except BaseException as exc:
            for _, entry, _ in batch:
                entry.flush_failed()
            if isinstance(exc, UNREACHABLE):
                raise self._unreachable(len(batch), "session update(s)", exc) from exc
            raise
        self._end_outage()
        if self.on_flush is not None:
            self.on_flush(len(batch), time.perf_counter() - started)
        for (sid, entry, _), result in zip(batch, results, strict=True):
            entry.flush_done()
            if self._pending.get(sid) is not entry:
                continue  # deleted (or re-created) meanwhile
            if result == 1 and not entry.delta.is_empty():
                continue  # changed during the flush: next tick
            if isinstance(result, Exception):
                log.warning("dropping pending update of session %s: %s", sid, result)
            elif result == -1:
                log.warning("session %s is not a JSON object; update dropped", sid)
            del self._pending[sid]

    async def _flush_connections(self) -> None:
        if not self._pending_conns:
            return
        batch, self._pending_conns = self._pending_conns, {}
        self._inflight_conns = batch
        calls: list[tuple[list[str], list[Any]]] = []
        users = list(batch.items())
        for i in range(0, len(users), _CONNECTIONS_PER_SCRIPT):
            keys: list[str] = []
            args: list[Any] = []
            for username, record in users[i : i + _CONNECTIONS_PER_SCRIPT]:
                fields = connection_to_hash(record)
                keys.append(CONNECTIONS + username)
                args.append(len(fields))
                for kv in fields.items():
                    args += kv
            calls.append((keys, args))
        try:
            results = await lua.SET_CONNECTIONS.run_many(self._redis, calls)
            failed = next((r for r in results if isinstance(r, Exception)), None)
            if failed is not None:
                raise failed
        except BaseException as exc:
            for username, record in batch.items():  # a newer record that arrived meanwhile wins
                self._pending_conns.setdefault(username, record)
            if isinstance(exc, UNREACHABLE):
                raise self._unreachable(len(batch), "connection record(s)", exc) from exc
            raise
        finally:
            self._inflight_conns = {}
        self._end_outage()

    def _unreachable(self, count: int, what: str, exc: BaseException) -> BackendUnavailable:
        """A flush found Redis unreachable: log it once per outage; the error to raise."""
        if not self._outage:
            self._outage = True
            log.warning(
                "Redis unreachable, keeping %d pending %s and retrying every %.0f ms: %s",
                count,
                what,
                self._interval * 1000,
                exc,
            )
        return BackendUnavailable(f"Redis unavailable during flush: {exc}")

    def _end_outage(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("Redis reachable again; pending session updates are being written")

    async def _merge(self, batch: list[tuple[str, PendingSession, SessionDelta]]) -> list[Any]:
        """One MERGE_SESSION per session. Each value is encoded alone: one that cannot be
        (see :class:`~pygw.store.base.UnstorableValue`) is logged, counted in
        ``dropped_values`` and left out, and everything else is written."""
        now = time.time()
        calls = []
        for sid, _, delta in batch:
            args, dropped = delta.script_args()
            for field, reason in dropped:
                self.dropped_values += 1
                log.error("session %s: dropping %s from the write-behind: %s", sid, field, reason)
            calls.append(
                ([SESSIONS + sid, SESSION_EXPIRY], [self._ttl_ms, now + self._ttl, sid, *args])
            )
        return await lua.MERGE_SESSION.run_many(self._redis, calls)

    # -- connection records ---------------------------------------------------------------------
    async def set_connection(self, username: str, record: ConnectionRecord) -> None:
        """Write-behind, like session updates: the latest record per user is written with the
        next flush (SET_CONNECTIONS, 1,000 users per call); this node reads it back at once. A
        connect storm costs one round-trip per batch interval instead of one per connection."""
        self._pending_conns[username] = record

    async def get_connection(self, username: str) -> ConnectionRecord | None:
        pending = self._pending_conns.get(username) or self._inflight_conns.get(username)
        if pending is not None:
            return pending
        with unavailable_on_error("get_connection"):
            fields: dict[str, str] = await self._redis.hgetall(CONNECTIONS + username)  # type: ignore[assignment]
        return connection_from_hash(fields) if fields else None

    async def delete_connection(self, username: str) -> None:
        self._pending_conns.pop(username, None)
        async with self._flush_lock:  # after an in-flight write of the same record
            with unavailable_on_error("delete_connection"):
                await self._redis.delete(CONNECTIONS + username)

    # -- token state ----------------------------------------------------------------------------
    async def revoke_token(self, jti: str, exp: int) -> None:
        with unavailable_on_error("revoke_token"):
            await self._redis.zadd(REVOKED, {jti: exp}, gt=True)

    async def revoked_tokens(self, now: int) -> list[tuple[str, int]]:
        """Entries with ``exp >= now``; older ones are pruned."""
        with unavailable_on_error("revoked_tokens"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.zremrangebyscore(REVOKED, "-inf", f"({now}")
            pipe.zrangebyscore(REVOKED, now, "+inf", withscores=True)
            _, entries = await pipe.execute()
        return [(jti, int(score)) for jti, score in entries]

    async def create_family(self, family: RefreshFamily) -> None:
        args: list[str | int] = [family.expires_at, family.family]
        for field, value in family_to_hash(family).items():
            args += [field, value]
        keys = [
            FAMILY + family.family,
            CURRENT_FAMILY + family.username,
            USER_FAMILIES + family.username,
        ]
        with unavailable_on_error("create_family"):
            await lua.CREATE_FAMILY.run(self._redis, keys, args)

    async def rotate_refresh(
        self,
        family: str,
        presented_jti: str,
        new_refresh_jti: str,
        new_access_jti: str,
        new_access_exp: int,
        now: int,
    ) -> RotateOutcome:
        with unavailable_on_error("rotate_refresh"):
            reply = await lua.ROTATE_REFRESH.run(
                self._redis,
                [FAMILY + family],
                [presented_jti, new_refresh_jti, new_access_jti, new_access_exp, now],
            )
        status = reply[0]
        before = family_from_hash(family, pairs_to_dict(reply[1])) if len(reply) > 1 else None
        return RotateOutcome(status=status, family=before)

    async def revoke_family(self, family: str) -> RefreshFamily | None:
        with unavailable_on_error("revoke_family"):
            before = await lua.REVOKE_FAMILY.run(self._redis, [FAMILY + family], [])
        return None if before is None else family_from_hash(family, pairs_to_dict(before))

    async def current_family(self, username: str) -> RefreshFamily | None:
        """The current family unless it expired or was revoked."""
        with unavailable_on_error("current_family"):
            reply = await lua.CURRENT_FAMILY.run(self._redis, [CURRENT_FAMILY + username], [FAMILY])
        if reply is None or not reply[1]:
            return None
        family = family_from_hash(reply[0], pairs_to_dict(reply[1]))
        if family.revoked or family.expires_at <= time.time():
            return None
        return family

    async def clear_current_family(self, username: str, family: str) -> None:
        with unavailable_on_error("clear_current_family"):
            await lua.CLEAR_CURRENT_FAMILY.run(self._redis, [CURRENT_FAMILY + username], [family])

    # -- dynamic routes -------------------------------------------------------------------------
    async def put_route(self, route: RouteRecord) -> None:
        with unavailable_on_error("put_route"):
            await self._redis.hset(ROUTES, route.name, route_to_json(route))

    async def delete_route(self, name: str) -> bool:
        with unavailable_on_error("delete_route"):
            removed = await self._redis.hdel(ROUTES, name)
        return bool(removed)

    async def list_routes(self) -> list[RouteRecord]:
        with unavailable_on_error("list_routes"):
            stored: dict[str, str] = await self._redis.hgetall(ROUTES)  # type: ignore[assignment]
        routes = [route_from_json(name, raw) for name, raw in sorted(stored.items())]
        return [r for r in routes if r is not None]

    # -- per-user token generations (self-contained: keys and scripts of their own) ------------
    TOKEN_FLOORS = "pygw:token_floors"
    """One hash, username -> ``"<gen>:<until>"`` (one key: fine on Redis Cluster)."""
    RAISE_FLOOR = LuaScript(
        "raise_token_floor",
        r"""
-- KEYS: floors hash;  ARGV: username, now (µs), now (s), until.  Returns the new floor (text).
local gen, untl = 0, 0
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local sep = string.find(raw, ':', 1, true)
  local g, u = tonumber(string.sub(raw, 1, sep - 1)), tonumber(string.sub(raw, sep + 1))
  if g and u and u >= tonumber(ARGV[3]) then gen, untl = g, u end
end
local new = math.max(gen + 1, tonumber(ARGV[2]))
untl = math.max(untl, tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f:%.0f', new, untl))
return string.format('%.0f', new)
""",
    )
    LIVE_FLOORS = LuaScript(
        "live_token_floors",
        r"""
-- KEYS: floors hash;  ARGV: now (s).  Drops expired floors, returns the live field list.
local h = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #h, 2 do
  local sep = string.find(h[i + 1], ':', 1, true)
  local u = sep and tonumber(string.sub(h[i + 1], sep + 1))
  if u and u >= tonumber(ARGV[1]) then
    live[#live + 1] = h[i]
    live[#live + 1] = h[i + 1]
  else
    redis.call('HDEL', KEYS[1], h[i])
  end
end
return live
""",
    )

    @staticmethod
    def _parse_floor(raw: str | None, now: int) -> tuple[int, int] | None:
        gen, _, until = (raw or "").partition(":")
        try:
            floor = int(gen), int(until)
        except ValueError:
            return None
        return floor if floor[1] >= now else None

    async def token_generation(self, username: str, now: int) -> int:
        with unavailable_on_error("token_generation"):
            raw: str | None = await self._redis.hget(self.TOKEN_FLOORS, username)  # type: ignore[assignment]
        floor = self._parse_floor(raw, now)
        return 0 if floor is None else floor[0]

    async def raise_token_floor(self, username: str, now_us: int, until: int) -> int:
        with unavailable_on_error("raise_token_floor"):
            gen = await self.RAISE_FLOOR.run(
                self._redis, [self.TOKEN_FLOORS], [username, now_us, now_us // 1_000_000, until]
            )
        return int(gen)

    async def token_floors(self, now: int) -> list[TokenFloor]:
        with unavailable_on_error("token_floors"):
            flat = await self.LIVE_FLOORS.run(self._redis, [self.TOKEN_FLOORS], [now])
        floors = []
        for user, raw in pairs_to_dict(flat).items():
            floor = self._parse_floor(raw, now)
            if floor is not None:
                floors.append(TokenFloor(user, *floor))
        return floors

    async def revoke_user_families(self, username: str) -> list[RefreshFamily]:
        """Every family in ``pygw:user_families:{username}``, revoked with REVOKE_FAMILY in one
        pipeline (uses the family keys above; no key of its own)."""
        with unavailable_on_error("revoke_user_families"):
            ids: set[str] = await self._redis.smembers(USER_FAMILIES + username)  # type: ignore[assignment]
            if not ids:
                return []
            ordered = sorted(ids)
            replies = await lua.REVOKE_FAMILY.run_many(
                self._redis, [([FAMILY + family], []) for family in ordered]
            )
        revoked = []
        now = time.time()
        for family, reply in zip(ordered, replies, strict=True):
            if isinstance(reply, Exception):
                log.warning("could not revoke refresh family %s: %s", family, reply)
                continue
            if not reply:
                continue
            before = family_from_hash(family, pairs_to_dict(reply))
            if not before.revoked and before.expires_at > now:
                revoked.append(before)
        return revoked
