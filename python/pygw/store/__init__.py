"""Storage: users, sessions, connection records and token state, behind one interface.

Two backends: :mod:`pygw.store.memory` (embedded default, one node) and
:mod:`pygw.store.redis` (shared by every node; compatible with the original gateway's keys).
"""

from pygw.store.base import (
    ConnectionRecord,
    RefreshFamily,
    RotateOutcome,
    SessionRecord,
    Storage,
    UnstorableValue,
    UserRecord,
)

__all__ = [
    "ConnectionRecord",
    "RefreshFamily",
    "RotateOutcome",
    "SessionRecord",
    "Storage",
    "UnstorableValue",
    "UserRecord",
]
