"""Redis backend, shared by every node, compatible with the original gateway's keys (SPEC §4).

One Redis or a Redis Cluster: the key layout (``_layout``) is chosen at start. On one Redis the
keys are the original gateway's (``users:alice``, ``sessions:<id>``, ``connections:alice``) plus
pygw's own under ``pygw:``; on a cluster the same names carry hash tags so every script's keys
share a slot, and what spans two slots is written in two steps (see ``_layout``).

The keys of both layouts, with their types and contents, are listed in :mod:`pygw.store._layout`.

Session updates and connection records are write-behind: see :meth:`RedisStorage.update_session`.
On a cluster a write counts as done only once a replica confirmed it (``WAIT``, see
:class:`pygw.redis_client.Replication`): a write-behind flush that no replica confirmed stays
pending and is sent again, so a primary that dies between its acknowledgement and replication
loses nothing this node acknowledged.

Token generation floors (``pygw:token_floors``, one hash: username -> ``<gen>:<until>``, one key,
so one slot on a cluster too): see :meth:`RedisStorage.raise_token_floor`. On a cluster the floor
is not yet confirmed by ``WAIT`` like the session writes are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, NoScriptError, TryAgainError

from pygw.core.errors import BackendUnavailable, NotOwner, SessionTooLarge
from pygw.core.timeutil import now_iso
from pygw.redis_client import (
    UNREACHABLE,
    Client,
    LuaScript,
    NotReplicated,
    Replication,
    ScriptArg,
    ScriptCall,
    connect,
    unavailable_on_error,
)
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
from pygw.store._layout import CLUSTER, SINGLE, SessionIndex
from pygw.store._limits import SessionLimits, session_too_large
from pygw.store._pending import PendingSession, SessionDelta, copy_session
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

log = logging.getLogger("pygw.store.redis")

_CONNECTIONS_PER_SCRIPT = 1000
"""Connection records replaced by one script call (bounds the time Redis is busy with it)."""
_CLEANUP_BATCH = 500
_INDEX_RETRY_S = 5.0
_WRITE_THROUGH_ATTEMPTS = 3
"""Flushes a write-through update waits for before it is refused (503, not acknowledged)."""

TRANSIENT: tuple[type[BaseException], ...] = (*UNREACHABLE, TryAgainError, AskError, NotReplicated)
"""Errors a flush meets in place of a result that say "try again", never "this write is bad"."""

Staged = Callable[[Any], list[str]]
"""Stages commands on a pipeline; returns the key each staged command writes (in order)."""


class RedisStorage(Storage):
    """Storage in Redis through one ``redis.asyncio`` client (hiredis parser): a connection
    pool to one Redis, or redis-py's cluster client (a pool per node) with ``cluster=True``.

    The client reconnects by itself: a command failing on a dead pooled connection is retried
    on a new one (on a cluster after refreshing the slot map, which is how a failover is
    ridden over), and while Redis is down every call fails fast with BackendUnavailable.

    ``wait_replicas`` (cluster only; 0 = off): a write counts as done once that many replicas
    confirmed it, when its shard has any (see :class:`pygw.redis_client.Replication`).

    ``session_max_bytes`` and ``session_update_max_bytes`` bound session writes (see
    :mod:`pygw.store._limits`; 0 = off), the first also inside the merge script.
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
        cluster: bool = False,
        wait_replicas: int = 1,
        wait_timeout_ms: int = 500,
        write_through: bool = False,
        session_max_bytes: int = 0,
        session_update_max_bytes: int = 0,
    ) -> None:
        self._write_through = write_through
        self._limits = SessionLimits(session_max_bytes, session_update_max_bytes)
        self.refused_merges = 0
        """Flushed updates the merge script refused because the session would have grown
        past ``session_max_bytes`` (a race with another node's writes; each is logged)."""
        self._ttl = session_ttl
        self._ttl_ms = max(1, round(session_ttl * 1000))
        self._interval = max(batch_interval_ms, 1) / 1000
        self._cleanup_interval = cleanup_interval
        self._close_flush_timeout = close_flush_timeout
        self._keys = CLUSTER if cluster else SINGLE
        self._redis: Client = connect(
            url,
            cluster=cluster,
            decode_responses=True,
            socket_timeout=socket_timeout,
            client_name=client_name,
        )
        self._replication: Replication | None = None
        if isinstance(self._redis, RedisCluster) and wait_replicas > 0:
            self._replication = Replication(self._redis, wait_replicas, wait_timeout_ms)
        self._pending: dict[str, PendingSession] = {}
        self._pending_conns: dict[str, ConnectionRecord] = {}
        """Connection records not yet written (the latest per user)."""
        self._inflight_conns: dict[str, ConnectionRecord] = {}
        """Connection records a flush is writing right now."""
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._unconfirmed = False
        """The last flush left writes that no replica confirmed (logged once until it clears)."""
        self._users_indexed = False
        self._closed = False

    @property
    def cluster(self) -> bool:
        return self._keys.cluster

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
            with contextlib.suppress(BackendUnavailable):
                await self._flush_pending()
            if not self._has_pending():
                break
            if time.monotonic() >= deadline:
                log.error(
                    "closing: %d pending session update(s) and %d connection record(s) lost",
                    len(self._pending),
                    len(self._pending_conns),
                )
                break
            await asyncio.sleep(min(0.1, self._interval))
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
        """SCRIPT LOAD every script up front, on every primary of a cluster (EVALSHA still
        falls back if Redis forgets them: a promoted replica has no script cache)."""
        with unavailable_on_error("script load"):
            for script in lua.ALL_SCRIPTS:
                await self._redis.script_load(script.source)

    async def _ensure_user_index(self) -> None:
        """Add users written by the original gateway (or copied by a migration) to the user
        index (once per deployment)."""
        if self._users_indexed:
            return
        keys = self._keys
        with unavailable_on_error("user index back-fill"):
            if not await self._redis.exists(keys.users_indexed):
                names: list[str] = []
                async for key in self._redis.scan_iter(
                    match=keys.user_pattern, count=1000, _type="hash"
                ):
                    names.append(keys.username_of(key))
                    if len(names) >= 1000:
                        await self._redis.sadd(keys.users_index, *names)
                        names.clear()
                if names:
                    await self._redis.sadd(keys.users_index, *names)
                await self._redis.set(keys.users_indexed, "1")
        self._users_indexed = True

    # -- writes -----------------------------------------------------------------------------
    async def _write(self, op: str, stage: Staged) -> list[Any]:
        """Run the commands ``stage`` puts on a pipeline and return their results; raise the
        first error (BackendUnavailable when Redis is unreachable).

        One Redis: one MULTI/EXEC. A cluster: one pipeline per node (not atomic across
        slots), each followed by WAIT when writes must be replicated; a write no replica
        confirmed raises BackendUnavailable (the caller did not get an acknowledgement). A
        script the node does not know (NOSCRIPT, e.g. on a promoted replica) is loaded and the
        whole pipeline sent again: every caller stages idempotent commands."""
        with unavailable_on_error(op):
            for attempt in (1, 2):
                pipe: Any
                if not self.cluster:
                    pipe = self._redis.pipeline(transaction=True)
                    if len(stage(pipe)) == 1:
                        pipe.transaction = False  # one command is atomic without MULTI/EXEC
                    try:
                        return list(await pipe.execute())
                    except NoScriptError:
                        if attempt == 2:
                            raise
                        await self._load_scripts()
                        continue
                pipe = self._redis.pipeline(transaction=False)
                written = stage(pipe)
                if self._replication is not None:
                    results = await self._replication.execute(pipe, written)
                else:
                    results = list(await pipe.execute(raise_on_error=False))
                if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                    await self._load_scripts()
                    continue
                failed = next((r for r in results if isinstance(r, Exception)), None)
                if isinstance(failed, NotReplicated):
                    raise BackendUnavailable(f"Redis unavailable during {op}: {failed}")
                if failed is not None:
                    raise failed
                return results
        raise AssertionError("unreachable")

    # -- users ----------------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> bool:
        keys = self._keys
        args: list[str] = [user.username]
        for field, value in user_to_hash(user).items():
            args += [field, value]
        user_key = keys.user(user.username)
        if self.cluster:
            # Index first: a name whose hash is missing is dropped by list_users, while a user
            # created without its index entry would be invisible to it.
            await self._write(
                "create_user", _one(keys.users_index, lambda p: p.sadd(keys.users_index, args[0]))
            )
            script_keys = [user_key]
        else:
            script_keys = [user_key, keys.users_index]
        (created,) = await self._write(
            "create_user", _one(user_key, lambda p: _evalsha(p, lua.CREATE_USER, script_keys, args))
        )
        return bool(created)

    async def get_user(self, username: str) -> UserRecord | None:
        with unavailable_on_error("get_user"):
            fields: dict[str, str] = await self._redis.hgetall(self._keys.user(username))  # type: ignore[assignment]
        return user_from_hash(username, fields) if fields else None

    async def update_user(self, username: str, fields: dict[str, str]) -> bool:
        args: list[str] = []
        for field, value in fields.items():
            args += [field, str(value)]
        key = self._keys.user(username)
        (updated,) = await self._write(
            "update_user", _one(key, lambda p: _evalsha(p, lua.UPDATE_USER, [key], args))
        )
        return bool(updated)

    async def delete_user(self, username: str) -> bool:
        for sid in [s for s, p in self._pending.items() if p.view.user_id == username]:
            del self._pending[sid]
        self._pending_conns.pop(username, None)
        keys = self._keys
        script_keys = [
            keys.user(username),
            keys.user_sessions(username),
            keys.connection(username),
            keys.user_families(username),
            keys.current_family(username),
        ]
        if not self.cluster:  # one Redis: sessions, families and the index go in the same call
            (index,) = keys.session_indexes()
            script_keys += [index.expiry, index.owner, keys.users_index]
        args = [username, keys.session(""), keys.family("")]
        # Under the flush lock: an in-flight write of this user's connection record lands first.
        async with self._flush_lock:
            ((existed, sids, families),) = await self._write(
                "delete_user",
                _one(script_keys[0], lambda p: _evalsha(p, lua.DELETE_USER, script_keys, args)),
            )
            if self.cluster:

                def rest(p: Any) -> list[str]:
                    written = [keys.users_index]
                    p.srem(keys.users_index, username)
                    for sid in sids:
                        written.append(self._stage_delete_session(p, sid))
                    for family in families:
                        written.append(keys.family(family))
                        p.delete(keys.family(family))
                    return written

                await self._write("delete_user", rest)
        for sid in sids:
            self._pending.pop(sid, None)
        return bool(existed)

    async def list_users(self) -> list[UserRecord]:
        keys = self._keys
        with unavailable_on_error("list_users"):
            members: set[str] = await self._redis.smembers(keys.users_index)  # type: ignore[assignment]
            names = sorted(members)
            users: list[UserRecord] = []
            gone: list[str] = []
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                pipe = self._redis.pipeline(transaction=False)
                for name in chunk:
                    pipe.hgetall(keys.user(name))
                for name, fields in zip(chunk, await pipe.execute(), strict=True):
                    if fields:
                        users.append(user_from_hash(name, fields))
                    else:
                        gone.append(name)
            if gone:  # deleted behind our back (e.g. by the original gateway)
                await self._redis.srem(keys.users_index, *gone)
        return users

    async def stats(self) -> StorageStats:
        keys = self._keys
        indexes = keys.session_indexes()
        with unavailable_on_error("stats"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.scard(keys.users_index)
            pipe.zcard(keys.revoked)
            now = f"({time.time()}"
            for index in indexes:
                pipe.zcount(index.expiry, now, "+inf")
            users, revoked, *sessions = await pipe.execute()
        return StorageStats(
            total_users=int(users),
            active_sessions=sum(int(n) for n in sessions),
            extra={"revoked_tokens": int(revoked), "pending_session_writes": len(self._pending)},
        )

    async def backend_info(self) -> dict[str, Any] | None:
        """Redis ``INFO`` (default sections) as a dict; on a cluster the counters are summed
        over the primaries and ``cluster_primaries`` says how many there are."""
        with unavailable_on_error("backend_info"):
            if not isinstance(self._redis, RedisCluster):
                info: dict[str, Any] = await self._redis.info()
                return info
            per_node: dict[str, dict[str, Any]] = await self._redis.info(
                target_nodes=RedisCluster.PRIMARIES
            )
        return _sum_info(list(per_node.values()))

    # -- sessions -------------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        sid = session.session_id
        doc = session_to_json(session)  # UnstorableValue before anything changes
        self._pending.pop(sid, None)
        now = time.time()
        keys = self._keys
        key = keys.session(sid)
        index = keys.user_sessions(session.user_id)
        created = unix_from_iso(session.created_at, now)

        def stage(p: Any) -> list[str]:
            p.set(key, doc, px=self._ttl_ms)
            p.zadd(keys.session_expiry(sid), {sid: now + self._ttl})
            p.hset(keys.session_owner(sid), sid, session.user_id)
            p.zadd(index, {sid: created})
            return [key, key, key, index]

        await self._write("create_session", stage)

    async def _load_session(self, session_id: str, op: str) -> SessionRecord | None:
        """GETEX the stored session (refreshing its TTL and expiry score); no pending applied."""
        now = time.time()
        keys = self._keys
        index_prefix = "" if self.cluster else keys.user_sessions("")
        with unavailable_on_error(op):
            reply = await lua.GET_SESSION.run(
                self._redis,
                [
                    keys.session(session_id),
                    keys.session_expiry(session_id),
                    keys.session_owner(session_id),
                ],
                [self._ttl_ms, now + self._ttl, session_id, index_prefix, now],
            )
            if reply is None:
                return None
            raw, adopt = reply
            if adopt:  # a session pygw never indexed: its owner's index is in another slot
                await self._redis.zadd(keys.user_sessions(adopt), {session_id: now}, nx=True)
        return session_from_json(session_id, raw)

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
            pending.size = 0  # another node may have written: size unknown
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
        sends every pending entry's coalesced delta in one pipeline of MERGE_SESSION scripts
        (on a cluster one per node, each followed by WAIT).

        With ``write_through`` (``PYGW_SESSION_WRITE_THROUGH``) the update returns only once a
        flush wrote it, started at once (updates arriving meanwhile share the next one): a node
        killed after the acknowledgement loses nothing. Redis unreachable: BackendUnavailable.
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
        entry.size = self._limits.admit(entry.view, chat_id, delta.data, entry.size)
        change = entry.absorb(delta)
        delta.apply_to(entry.view)
        if self._write_through and not await self._written(session_id, entry, change):
            return None
        return copy_session(entry.view) if returning else entry.view

    async def _written(self, session_id: str, entry: PendingSession, change: int) -> bool:
        """Write-through: flush until ``change`` of the session is in Redis (concurrent
        updates of every session share each flush); False if the session is gone. Raises
        BackendUnavailable if Redis is unreachable or did not confirm the write."""
        for _attempt in range(_WRITE_THROUGH_ATTEMPTS):
            if entry.written >= change:
                if entry.outcome == 1:
                    return True
                if entry.outcome == 0:
                    return False
                if entry.outcome == -2:
                    raise SessionTooLarge(session_too_large(self._limits.session_max_bytes))
                raise BackendUnavailable(f"session {session_id} not written: {entry.outcome}")
            if self._pending.get(session_id) is not entry:
                return False  # deleted meanwhile
            await self._flush_pending(unless=lambda: entry.written >= change)
        raise BackendUnavailable(f"session {session_id}: write not confirmed by Redis")

    def _stage_delete_session(self, pipe: Any, session_id: str) -> str:
        keys = self._keys
        key = keys.session(session_id)
        index_prefix = "" if self.cluster else keys.user_sessions("")
        _evalsha(
            pipe,
            lua.DELETE_SESSION,
            [key, keys.session_expiry(session_id), keys.session_owner(session_id)],
            [session_id, index_prefix],
        )
        return key

    async def delete_session(self, session_id: str) -> None:
        self._pending.pop(session_id, None)
        ((_deleted, owner),) = await self._write(
            "delete_session", lambda p: [self._stage_delete_session(p, session_id)]
        )
        if owner and self.cluster:
            index = self._keys.user_sessions(owner)
            await self._write("delete_session", _one(index, lambda p: p.zrem(index, session_id)))

    async def list_user_sessions(self, username: str) -> list[SessionRecord]:
        keys = self._keys
        index = keys.user_sessions(username)
        with unavailable_on_error("list_user_sessions"):
            sids: list[str] = await self._redis.zrange(index, 0, -1)  # type: ignore[assignment]
            if not sids:
                return []
            pipe = self._redis.pipeline(transaction=False)
            for sid in sids:
                pipe.get(keys.session(sid))
            raws = await pipe.execute()
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
                await self._redis.zrem(index, *stale)
        return sessions

    async def cleanup_sessions(self) -> int:
        """Drop expired sessions from the expiry indexes (one per bucket on a cluster) and
        from their owners' session lists."""
        keys = self._keys
        index_prefix = "" if self.cluster else keys.user_sessions("")
        dropped = 0
        todo = keys.session_indexes()
        with unavailable_on_error("cleanup_sessions"):
            while todo:
                calls: list[ScriptCall] = [
                    (
                        [index.expiry, index.owner],
                        [time.time(), _CLEANUP_BATCH, index_prefix, index.session_prefix],
                    )
                    for index in todo
                ]
                results = await lua.CLEANUP_SESSIONS.run_many(self._redis, calls)
                left: list[tuple[str, str]] = []
                again: list[SessionIndex] = []
                for index, result in zip(todo, results, strict=True):
                    if isinstance(result, Exception):
                        raise result
                    n, scanned, owners = result
                    dropped += int(n)
                    left += list(zip(owners[::2], owners[1::2], strict=True))
                    if int(scanned) >= _CLEANUP_BATCH:
                        again.append(index)
                if left:
                    pipe = self._redis.pipeline(transaction=False)
                    for sid, owner_name in left:
                        pipe.zrem(keys.user_sessions(owner_name), sid)
                    await pipe.execute()
                todo = again
        return dropped

    async def flush(self) -> None:
        await self._flush_pending()

    async def _flush_pending(self, unless: Callable[[], bool] | None = None) -> None:
        """Send every pending session delta and every pending connection record, each kind in
        one pipeline; keep them all if Redis is unreachable. ``unless`` is checked once the
        lock is taken: nothing is sent if it is true (a flush that just ended did the work)."""
        async with self._flush_lock:
            if unless is not None and unless():
                return
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
        unconfirmed = 0
        for (sid, entry, _), result in zip(batch, results, strict=True):
            if isinstance(result, TRANSIENT):
                # Not written (a node went away mid-pipeline), or written but not safe yet (no
                # replica confirmed it): kept, and sent again next tick.
                entry.flush_failed()
                unconfirmed += 1
                continue
            entry.flush_done(result)
            if self._pending.get(sid) is not entry:
                continue  # deleted (or re-created) meanwhile
            if result == -2:
                self.refused_merges += 1
                entry.size = 0  # the view holds what Redis refused: size unknown
                log.warning(
                    "session %s: update dropped, the session would be larger than %d bytes",
                    sid,
                    self._limits.session_max_bytes,
                )
            if result in (1, -2) and not entry.delta.is_empty():
                continue  # changed during the flush: next tick
            if isinstance(result, Exception):
                log.warning("dropping pending update of session %s: %s", sid, result)
            elif result == -1:
                log.warning("session %s is not a JSON object; update dropped", sid)
            del self._pending[sid]
        self._note_unconfirmed(unconfirmed, "session update(s)")

    async def _flush_connections(self) -> None:
        if not self._pending_conns:
            return
        batch, self._pending_conns = self._pending_conns, {}
        self._inflight_conns = batch
        calls: list[tuple[list[str], list[ScriptArg]]] = []
        call_users: list[list[str]] = []
        groups: dict[int, list[str]] = {}
        for username in batch:
            # One Redis: any 1,000 users per call. A cluster: a call's keys share one slot.
            slot = key_slot(self._keys.connection(username).encode()) if self.cluster else 0
            groups.setdefault(slot, []).append(username)
        for users in groups.values():
            for i in range(0, len(users), _CONNECTIONS_PER_SCRIPT):
                chunk = users[i : i + _CONNECTIONS_PER_SCRIPT]
                keys: list[str] = []
                args: list[ScriptArg] = []
                for username in chunk:
                    fields = connection_to_hash(batch[username])
                    keys.append(self._keys.connection(username))
                    args.append(len(fields))
                    for kv in fields.items():
                        args += kv
                calls.append((keys, args))
                call_users.append(chunk)
        try:
            await self._index_gateway_users(batch)
            results = await lua.SET_CONNECTIONS.run_many(self._redis, calls, self._replication)
            failed = next(
                (
                    r
                    for r in results
                    if isinstance(r, Exception) and not isinstance(r, NotReplicated)
                ),
                None,
            )
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
        unconfirmed = 0
        for users, result in zip(call_users, results, strict=True):
            if isinstance(result, TRANSIENT):
                for username in users:
                    self._pending_conns.setdefault(username, batch[username])
                    unconfirmed += 1
        self._end_outage()
        self._note_unconfirmed(unconfirmed, "connection record(s)")

    async def _index_gateway_users(self, batch: dict[str, ConnectionRecord]) -> None:
        """Before the records: who is online on which gateway (see :meth:`reap_connections`).
        A user who went offline or moved stays in the old set until a reap checks the record."""
        keys = self._keys
        pipe = self._redis.pipeline(transaction=False)
        online: dict[str, list[str]] = {}
        offline: dict[str, list[str]] = {}
        for username, record in batch.items():
            side = online if record.ws_connected else offline
            side.setdefault(record.gateway_id, []).append(username)
        for gateway, users in online.items():
            pipe.sadd(keys.gateways, gateway)
            pipe.sadd(keys.gateway_users(gateway), *users)
        for gateway, users in offline.items():
            pipe.srem(keys.gateway_users(gateway), *users)
        await pipe.execute()

    async def reap_connections(self, live: Collection[str]) -> int:
        keys = self._keys
        marked = 0
        with unavailable_on_error("reap_connections"):
            gateways = set(map(str, await self._redis.smembers(keys.gateways)))
            for gateway in sorted(gateways - set(live)):
                index = keys.gateway_users(gateway)
                users = sorted(map(str, await self._redis.smembers(index)))
                now = repr(time.time())
                for i in range(0, len(users), _CLEANUP_BATCH):
                    chunk = users[i : i + _CLEANUP_BATCH]
                    calls: list[ScriptCall] = [
                        ([keys.connection(u)], [gateway, now]) for u in chunk
                    ]
                    for result in await lua.MARK_OFFLINE.run_many(self._redis, calls):
                        if isinstance(result, Exception):
                            raise result
                        marked += int(result)
                    await self._redis.srem(index, *chunk)
                if not await self._redis.scard(index):
                    await self._redis.srem(keys.gateways, gateway)
        if marked:
            log.warning("marked %d user(s) of dead gateway(s) offline", marked)
        return marked

    def _note_unconfirmed(self, count: int, what: str) -> None:
        if count and not self._unconfirmed:
            log.warning(
                "%d %s not written, or not confirmed by a replica yet; kept and sent again",
                count,
                what,
            )
        self._unconfirmed = bool(count)

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
        keys = self._keys
        calls: list[ScriptCall] = []
        for sid, _, delta in batch:
            args, dropped = delta.script_args()
            for field, reason in dropped:
                self.dropped_values += 1
                log.error("session %s: dropping %s from the write-behind: %s", sid, field, reason)
            calls.append(
                (
                    [keys.session(sid), keys.session_expiry(sid)],
                    [self._ttl_ms, now + self._ttl, sid, self._limits.session_max_bytes, *args],
                )
            )
        return await lua.MERGE_SESSION.run_many(self._redis, calls, self._replication)

    # -- connection records ---------------------------------------------------------------------
    async def set_connection(self, username: str, record: ConnectionRecord) -> None:
        """Write-behind, like session updates: the latest record per user is written with the
        next flush (SET_CONNECTIONS, 1,000 users per call; on a cluster one call per slot);
        this node reads it back at once. A connect storm costs one round-trip per batch
        interval (per node of a cluster) instead of one per connection."""
        self._pending_conns[username] = record

    async def get_connection(self, username: str) -> ConnectionRecord | None:
        pending = self._pending_conns.get(username) or self._inflight_conns.get(username)
        if pending is not None:
            return pending
        with unavailable_on_error("get_connection"):
            fields: dict[str, str] = await self._redis.hgetall(self._keys.connection(username))  # type: ignore[assignment]
        return connection_from_hash(fields) if fields else None

    async def delete_connection(self, username: str) -> None:
        self._pending_conns.pop(username, None)
        key = self._keys.connection(username)
        async with self._flush_lock:  # after an in-flight write of the same record
            await self._write("delete_connection", _one(key, lambda p: p.delete(key)))

    # -- token state ----------------------------------------------------------------------------
    async def revoke_token(self, jti: str, exp: int) -> None:
        """ZADD, and ZREMRANGEBYSCORE of what expired (more than
        :data:`~pygw.store.base.REVOKED_KEPT_AFTER_EXPIRY` seconds ago) in the same
        transaction: the zset keeps about the live ones only."""
        key = self._keys.revoked
        expired = f"({int(time.time()) - REVOKED_KEPT_AFTER_EXPIRY}"

        def stage(p: Any) -> list[str]:
            p.zadd(key, {jti: exp}, gt=True)
            p.zremrangebyscore(key, "-inf", expired)
            return [key, key]

        await self._write("revoke_token", stage)

    async def prune_revocations(self, now: int) -> int:
        key = self._keys.revoked
        with unavailable_on_error("prune_revocations"):
            removed = await self._redis.zremrangebyscore(key, "-inf", f"({now}")
            await self.LIVE_FLOORS.run(self._redis, [self.TOKEN_FLOORS], [now])
        return int(removed)

    async def revoked_tokens(self, now: int) -> list[tuple[str, int]]:
        """Entries with ``exp >= now``; older ones are pruned."""
        key = self._keys.revoked
        with unavailable_on_error("revoked_tokens"):
            pipe = self._redis.pipeline(transaction=not self.cluster)
            pipe.zremrangebyscore(key, "-inf", f"({now}")
            pipe.zrangebyscore(key, now, "+inf", withscores=True)
            _, entries = await pipe.execute()
        return [(jti, int(score)) for jti, score in entries]

    async def create_family(self, family: RefreshFamily) -> None:
        args: list[str | int] = [family.expires_at, family.family]
        for field, value in family_to_hash(family).items():
            args += [field, value]
        keys = self._keys
        family_key = keys.family(family.family)
        login_keys = [keys.current_family(family.username), keys.user_families(family.username)]

        def stage(p: Any) -> list[str]:
            if not self.cluster:
                _evalsha(p, lua.CREATE_FAMILY, [family_key, *login_keys], args)
                return [family_key]
            _evalsha(p, lua.CREATE_FAMILY, [family_key], args)  # two slots: two calls
            _evalsha(p, lua.CREATE_FAMILY, login_keys, args)
            return [family_key, login_keys[0]]

        await self._write("create_family", stage)

    async def rotate_refresh(
        self,
        family: str,
        presented_jti: str,
        new_refresh_jti: str,
        new_access_jti: str,
        new_access_exp: int,
        now: int,
    ) -> RotateOutcome:
        key = self._keys.family(family)
        args = [presented_jti, new_refresh_jti, new_access_jti, new_access_exp, now]
        (reply,) = await self._write(
            "rotate_refresh", _one(key, lambda p: _evalsha(p, lua.ROTATE_REFRESH, [key], args))
        )
        status = reply[0]
        before = family_from_hash(family, pairs_to_dict(reply[1])) if len(reply) > 1 else None
        return RotateOutcome(status=status, family=before)

    async def revoke_family(self, family: str) -> RefreshFamily | None:
        key = self._keys.family(family)
        (before,) = await self._write(
            "revoke_family", _one(key, lambda p: _evalsha(p, lua.REVOKE_FAMILY, [key], []))
        )
        return None if before is None else family_from_hash(family, pairs_to_dict(before))

    async def current_family(self, username: str) -> RefreshFamily | None:
        """The current family unless it expired or was revoked (two reads: the user's pointer,
        then the family, which may live in another slot)."""
        with unavailable_on_error("current_family"):
            family_id: str | None = await self._redis.get(self._keys.current_family(username))  # type: ignore[assignment]
            if family_id is None:
                return None
            fields: dict[str, str] = await self._redis.hgetall(self._keys.family(family_id))  # type: ignore[assignment]
        if not fields:
            return None
        family = family_from_hash(family_id, fields)
        if family.revoked or family.expires_at <= time.time():
            return None
        return family

    async def clear_current_family(self, username: str, family: str) -> None:
        key = self._keys.current_family(username)
        await self._write(
            "clear_current_family",
            _one(key, lambda p: _evalsha(p, lua.CLEAR_CURRENT_FAMILY, [key], [family])),
        )

    # -- dynamic routes -------------------------------------------------------------------------
    async def put_route(self, route: RouteRecord) -> None:
        key = self._keys.routes
        await self._write(
            "put_route", _one(key, lambda p: p.hset(key, route.name, route_to_json(route)))
        )

    async def delete_route(self, name: str) -> bool:
        key = self._keys.routes
        (removed,) = await self._write("delete_route", _one(key, lambda p: p.hdel(key, name)))
        return bool(removed)

    async def list_routes(self) -> list[RouteRecord]:
        with unavailable_on_error("list_routes"):
            stored: dict[str, str] = await self._redis.hgetall(self._keys.routes)  # type: ignore[assignment]
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
            ids: set[str] = await self._redis.smembers(self._keys.user_families(username))  # type: ignore[assignment]
            if not ids:
                return []
            ordered = sorted(ids)
            replies = await lua.REVOKE_FAMILY.run_many(
                self._redis,
                [([self._keys.family(family)], []) for family in ordered],
                self._replication,
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


def _evalsha(pipe: Any, script: lua.LuaScript, keys: Sequence[str], args: Sequence[Any]) -> None:
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def _one(key: str, command: Callable[[Any], Any]) -> Staged:
    """A one-command stage: ``command(pipe)`` stages a command that writes ``key``."""

    def stage(pipe: Any) -> list[str]:
        command(pipe)
        return [key]

    return stage


def _sum_info(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """One INFO-like dict for a cluster: counters summed over the primaries."""
    summed: dict[str, Any] = dict(nodes[0]) if nodes else {}
    for field in (
        "connected_clients",
        "keyspace_hits",
        "keyspace_misses",
        "total_commands_processed",
        "used_memory",
        "used_memory_peak",
    ):
        summed[field] = sum(int(n.get(field, 0)) for n in nodes)
    for field in ("used_memory", "used_memory_peak"):
        summed[f"{field}_human"] = f"{summed[field] / 2**20:.2f}M"
    summed["cluster_primaries"] = len(nodes)
    return summed
