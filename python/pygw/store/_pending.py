"""Write-behind bookkeeping: the coalesced, not yet flushed changes of one session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pygw.store._codec import clone_json, encode_value
from pygw.store.base import SessionRecord, UnstorableValue


@dataclass(slots=True)
class SessionDelta:
    """Changes to apply to a stored session: ``data`` is shallow-merged, the others replaced."""

    chat_id: str | None = None
    """New chat id; None keeps the stored one."""
    data: dict[str, Any] = field(default_factory=dict)
    last_access: str | None = None

    def is_empty(self) -> bool:
        return self.chat_id is None and not self.data and self.last_access is None

    def absorb(self, newer: SessionDelta) -> None:
        """Coalesce a later delta into this one (the later one wins key by key)."""
        if newer.chat_id is not None:
            self.chat_id = newer.chat_id
        self.data.update(newer.data)
        if newer.last_access is not None:
            self.last_access = newer.last_access

    def apply_to(self, session: SessionRecord) -> None:
        """Overlay this delta on ``session`` (values are copied, never shared)."""
        if self.chat_id is not None:
            session.chat_id = self.chat_id
        if self.data:
            session.data.update(clone_json(self.data))
        if self.last_access is not None:
            session.last_access = self.last_access

    def script_args(self) -> tuple[list[bytes | str], list[tuple[str, str]]]:
        """The MERGE_SESSION arguments after the first four (see ``_redis_scripts``), and
        what could not be encoded: ``(field, reason)`` pairs, each left out alone (a bad
        ``chat_id`` keeps the stored one, a bad data key or value leaves that key as stored)."""
        dropped: list[tuple[str, str]] = []

        def encoded(name: str, value: object) -> bytes | None:
            try:
                return encode_value(value)
            except UnstorableValue as exc:
                dropped.append((name, str(exc)))
                return None

        chat_id = None if self.chat_id is None else encoded("chat_id", self.chat_id)
        last_access = None if self.last_access is None else encoded("last_access", self.last_access)
        args: list[bytes | str] = [chat_id or b"", last_access or b""]
        for key, value in self.data.items():
            raw_key = encoded(f"data[{key!r}]", key)
            raw_value = None if raw_key is None else encoded(f"data[{key!r}]", value)
            if raw_key is not None and raw_value is not None:
                args += [key, raw_key, raw_value]
        return args, dropped


@dataclass(slots=True)
class PendingSession:
    """A session with unflushed changes on this node.

    ``view`` is the last known stored state with every pending change applied: later updates in
    the same interval are answered from it without a round-trip. ``delta`` holds the changes not
    yet sent; ``inflight`` the ones a flush is writing right now (merged back if it fails).
    """

    view: SessionRecord
    delta: SessionDelta = field(default_factory=SessionDelta)
    inflight: SessionDelta | None = None
    size: int = 0
    """An upper bound of ``view``'s JSON size, 0 if unknown (see ``SessionLimits.admit``)."""
    changes: int = 0
    """Changes absorbed so far (numbers them, for write-through waiters)."""
    flushing: int = 0
    """The number of the last change in flight."""
    written: int = 0
    """The number of the last change a flush wrote (or found nothing to write to)."""
    outcome: Any = None
    """What that flush's MERGE_SESSION answered: 1 written, 0 the session is gone, -2 refused
    (the session would be larger than its limit), else an error."""

    def absorb(self, delta: SessionDelta) -> int:
        """Coalesce a change into the pending delta; returns its number."""
        self.delta.absorb(delta)
        self.changes += 1
        return self.changes

    def overlay(self, stored: SessionRecord) -> None:
        """Apply every unconfirmed change (in flight, then pending) to ``stored``."""
        if self.inflight is not None:
            self.inflight.apply_to(stored)
        self.delta.apply_to(stored)

    def begin_flush(self) -> SessionDelta:
        self.inflight, self.delta = self.delta, SessionDelta()
        self.flushing = self.changes
        return self.inflight

    def flush_failed(self) -> None:
        """Put the in-flight changes back under any that arrived meanwhile."""
        if self.inflight is not None:
            self.inflight.absorb(self.delta)
            self.delta, self.inflight = self.inflight, None

    def flush_done(self, outcome: Any) -> None:
        self.inflight = None
        self.written = self.flushing
        self.outcome = outcome


def copy_session(session: SessionRecord) -> SessionRecord:
    return SessionRecord(
        session_id=session.session_id,
        user_id=session.user_id,
        chat_id=session.chat_id,
        data=clone_json(session.data),
        created_at=session.created_at,
        last_access=session.last_access,
    )
