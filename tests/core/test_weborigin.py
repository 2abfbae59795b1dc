"""Origins, Host headers and the public URL (pygw.core.weborigin): what the WebSocket origin
check and ``ws_url`` rely on."""

from __future__ import annotations

import pytest

from pygw.core.weborigin import (
    WebOrigin,
    check_public_url,
    host_matches,
    listening_ws_base,
    parse_origin,
    public_origin,
    public_ws_base,
)


@pytest.mark.parametrize(
    ("origin", "parsed"),
    [
        ("https://App.Example.com", WebOrigin("https", "app.example.com", 443)),
        ("http://127.0.0.1:8000", WebOrigin("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", WebOrigin("http", "::1", 8000)),
        ("null", None),
        ("file://", None),
        ("chrome-extension://abc", None),
        ("https://x.example:99999", None),
        ("https://x.example/path", None),
    ],
)
def test_parse_origin(origin: str, parsed: WebOrigin | None) -> None:
    assert parse_origin(origin) == parsed


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://gw.example.com", "gw.example.com", True),  # default ports on both sides
        ("https://gw.example.com", "GW.example.com:443", True),
        ("https://gw.example.com", "gw.example.com:80", False),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8001", False),
        ("http://evil.example", "gw.example.com", False),
        ("http://gw.example.com", "gw.example.com@evil.example", False),
        ("http://gw.example.com", "gw.example.com/x", False),
        ("http://gw.example.com", "gw.example.com:notaport", False),
    ],
)
def test_host_matches(origin: str, host: str, same: bool) -> None:
    parsed = parse_origin(origin)
    assert parsed is not None
    assert host_matches(parsed, host) is same


def test_public_url() -> None:
    url = check_public_url("https://gw.example.com/")
    assert url == "https://gw.example.com"
    assert public_ws_base(url) == "wss://gw.example.com"
    assert public_ws_base(check_public_url("ws://h:8080/prefix")) == "ws://h:8080/prefix"
    assert public_origin("wss://gw.example.com") == WebOrigin("https", "gw.example.com", 443)
    assert public_origin("ws://h:8080/prefix") == WebOrigin("http", "h", 8080)
    for bad in ("ftp://h", "gw.example.com", "https://h/?q=1", "https://u:p@h", "https://h:0x"):
        with pytest.raises(ValueError):
            check_public_url(bad)


def test_listening_ws_base() -> None:
    assert listening_ws_base("127.0.0.1", 8000) == "ws://127.0.0.1:8000"
    assert listening_ws_base("::1", 8000) == "ws://[::1]:8000"
    assert listening_ws_base("0.0.0.0", 8000) == "ws://localhost:8000"
    assert listening_ws_base("::", 8000) == "ws://localhost:8000"
