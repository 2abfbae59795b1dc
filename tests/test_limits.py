"""pygw.limits: rate parsing, the Redis GCRA script against a real redis-server (decisions,
TTLs, NOSCRIPT reload, server clock, agreement with the native limiter), the fallback when
Redis is unreachable, and client addresses through trusted proxies."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis

from pygw._native import RateLimiter
from pygw.config import ConfigError, Settings
from pygw.core.errors import TooManyRequests
from pygw.core.netaddr import ClientAddress, ip_key
from pygw.core.rates import Rate, parse_rate
from pygw.http.errors import from_domain
from pygw.limits import LOGIN_SLOWDOWN_MAX, Limits, MemoryBucket, login_key
from pygw.limits.shared import RedisBucket, redis_client
from pygw.metrics import Metrics
from redis_server import RedisServer, free_port

SECOND = 1_000_000  # µs


# ------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/60", Rate(5, 60.0, 5)),
        ("100/1:200", Rate(100, 1.0, 200)),
        (" 3/1 ", Rate(3, 1.0, 3)),
        ("30/1m", Rate(30, 60.0, 30)),
        ("10/s", Rate(10, 1.0, 10)),
        ("1000/1h:10", Rate(1000, 3600.0, 10)),
        ("2/0.5", Rate(2, 0.5, 2)),
        ("7", Rate(7, 1.0, 7)),
        ("", None),
        ("0", None),
        ("off", None),
        ("0/60", None),
    ],
)
def test_parse_rate(text: str, expected: Rate | None) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["five/60", "5/", "5/0", "5/-1", "5/60:0", "-5/60", "5/60:x"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_settings_read_and_validate_rates() -> None:
    s = Settings.from_env(
        {
            "PYGW_RATE_LOGIN": "3/1",
            "PYGW_RATE_HTTP": "50/1:100",
            "PYGW_RATE_WS_CONNECT": "",
            "PYGW_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        }
    )
    assert (s.rate_login, s.rate_http, s.rate_ws_connect) == ("3/1", "50/1:100", "")
    assert s.rate_login_ip == "30/60" and s.rate_ws_message == "100/1:200"  # defaults
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    limits = Limits(s, Metrics())
    assert not limits.enabled("ws_connect") and limits.enabled("http")
    with pytest.raises(ConfigError, match="PYGW_RATE_LOGIN_IP"):
        Settings.from_env({"PYGW_RATE_LOGIN_IP": "lots"})
    with pytest.raises(ConfigError, match="PYGW_TRUSTED_PROXIES"):
        Settings.from_env({"PYGW_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})


# ------------------------------------------------------------------------------ Redis script
@pytest.fixture
async def client(clean_redis: RedisServer) -> AsyncIterator[Redis]:
    c = redis_client(clean_redis.url)
    yield c
    await c.aclose()


def bucket(client: Redis, rate: str, cls: str = "test") -> RedisBucket:
    parsed = parse_rate(rate)
    assert parsed is not None
    return RedisBucket(cls, parsed, client, MemoryBucket(parsed))


async def test_burst_then_one_per_interval(client: Redis) -> None:
    b = bucket(client, "4/1:3")  # interval 250 ms, burst 3
    t = 1_000 * SECOND
    assert [await b.run("k", now_us=t) for _ in range(3)] == [0, 0, 0]
    assert await b.run("k", now_us=t) == 250_000  # wait one interval
    assert await b.run("k", now_us=t + 249_999) == 1
    assert await b.run("k", now_us=t + 250_000) == 0
    assert await b.run("k", now_us=t + 250_000) == 250_000
    # Idle for long: back to a full burst, never more.
    later = t + 60 * SECOND
    assert [await b.run("k", now_us=later) for _ in range(4)] == [0, 0, 0, 250_000]


async def test_refusals_consume_nothing_and_keys_are_independent(client: Redis) -> None:
    b = bucket(client, "1/1")
    t = 5_000 * SECOND
    assert await b.run("a", now_us=t) == 0
    for _ in range(10):
        assert await b.run("a", now_us=t + 500_000) == 500_000
    assert await b.run("a", now_us=t + SECOND) == 0
    assert await b.run("b", now_us=t) == 0


async def test_cost_and_cost_over_burst(client: Redis) -> None:
    b = bucket(client, "10/1:5")
    t = 9_000 * SECOND
    assert await b.run("k", cost=5, now_us=t) == 0
    assert await b.run("k", cost=1, now_us=t) == 100_000
    assert await b.run("k", cost=6, now_us=t) == -1
    assert await b.check("other", cost=6) == math.inf


async def test_key_name_and_ttl(client: Redis) -> None:
    b = bucket(client, "5/60", cls="login")
    assert await b.check("alice") == 0.0
    raw = redis.Redis(
        host=client.connection_pool.connection_kwargs["host"],
        port=client.connection_pool.connection_kwargs["port"],
    )
    try:
        assert raw.exists("pygw:rl:login:alice")
        # One attempt of 5 per 60 s: fresh again after 12 s.
        assert 11_000 < raw.pttl("pygw:rl:login:alice") <= 12_000
        for _ in range(4):
            assert await b.check("alice") == 0.0
        assert 59_000 < raw.pttl("pygw:rl:login:alice") <= 60_000
        wait = await b.check("alice")
        assert 11.0 < wait <= 12.0
    finally:
        raw.close()


async def test_server_clock_is_used_without_now(client: Redis) -> None:
    b = bucket(client, "3/1")
    assert [await b.check("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await b.check("k")
    assert 0.0 < wait <= 1 / 3
    await asyncio.sleep(wait + 0.02)
    assert await b.check("k") == 0.0


async def test_reset_forgets_the_key(client: Redis) -> None:
    b = bucket(client, "1/60")
    assert await b.check("k") == 0.0
    assert await b.check("k") > 0
    await b.reset("k")
    assert await b.check("k") == 0.0


async def test_script_is_reloaded_after_script_flush(client: Redis) -> None:
    b = bucket(client, "2/1")
    t = 7_000 * SECOND
    assert await b.run("k", now_us=t) == 0
    await client.script_flush()
    assert not (await client.script_exists(b.script.sha))[0]
    assert await b.run("k", now_us=t) == 0
    assert await b.run("k", now_us=t) == 500_000
    assert (await client.script_exists(b.script.sha))[0]


async def test_agrees_with_the_native_limiter(client: Redis) -> None:
    """Same decisions as pygw._native.RateLimiter over a random arrival sequence."""
    rng = random.Random(5)
    b = bucket(client, "8/1:4")  # 125 ms interval: exact in µs and in binary floating point
    native = RateLimiter(8.0, 4)
    t = 100 * SECOND
    decisions = []
    for _ in range(400):
        t += rng.choice((0, 0, 1_013, 17_011, 61_007, 130_003, 400_009))
        key = rng.choice(("a", "b"))
        redis_ok = await b.run(key, now_us=t) == 0
        native_ok = native.check(key, now=t / SECOND) == 0.0
        assert redis_ok == native_ok, (t, key)
        decisions.append(redis_ok)
    assert 50 < sum(decisions) < 350  # both outcomes exercised


async def test_concurrent_checks_never_exceed_the_burst(clean_redis: RedisServer) -> None:
    """Two clients (two nodes) hammering one key at once: exactly ``burst`` pass."""
    a, c = redis_client(clean_redis.url), redis_client(clean_redis.url)
    try:
        ba, bc = bucket(a, "10/60"), bucket(c, "10/60")
        results = await asyncio.gather(*[(ba if i % 2 else bc).check("k") for i in range(60)])
        assert sum(1 for r in results if r == 0.0) == 10
    finally:
        await a.aclose()
        await c.aclose()


# ------------------------------------------------------------------------------ fail open
async def test_unreachable_redis_falls_back_to_local_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        b = bucket(dead, "2/60", cls="login")
        with caplog.at_level(logging.WARNING, logger="pygw.limits"):
            assert await b.check("k") == 0.0
            assert await b.check("k") == 0.0
            assert await b.check("k") > 0  # still limited, per node
            assert await b.check("other") == 0.0
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # throttled, not one per check
    finally:
        await dead.aclose()


async def test_outage_and_recovery(redis_server: RedisServer) -> None:
    c = redis_client(redis_server.url)
    try:
        b = bucket(c, "1/60")
        assert await b.check("shared") == 0.0
        assert await b.check("shared") > 0  # in Redis
        redis_server.stop()
        assert await b.check("shared") == 0.0  # local fallback starts fresh: fail open
        redis_server.start()  # an empty Redis (no persistence)
        assert await b.check("shared") == 0.0
        assert await b.check("shared") > 0  # shared again
    finally:
        await c.aclose()


# ------------------------------------------------------------------------------ addresses
def test_untrusted_peer_headers_are_ignored() -> None:
    resolve = ClientAddress(()).resolve
    headers = {"x-forwarded-for": "1.2.3.4", "x-real-ip": "5.6.7.8"}
    assert resolve(headers, "9.9.9.9") == "9.9.9.9"
    resolve = ClientAddress(["10.0.0.0/8"]).resolve
    assert resolve(headers, "9.9.9.9") == "9.9.9.9"


def test_trusted_proxy_forwarded_for() -> None:
    resolve = ClientAddress("10.0.0.0/8,192.168.1.1").resolve
    assert resolve({"x-forwarded-for": "203.0.113.7"}, "10.1.2.3") == "203.0.113.7"
    # Walked from the right: what the client wrote itself (leftmost) is not believed.
    assert resolve({"x-forwarded-for": "6.6.6.6, 203.0.113.7"}, "10.1.2.3") == "203.0.113.7"
    # Chains of trusted proxies are skipped.
    xff = "203.0.113.7, 192.168.1.1, 10.9.9.9"
    assert resolve({"x-forwarded-for": xff}, "10.1.2.3") == "203.0.113.7"
    # Garbage stops the walk at the last address a trusted proxy vouched for.
    assert resolve({"x-forwarded-for": "nonsense, 10.9.9.9"}, "10.1.2.3") == "10.9.9.9"
    assert resolve({"x-forwarded-for": "203.0.113.7:4711"}, "10.1.2.3") == "203.0.113.7"
    assert resolve({"x-real-ip": "203.0.113.8"}, "10.1.2.3") == "203.0.113.8"
    assert resolve({"x-real-ip": "junk"}, "10.1.2.3") == "10.1.2.3"
    assert resolve({}, "::ffff:10.1.2.3") == "10.1.2.3"


def test_ip_keys() -> None:
    assert ip_key("203.0.113.7") == "203.0.113.7"
    assert ip_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert ip_key("2001:db8:1:2:3:4:5:6") == ip_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert ip_key("not-an-ip") == "not-an-ip"


# ------------------------------------------------------------------------------ Limits
async def test_limits_count_refusals_and_clear_on_login_success() -> None:
    metrics = Metrics()
    limits = Limits(Settings.from_env({"PYGW_RATE_LOGIN": "2/60"}), metrics)
    await limits.login("bob", "127.0.0.1")
    await limits.login("bob", "127.0.0.1")
    with pytest.raises(TooManyRequests) as err:
        await limits.login("bob", "127.0.0.1")
    answer = from_domain(err.value)  # what HTTP clients get
    assert answer.status == 429
    assert answer.headers == [("Retry-After", "30")]
    assert metrics.rate_limited["login"] == 1
    await limits.login_succeeded("bob", "127.0.0.1")
    await limits.login("bob", "127.0.0.1")


async def test_login_lockout_is_per_name_and_address_and_only_slows_per_name() -> None:
    """Failing on purpose from one address locks only that address out of the name; from
    anywhere, too many attempts on one name are delayed (up to LOGIN_SLOWDOWN_MAX), never
    refused."""
    metrics = Metrics()
    env = {"PYGW_RATE_LOGIN": "2/60", "PYGW_RATE_LOGIN_USER": "3/60"}
    limits = Limits(Settings.from_env(env), metrics)
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    limits.sleep = record
    for _ in range(2):
        await limits.login("victim", "198.51.100.1")
    with pytest.raises(TooManyRequests):
        await limits.login("victim", "198.51.100.1")
    # The victim elsewhere is not locked out (its own (name, address) bucket).
    await limits.login("victim", "203.0.113.9")
    assert delays == []
    # A fourth attempt on the name from anywhere: slowed down, not refused.
    await limits.login("victim", "203.0.113.9")
    await limits.login("victim", "192.0.2.1")
    assert delays == [LOGIN_SLOWDOWN_MAX, LOGIN_SLOWDOWN_MAX]
    assert metrics.rate_limited["login"] == 1 and metrics.rate_limited["login_user"] == 2
    # The right password clears the name's slow-down and that address's failures.
    await limits.login_succeeded("victim", "203.0.113.9")
    await limits.login("victim", "203.0.113.9")
    assert len(delays) == 2
    with pytest.raises(TooManyRequests):  # the attacker's address stays locked
        await limits.login("victim", "198.51.100.1")


async def test_registrations_are_limited_per_address() -> None:
    limits = Limits(Settings.from_env({"PYGW_RATE_REGISTER": "2/60"}), Metrics())
    await limits.register("198.51.100.1")
    await limits.register("198.51.100.1")
    with pytest.raises(TooManyRequests):
        await limits.register("198.51.100.1")
    await limits.register("198.51.100.2")
    assert login_key("bob", "2001:db8:1:2::7") == "2001:db8:1:2::/64|bob"


def test_ws_message_limits_are_per_connection() -> None:
    limits = Limits(Settings.from_env({"PYGW_RATE_WS_MESSAGE": "1/60:3"}), Metrics())
    assert [limits.ws_message(1) for _ in range(4)] == [True, True, True, False]
    assert limits.ws_message(2)
    limits.connection_closed(1)
    assert limits.ws_message(1)
    assert limits.metrics.rate_limited["ws_message"] == 1
