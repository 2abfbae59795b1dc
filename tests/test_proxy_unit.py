"""The proxy's circuit breaker and URL building, with a fake clock (no I/O)."""

from __future__ import annotations

import ipaddress

import pytest

from pygw.core.errors import BadRequest
from pygw.core.netaddr import non_public_kind
from pygw.proxy import CircuitBreaker, target_url
from pygw.store.base import RouteRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    b = CircuitBreaker(3, 10.0, clock)
    for _ in range(2):
        assert b.allow() == (True, False)
        b.failure(False)
    b.success(False)  # a success resets the count
    for _ in range(2):
        b.failure(False)
    assert b.state == "closed"
    b.failure(False)
    assert b.state == "open"
    assert b.allow() == (False, False)
    clock.now += 4
    assert b.retry_after() == pytest.approx(6.0)
    assert b.allow() == (False, False)


def test_half_open_lets_one_trial_through() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock)
    b.failure(False)
    clock.now += 5
    assert b.allow() == (True, True)
    assert b.state == "half_open"
    assert b.allow() == (False, False)  # one trial at a time
    b.failure(True)  # the trial failed: open again for a full period
    assert b.state == "open"
    clock.now += 4.9
    assert b.allow() == (False, False)
    clock.now += 0.1
    assert b.allow() == (True, True)
    b.release(True)  # cancelled: another trial may go
    assert b.allow() == (True, True)
    b.success(True)
    assert (b.state, b.failures) == ("closed", 0)
    assert b.allow() == (True, False)


def test_late_failures_of_non_trial_requests_do_not_reopen() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock)
    b.failure(False)
    clock.now += 5
    assert b.allow() == (True, True)
    b.failure(False)  # a request admitted before the circuit opened, ending late
    assert b.state == "half_open"
    assert b.allow() == (False, False)


def route(base_url: str, path: str) -> RouteRecord:
    return RouteRecord(name="r", base_url=base_url, path=path, method="GET")


@pytest.mark.parametrize(
    ("base_url", "path", "rest", "query", "expected"),
    [
        ("http://h:1", "/api", "", "", "http://h:1/api"),
        ("http://h:1/", "/api/", "x/y", "a=1", "http://h:1/api/x/y?a=1"),
        ("http://h:1/prefix", "", "x%20y/", "", "http://h:1/prefix/x%20y/"),
        ("https://h", "", "", "q=%2F&q=2", "https://h?q=%2F&q=2"),
    ],
)
def test_target_url(base_url: str, path: str, rest: str, query: str, expected: str) -> None:
    assert target_url(route(base_url, path), rest, query) == expected


@pytest.mark.parametrize("rest", ["..", "a/../b", "%2e%2E/x", "a/.", "..%2Fetc"])
def test_target_url_refuses_dot_segments(rest: str) -> None:
    with pytest.raises(BadRequest) as info:
        target_url(route("http://h", "/jail"), rest, "")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "rest",
    [
        "..;/admin",
        "..%3B/admin",
        "..%5cadmin",
        "a\\b",
        "%252e%252e/x",
        "%25252e%25252e/x",
        "%2525252e%2525252e/x",  # encoded four times
        "%25252525252e",  # still encoded after the decoding rounds
        "%ef%bc%8e%ef%bc%8e/x",
        "%ef%bc%bcx",  # fullwidth backslash
        "x%00y",
        "%c0%ae%c0%ae/x",
    ],
)
def test_target_url_refuses_dot_segments_in_any_encoding(rest: str) -> None:
    with pytest.raises(BadRequest):
        target_url(route("http://h", "/jail"), rest, "")


@pytest.mark.parametrize("rest", ["...", "a..b", "v1.2/x", ".well-known", "100%25", "%7Eu", "é"])
def test_ordinary_names_with_dots_pass(rest: str) -> None:
    assert target_url(route("http://h", "/p"), rest, "") == f"http://h/p/{rest}"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_non_public_kind(address: str, kind: str | None) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind
