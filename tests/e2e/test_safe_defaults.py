"""Review item 17: safe defaults of the WebSocket upgrade and of ``ws_url``, against real gateway
processes over loopback (the proxy's defaults: tests/e2e/test_proxy.py).

- 17a: a browser page of another origin may not open a WebSocket (cross-site WebSocket
  hijacking); the gateway's own origin (the request's Host, or ``PYGW_PUBLIC_URL``) and clients
  sending no Origin may; ``PYGW_WS_ALLOWED_ORIGINS`` adds origins (``*`` any, ``null`` for
  file:// pages).
- 17c: ``ws_url`` never reflects the request's Host: ``PYGW_PUBLIC_URL`` when set (``https`` ->
  ``wss``), else the address the node listens on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from conftest import Account, new_account
from gateway_process import GatewayProcess

PUBLIC = "https://gw.example.com"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Default settings."""
    with GatewayProcess(log_path=tmp_path_factory.mktemp("plain") / "gw.log") as gw:
        yield gw


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Behind a public URL, with file:// pages allowed."""
    env = {"PYGW_PUBLIC_URL": PUBLIC + "/", "PYGW_WS_ALLOWED_ORIGINS": "null"}
    with GatewayProcess(env=env, log_path=tmp_path_factory.mktemp("public") / "gw.log") as gw:
        yield gw


def account(gw: GatewayProcess) -> Account:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        return new_account(http)


async def opens(gw: GatewayProcess, token: str, origin: str | None) -> bool:
    """Does an upgrade with this Origin get the welcome frame? A refusal must be a 403 with
    the error envelope naming the origin."""
    url = f"{gw.ws_url}/ws/connect?token={token}"
    try:
        async with websockets.connect(url, origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            return bool(orjson.loads(await ws.recv())["type"] == "connected")
    except websockets.InvalidStatus as exc:
        response = exc.response
        assert response.status_code == 403
        body = orjson.loads(response.body or b"{}")
        assert body["status_code"] == 403
        assert body["detail"].startswith(f"Origin not allowed: {origin!r}"), body
        assert "PYGW_WS_ALLOWED_ORIGINS" in body["detail"]
        return False


async def test_only_the_gateways_own_origin_opens_websockets_by_default(
    plain: GatewayProcess,
) -> None:
    a = account(plain)
    port = plain.port
    # Same origin: the page was served by the gateway (the console, the chat example). The Host
    # header has no scheme: behind a TLS proxy the page is https and the Host the same.
    assert await opens(plain, a.token, f"http://127.0.0.1:{port}")
    assert await opens(plain, a.token, f"https://127.0.0.1:{port}")
    assert await opens(plain, a.token, None)  # not a browser
    for foreign in (
        "https://evil.example",
        f"http://127.0.0.1:{port + 1}",
        f"http://localhost:{port}",
        "null",  # file:// pages, sandboxed frames
        "http://127.0.0.1",
        "garbage",
    ):
        assert not await opens(plain, a.token, foreign), foreign


async def test_a_public_url_is_the_gateways_origin_and_listed_origins_are_added(
    public: GatewayProcess,
) -> None:
    a = account(public)
    assert await opens(public, a.token, PUBLIC)  # behind its TLS proxy
    assert await opens(public, a.token, "null")  # listed
    assert await opens(public, a.token, f"http://127.0.0.1:{public.port}")  # Host still counts
    assert not await opens(public, a.token, "https://evil.example")
    assert not await opens(public, a.token, "http://gw.example.com")


async def test_any_origin_when_allowed_with_star(tmp_path: Path) -> None:
    env = {"PYGW_WS_ALLOWED_ORIGINS": "*"}
    with GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw:
        assert await opens(gw, account(gw).token, "https://evil.example")


def created_ws_url(gw: GatewayProcess, host: str | None) -> str:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        a = new_account(http)
        headers = {**a.headers, **({"Host": host} if host else {})}
        r = http.post("/sessions/create", json={"user_id": a.username}, headers=headers)
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        url = str(r.json()["ws_url"])
        assert url.endswith(f"/ws/connect?session_id={sid}&token={{access_token}}"), url
        return url.split("/ws/connect", 1)[0]


def test_ws_url_does_not_reflect_a_forged_host(plain: GatewayProcess) -> None:
    assert created_ws_url(plain, "evil.example") == plain.ws_url
    assert created_ws_url(plain, None) == plain.ws_url


def test_ws_url_uses_the_public_url(public: GatewayProcess) -> None:
    assert created_ws_url(public, "evil.example") == "wss://gw.example.com"


def test_an_invalid_public_url_is_refused_at_start(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    gw = GatewayProcess(env={"PYGW_PUBLIC_URL": "ftp://gw.example.com"}, log_path=log)
    with pytest.raises(RuntimeError):
        gw.start(timeout=15)
    assert "PYGW_PUBLIC_URL" in log.read_text()
