"""``pygw migrate-to-cluster``: copy a one-Redis deployment's data into a Redis Cluster's layout.

The source is a Redis used by pygw (or by the original gateway: the same ``users:<name>``,
``sessions:<id>``, ``connections:<name>`` keys); the target is any node of a Redis Cluster. Every
durable record is copied with DUMP/RESTORE (values, field order and TTLs untouched) under its
cluster name (see :mod:`pygw.store._layout` and :mod:`pygw.broker._layout`), and the indexes that
live in other slots on a cluster are rebuilt from the records:

========================================  ===============================================
source key (one Redis)                    on the cluster
========================================  ===============================================
``users:<u>``                             ``users:{<u>}``, name added to ``pygw:users``
``sessions:<sid>``                        ``sessions:{s<b>}<sid>``, indexed in its bucket's
                                          ``pygw:session_expiry:{s<b>}`` and
                                          ``pygw:session_owner:{s<b>}`` and in its owner's
                                          ``pygw:user_sessions:{<u>}``
``connections:<u>``                       ``connections:{<u>}``
``pygw:refresh_family:<f>``               ``pygw:refresh_family:{<f>}``
``pygw:user_families:<u>``                ``pygw:user_families:{<u>}``
``pygw:current_family:<u>``               ``pygw:current_family:{<u>}``
``pygw:revoked_tokens``, ``pygw:routes``  the same names
``pygw:chmeta:<ch>``, ``pygw:hist:<ch>``  ``pygw:chmeta:{<ch>}``, ``pygw:hist:{<ch>}`` (epochs
                                          and offsets kept: clients recover across the move)
========================================  ===============================================

Not copied: indexes rebuilt above (``pygw:users``, ``pygw:user_sessions:*``,
``pygw:session_expiry``, ``pygw:session_owner``) and what is transient (presence, node
heartbeats, query replies, rate-limit counters ``pygw:rl:*``).

Copying is idempotent (RESTORE ... REPLACE): run it again to pick up what changed meanwhile.
Writes made to the source after a key was copied are not seen, so stop the gateways (or at least
their writes) for the final run, then start them with ``PYGW_REDIS_CLUSTER=true``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pygw.broker._layout import CLUSTER as BROKER
from pygw.redis_client import close_client, connect
from pygw.store._codec import unix_from_iso
from pygw.store._layout import CLUSTER as STORE


@dataclass(frozen=True, slots=True)
class Kind:
    """One family of source keys: its SCAN pattern and its name on the cluster."""

    name: str
    prefix: str
    type: str
    """The Redis type of these keys (others under the same prefix are not pygw's)."""
    target: Callable[[str], str]
    exact: bool = False
    """``prefix`` is the whole key."""

    @property
    def pattern(self) -> str:
        return self.prefix if self.exact else self.prefix + "*"


KINDS = (
    Kind("users", "users:", "hash", STORE.user),
    Kind("sessions", "sessions:", "string", STORE.session),
    Kind("connections", "connections:", "hash", STORE.connection),
    Kind("refresh families", "pygw:refresh_family:", "hash", STORE.family),
    Kind("user families", "pygw:user_families:", "set", STORE.user_families),
    Kind("current families", "pygw:current_family:", "string", STORE.current_family),
    Kind("channel offsets", "pygw:chmeta:", "hash", BROKER.meta),
    Kind("channel histories", "pygw:hist:", "list", BROKER.history),
    Kind("revoked tokens", STORE.revoked, "zset", lambda _: STORE.revoked, exact=True),
    Kind("routes", STORE.routes, "hash", lambda _: STORE.routes, exact=True),
)


@dataclass
class Report:
    copied: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Keys not copied, and why."""

    def lines(self) -> list[str]:
        out = [f"{name}: {n}" for name, n in self.copied.items()]
        out += [f"skipped {why}" for why in self.skipped]
        return out


async def migrate_to_cluster(
    source_url: str, target_url: str, *, dry_run: bool = False, batch: int = 500
) -> Report:
    """Copy every durable record of the one-Redis ``source_url`` into the Redis Cluster that
    ``target_url`` is a node of. ``dry_run``: count what would be copied, write nothing."""
    source = connect(source_url)
    target = None if dry_run else connect(target_url, cluster=True)
    report = Report()
    try:
        for kind in KINDS:
            report.copied[kind.name] = 0
            keys: list[bytes] = []
            async for key in source.scan_iter(match=kind.pattern, count=batch, _type=kind.type):
                keys.append(key)
                if len(keys) >= batch:
                    await _copy(source, target, kind, keys, report)
                    keys = []
            if keys:
                await _copy(source, target, kind, keys, report)
        if target is not None:
            await target.set(STORE.users_indexed, "1")
    finally:
        await close_client(source)
        if target is not None:
            await close_client(target)
    return report


async def _copy(source: Any, target: Any, kind: Kind, keys: list[bytes], report: Report) -> None:
    pipe = source.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
        if kind.name == "sessions":
            pipe.get(key)
    step = 3 if kind.name == "sessions" else 2
    replies = await pipe.execute()
    out = None if target is None else target.pipeline(transaction=False)
    now = time.time()
    for i, key in enumerate(keys):
        dumped, pttl = replies[i * step], replies[i * step + 1]
        name = key.decode()[len(kind.prefix) :]
        if dumped is None or pttl == -2:
            continue  # expired or deleted meanwhile
        report.copied[kind.name] += 1
        if out is None:
            continue
        out.restore(kind.target(name), max(pttl, 0), dumped, replace=True)
        if kind.name == "users":
            out.sadd(STORE.users_index, name)
        elif kind.name == "sessions":
            _index_session(out, name, replies[i * step + 2], pttl, now, report)
    if out is not None:
        await out.execute()


def _index_session(
    pipe: Any, sid: str, raw: bytes | None, pttl: int, now: float, report: Report
) -> None:
    """The session's bucket indexes and its owner's session list, as create_session writes
    them."""
    try:
        doc = orjson.loads(raw or b"")
        owner = doc["user_id"]
        if not isinstance(owner, str) or not owner:
            raise TypeError("no user_id")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        report.skipped.append(f"indexing session {sid!r} ({exc}): copied, not listed")
        return
    expires = now + pttl / 1000 if pttl > 0 else float("inf")
    pipe.zadd(STORE.session_expiry(sid), {sid: expires})
    pipe.hset(STORE.session_owner(sid), sid, owner)
    created = unix_from_iso(str(doc.get("created_at", "")), now)
    pipe.zadd(STORE.user_sessions(owner), {sid: created})
