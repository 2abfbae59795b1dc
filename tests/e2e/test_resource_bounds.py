"""Bounded resources against real gateways on both backends (security review items 11, 13):
session writes over the default size limits are refused with 413 at every entry point (HTTP
``/sessions/update``, WebSocket ``update_api_key``) and change nothing; a connection's
subscriptions are capped, and the subscribe beyond the cap gets an error frame while the
connection stays open."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from wsclient import WS

from conftest import Account, backend_gateway, new_account
from gateway_process import GatewayProcess

MAX_SUBSCRIPTIONS = 8
UPDATE_MAX = 16 * 1024  # the defaults
SESSION_MAX = 64 * 1024


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from backend_gateway(
        request, tmp_path_factory, {"PYGW_WS_MAX_SUBSCRIPTIONS": str(MAX_SUBSCRIPTIONS)}
    )


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


def update(http: httpx.Client, account: Account, data: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"/sessions/update/{account.session_id}", json={"data": data}, headers=account.headers
    )


def session_data(http: httpx.Client, account: Account) -> dict[str, Any]:
    r = http.get(f"/sessions/{account.session_id}", headers=account.headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def assert_413(r: httpx.Response, account: Account, detail: str) -> None:
    assert r.status_code == 413, r.text[:300]
    body = r.json()
    assert body["status_code"] == 413
    assert body["path"] == f"/sessions/update/{account.session_id}"
    assert detail in body["detail"], body


def test_an_update_over_the_update_limit_is_refused(http: httpx.Client) -> None:
    a = new_account(http)
    r = update(http, a, {"blob": "x" * UPDATE_MAX})
    assert_413(r, a, f"Session update larger than {UPDATE_MAX} bytes")
    assert "blob" not in session_data(http, a)
    assert update(http, a, {"blob": "x" * (UPDATE_MAX - 20)}).status_code == 200


def test_a_session_cannot_grow_past_its_limit(http: httpx.Client) -> None:
    a = new_account(http)
    chunk = "x" * 15_000
    for n in range(4):  # about 60 KB
        assert update(http, a, {f"k{n}": chunk}).status_code == 200
    r = update(http, a, {"k4": chunk})
    assert_413(r, a, f"Session larger than {SESSION_MAX} bytes")
    assert sorted(k for k in session_data(http, a) if k.startswith("k")) == [
        "k0",
        "k1",
        "k2",
        "k3",
    ]
    # Shrinking a value makes room again.
    assert update(http, a, {"k0": "small"}).status_code == 200
    assert update(http, a, {"k4": chunk}).status_code == 200
    assert session_data(http, a)["k4"] == chunk


async def test_a_websocket_api_key_over_the_limit_is_refused(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as ws:
        reply = await ws.request({"type": "update_api_key", "key": "k" * UPDATE_MAX})
        assert reply["type"] == "error"
        assert reply["code"] == 413
        assert f"Session update larger than {UPDATE_MAX} bytes" in reply["message"]
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # still open
        ack = await ws.request({"type": "update_api_key", "key": "fits"})
        assert ack["type"] == "ack"
    assert session_data(http, a)["api_key"] == "fits"


async def test_subscriptions_per_connection_are_capped(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as ws:
        for n in range(MAX_SUBSCRIPTIONS):
            reply = await ws.request({"type": "subscribe", "channel": f"cap:{n}"})
            assert reply["type"] == "subscribed", reply
        again = await ws.request({"type": "subscribe", "channel": "cap:0"})
        assert again["type"] == "subscribed"  # already subscribed: not a new one
        refused = await ws.request({"type": "subscribe", "channel": "cap:extra"})
        assert refused["type"] == "error"
        assert refused["code"] == 429
        assert f"at most {MAX_SUBSCRIPTIONS} channels per connection" in refused["message"]
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # still open
        await ws.request({"type": "unsubscribe", "channel": "cap:0"})
        reply = await ws.request({"type": "subscribe", "channel": "cap:extra"})
        assert reply["type"] == "subscribed"


async def test_concurrent_subscribes_count_towards_the_cap(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as ws:
        extra = 4
        total = MAX_SUBSCRIPTIONS + extra
        for n in range(total):  # all sent before any answer is read
            await ws.send({"type": "subscribe", "channel": f"burst:{n}", "id": f"b{n}"})
        replies: list[dict[str, Any]] = []
        while len(replies) < total:
            frame = await ws.recv()
            if str(frame.get("id", "")).startswith("b"):
                replies.append(frame)
        kinds = sorted(r["type"] for r in replies)
        assert kinds == ["error"] * extra + ["subscribed"] * MAX_SUBSCRIPTIONS


@pytest.fixture(params=["memory", "redis"])
def short_meta(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """Channel offsets kept 1 s after the last publication; ``hist:`` channels have history."""
    env = {
        "PYGW_CHANNEL_META_TTL": "1",
        "PYGW_NAMESPACES": '[{"name": "hist", "history_size": 10}]',
    }
    yield from backend_gateway(request, tmp_path_factory, env)


async def test_a_channel_whose_offsets_expired_starts_a_new_epoch_cleanly(
    short_meta: GatewayProcess,
) -> None:
    """A node that kept recent publications of the old numbering (it has a subscriber) must not
    hand them to a new subscriber as if they came after the new epoch's top."""
    with httpx.Client(base_url=short_meta.url, timeout=10) as http:
        a, b = new_account(http), new_account(http)
    async with await WS.open(short_meta.ws_url, a.token) as wa:
        first = await wa.request({"type": "subscribe", "channel": "hist:x"})
        for n in range(3):
            await wa.request({"type": "publish", "channel": "hist:x", "data": n})
        assert [m["offset"] for m in await wa.messages(3, "hist:x")] == [1, 2, 3]
        await asyncio.sleep(2.5)  # offsets expire (Redis TTL; memory: swept every second)
        async with await WS.open(short_meta.ws_url, b.token) as wb:
            late = await wb.request({"type": "subscribe", "channel": "hist:x"})
            assert late["epoch"] != first["epoch"]
            assert late["offset"] == 0
            await wa.request({"type": "publish", "channel": "hist:x", "data": "new"})
            (fresh,) = await wb.messages(1, "hist:x")
            assert (fresh["offset"], fresh["data"]) == (1, "new")  # nothing old before it
