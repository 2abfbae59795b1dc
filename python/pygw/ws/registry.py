"""This node's open WebSocket connections, by id and by user."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pygw.core.codes import CLOSE_GOING_AWAY
from pygw.core.timeutil import iso_from_unix
from pygw.ws.connection import Connection


class ConnectionRegistry:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.conns: dict[int, Connection] = {}
        self.users: dict[str, list[Connection]] = {}
        """Each user's connections on this node (a list: most users have one, and an empty set
        alone costs 216 bytes per connected user)."""
        self.max_connections = 1 << 30
        """Set at start: PYGW_WS_MAX_CONNECTIONS, or from the open-file limit."""

    @property
    def connection_count(self) -> int:
        return len(self.conns)

    @property
    def user_count(self) -> int:
        return len(self.users)

    @property
    def session_count(self) -> int:
        """Distinct sessions connected (counted when asked: health checks, not a hot path)."""
        return len({conn.session_id for conn in self.conns.values()})

    @property
    def full(self) -> bool:
        return len(self.conns) >= self.max_connections

    def add(self, conn: Connection) -> bool:
        """Register an opened connection; True if it is its user's first on this node."""
        self.conns[conn.id] = conn
        peers = self.users.get(conn.user_id)
        if peers is None:
            peers = self.users[conn.user_id] = []
        peers.append(conn)
        return len(peers) == 1

    def remove(self, conn: Connection) -> tuple[bool, bool]:
        """Forget a closed connection: (it was registered, it was its user's last here)."""
        if self.conns.pop(conn.id, None) is None:
            return False, False
        peers = self.users.get(conn.user_id)
        if peers is None:
            return True, False
        if conn in peers:
            peers.remove(conn)
        if peers:
            return True, False
        del self.users[conn.user_id]
        return True, True

    def user_connections(self, user_id: str) -> list[Connection]:
        return self.users.get(user_id, [])

    def is_online(self, user_id: str) -> bool:
        return user_id in self.users

    def disconnect_user(self, user_id: str, family: str | None, code: int, reason: str) -> int:
        """Close the user's connections here (those of login ``family`` when given)."""
        peers = self.users.get(user_id)
        if not peers:
            return 0
        closed = 0
        for conn in list(peers):
            if family is None or conn.family is None or conn.family == family:
                conn.close(code, reason)
                closed += 1
        return closed

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "Server shutting down") -> int:
        conns = list(self.conns.values())
        for conn in conns:
            conn.close(code, reason)
        return len(conns)

    def describe(self, limit: int = 1000, user: str | None = None) -> dict[str, Any]:
        """This node's live connections (at most ``limit``; those of ``user`` if given)."""
        if user is not None:
            conns: Iterable[Connection] = self.users.get(user, ())
            count = len(self.users.get(user, ()))
        else:
            conns, count = self.conns.values(), len(self.conns)
        now = time.monotonic()
        listed: list[dict[str, Any]] = []
        for conn in conns:
            if len(listed) >= limit:
                break
            listed.append(
                {
                    "conn_id": conn.id,
                    "user_id": conn.user_id,
                    "role": conn.role,
                    "session_id": conn.session_id,
                    "remote": conn.remote,
                    "connected_at": iso_from_unix(conn.connected_at),
                    "idle_seconds": round(now - conn.last_seen, 3),
                    "channels": sorted(conn.channels or ()),
                }
            )
        return {"gateway_id": self.node_id, "count": count, "connections": listed}
