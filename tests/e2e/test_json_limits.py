"""JSON limits against real gateways on both backends (security review items 1, 11, 12): client
frames that nest too deep, carry numbers or strings that cannot be stored, or an id that is not a
small scalar get an error frame and go nowhere; a session survives an update that could not be
stored."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from wsclient import WS

from conftest import backend_gateway, new_account
from gateway_process import GatewayProcess

API_KEY = "limits-key"


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from backend_gateway(request, tmp_path_factory, {"PYGW_API_KEYS": API_KEY})


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


DEEP = "[" * 20_000 + "]" * 20_000


def publish(data: str) -> str:
    return '{"type":"publish","channel":"lim","id":"a","data":' + data + "}"


DATA_AT = len(publish("")) - 1
"""Where ``data`` starts in a ``publish`` frame."""


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            publish('{"n":18446744073709551616}'),
            f"integer outside the 64-bit range [-2**63, 2**64-1] at byte {DATA_AT + 5}",
        ),
        # The frame object is level 1: the 32nd '[' is the 33rd level.
        (publish(DEEP), f"JSON nested deeper than 32 levels at byte {DATA_AT + 31}"),
        (publish("1e400"), f"number too large for a double at byte {DATA_AT}"),
        (publish('"\\ud800"'), f"unpaired UTF-16 surrogate escape at byte {DATA_AT + 1}"),
    ],
)
async def test_unrelayable_publications_are_refused(
    gw: GatewayProcess, http: httpx.Client, frame: str, message: str
) -> None:
    a = new_account(http)
    b = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as sender, await WS.open(gw.ws_url, b.token) as rx:
        await rx.request({"type": "subscribe", "channel": "lim"})
        await sender.send(frame)
        assert await sender.recv() == {"type": "error", "code": 400, "message": message, "id": "a"}
        await sender.request({"type": "publish", "channel": "lim", "data": "after"})
        (delivered,) = await rx.messages(1, "lim")
        assert delivered["data"] == "after", "the refused publication was relayed"


@pytest.mark.parametrize(
    "raw_id", ['"' + "x" * 300 + '"', '{"nested": {"id": 1}}', "[1, 2]", "[" * 40 + "]" * 40]
)
async def test_ids_that_are_not_small_scalars_are_refused(
    gw: GatewayProcess, http: httpx.Client, raw_id: str
) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token) as ws:
        await ws.send('{"type":"ping","id":' + raw_id + "}")
        reply = await ws.recv()
        assert reply["type"] == "error" and reply["code"] == 400
        assert "id" not in reply
        assert reply["message"] in (
            "Invalid field: id",
            "JSON nested deeper than 32 levels at byte 51",
        )


async def test_update_api_key_with_an_unpaired_surrogate_is_refused(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id) as ws:
        await ws.send('{"type":"update_api_key","key":"\\udc00","id":1}')
        reply = await ws.recv()
        assert (reply["type"], reply["id"]) == ("error", 1)
        assert reply["message"] == "unpaired UTF-16 surrogate escape at byte 32"
        ack = await ws.request({"type": "update_api_key", "key": "sk-ok"})
        assert ack["type"] == "ack"
    session = http.get(f"/sessions/{a.session_id}", headers=a.headers)
    assert session.status_code == 200
    assert session.json()["data"]["api_key"] == "sk-ok"


BIG_UPDATE = b'{"data": {"n": 18446744073709551616, "also": 1}}'


def test_session_survives_an_update_that_cannot_be_stored(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    """Item 1: the memory backend stored the integer and then answered 500 to every read of the
    session; Redis held it in the write-behind batch, which then never flushed again. Now nothing
    of the refused update is stored; reads and later updates work (and, with Redis, reach
    Redis: another node would see them)."""
    a = new_account(http)
    headers = {**a.headers, "Content-Type": "application/json"}
    refused = http.post(f"/sessions/update/{a.session_id}", content=BIG_UPDATE, headers=headers)
    assert refused.status_code != 200
    got = http.get(f"/sessions/{a.session_id}", headers=a.headers)
    assert got.status_code == 200, got.text
    assert "n" not in got.json()["data"] and "also" not in got.json()["data"]
    later = http.post(
        f"/sessions/update/{a.session_id}", json={"data": {"later": 1}}, headers=a.headers
    )
    assert later.status_code == 200
    if gw.redis_url:
        import redis

        with redis.Redis.from_url(gw.redis_url) as raw:
            deadline = time.monotonic() + 5
            while b'"later":1' not in (raw.get(f"sessions:{a.session_id}") or b""):
                assert time.monotonic() < deadline, "the write-behind never flushed again"
                time.sleep(0.05)


def test_an_update_that_cannot_be_stored_is_422(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    headers = {**a.headers, "Content-Type": "application/json"}
    r = http.post(f"/sessions/update/{a.session_id}", content=BIG_UPDATE, headers=headers)
    assert r.status_code == 422
    assert "64-bit" in r.json()["errors"][0]["msg"]
