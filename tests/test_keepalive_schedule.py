"""The keep-alive schedule: every slice of connections pinged once per interval, in small steps."""

from __future__ import annotations

import math

import pytest

from pygw.ws.keepalive import MIN_PING_TICK, PING_GROUPS, ping_schedule


@pytest.mark.parametrize("interval", [0.05, 0.3, 1.0, 5.0, 25.0, 600.0])
def test_every_slice_is_pinged_once_per_interval(interval: float) -> None:
    tick, slices = ping_schedule(interval)
    assert tick >= MIN_PING_TICK * (1 - 1e-9)
    ticks = math.ceil(PING_GROUPS / slices)  # ticks in one round over all slices
    assert ticks * tick == pytest.approx(interval)
    assert slices * (ticks - 1) < PING_GROUPS <= slices * ticks


def test_default_interval_pings_one_slice_per_tenth_of_a_second() -> None:
    assert ping_schedule(25.0) == (25.0 / PING_GROUPS, 1)
    assert PING_GROUPS >= 256  # at 10k connections, ~39 pings per tick, not 625
