"""Operations: /metrics moving by the expected amounts, CORS, the WebSocket Origin allow-list,
request ids in responses and JSON logs, and the live connection lists (node and cluster)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from wsclient import WS

from conftest import ADMIN, login, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer

API_KEY = "ops-key"


def scrape(http: httpx.Client) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_metrics_move_by_the_expected_amounts(tmp_path: Path) -> None:
    env = {"PYGW_API_KEYS": API_KEY}
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        a = new_account(http)
        b = new_account(http)
        before = scrape(http)
        assert before["pygw_ws_connections"] == 0
        r = http.post("/sessions/login", json={"username": a.username, "password": "nope-nope"})
        assert r.status_code == 401
        http.get("/definitely/missing")
        async with await WS.open(gw.ws_url, a.token) as wa, await WS.open(gw.ws_url, b.token) as wb:
            for ws in (wa, wb):
                await ws.request({"type": "subscribe", "channel": "m:1"})
            for _ in range(3):
                await wa.request({"type": "ping"})
            await wa.request({"type": "no_such_type"})
            await wa.request({"type": "publish", "channel": "m:1", "data": 1})
            await wa.messages(1, "m:1")
            await wb.messages(1, "m:1")
            during = scrape(http)
        assert during["pygw_ws_connections"] == 2
        assert delta(during, before, "pygw_ws_connections_opened_total") == 2
        # 2 subscribes + 3 pings + 1 unknown + 1 publish
        assert delta(during, before, "pygw_ws_messages_in_total") == 7
        assert delta(during, before, "pygw_ws_errors_total") == 1
        assert delta(during, before, "pygw_publications_total") == 1
        assert delta(during, before, "pygw_deliveries_total") == 2
        assert delta(during, before, 'pygw_auth_total{outcome="login_failure"}') == 1
        assert delta(during, before, 'pygw_http_responses_total{status="4xx"}') >= 2
        assert delta(during, before, "pygw_publish_deliver_seconds_count") == 1
        deadline = time.monotonic() + 3
        while scrape(http)["pygw_ws_connections"] != 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        after = scrape(http)
        assert delta(after, before, "pygw_ws_connections_closed_total") == 2


def test_session_flush_metrics_with_redis(tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        GatewayProcess(
            redis_url=redis.url, env={"BATCH_WRITE_INTERVAL_MS": "20"}, log_path=tmp_path / "gw.log"
        ) as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        a = new_account(http)
        before = scrape(http)
        for i in range(5):
            r = http.post(
                f"/sessions/update/{a.session_id}", json={"data": {"i": i}}, headers=a.headers
            )
            assert r.status_code == 200
        deadline = time.monotonic() + 3
        while delta(scrape(http), before, "pygw_session_flush_batch_size_count") < 1:
            assert time.monotonic() < deadline, "no flush observed"
            time.sleep(0.05)
        after = scrape(http)
        assert delta(after, before, "pygw_session_flush_seconds_count") >= 1
        assert delta(after, before, "pygw_session_flush_batch_size_sum") >= 1


def test_cors(tmp_path: Path) -> None:
    env = {"PYGW_CORS_ORIGINS": "https://app.example.com,https://*.partner.io"}
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        pre = http.options(
            "/sessions/login",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "content-type"
        wildcard = http.get("/health", headers={"Origin": "https://eu.partner.io"})
        assert wildcard.headers["access-control-allow-origin"] == "https://eu.partner.io"
        assert "Retry-After" in wildcard.headers["access-control-expose-headers"]
        denied = http.options(
            "/sessions/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert denied.status_code == 403
        plain = http.get("/health", headers={"Origin": "https://evil.example"})
        assert plain.status_code == 200
        assert "access-control-allow-origin" not in plain.headers
        assert "access-control-allow-origin" not in http.get("/health").headers


def test_cors_any_origin_never_reflected_with_credentials(tmp_path: Path) -> None:
    """Review item 17: ``*`` with credentials used to echo any Origin back with
    ``Allow-Credentials: true`` (every site could call the API with the user's cookies)."""
    env = {
        "PYGW_CORS_ORIGINS": "*,https://app.example.com",
        "PYGW_CORS_ALLOW_CREDENTIALS": "true",
    }
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        for r in (
            http.get("/health", headers={"Origin": "https://evil.example"}),
            http.options(
                "/sessions/login",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ),
        ):
            assert r.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in r.headers
        named = http.get("/health", headers={"Origin": "https://app.example.com"})
        assert named.headers["access-control-allow-origin"] == "https://app.example.com"
        assert named.headers["access-control-allow-credentials"] == "true"


async def test_websocket_origin_allow_list(tmp_path: Path) -> None:
    env = {"PYGW_WS_ALLOWED_ORIGINS": "https://app.example.com"}
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        a = new_account(http)
        url = f"{gw.ws_url}/ws/connect?token={a.token}"
        async with websockets.connect(url, origin="https://app.example.com") as ok:
            assert orjson.loads(await ok.recv())["type"] == "connected"
        async with websockets.connect(url) as no_origin:  # not a browser: allowed
            assert orjson.loads(await no_origin.recv())["type"] == "connected"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, origin="https://evil.example")
        assert refused.value.response.status_code == 403


