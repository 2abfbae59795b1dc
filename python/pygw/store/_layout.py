"""Where the Redis backend keeps each record: one Redis (the original gateway's key names) or a
Redis Cluster (the same names with hash tags, so that every script's keys share a slot).

One Redis (:data:`SINGLE`), unchanged from the original gateway plus pygw's own keys
(``{x}`` below is a value, not a hash tag):

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
``pygw:gateway_users:{id}``        set     users whose connection record says online on
                                           gateway ``id`` (marked offline if it dies)
``pygw:gateways``                  set     gateway ids that have such a set
=================================  ======  ==============================================

Redis Cluster (:data:`CLUSTER`): here braces *are* hash tags (Redis hashes only the text between
the first ``{`` and the next ``}``), chosen so that what one script touches lives in one slot:

- per user, tag ``{<username>}``: ``users:{alice}``, ``connections:{alice}``,
  ``pygw:user_sessions:{alice}``, ``pygw:user_families:{alice}``,
  ``pygw:current_family:{alice}``;
- per session, tag ``{s<b>}`` where ``b`` = CRC32(session id) mod :data:`SESSION_BUCKETS`: the
  session ``sessions:{s<b>}<session_id>`` with its bucket's expiry index
  ``pygw:session_expiry:{s<b>}`` and owner hash ``pygw:session_owner:{s<b>}``. A session is
  found from its id alone (the bucket is computed), a write-behind merge updates the session
  and its expiry score atomically, and statistics and cleanup walk :data:`SESSION_BUCKETS`
  indexes instead of one global one;
- per refresh family, tag ``{<family>}``: ``pygw:refresh_family:{<family>}``;
- per gateway, tag ``{<gateway_id>}``: ``pygw:gateway_users:{<gateway_id>}``;
- one key each, wherever its slot is: ``pygw:users``, ``pygw:users:indexed``,
  ``pygw:revoked_tokens``, ``pygw:routes``, ``pygw:gateways``.

What spans two slots (a session and its owner's ``user_sessions`` index; a user and the
``pygw:users`` index; a user and its sessions when the user is deleted) is written in two steps
on a cluster; index entries whose record is gone are dropped when they are next read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

SESSION_BUCKETS = 1024
"""Session buckets on a cluster: each has its own expiry index and owner hash (one slot)."""


class SessionIndex(NamedTuple):
    expiry: str
    """zset: session id -> expiry time."""
    owner: str
    """hash: session id -> username."""
    session_prefix: str
    """What precedes a session id in the keys of the sessions this index covers."""


@dataclass(frozen=True, slots=True)
class KeyLayout:
    cluster: bool
    users_index: str = "pygw:users"
    users_indexed: str = "pygw:users:indexed"
    revoked: str = "pygw:revoked_tokens"
    routes: str = "pygw:routes"
    gateways: str = "pygw:gateways"

    def _tag(self, value: str) -> str:
        return f"{{{value}}}" if self.cluster else value

    # -- per user ---------------------------------------------------------------------------
    def user(self, username: str) -> str:
        return "users:" + self._tag(username)

    def connection(self, username: str) -> str:
        return "connections:" + self._tag(username)

    def user_sessions(self, username: str) -> str:
        return "pygw:user_sessions:" + self._tag(username)

    def user_families(self, username: str) -> str:
        return "pygw:user_families:" + self._tag(username)

    def current_family(self, username: str) -> str:
        return "pygw:current_family:" + self._tag(username)

    @property
    def user_pattern(self) -> str:
        """SCAN pattern of user hashes."""
        return "users:{*}" if self.cluster else "users:*"

    def username_of(self, user_key: str) -> str:
        name = user_key[len("users:") :]
        return name[1:-1] if self.cluster else name

    # -- per gateway ------------------------------------------------------------------------
    def gateway_users(self, gateway_id: str) -> str:
        return "pygw:gateway_users:" + self._tag(gateway_id)

    # -- per session ------------------------------------------------------------------------
    def bucket(self, session_id: str) -> str:
        """The hash tag of the session's bucket (cluster), '' on one Redis."""
        if not self.cluster:
            return ""
        return f"{{s{zlib.crc32(session_id.encode()) % SESSION_BUCKETS}}}"

    def session(self, session_id: str) -> str:
        return "sessions:" + self.bucket(session_id) + session_id

    def session_expiry(self, session_id: str) -> str:
        return self._index(self.bucket(session_id)).expiry

    def session_owner(self, session_id: str) -> str:
        return self._index(self.bucket(session_id)).owner

    def _index(self, bucket: str) -> SessionIndex:
        if not bucket:
            return SessionIndex("pygw:session_expiry", "pygw:session_owner", "sessions:")
        return SessionIndex(
            f"pygw:session_expiry:{bucket}", f"pygw:session_owner:{bucket}", f"sessions:{bucket}"
        )

    def session_indexes(self) -> list[SessionIndex]:
        """Every session index: one on one Redis, one per bucket on a cluster."""
        if not self.cluster:
            return [self._index("")]
        return [self._index(f"{{s{b}}}") for b in range(SESSION_BUCKETS)]

    # -- refresh families -------------------------------------------------------------------
    def family(self, family: str) -> str:
        return "pygw:refresh_family:" + self._tag(family)


SINGLE = KeyLayout(cluster=False)
CLUSTER = KeyLayout(cluster=True)
