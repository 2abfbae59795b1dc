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


@dataclass(frozen=True, slots=True)
class SessionLimits:
    session_max_bytes: int = 0
    update_max_bytes: int = 0

    def check_update(self, chat_id: str | None, data: dict[str, Any]) -> None:
        """Refuse an update over ``update_max_bytes``; ``data`` must be storable (cloned)."""
        limit = self.update_max_bytes
        if not limit:
            return
        size = (len(orjson.dumps(data)) if data else 0) + (
            len(orjson.dumps(chat_id)) if chat_id is not None else 0
        )
        if size > limit:
            raise SessionTooLarge(
                f"Session update larger than {limit} bytes ({size} bytes of data and chat_id);"
                " nothing was written"
            )

    def check_merge(
        self, session: SessionRecord, chat_id: str | None, data: dict[str, Any]
    ) -> None:
        """Refuse merging ``chat_id``/``data`` into ``session`` if the stored document would
        grow past ``session_max_bytes``. ``session`` is not changed."""
        limit = self.session_max_bytes
        if not limit or (not data and chat_id is None):
            return
        doc = session.to_json_dict()
        if data:
            doc["data"] = {**session.data, **data}
        if chat_id is not None:
            doc["chat_id"] = chat_id
        size = len(orjson.dumps(doc))
        if size <= limit or size <= len(orjson.dumps(session.to_json_dict())):
            return
        raise SessionTooLarge(session_too_large(limit, size))


def session_too_large(limit: int, size: int | None = None) -> str:
    after = f" ({size} bytes after this update)" if size is not None else ""
    return f"Session larger than {limit} bytes{after}; nothing was written"
