"""pygw._native RateLimiter: GCRA semantics, keys, pruning and bounded memory."""

from __future__ import annotations

import math
import time

import pytest

from pygw._native import RateLimiter

T0 = 1000.0


def test_burst_then_sustained_rate() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)
    assert [limiter.check("k", now=T0) for _ in range(5)] == [0.0] * 5
    wait = limiter.check("k", now=T0)
    assert wait == pytest.approx(0.1)
    # Denied requests consume nothing: the wait only shrinks with time.
    assert limiter.check("k", now=T0 + 0.05) == pytest.approx(0.05)
    assert limiter.check("k", now=T0 + 0.1) == 0.0
    assert limiter.check("k", now=T0 + 0.1) == pytest.approx(0.1)


def test_sustained_rate_over_time() -> None:
    limiter = RateLimiter(rate=4.0, burst=1)
    allowed = sum(limiter.check("k", now=T0 + i * 0.05) == 0.0 for i in range(200))
    assert allowed == 40  # 10 seconds at 4/s


@pytest.mark.parametrize("rate", [3.0, 7.0, 0.3, 1000.0 / 7])
def test_exact_burst_for_awkward_rates(rate: float) -> None:
    limiter = RateLimiter(rate=rate, burst=30)
    assert all(limiter.check("k", now=T0) == 0.0 for _ in range(30))
    assert limiter.check("k", now=T0) > 0.0


def test_cost() -> None:
    limiter = RateLimiter(rate=1.0, burst=10)
    assert limiter.check("k", now=T0, cost=7) == 0.0
    assert limiter.check("k", now=T0, cost=4) == pytest.approx(1.0)
    assert limiter.check("k", now=T0, cost=3) == 0.0
    assert limiter.check("k", now=T0, cost=0) == 0.0
    assert limiter.check("other", now=T0, cost=11) == math.inf
    assert len(limiter) == 1, "refused and zero-cost requests store no state"
    with pytest.raises(OverflowError):
        limiter.check("k", now=T0, cost=-1)


def test_idle_keys_recover_but_do_not_bank_credit() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    limiter.check("k", now=T0, cost=2)
    assert limiter.check("k", now=T0 + 100, cost=2) == 0.0
    assert limiter.check("k", now=T0 + 100) == pytest.approx(0.5)


def test_keys_are_independent_and_typed() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.check("a", now=T0) == 0.0
    assert limiter.check("a", now=T0) > 0.0
    assert limiter.check("b", now=T0) == 0.0
    assert limiter.check(1, now=T0) == 0.0
    assert limiter.check("1", now=T0) == 0.0, "str and int keys are distinct"
    assert limiter.check(1, now=T0) > 0.0
    assert limiter.check(-(2**63), now=T0) == 0.0
    assert len(limiter) == 5


@pytest.mark.parametrize("key", [1.5, None, b"bytes", (1,), 2**64])
def test_other_key_types_are_refused(key: object) -> None:
    with pytest.raises(TypeError):
        RateLimiter(rate=1.0, burst=1).check(key, now=T0)  # type: ignore[arg-type]


def test_remove_and_reset() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    limiter.check("a", now=T0)
    limiter.check(2, now=T0)
    limiter.remove("a")
    limiter.remove("never-seen")
    assert len(limiter) == 1
    assert limiter.check("a", now=T0) == 0.0
    limiter.reset()
    assert len(limiter) == 0
    assert limiter.check(2, now=T0) == 0.0


def test_prune_drops_only_recovered_keys() -> None:
    limiter = RateLimiter(rate=1.0, burst=5)
    limiter.check("light", now=T0, cost=1)
    limiter.check("heavy", now=T0, cost=5)
    assert limiter.prune(now=T0 + 0.5) == 0
    assert limiter.prune(now=T0 + 1.0) == 1
    assert len(limiter) == 1
    # "heavy" kept its state: still limited at T0 + 1.
    assert limiter.check("heavy", now=T0 + 1.0, cost=2) == pytest.approx(1.0)
    assert limiter.prune(now=T0 + 10) == 1
    assert len(limiter) == 0


def test_max_keys_bounds_memory() -> None:
    limiter = RateLimiter(rate=1.0, burst=10, max_keys=64)
    for i in range(1000):
        limiter.check(f"key-{i}", now=T0 + i * 0.001)
        assert len(limiter) <= 64
    # The most recently limited keys survive eviction.
    assert limiter.check("key-999", now=T0 + 1.0, cost=10) > 0.0


def test_full_limiter_prunes_before_evicting() -> None:
    limiter = RateLimiter(rate=1.0, burst=10, max_keys=4)
    limiter.check("a", now=T0)
    limiter.check("b", now=T0)
    limiter.check("busy", now=T0 + 5, cost=10)
    limiter.check("c", now=T0 + 5)
    assert len(limiter) == 4
    limiter.check("d", now=T0 + 5)
    assert len(limiter) == 3, "a and b had recovered and were pruned"
    assert limiter.check("busy", now=T0 + 5) > 0.0


def test_default_clock_is_time_monotonic() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.check("k") == 0.0
    # An explicit time.monotonic() reading lives on the same timeline.
    wait = limiter.check("k", now=time.monotonic())
    assert 0.5 < wait <= 1.0
    assert limiter.check("k", now=time.monotonic() + 1.0) == 0.0
    assert limiter.prune(now=time.monotonic() + 10) == 1


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [(0.0, 1, 1), (-1.0, 1, 1), (math.inf, 1, 1), (math.nan, 1, 1), (1.0, 0, 1), (1.0, 1, 0)],
)
def test_invalid_parameters(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, max_keys)
