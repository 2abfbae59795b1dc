"""The one error envelope every HTTP error uses (SPEC §1), as bytes.

``{"error": str, "detail": str|null, "status_code": int, "timestamp": iso, "path": str}``;
422 adds ``errors``; 429 adds ``retry_after``.
"""

from __future__ import annotations

from typing import Any

import orjson

from pygw.core.timeutil import now_iso


def envelope(
    status: int,
    error: str,
    detail: str | None,
    path: str,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "error": error,
        "detail": detail,
        "status_code": status,
        "timestamp": now_iso(),
        "path": path,
    }
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def retry_seconds(retry_after: float) -> int:
    """Whole seconds for ``Retry-After`` (at least 1; an infinite wait is an hour)."""
    if retry_after == float("inf"):
        return 3600
    return max(1, int(retry_after + 0.999))
