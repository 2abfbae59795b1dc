"""Clients written against the original gateway, unchanged, against real gateway processes on
both backends: its own test scripts' flow (register, login, ``/sessions/create`` without a
session id, the returned ``ws_url``, ``update_api_key``, then the *login* session), its
``path`` without a leading slash, epoch-second connection records, WebSocket permissions per
role, ``/ws/health``'s fields, its error texts and 403s, relaxed credentials for migrated
clients, and ``PYGW_WS_FRAMES=original`` (binary ``ack``/``error``/route-response frames)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from stub_backend import StubBackend
from wsclient import WS

from conftest import Account, backend_gateway, login, new_account, register, unique
from gateway_process import GatewayProcess

ADMIN = "compat_admin"
# The stub backend of the route tests listens on 127.0.0.1: a loopback backend needs the opt-in.
STRICT_ENV = {"PYGW_ADMIN_USERS": ADMIN, "PYGW_PROXY_ALLOW_PRIVATE": "true"}
RELAXED_ENV = {
    "PYGW_ADMIN_USERS": ADMIN,
    "PYGW_PROXY_ALLOW_PRIVATE": "true",
    "PYGW_WS_FRAMES": "original",
    "PYGW_PASSWORD_MIN_LENGTH": "1",
    "PYGW_EMAIL_CHECK": "off",
    "PYGW_MESSAGE_ROLES": '{"admin_command": ["user", "admin"]}',
}


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """Default settings."""
    yield from backend_gateway(request, tmp_path_factory, STRICT_ENV)


@pytest.fixture(scope="module", params=["memory", "redis"])
def relaxed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """What a deployment migrating the original's clients may set."""
    yield from backend_gateway(request, tmp_path_factory, RELAXED_ENV)


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def stub() -> Iterator[StubBackend]:
    with StubBackend() as backend:
        yield backend


def admin_of(client: httpx.Client) -> Account:
    if (
        client.post(
            "/sessions/login", json={"username": ADMIN, "password": "correct-horse-1"}
        ).status_code
        == 401
    ):
        register(client, ADMIN)
    return login(client, ADMIN)


