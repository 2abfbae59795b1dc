"""Size limits on session writes (security review item 11), shared by both backends.

- **update**: the update's ``data`` and ``chat_id`` encoded as JSON, at most
  ``update_max_bytes`` (``PYGW_SESSION_UPDATE_MAX_BYTES``);
- **session**: the session's stored JSON document (``sessions:<id>``: data, chat_id, owner,
  timestamps) after the merge, at most ``session_max_bytes`` (``PYGW_SESSION_MAX_BYTES``). An
  update that does not make the document larger is always accepted, so a session stored before
  the limit was lowered can still be shrunk or touched.

Either refusal raises :class:`~pygw.core.errors.SessionTooLarge` (413) before anything is
changed. 0 turns a limit off. The Redis backend checks the merged size again inside its merge
script (:data:`pygw.store._redis_scripts.MERGE_SESSION`), where the session other nodes wrote is
known: the check here, on this node's view, gives the caller its answer; the script's keeps
Redis bounded whatever the nodes' views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pygw.core.errors import SessionTooLarge
from pygw.store.base import SessionRecord

SLACK = 64
"""Bytes an update may add besides its data and chat_id (a longer ``last_access``)."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    session_max_bytes: int = 0
    update_max_bytes: int = 0

    def admit(
        self, session: SessionRecord, chat_id: str | None, data: dict[str, Any], size_hint: int
    ) -> int:
        """Raise :class:`SessionTooLarge` if merging ``chat_id``/``data`` (storable, cloned)
        into ``session`` must be refused; else return the new size hint: an upper bound of
        the merged session's stored JSON size, or 0 (unknown). ``session`` is not changed.

        ``size_hint`` is the last one returned for this session (0 if unknown). Merging never
        grows the document by more than the update's JSON (a new pair costs its text and a
        comma, the update's braces pay for that), so while hint + update fits nothing is
        encoded; past it the merged document is encoded once to know its exact size."""
        if (not data and chat_id is None) or not (self.update_max_bytes or self.session_max_bytes):
            return size_hint
        update = (len(orjson.dumps(data)) if data else 0) + (
            len(orjson.dumps(chat_id)) if chat_id is not None else 0
        )
        if self.update_max_bytes and update > self.update_max_bytes:
            raise SessionTooLarge(
                f"Session update larger than {self.update_max_bytes} bytes ({update} bytes of"
                " data and chat_id); nothing was written"
            )
        limit = self.session_max_bytes
        if not limit:
            return 0
        if size_hint and size_hint + update + SLACK <= limit:
            return size_hint + update + SLACK
        doc = session.to_json_dict()
        if data:
            doc["data"] = {**session.data, **data}
        if chat_id is not None:
            doc["chat_id"] = chat_id
        size = len(orjson.dumps(doc))
        if size > limit and size > len(orjson.dumps(session.to_json_dict())):
            raise SessionTooLarge(session_too_large(limit, size))
        return size


def session_too_large(limit: int, size: int | None = None) -> str:
    after = f" ({size} bytes after this update)" if size is not None else ""
    return f"Session larger than {limit} bytes{after}; nothing was written"
