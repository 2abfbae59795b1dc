"""Authentication and authorization against real gateways (memory and Redis backends; two nodes
where cross-node behaviour matters):

- every token issued before a logout, a password change, an account deletion or a role change
  stops working at once, on HTTP and on open sockets, and a name registered again never
  matches the old owner's tokens;
- a socket closes when its token expires unless the client refreshed it over the socket;
- a node that missed revocations while its Redis link was down closes those sockets when the
  link returns;
- failing logins from one address do not lock the user out elsewhere;
- admin names are reserved for the operator.

(Rate limits of logins and registrations with their own settings: test_rate_limits.py.)
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from wsclient import WS

from conftest import ADMIN, Account, backend_gateway, login, new_account, register, unique
from gateway_process import GatewayProcess
from redis_server import RedisServer
from tcp_relay import TCPRelay

NEW_PASSWORD = "battery-staple-2"


def refreshed(client: httpx.Client, account: Account) -> Account:
    """The account after ``POST /sessions/refresh`` (new access and refresh tokens)."""
    r = client.post("/sessions/refresh", json={"refresh_token": account.refresh_token})
    assert r.status_code == 200, r.text
    body = r.json()
    return Account(
        account.username,
        account.password,
        body["access_token"],
        body["session_id"],
        body["refresh_token"],
    )


def role_of(client: httpx.Client, account: Account) -> str:
    r = client.post("/sessions/refresh", json={"refresh_token": account.refresh_token})
    assert r.status_code == 200, r.text
    return str(r.json()["user"]["role"])


def assert_revoked(client: httpx.Client, token: str, path: str) -> None:
    r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "Token revoked"


def token_exp(token: str) -> int:
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"])


# ------------------------------------------------------------------------------ revocation (HTTP)
def test_logout_revokes_the_tokens_issued_before_a_refresh(client: httpx.Client) -> None:
    first = new_account(client)
    second = refreshed(client, first)
    path = f"/sessions/users/{first.username}/sessions"
    for account in (first, second):  # both work until the logout
        assert client.get(path, headers=account.headers).status_code == 200
    assert client.post("/sessions/logout", headers=second.headers).status_code == 200
    for account in (first, second):
        assert_revoked(client, account.token, path)
    r = client.post("/sessions/refresh", json={"refresh_token": second.refresh_token})
    assert r.status_code == 401


def test_a_name_registered_again_never_matches_the_old_owners_tokens(
    client: httpx.Client,
) -> None:
    old = new_account(client)
    kept = refreshed(client, old)  # the old owner holds two access tokens
    assert client.post("/sessions/delete_account", headers=kept.headers).status_code == 200
    register(client, old.username, NEW_PASSWORD)
    owner = login(client, old.username, NEW_PASSWORD)
    for token in (old.token, kept.token):
        assert_revoked(client, token, f"/sessions/{owner.session_id}")
        assert_revoked(client, token, f"/sessions/users/{old.username}/sessions")
    r = client.post("/sessions/refresh", json={"refresh_token": kept.refresh_token})
    assert r.status_code == 401
    r = client.get(f"/sessions/{owner.session_id}", headers=owner.headers)
    assert r.status_code == 200 and r.json()["user_id"] == old.username


async def test_a_password_change_ends_every_login(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    first = new_account(client)
    second = refreshed(client, first)
    change = "/sessions/change_password"
    r = client.post(
        change,
        json={"current_password": "wrong-password-0", "new_password": NEW_PASSWORD},
        headers=second.headers,
    )
    assert (r.status_code, r.json()["error"]) == (400, "Current password is incorrect")
    r = client.post(
        change,
        json={"current_password": first.password, "new_password": "short"},
        headers=second.headers,
    )
    assert r.status_code == 422
    async with await WS.open(gateway.ws_url, second.token) as ws:
        r = client.post(
            change,
            json={"current_password": first.password, "new_password": NEW_PASSWORD},
            headers=second.headers,
        )
        assert r.json() == {"message": "Password changed successfully"}
        assert await ws.closed() == (1000, "Password changed")
    for account in (first, second):
        assert_revoked(client, account.token, f"/sessions/{first.session_id}")
    r = client.post("/sessions/refresh", json={"refresh_token": second.refresh_token})
    assert r.status_code == 401
    r = client.post(
        "/sessions/login", json={"username": first.username, "password": first.password}
    )
    assert r.status_code == 401
    fresh = login(client, first.username, NEW_PASSWORD)
    assert client.get(f"/sessions/{fresh.session_id}", headers=fresh.headers).status_code == 200


# ------------------------------------------------------------------------------ roles
async def test_a_demoted_admin_loses_admin_rights_at_once(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    admin = login(client, ADMIN)
    user = new_account(client)
    r = client.post("/admin/users/promote", json={"username": user.username}, headers=admin.headers)
    assert r.status_code == 200
    assert_revoked(client, user.token, "/admin/users")  # the user-role token is gone too
    promoted = refreshed(client, user)  # the refresh reads the new role
    assert client.get("/admin/users", headers=promoted.headers).status_code == 200
    async with await WS.open(gateway.ws_url, promoted.token) as ws:
        r = client.post(
            "/admin/users/demote", json={"username": user.username}, headers=admin.headers
        )
        assert r.json() == {"message": f"User {user.username} demoted to user"}
        assert await ws.closed() == (1008, "Role changed")
    assert_revoked(client, promoted.token, "/admin/users")
    r = client.post(
        "/admin/users/promote", json={"username": user.username}, headers=promoted.headers
    )
    assert r.status_code == 401  # it cannot promote itself again
    again = refreshed(client, promoted)
    r = client.get("/admin/users", headers=again.headers)
    assert (r.status_code, r.json()["error"]) == (403, "Access denied. Required roles: admin")
    listed = {
        u["username"]: u["role"] for u in client.get("/admin/users", headers=admin.headers).json()
    }
    assert listed[user.username] == "user"


def test_admin_names_are_reserved_for_the_operator(client: httpx.Client) -> None:
    r = client.post(
        "/sessions/register",
        json={"username": ADMIN, "email": "me@example.com", "password": "mine-now-123"},
    )
    assert (r.status_code, r.json()["error"]) == (400, "Username is reserved")
    r = client.post("/sessions/login", json={"username": ADMIN, "password": "mine-now-123"})
    assert r.status_code == 401
    # The operator's account (PYGW_ADMIN_PASSWORD, created at start) is the admin.
    assert login(client, ADMIN) and role_of(client, login(client, ADMIN)) == "admin"
    assert role_of(client, new_account(client)) == "user"


# ------------------------------------------------------------------------------ login lockout
def test_failing_from_another_address_does_not_lock_the_user_out(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    victim = unique()
    register(client, victim)
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=gateway.url, transport=transport) as attacker:
        codes = [
            attacker.post(
                "/sessions/login", json={"username": victim, "password": "wrong-guess-0"}
            ).status_code
            for _ in range(6)
        ]
    assert codes == [401] * 5 + [429]
    assert login(client, victim).username == victim


# ------------------------------------------------------------------------------ token expiry
TTL = 3
"""Seconds an access token lives on the short-lived gateways (ACCESS_TOKEN_EXPIRE_MINUTES=0.05)."""


@pytest.fixture(scope="module", params=["memory", "redis"])
def short_lived(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from backend_gateway(
        request, tmp_path_factory, {"ACCESS_TOKEN_EXPIRE_MINUTES": str(TTL / 60)}
    )


async def test_a_socket_closes_when_its_token_expires(short_lived: GatewayProcess) -> None:
    with httpx.Client(base_url=short_lived.url) as http:
        account = new_account(http)
    async with await WS.open(short_lived.ws_url, account.token) as ws:
        reply = await ws.request({"type": "publish", "channel": "room:expiry", "data": 1})
        assert reply["type"] == "published"
        assert await ws.closed(timeout=TTL + 3) == (1008, "Token expired")
        assert time.time() >= token_exp(account.token)


async def test_refreshing_over_the_socket_keeps_it_open(short_lived: GatewayProcess) -> None:
    with httpx.Client(base_url=short_lived.url) as http:
        account = new_account(http)
        other = new_account(http)
        async with await WS.open(short_lived.ws_url, account.token) as ws:
            bad = await ws.request({"type": "refresh_token", "token": "not-a-token"})
            assert (bad["type"], bad["code"], bad["message"]) == ("error", 401, "Invalid token")
            missing = await ws.request({"type": "refresh_token"})
            assert (missing["code"], missing["message"]) == (400, "Missing field: token")
            theirs = await ws.request({"type": "refresh_token", "token": other.token})
            assert (theirs["code"], theirs["message"]) == (403, "Token of another login")
            # Refresh in the token's last second (a token refreshed in the second it was issued
            # in would expire with it).
            await asyncio.sleep(max(0.0, token_exp(account.token) - 0.8 - time.time()))
            newer = refreshed(http, account)
            assert token_exp(newer.token) > token_exp(account.token)
            ok = await ws.request({"type": "refresh_token", "token": newer.token})
            assert ok == {"type": "token_refreshed", "exp": token_exp(newer.token), "id": ok["id"]}
            # Past the first token's expiry the socket still answers.
            await asyncio.sleep(max(0.0, token_exp(account.token) + 0.3 - time.time()))
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
            # Unless refreshed again, it closes when the newer token expires.
            assert await ws.closed(timeout=TTL + 3) == (1008, "Token expired")
            assert time.time() >= token_exp(newer.token)


# ------------------------------------------------------------------------------ two nodes
CLUSTER_ENV = {"PYGW_ADMIN_USERS": ADMIN}


async def test_a_role_change_closes_the_users_sockets_on_every_node(tmp_path: Path) -> None:
    with RedisServer() as server:
        a = GatewayProcess(redis_url=server.url, env=CLUSTER_ENV, log_path=tmp_path / "a.log")
        b = GatewayProcess(redis_url=server.url, env=CLUSTER_ENV, log_path=tmp_path / "b.log")
        try:
            a.start()
            b.start()
            with httpx.Client(base_url=a.url) as http:
                admin = login(http, ADMIN)
                user = new_account(http)
                on_a = await WS.open(a.ws_url, user.token)
                on_b = await WS.open(b.ws_url, user.token)
                r = http.post(
                    "/admin/users/promote", json={"username": user.username}, headers=admin.headers
                )
                assert r.status_code == 200
                assert await on_a.closed() == (1008, "Role changed")
                assert await on_b.closed() == (1008, "Role changed")
            with httpx.Client(base_url=b.url) as http:
                assert_revoked(http, user.token, f"/sessions/{user.session_id}")
                assert role_of(http, user) == "admin"
        finally:
            a.stop()
            b.stop()


async def test_a_node_that_missed_revocations_closes_those_sockets_when_its_link_returns(
    tmp_path: Path,
) -> None:
    """Node B reaches Redis through a relay the test cuts: it misses the logouts done on node A
    meanwhile, and must catch up from storage when its pub/sub link is back."""
    with RedisServer() as server, TCPRelay("127.0.0.1", server.port) as relay:
        a = GatewayProcess(redis_url=server.url, log_path=tmp_path / "a.log")
        b = GatewayProcess(redis_url=relay.url(), log_path=tmp_path / "b.log")
        try:
            a.start()
            b.start()
            with httpx.Client(base_url=a.url) as http:
                accounts = [new_account(http) for _ in range(5)]
            sockets = [await WS.open(b.ws_url, acct.token) for acct in accounts]
            relay.cut()
            with httpx.Client(base_url=a.url) as http:
                for account in accounts:
                    r = http.post("/sessions/logout", headers=account.headers)
                    assert r.status_code == 200
            for ws in sockets:  # B has not heard of it: the sockets are still served
                assert (await ws.request({"type": "ping"}))["type"] == "pong"
            relay.restore()
            for ws in sockets:
                assert await ws.closed(timeout=20) == (1008, "Token revoked")
            assert "closed 5 socket(s) whose token was revoked" in b.log_tail(200)
        finally:
            a.stop()
            b.stop()