async def reply_of(ws: websockets.ClientConnection) -> tuple[type, dict[str, Any]]:
    """The next frame that is not a server keep-alive ping (those may come at any time, and
    are TEXT frames in both modes): its kind (str = TEXT, bytes = BINARY) and content."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 5)
        frame = orjson.loads(raw)
        if frame["type"] != "ping":
            return type(raw), frame
        assert isinstance(raw, str)


def envelope(r: httpx.Response, status: int, error: str, detail: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert (body["error"], body["detail"], body["status_code"]) == (error, detail, status), body
    assert body["path"] == r.request.url.path
    return body


# -- 1. the original's flow ------------------------------------------------------------------------
async def test_original_flow_updates_the_login_session(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    """tests/wss_test.sh of the original, step by step."""
    user = unique("wsuser")
    r = http.post(
        "/sessions/register",
        json={"username": user, "email": f"{user}@example.com", "password": "wspassword123"},
    )
    assert r.json() == {"message": "User registered successfully", "username": user}
    r = http.post("/sessions/login", json={"username": user, "password": "wspassword123"})
    token, login_sid = r.json()["access_token"], r.json()["session_id"]
    headers = {"Authorization": f"Bearer {token}"}

    r = http.post("/sessions/create", json={"user_id": user, "chat_id": "default"}, headers=headers)
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["session_id"] == login_sid  # the login session, not a new one
    ws_url = created["ws_url"].replace("{access_token}", token)
    assert ws_url == f"{gw.ws_url}/ws/connect?session_id={login_sid}&token={token}"

    async with websockets.connect(ws_url, open_timeout=10) as ws:
        _, welcome = await reply_of(ws)
        assert (welcome["type"], welcome["session_id"]) == ("connected", login_sid)
        await ws.send('{"type": "update_api_key", "key": "test-api-key-12345"}')
        kind, ack = await reply_of(ws)
        assert kind is str  # TEXT by default
        assert ack["type"] == "ack" and ack["api_key"] == "test-api-key-12345"
        assert ack["session_id"] == login_sid
        record = http.get(f"/sessions/users/{user}/connection", headers=headers).json()
        assert record["ws_connected"] is True and record["session_id"] == login_sid
        # Epoch seconds as floats, as the original returns them (item 3).
        for field in ("last_seen", "connected_at"):
            assert isinstance(record[field], float), record
            assert abs(record[field] - time.time()) < 60, record

    r = http.get(f"/sessions/{login_sid}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["api_key"] == "test-api-key-12345"


async def test_create_reuses_only_a_live_own_session(http: httpx.Client) -> None:
    a = new_account(http)
    # An explicit session_id of the caller's wins; one that is not theirs gets a new session.
    other = http.post("/sessions/create", json={"session_id": "nope"}, headers=a.headers).json()
    assert other["session_id"] not in (a.session_id, "nope")
    again = http.post(
        "/sessions/create", json={"session_id": other["session_id"]}, headers=a.headers
    ).json()
    assert again["session_id"] == other["session_id"]
    assert http.post("/sessions/create", json={}, headers=a.headers).json()["session_id"] == (
        a.session_id
    )
    # An admin creating for someone else never gets its own login session.
    admin = admin_of(http)
    r = http.post("/sessions/create", json={"user_id": a.username}, headers=admin.headers)
    assert r.json()["user_id"] == a.username
    assert r.json()["session_id"] not in (admin.session_id, a.session_id)


# -- 2. dynamic route path without a leading slash -------------------------------------------------
def test_route_path_without_leading_slash(http: httpx.Client, stub: StubBackend) -> None:
    admin = admin_of(http)
    name = unique("test_api")
    body = {"name": name, "base_url": stub.url, "path": "get", "method": "GET"}
    r = http.post("/api/register", json=body, headers=admin.headers)
    assert r.json() == {"message": f"API '{name}' registered", "name": name}, r.text
    listed = {i["name"]: i for i in http.get("/api/list", headers=admin.headers).json()}
    assert listed[name]["path"] == "/get"
    r = http.get(f"/api/proxy/{name}")
    assert r.status_code == 200, r.text
    assert (r.json()["method"], r.json()["path"]) == ("GET", "/get")
    assert http.delete("/api/unregister", params={"name": name}, headers=admin.headers).is_success


# -- 4. WebSocket permissions per role -------------------------------------------------------------
async def test_message_permissions_per_role(gw: GatewayProcess, http: httpx.Client) -> None:
    user, admin = new_account(http), admin_of(http)
    async with await WS.open(gw.ws_url, user.token, user.session_id) as ws:
        reply = await ws.request({"type": "admin_command", "command": "shutdown"})
        assert (reply["type"], reply["code"]) == ("error", 403)
        assert reply["message"] == "Unauthorized: role 'user' cannot send 'admin_command'"
        reply = await ws.request({"type": "chat_message", "content": "Hello WebSocket!"})
        assert reply["message"] == "Unknown message type: chat_message"
        assert (await ws.request({"type": "ping"}))["type"] == "pong"
        sub = await ws.request({"type": "subscribe", "channel": "room:compat"})
        assert sub["type"] == "subscribed"
    async with await WS.open(gw.ws_url, admin.token, admin.session_id) as ws:
        reply = await ws.request({"type": "admin_command"})
        assert (reply["code"], reply["message"]) == (404, "Unknown message type: admin_command")


# -- 5. /ws/health ---------------------------------------------------------------------------------
async def test_ws_health_has_the_originals_fields(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with await WS.open(gw.ws_url, a.token, a.session_id):
        health = http.get("/ws/health").json()
    assert health["status"] == "healthy"
    for field in (
        "active_connections",
        "connection_states",
        "cache_users",
        "cache_sessions",
        "cache_messages",
    ):
        assert isinstance(health[field], int), (field, health)
    assert health["active_connections"] >= 1 and health["cache_sessions"] >= 1
    assert health["config"] == {
        "ping_interval": 25,
        "pong_timeout": 60,
        "inactivity_timeout": 60,
        "cache_ttl": 0.1,
    }


# -- 6. error texts --------------------------------------------------------------------------------
def test_error_texts_of_the_original(http: httpx.Client) -> None:
    envelope(
        http.get("/no/such/route"),
        404,
        "Not Found",
        "The requested URL /no/such/route was not found on this server.",
    )
    r = http.delete("/sessions/register")
    envelope(
        r,
        405,
        "Method Not Allowed",
        "The method DELETE is not allowed for the URL /sessions/register.",
    )
    r = http.post("/sessions/register", json={"username": "x"})
    body = envelope(r, 422, "Validation Error", "One or more fields failed validation")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "email"), ("body", "password")}
    bad = {"Authorization": "Bearer not.a.jwt"}
    envelope(
        http.post("/sessions/logout", headers=bad),
        401,
        "Invalid token",
        "Token verification failed",
    )
    # Resource 404s keep their own message.
    admin = admin_of(http)
    envelope(
        http.get("/sessions/nope", headers=admin.headers), 404, "Not Found", "Session not found"
    )


# -- 7. 403s ---------------------------------------------------------------------------------------
def test_someone_elses_session_and_user_are_403(http: httpx.Client) -> None:
    alice, bob = new_account(http, "alice"), new_account(http, "bob")
    for path in (f"/sessions/{alice.session_id}", "/sessions/no-such-session"):
        envelope(http.get(path, headers=bob.headers), 403, "Session access denied", None)
        r = http.post(
            path.replace("/sessions/", "/sessions/update/"), json={"data": {}}, headers=bob.headers
        )
        envelope(r, 403, "Session access denied", None)
    for what in ("sessions", "connection"):
        r = http.get(f"/sessions/users/{alice.username}/{what}", headers=bob.headers)
        envelope(r, 403, "Access denied", None)
    envelope(
        http.get("/admin/users", headers=bob.headers),
        403,
        "Access denied. Required roles: admin",
        None,
    )
    # A session that ended is still 404 for the one whose login it was: logged in again, the
    # old login's session is gone, and an admin reading it learns that.
    admin = admin_of(http)
    login(http, alice.username)
    r = http.get(f"/sessions/{alice.session_id}", headers=admin.headers)
    envelope(r, 404, "Not Found", "Session not found")


# -- 8. credentials --------------------------------------------------------------------------------
def test_default_credential_checks(http: httpx.Client) -> None:
    name = unique()
    r = http.post(
        "/sessions/register", json={"username": name, "email": "x@example.com", "password": "admin"}
    )
    body = envelope(r, 422, "Validation Error", "One or more fields failed validation")
    assert body["errors"][0]["loc"] == ["body", "password"]
    r = http.post(
        "/sessions/register", json={"username": name, "email": "nope", "password": "long-enough"}
    )
    assert envelope(r, 422, "Validation Error", "One or more fields failed validation")["errors"][
        0
    ]["loc"] == ["body", "email"]
    assert (
        http.post("/sessions/login", json={"username": name, "password": "long-enough"}).status_code
        == 401
    )


def test_relaxed_credentials_for_migrated_clients(relaxed: GatewayProcess) -> None:
    """tests/auth_test.sh of the original registers admin/admin with a 5-character password."""
    with httpx.Client(base_url=relaxed.url, timeout=10) as http:
        name = unique("admin")
        r = http.post(
            "/sessions/register", json={"username": name, "email": "admin", "password": "admin"}
        )
        assert r.json() == {"message": "User registered successfully", "username": name}
        assert login(http, name, "admin").token
        r = http.post(
            "/sessions/register", json={"username": unique(), "email": "", "password": ""}
        )
        assert r.status_code == 422  # empty passwords stay refused


# -- 9. PYGW_WS_FRAMES=original --------------------------------------------------------------------
async def test_original_frames(relaxed: GatewayProcess, stub: StubBackend) -> None:
    with httpx.Client(base_url=relaxed.url, timeout=10) as http:
        a = new_account(http)
        admin = admin_of(http)
        route = unique("echo")
        body = {
            "name": route,
            "base_url": stub.url,
            "path": "hook",
            "method": "POST",
            "ws_supported": True,
        }
        assert http.post("/api/register", json=body, headers=admin.headers).status_code == 200
    url = f"{relaxed.ws_url}/ws/connect?session_id={a.session_id}&token={a.token}"
    async with websockets.connect(url, open_timeout=10) as ws:

        async def next_frame() -> tuple[type, dict[str, Any]]:
            return await reply_of(ws)

        kind, frame = await next_frame()
        assert (kind, frame["type"]) == (str, "connected")
        await ws.send('{"type": "ping"}')
        kind, frame = await next_frame()
        assert (kind, frame["type"]) == (str, "pong")
        await ws.send('{"type": "update_api_key", "key": "k1"}')
        kind, frame = await next_frame()
        assert kind is bytes and frame["type"] == "ack" and frame["api_key"] == "k1"
        await ws.send("not json")
        assert await next_frame() == (bytes, {"type": "error", "message": "Invalid JSON"})
        await ws.send('{"data": 1}')
        assert await next_frame() == (bytes, {"type": "error", "message": "Missing message type"})
        await ws.send('{"type": "teleport"}')
        assert await next_frame() == (
            bytes,
            {"type": "error", "message": "Unauthorized: role 'user' cannot send 'teleport'"},
        )
        # PYGW_MESSAGE_ROLES opens a type to users: then it is merely unknown.
        await ws.send('{"type": "admin_command"}')
        assert await next_frame() == (
            bytes,
            {"type": "error", "message": "Unknown message type: admin_command"},
        )
        await ws.send(orjson.dumps({"type": route, "data": {"q": 1}}).decode())
        kind, frame = await next_frame()
        assert kind is bytes and frame["type"] == f"{route}_response", (kind, frame)
        assert frame["data"]["path"] == "/hook"
        # Channel messages are pygw's own and stay TEXT.
        await ws.send('{"type": "subscribe", "channel": "room:x"}')
        kind, frame = await next_frame()
        assert (kind, frame["type"]) == (str, "subscribed")