def test_request_ids_and_json_access_logs(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    env = {"PYGW_JSON_LOGS": "1", "PYGW_ACCESS_LOG": "1"}
    with GatewayProcess(env=env, log_path=log) as gw, httpx.Client(base_url=gw.url) as http:
        r = http.get("/health", headers={"X-Request-ID": "req-abc-123"})
        assert r.headers["x-request-id"] == "req-abc-123"
        assert "x-request-id" not in http.get("/health").headers
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [
        e for e in lines if e["logger"] == "pygw.access" and e.get("request_id") == "req-abc-123"
    ]
    assert len(access) == 1
    assert access[0]["msg"].startswith("GET /health 200")
    assert access[0]["level"] == "INFO"
    assert access[0]["client"] == "127.0.0.1"


async def test_connection_lists_per_node_and_cluster(tmp_path: Path) -> None:
    env = {"PYGW_ADMIN_USERS": ADMIN}
    with RedisServer() as redis:
        a = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "a.log").start()
        b = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "b.log").start()
        try:
            with httpx.Client(base_url=a.url) as http:
                admin = login(http, ADMIN)  # created at start (PYGW_ADMIN_PASSWORD)
                user = new_account(http)
                async with (
                    await WS.open(a.ws_url, user.token) as w1,
                    await WS.open(b.ws_url, user.token) as w2,
                ):
                    await w1.request({"type": "subscribe", "channel": "room:9"})
                    await w2.request({"type": "ping"})
                    node = http.get("/admin/connections", headers=admin.headers).json()
                    assert node["scope"] == "node"
                    assert node["total"] == 1
                    (entry,) = node["nodes"][0]["connections"]
                    assert entry["user_id"] == user.username
                    assert entry["channels"] == ["room:9"]
                    cluster = http.get(
                        "/admin/connections?scope=cluster", headers=admin.headers
                    ).json()
                    assert cluster["total"] == 2
                    assert {n["gateway_id"] for n in cluster["nodes"]} == {
                        w1.welcome["gateway_id"],
                        w2.welcome["gateway_id"],
                    }
                    mine = http.get(
                        f"/admin/connections?scope=cluster&user={user.username}",
                        headers=admin.headers,
                    ).json()
                    assert mine["total"] == 2
                    assert http.get("/admin/connections", headers=user.headers).status_code == 403
                    assert (
                        http.get(
                            "/admin/connections?scope=galaxy", headers=admin.headers
                        ).status_code
                        == 422
                    )
        finally:
            a.stop()
            b.stop()
