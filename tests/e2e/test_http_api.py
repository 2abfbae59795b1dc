"""The original gateway's HTTP API (SPEC §2) against a real gateway, on both backends."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest

from conftest import ADMIN, login, new_account, register, unique
from gateway_process import TEST_SECRET, GatewayProcess


def assert_envelope(r: httpx.Response, status: int, error: str, path: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error
    assert body["status_code"] == status
    assert body["path"] == path
    assert "detail" in body
    assert body["timestamp"].endswith("+00:00")
    return body


def test_register_login_session_update_logout_flow(client: httpx.Client) -> None:
    username = unique()
    r = client.post(
        "/sessions/register",
        json={"username": username, "email": f"{username}@example.com", "password": "s3cret-pass"},
    )
    assert r.json() == {"message": "User registered successfully", "username": username}

    r = client.post("/sessions/login", json={"username": username, "password": "s3cret-pass"})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    assert body["user"] == {"username": username, "role": "user"}
    token, login_sid = body["access_token"], body["session_id"]
    headers = {"Authorization": f"Bearer {token}"}

    # Without a session_id, /sessions/create reuses the login session (as the original does) ...
    r = client.post("/sessions/create", json={"chat_id": "chat-0"}, headers=headers)
    assert r.status_code == 200
    assert (r.json()["session_id"], r.json()["chat_id"]) == (login_sid, "chat-0")
    # ... and a session_id that is not the caller's gets a new session.
    r = client.post(
        "/sessions/create", json={"chat_id": "chat-1", "session_id": "no-such"}, headers=headers
    )
    assert r.status_code == 200
    created = r.json()
    sid = created["session_id"]
    assert sid not in (login_sid, "no-such")
    assert created["user_id"] == username
    assert created["chat_id"] == "chat-1"
    assert created["data"] == {"conversation": [], "api_key": None}
    assert created["ws_url"].endswith(f"/ws/connect?session_id={sid}&token={{access_token}}")

    r = client.post(
        f"/sessions/update/{sid}",
        json={"chat_id": "chat-2", "data": {"api_key": "k-1", "theme": "dark"}},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"conversation": [], "api_key": "k-1", "theme": "dark"}

    r = client.get(f"/sessions/{sid}", headers=headers)
    assert r.status_code == 200
    read = r.json()
    assert read["chat_id"] == "chat-2"
    assert read["data"] == {"conversation": [], "api_key": "k-1", "theme": "dark"}

    r = client.get(f"/sessions/users/{username}/sessions", headers=headers)
    listed = r.json()
    assert listed["count"] == 2
    assert {s["session_id"] for s in listed["sessions"]} == {sid, login_sid}
    assert set(listed["sessions"][0]) == {"session_id", "chat_id", "last_access", "created_at"}

    r = client.post("/sessions/logout", headers=headers)
    assert r.json() == {"message": "Logged out successfully"}
    r = client.get(f"/sessions/{sid}", headers=headers)
    assert_envelope(r, 401, "Token revoked", f"/sessions/{sid}")


def test_duplicate_username_and_bad_credentials(client: httpx.Client) -> None:
    username = unique()
    register(client, username)
    r = client.post(
        "/sessions/register",
        json={"username": username, "email": "x@example.com", "password": "another-pass"},
    )
    assert_envelope(r, 400, "Username already exists", "/sessions/register")
    r = client.post("/sessions/login", json={"username": username, "password": "wrong-password"})
    assert_envelope(r, 401, "Invalid username or password", "/sessions/login")
    r = client.post("/sessions/login", json={"username": unique(), "password": "whatever1"})
    assert_envelope(r, 401, "Invalid username or password", "/sessions/login")


@pytest.mark.parametrize(
    ("content", "content_type", "loc"),
    [
        (b'{"username": "a", "email": ', "application/json", None),
        (
            b'{"username": 5, "email": "a@b.io", "password": "long-enough"}',
            "application/json",
            ["body", "username"],
        ),
        (b'{"username": "abc", "password": "long-enough"}', "application/json", ["body", "email"]),
        (
            b'{"username": "abc", "email": "a@b.io", "password": "short"}',
            "application/json",
            ["body", "password"],
        ),
        (b"username=abc", "application/x-www-form-urlencoded", ["header", "content-type"]),
        (b"", "application/json", ["body"]),
        (b"[1, 2]", "application/json", ["body"]),
    ],
)
def test_bad_bodies_get_422_with_items(
    client: httpx.Client, content: bytes, content_type: str, loc: list[str] | None
) -> None:
    r = client.post("/sessions/register", content=content, headers={"Content-Type": content_type})
    body = assert_envelope(r, 422, "Validation Error", "/sessions/register")
    assert body["errors"], body
    for item in body["errors"]:
        assert set(item) == {"loc", "msg", "type"}
    if loc is not None:
        assert body["errors"][0]["loc"] == loc
    else:
        assert body["errors"][0]["type"] == "json_invalid"


def test_oversized_body_is_413_and_the_gateway_keeps_serving(client: httpx.Client) -> None:
    big = b'{"username": "' + b"x" * (2 << 20) + b'"}'
    r = client.post("/sessions/login", content=big, headers={"Content-Type": "application/json"})
    assert_envelope(r, 413, "Request body too large", "/sessions/login")
    assert client.get("/health").status_code == 200


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    r = client.get("/no/such/route")
    assert_envelope(r, 404, "Not Found", "/no/such/route")
    r = client.get("/sessions/login")
    # GET /sessions/{session_id} matches: the session "login" does not exist, but auth comes first.
    assert r.status_code == 401
    r = client.delete("/sessions/register")
    assert_envelope(r, 405, "Method Not Allowed", "/sessions/register")
    assert "POST" in r.headers["allow"]


def test_authentication_errors(client: httpx.Client) -> None:
    path = "/sessions/logout"
    assert_envelope(client.post(path), 401, "Not authenticated", path)
    assert_envelope(
        client.post(path, headers={"Authorization": "Basic abc"}), 401, "Not authenticated", path
    )
    assert_envelope(
        client.post(path, headers={"Authorization": "Bearer"}),
        401,
        "Authentication required",
        path,
    )
    assert_envelope(
        client.post(path, headers={"Authorization": "Bearer not.a.jwt"}), 401, "Invalid token", path
    )
    forged = pyjwt.encode(
        {"sub": "x", "exp": int(time.time()) + 60},
        "another-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert_envelope(
        client.post(path, headers={"Authorization": f"Bearer {forged}"}), 401, "Invalid token", path
    )
    expired = pyjwt.encode(
        {"sub": "x", "user_id": "x", "role": "user", "exp": int(time.time()) - 10, "jti": "j"},
        TEST_SECRET,
        algorithm="HS256",
    )
    assert_envelope(
        client.post(path, headers={"Authorization": f"Bearer {expired}"}),
        401,
        "Token expired",
        path,
    )


def test_tokens_interoperate_with_pyjwt(client: httpx.Client) -> None:
    account = new_account(client)
    claims = pyjwt.decode(account.token, TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == claims["user_id"] == account.username
    assert claims["role"] == "user"
    assert claims["sid"] == account.session_id
    assert {"exp", "iat", "jti"} <= set(claims)
    minted = pyjwt.encode(
        {
            "sub": account.username,
            "user_id": account.username,
            "role": "user",
            "exp": int(time.time()) + 60,
            "iat": int(time.time()),
            "jti": "pyjwt-1",
        },
        TEST_SECRET,
        algorithm="HS256",
    )
    r = client.get(
        f"/sessions/users/{account.username}/sessions",
        headers={"Authorization": f"Bearer {minted}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1


def test_session_access_rules(client: httpx.Client) -> None:
    alice = new_account(client, "alice")
    bob = new_account(client, "bob")
    path = f"/sessions/{alice.session_id}"
    assert_envelope(client.get(path, headers=bob.headers), 403, "Session access denied", path)
    upd = f"/sessions/update/{alice.session_id}"
    r = client.post(upd, json={"data": {"x": 1}}, headers=bob.headers)
    assert_envelope(r, 403, "Session access denied", upd)
    # A session that is not the caller's is 403 whether or not it exists (the original checks
    # access first); the caller's own login session, once gone, is 404 with its own message.
    missing = "/sessions/00000000-0000-0000-0000-000000000000"
    assert_envelope(
        client.get(missing, headers=alice.headers), 403, "Session access denied", missing
    )
    other = f"/sessions/users/{alice.username}/sessions"
    assert_envelope(client.get(other, headers=bob.headers), 403, "Access denied", other)
    # /sessions/create with someone else's session_id gets a new session, not theirs.
    r = client.post("/sessions/create", json={"session_id": alice.session_id}, headers=bob.headers)
    assert r.status_code == 200
    assert r.json()["session_id"] != alice.session_id
    assert r.json()["user_id"] == bob.username
    # ... while the owner reuses it.
    r = client.post(
        "/sessions/create", json={"session_id": alice.session_id}, headers=alice.headers
    )
    assert r.json()["session_id"] == alice.session_id


def test_connection_record(client: httpx.Client) -> None:
    account = new_account(client)
    r = client.get(f"/sessions/users/{account.username}/connection", headers=account.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["session_id"] == account.session_id
    assert body["ws_connected"] is False
    assert body["gateway_id"]


def test_relogin_replaces_previous_session(client: httpx.Client) -> None:
    first = new_account(client)
    second = login(client, first.username)
    assert second.session_id != first.session_id
    path = f"/sessions/{second.session_id}"
    assert_envelope(client.get(path, headers=first.headers), 401, "Token revoked", path)
    assert client.get(path, headers=second.headers).status_code == 200
    old = f"/sessions/{first.session_id}"  # gone, and not this login's: access is checked first
    assert_envelope(client.get(old, headers=second.headers), 403, "Session access denied", old)


def test_refresh_rotation_and_reuse_detection(client: httpx.Client) -> None:
    account = new_account(client)
    r = client.post("/sessions/refresh", json={"refresh_token": account.refresh_token})
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["session_id"] == account.session_id
    new_headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert client.get(f"/sessions/{account.session_id}", headers=new_headers).status_code == 200
    # The refresh token is not an access token.
    path = "/sessions/logout"
    r = client.post(path, headers={"Authorization": f"Bearer {rotated['refresh_token']}"})
    assert_envelope(r, 401, "Invalid token", path)
    # Reusing the spent refresh token revokes the whole family.
    r = client.post("/sessions/refresh", json={"refresh_token": account.refresh_token})
    assert_envelope(r, 401, "Token revoked", "/sessions/refresh")
    r = client.get(f"/sessions/{account.session_id}", headers=new_headers)
    assert_envelope(r, 401, "Token revoked", f"/sessions/{account.session_id}")
    r = client.post("/sessions/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert_envelope(r, 401, "Token revoked", "/sessions/refresh")


def test_delete_account(client: httpx.Client) -> None:
    account = new_account(client)
    r = client.post("/sessions/delete_account", headers=account.headers)
    assert r.json() == {"message": "Account deleted successfully"}
    r = client.post(
        "/sessions/login", json={"username": account.username, "password": account.password}
    )
    assert r.status_code == 401
    path = f"/sessions/{account.session_id}"
    assert_envelope(client.get(path, headers=account.headers), 401, "Token revoked", path)


def test_admin_routes(client: httpx.Client, gateway: GatewayProcess) -> None:
    admin = login(client, ADMIN)  # created at start (PYGW_ADMIN_USERS + PYGW_ADMIN_PASSWORD)
    user = new_account(client)
    path = "/admin/users"
    assert_envelope(
        client.get(path, headers=user.headers), 403, "Access denied. Required roles: admin", path
    )

    users = client.get(path, headers=admin.headers).json()
    me = next(u for u in users if u["username"] == user.username)
    assert me == {
        "username": user.username,
        "email": f"{user.username}@example.com",
        "role": "user",
        "last_login": me["last_login"],
        "session_count": 1,
        "is_online": False,
    }
    assert me["last_login"]

    r = client.post("/admin/users/promote", json={"username": user.username}, headers=admin.headers)
    assert r.json() == {"message": f"User {user.username} promoted to admin"}
    # The role is in the token: it takes effect at the next login.
    promoted = login(client, user.username)
    assert client.get("/admin/users/stats", headers=promoted.headers).status_code == 200
    r = client.post("/admin/users/demote", json={"username": user.username}, headers=admin.headers)
    assert r.json() == {"message": f"User {user.username} demoted to user"}
    r = client.post("/admin/users/demote", json={"username": ADMIN}, headers=admin.headers)
    assert_envelope(r, 400, "Cannot demote yourself", "/admin/users/demote")
    r = client.post("/admin/users/promote", json={"username": unique()}, headers=admin.headers)
    assert r.status_code == 404

    stats = client.get("/admin/users/stats", headers=admin.headers).json()
    assert stats["total_users"] >= 2
    assert stats["active_sessions"] >= 2
    assert stats["ws_connections"] == 0
    assert stats["memory_usage"]["rss_mb"] > 0
    system = client.get("/admin/system/stats", headers=admin.headers).json()
    assert set(system) == {
        "redis_connections",
        "memory_usage_mb",
        "uptime_seconds",
        "active_workers",
    }
    assert system["active_workers"] == 1
    r = client.get("/admin/system/redis-info", headers=admin.headers)
    if gateway.redis_url:
        info = r.json()
        assert info["connected_clients"] >= 1
        assert info["total_commands_processed"] > 0
        assert system["redis_connections"] >= 1
    else:
        # No Redis to describe: 404 (a 503 would claim a passing outage; security review).
        assert r.status_code == 404
    r = client.post("/admin/system/cleanup-sessions", headers=admin.headers)
    assert r.json()["message"] == "Session cleanup completed successfully"


def test_health_endpoints(client: httpx.Client, gateway: GatewayProcess) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["backend"] == ("redis" if gateway.redis_url else "memory")
    ws = client.get("/ws/health").json()
    assert ws["status"] == "healthy"
    assert ws["active_connections"] == 0
    conns = client.get("/health/connections").json()
    assert conns["local_connections"] == 0


def test_docs_are_served_without_internet(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/sessions/login" in spec["paths"]
    assert "/sessions/update/{session_id}" in spec["paths"]
    assert "LoginRequest" in spec["components"]["schemas"]
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        assert "text/html" in r.headers["content-type"]
        assert "http" not in r.text.replace("http-equiv", "")  # no external asset URL
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200
        assert len(r.content) > 10_000


def test_pipelining_is_served_with_http_batching_off(tmp_path: Path) -> None:
    import socket

    with GatewayProcess(env={"PYGW_HTTP_BATCH": "false"}, log_path=tmp_path / "gw.log") as gw:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(
                b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /ws/health HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            data = b""
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
        assert b'"status":"healthy"' in data
        assert b'"active_connections"' in data
