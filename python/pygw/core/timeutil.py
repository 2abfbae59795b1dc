"""Timestamps as the wire contract writes them: UTC ISO-8601 with microseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_cached_second = -1
_cached_prefix = ""


def iso_from_unix(ts: float) -> str:
    """``2026-01-05T10:00:00.123456+00:00`` for a UNIX time.

    The date and time of day are formatted once per second (session updates stamp every
    request); the result matches ``datetime.isoformat()`` except that a whole second still
    shows ``.000000``."""
    global _cached_second, _cached_prefix
    second = int(ts // 1)
    if second != _cached_second:
        _cached_second = second
        _cached_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    micros = min(999_999, round((ts - second) * 1_000_000))
    return f"{_cached_prefix}.{micros:06d}+00:00"


def now_iso() -> str:
    """The current UTC time, as :func:`iso_from_unix`."""
    return iso_from_unix(time.time())


def json_seconds(value: float) -> float | int:
    """A duration for JSON as the original wrote its settings: ``25`` rather than ``25.0``."""
    return int(value) if float(value).is_integer() else value
