"""Rate settings: ``count/seconds[:burst]`` texts (``PYGW_RATE_<CLASS>``) and their meaning.

See docs/RATE_LIMITS.md for the classes; :mod:`pygw.limits` enforces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHARED_CLASSES = ("login", "login_ip", "login_user", "register", "http", "ws_connect")
"""Classes shared through Redis when it is configured."""
RATE_CLASSES = (*SHARED_CLASSES, "ws_message")

_DISABLED = frozenset({"", "0", "off", "none", "false", "no", "disabled"})
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERIOD = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)?\s*([smhd]?)$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``period`` seconds sustained, ``burst`` at once."""

    count: int
    period: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def interval_us(self) -> int:
        """The emission interval in whole microseconds (what the Redis script works in)."""
        return max(1, round(self.period * 1_000_000 / self.count))

    def __str__(self) -> str:
        period = int(self.period) if self.period.is_integer() else self.period
        return f"{self.count}/{period}:{self.burst}"


def parse_rate(text: str | None) -> Rate | None:
    """``"5/60"`` (5 per 60 s, burst 5), ``"100/1:200"`` (burst 200), ``"30/1m"``, ``"10/s"``;
    None for a disabled class (empty, ``0``, ``off``, a count of 0). ValueError otherwise."""
    raw = (text or "").strip().lower()
    if raw in _DISABLED:
        return None
    spec, colon, burst_text = raw.partition(":")
    count_text, slash, period_text = spec.partition("/")
    try:
        count = int(count_text.strip())
        burst = int(burst_text.strip()) if colon else count
    except ValueError:
        raise ValueError(f"{text!r} is not count/seconds[:burst], e.g. 5/60 or 100/1:200") from None
    period = 1.0
    if slash:
        m = _PERIOD.match(period_text.strip())
        if m is None or (m.group(1) is None and not m.group(2)):
            raise ValueError(f"{text!r}: the period must be seconds, e.g. 60, 1.5, 1m, 1h")
        period = float(m.group(1) or 1) * _UNITS[m.group(2)]
    if count < 0 or burst < 0:
        raise ValueError(f"{text!r}: counts cannot be negative")
    if count == 0:
        return None
    if period <= 0:
        raise ValueError(f"{text!r}: the period must be positive")
    if burst < 1:
        raise ValueError(f"{text!r}: the burst must be at least 1")
    return Rate(count, period, burst)
