"""Timestamps as the wire contract writes them: UTC ISO-8601."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_iso() -> str:
    """Current UTC time as ISO-8601 with microseconds: ``2026-01-05T10:00:00.123456+00:00``."""
    return datetime.now(UTC).isoformat()


def iso_from_unix(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def unix_now() -> float:
    return time.time()
