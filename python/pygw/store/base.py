"""The storage interface every backend implements, and the records it stores.

Records mirror the original gateway's data layout (SPEC §4) so pygw can take over an existing
deployment's Redis: users are ``users:{username}`` hashes, sessions ``sessions:{session_id}`` JSON
strings, connection records ``connections:{username}`` hashes. pygw's own keys live under ``pygw:``.

Every method may raise :class:`pygw.core.errors.BackendUnavailable` when the backend cannot be
reached.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(slots=True)
class UserRecord:
    username: str
    email: str
    password: str
    """Password hash: an argon2id encoded string, or a legacy unsalted SHA-256 hex digest."""
    role: str = "user"
    last_login: str | None = None
    """ISO-8601 UTC timestamp of the last successful login, or None."""


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    user_id: str
    chat_id: str | None
    data: dict[str, Any]
    created_at: str
    last_access: str

    def to_json_dict(self) -> dict[str, Any]:
        """The stored JSON shape of ``sessions:{session_id}``."""
        return {
            "user_id": self.user_id,
            "chat_id": self.chat_id,
            "data": self.data,
            "created_at": self.created_at,
            "last_access": self.last_access,
        }


@dataclass(slots=True)
class ConnectionRecord:
    """``connections:{user}``: times are epoch seconds, as the original stores and returns them."""

    session_id: str
    gateway_id: str
    ws_connected: bool
    last_seen: float
    connected_at: float | None = None


@dataclass(slots=True)
class RefreshFamily:
    """A chain of refresh tokens issued from one login.

    Each refresh rotates ``refresh_jti``; presenting a refresh token that is not the family's
    current one means it was stolen or replayed, and revokes the whole family.
    """

    family: str
    username: str
    session_id: str
    refresh_jti: str
    access_jti: str
    access_exp: int
    expires_at: int
    """UNIX time after which the family (and its latest refresh token) is dead."""
    revoked: bool = False


@dataclass(slots=True)
class RotateOutcome:
    status: Literal["ok", "reused", "revoked", "unknown"]
    """``ok``: rotated; ``reused``: a spent token was presented and the family is now revoked;
    ``revoked``: the family was already revoked; ``unknown``: no such family (expired or never
    existed)."""
    family: RefreshFamily | None = None
    """The family as it was before this call (for ``reused`` callers revoke its access token)."""


@dataclass(slots=True, frozen=True)
class TokenFloor:
    """A user's token generation floor: access tokens issued with a lower ``gen`` are revoked.

    Raised by logout, password change, account deletion and role changes; dropped after
    ``until`` (UNIX seconds), when every token it revokes has expired."""

    user: str
    gen: int
    until: int


@dataclass(slots=True)
class RouteRecord:
    """A dynamic route (``POST /api/register``): requests to ``/api/proxy/<name>[/<rest>]`` go
    to ``base_url`` + ``path`` [+ ``/<rest>``]."""

    name: str
    base_url: str
    path: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    """Added to every proxied request."""
    timeout: float = 30.0
    """Seconds the backend has to answer."""
    require_auth: bool = False
    ws_supported: bool = False
    """Client WebSocket messages whose ``type`` is ``name`` are sent to this route."""


REVOKED_KEPT_AFTER_EXPIRY = 60
"""Seconds a revoked token id is kept past its token's expiry before pruning: nodes' clocks may
disagree by a few seconds, and the id costs little."""


class UnstorableValue(TypeError):
    """Session data holding a value that cannot be stored as JSON: an integer outside
    ``[-2**63, 2**64-1]``, nesting deeper than orjson encodes (254 levels), a string with an
    unpaired surrogate, or a non-JSON type. Raised before anything is stored."""


@dataclass(slots=True)
class StorageStats:
    total_users: int
    active_sessions: int
    extra: dict[str, Any] = field(default_factory=dict)


class Storage(abc.ABC):
    """Users, sessions, connection records and token state."""

    name: str
    """``"memory"`` or ``"redis"``."""
    on_flush: Callable[[int, float], None] | None = None
    """Set by the node: called after each write-behind flush with (sessions, seconds)."""
    dropped_values: int = 0
    """Session values the write-behind flush could not encode and dropped alone (each is
    logged; the rest of the batch is written). Stays 0 while everything stored went through
    :meth:`update_session`, which refuses such values; a node may export it as a metric."""

    @property
    def pending_writes(self) -> int:
        """Writes acknowledged but not yet stored (write-behind queue depth)."""
        return 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start background work (the write-behind flusher)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush every pending write, stop background work, release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable unless the backend answers now."""

    # -- users ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_user(self, user: UserRecord) -> bool:
        """Store a new user atomically; False (and nothing written) if the username exists."""

    @abc.abstractmethod
    async def get_user(self, username: str) -> UserRecord | None: ...

    @abc.abstractmethod
    async def update_user(self, username: str, fields: dict[str, str]) -> bool:
        """Set some fields (``password``, ``role``, ``last_login``, ``email``) of an existing user.

        False if the user does not exist (nothing is created)."""

    @abc.abstractmethod
    async def delete_user(self, username: str) -> bool:
        """Delete the user, its sessions, its connection record and login state."""

    @abc.abstractmethod
    async def list_users(self) -> list[UserRecord]: ...

    @abc.abstractmethod
    async def stats(self) -> StorageStats:
        """Counts for the admin routes: users and live (unexpired) sessions."""

    async def backend_info(self) -> dict[str, Any] | None:
        """The backend server's own figures (Redis ``INFO``) for the admin routes; None when
        there is no separate server (memory backend)."""
        return None

    # -- sessions -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_session(self, session: SessionRecord) -> None:
        """Write a new session now (not write-behind: another node may read it next).

        Raises :class:`UnstorableValue` (nothing written) if its data cannot be stored."""

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session including this node's pending writes; refreshes its inactivity TTL."""

    @abc.abstractmethod
    async def update_session(
        self,
        session_id: str,
        *,
        chat_id: str | None = None,
        data: dict[str, Any] | None = None,
        owner: str | None = None,
        returning: bool = True,
    ) -> SessionRecord | None:
        """Shallow-merge ``data`` into the session's data, replace ``chat_id`` if given, bump
        ``last_access``; returns the merged session (None if it does not exist).

        Write-behind: the change is coalesced per session and flushed in a pipeline every
        ``BATCH_WRITE_INTERVAL_MS``; reads on this node see it at once.

        With ``owner``, raises :class:`pygw.core.errors.NotOwner` (and changes nothing) unless the
        session belongs to that user — the ownership check costs no extra round-trip.
        Raises :class:`UnstorableValue` (and changes nothing) if ``data`` holds a value that
        cannot be stored.
        With ``returning=False`` the merged session is not copied out: the result is the
        session's (shared, read-only) record or None — for callers that only need to know it
        exists.
        """

    @abc.abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Delete the session (and any pending write to it)."""

    @abc.abstractmethod
    async def list_user_sessions(self, username: str) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""

    @abc.abstractmethod
    async def cleanup_sessions(self) -> int:
        """Drop index entries of sessions that expired; returns how many were dropped."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Write every pending session update now."""

    # -- connection records ---------------------------------------------------------------------
    @abc.abstractmethod
    async def set_connection(self, username: str, record: ConnectionRecord) -> None: ...

    @abc.abstractmethod
    async def get_connection(self, username: str) -> ConnectionRecord | None: ...

    @abc.abstractmethod
    async def delete_connection(self, username: str) -> None: ...

    async def reap_connections(self, live: Collection[str]) -> int:
        """Mark offline every connection record that says online on a gateway not in ``live``
        (a node that died without marking its users offline: SIGKILL, a crash, a lost host);
        returns how many. Records are checked one by one, so a newer one (the user reconnected
        elsewhere) is left alone. A backend no other node shares has none to reap."""
        return 0

    # -- token state ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def revoke_token(self, jti: str, exp: int) -> None:
        """Remember ``jti`` as revoked until ``exp`` (UNIX seconds)."""

    @abc.abstractmethod
    async def revoked_tokens(self, now: int) -> list[tuple[str, int]]:
        """Every (jti, exp) revoked and not yet expired at ``now``."""

    @abc.abstractmethod
    async def prune_revocations(self, now: int) -> int:
        """Forget revoked ids whose token expired before ``now`` (nothing accepts them any
        more) and token floors that ended before it; returns how many revoked ids went.
        :meth:`revoke_token` also prunes what expired :data:`REVOKED_KEPT_AFTER_EXPIRY`
        seconds ago, so the list holds about the live revocations; nodes call this
        periodically (with the same margin) for when no revocation comes."""

    @abc.abstractmethod
    async def create_family(self, family: RefreshFamily) -> None:
        """Store a new refresh family and make it the user's current login."""

    @abc.abstractmethod
    async def rotate_refresh(
        self,
        family: str,
        presented_jti: str,
        new_refresh_jti: str,
        new_access_jti: str,
        new_access_exp: int,
        now: int,
    ) -> RotateOutcome:
        """Atomically (across nodes) swap the family's refresh token if ``presented_jti`` is its
        current one; otherwise revoke the family (``reused``)."""

    @abc.abstractmethod
    async def revoke_family(self, family: str) -> RefreshFamily | None:
        """Mark the family revoked; returns it as it was (None if unknown)."""

    @abc.abstractmethod
    async def current_family(self, username: str) -> RefreshFamily | None:
        """The family of the user's current login (set by create_family), if still alive."""

    @abc.abstractmethod
    async def clear_current_family(self, username: str, family: str) -> None:
        """Forget the user's current login if it is still ``family``."""

    @abc.abstractmethod
    async def revoke_user_families(self, username: str) -> list[RefreshFamily]:
        """Revoke every refresh family of the user; returns the live ones as they were (to
        revoke their latest access tokens)."""

    # -- per-user token generations (pygw addition) ----------------------------------------------
    @abc.abstractmethod
    async def token_generation(self, username: str, now: int) -> int:
        """The generation new tokens of ``username`` carry: the user's floor while it lives
        (``until >= now``), else 0. Read at every token issue, so a token is never issued
        with a generation below a floor raised before the read."""

    @abc.abstractmethod
    async def raise_token_floor(self, username: str, now_us: int, until: int) -> int:
        """Atomically raise the user's floor to ``max(current + 1, now_us)`` (a live current
        one counts, an expired one is 0), keep it until at least ``until``; returns it.

        Starting from the time in µs keeps floors rising even after an expired one was
        dropped (a name re-registered an access-token lifetime later starts above it)."""

    @abc.abstractmethod
    async def token_floors(self, now: int) -> list[TokenFloor]:
        """Every floor still live at ``now``; expired ones are pruned."""

    # -- dynamic routes -------------------------------------------------------------------------
    @abc.abstractmethod
    async def put_route(self, route: RouteRecord) -> None:
        """Store the route, replacing any route of the same name."""

    @abc.abstractmethod
    async def delete_route(self, name: str) -> bool:
        """Remove the route; False if there was none of that name."""

    @abc.abstractmethod
    async def list_routes(self) -> list[RouteRecord]:
        """Every stored route, ordered by name."""
