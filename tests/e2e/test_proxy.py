"""Dynamic routes and the HTTP proxy (SPEC §2) and WebSocket messages for ws_supported routes
(SPEC §3), against real gateway processes and a real stub backend on loopback."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from stub_backend import StubBackend
from wsclient import WS

from conftest import ADMIN, Account, backend_gateway, login, new_account
from gateway_process import GatewayProcess, free_port
from redis_server import RedisServer

BREAKER_FAILURES = 3
BREAKER_RESET = 1.0
GATEWAY_ENV = {
    "PYGW_ADMIN_USERS": ADMIN,
    "PYGW_BREAKER_FAILURES": str(BREAKER_FAILURES),
    "PYGW_BREAKER_RESET_SECONDS": str(BREAKER_RESET),
    # The stub backends listen on 127.0.0.1: a loopback backend needs the opt-in (the default
    # refuses it: test_non_public_backends_are_refused_by_default).
    "PYGW_PROXY_ALLOW_PRIVATE": "true",
}


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    yield from backend_gateway(request, tmp_path_factory, GATEWAY_ENV)


@pytest.fixture(scope="module")
def stub() -> Iterator[StubBackend]:
    with StubBackend() as backend:
        yield backend


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


def admin_account(http: httpx.Client) -> Account:
    return login(http, ADMIN)  # created at start (PYGW_ADMIN_USERS + PYGW_ADMIN_PASSWORD)


@pytest.fixture
def admin(http: httpx.Client) -> Account:
    return admin_account(http)


def route_name(prefix: str = "api") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def register_route(
    http: httpx.Client, admin: Account, name: str, base_url: str, **fields: Any
) -> None:
    body = {"name": name, "base_url": base_url, "path": "/base", "method": "POST", **fields}
    r = http.post("/api/register", json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": f"API '{name}' registered", "name": name}


def assert_envelope(r: httpx.Response, status: int, detail_part: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status_code"] == status
    assert set(body) >= {"error", "detail", "status_code", "timestamp", "path"}
    assert body["path"] == r.request.url.path
    if detail_part is not None:
        assert detail_part in (body["detail"] or ""), body


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until it is true; returns the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - start


# -- registry ------------------------------------------------------------------------------------
def test_register_list_replace_unregister(
    http: httpx.Client, admin: Account, stub: StubBackend
) -> None:
    a, b = route_name("a"), route_name("b")
    register_route(http, admin, a, stub.url, ws_supported=True, headers={"X-K": "1"})
    register_route(http, admin, b, stub.url + "/", path="", method="get", timeout=5)
    listed = {item["name"]: item for item in http.get("/api/list", headers=admin.headers).json()}
    assert listed[a] == {
        "name": a,
        "base_url": stub.url,
        "method": "POST",
        "path": "/base",
        "ws_supported": True,
    }
    assert listed[b] == {
        "name": b,
        "base_url": stub.url + "/",
        "method": "GET",
        "path": "",
        "ws_supported": False,
    }
    assert http.get(f"/api/proxy/{b}/x").json()["path"] == "/x"

    # Registering an existing name replaces the route (at once on this node).
    register_route(http, admin, b, stub.url, path="/v2", method="PUT")
    listed = {item["name"]: item for item in http.get("/api/list", headers=admin.headers).json()}
    assert (listed[b]["path"], listed[b]["method"]) == ("/v2", "PUT")
    assert http.get(f"/api/proxy/{b}/x").json()["path"] == "/v2/x"

    r = http.delete("/api/unregister", params={"name": b}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"message": f"API '{b}' removed"}
    assert b not in {i["name"] for i in http.get("/api/list", headers=admin.headers).json()}
    assert_envelope(http.get(f"/api/proxy/{b}/x"), 404, f"API '{b}' not found")
    r = http.delete("/api/unregister", params={"name": b}, headers=admin.headers)
    assert_envelope(r, 404, f"API '{b}' not found")
    assert_envelope(http.delete("/api/unregister", headers=admin.headers), 422)
    assert http.delete("/api/unregister", params={"name": a}, headers=admin.headers).is_success


BAD_REGISTRATIONS = [
    ({"name": "has space"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": ""}, "name"),
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "not a url"}, "base_url"),
    ({"base_url": "http://example.com/?q=1"}, "base_url"),
    ({"path": "/a/../b"}, "path"),
    ({"path": "../b"}, "path"),  # relative paths get a leading / (see test_compat), no more
    ({"path": "get b"}, "path"),
    ({"path": "get?x=1"}, "path"),
    ({"path": "get#top"}, "path"),
    ({"method": "TRACE"}, "method"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 301}, "timeout"),
    ({"headers": {"X-Ok": 1}}, "headers"),
    ({"headers": {"Bad Name": "v"}}, "headers"),
    ({"headers": {"X-A": "v\r\nInjected: 1"}}, "headers"),
    ({"headers": {"Host": "evil"}}, "headers"),
    ({"headers": {"X-User-ID": "someone"}}, "headers"),
    ({"require_auth": "maybe"}, "require_auth"),
]


@pytest.mark.parametrize(("change", "field"), BAD_REGISTRATIONS)
def test_bad_registrations_are_422(
    http: httpx.Client, admin: Account, change: dict[str, Any], field: str
) -> None:
    body = {"name": route_name(), "base_url": "http://127.0.0.1:9", "path": "/p", "method": "GET"}
    body.update(change)
    r = http.post("/api/register", json=body, headers=admin.headers)
    assert_envelope(r, 422)
    assert r.json()["error"] == "Validation Error"
    assert r.json()["errors"][0]["loc"][:2] == ["body", field], r.json()
    assert body["name"] not in {
        i["name"] for i in http.get("/api/list", headers=admin.headers).json()
    }


def test_missing_fields_are_422(http: httpx.Client, admin: Account) -> None:
    r = http.post("/api/register", json={"name": route_name()}, headers=admin.headers)
    assert_envelope(r, 422)
    missing = {tuple(e["loc"]) for e in r.json()["errors"] if e["type"] == "missing"}
    assert missing == {("body", "base_url"), ("body", "path"), ("body", "method")}


def test_registry_is_admin_only(http: httpx.Client, admin: Account, stub: StubBackend) -> None:
    user = new_account(http)
    body = {"name": route_name(), "base_url": stub.url, "path": "/p", "method": "GET"}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/register", {"json": body}),
        ("DELETE", "/api/unregister", {"params": {"name": "x"}}),
        ("GET", "/api/list", {}),
    ]
    for method, path, kwargs in calls:
        r = http.request(method, path, headers=user.headers, **kwargs)
        assert_envelope(r, 403)
        assert r.json()["error"] == "Access denied. Required roles: admin"
        r = http.request(method, path, **kwargs)
        assert_envelope(r, 401)
        assert r.json()["error"] == "Not authenticated"
    assert body["name"] not in {
        i["name"] for i in http.get("/api/list", headers=admin.headers).json()
    }


# -- proxying ------------------------------------------------------------------------------------
def test_get_with_query_and_headers_round_trips(
    http: httpx.Client, admin: Account, stub: StubBackend
) -> None:
    name = route_name()
    register_route(http, admin, name, stub.url, path="/base", headers={"X-Route-Key": "secret"})
    r = http.get(
        f"/api/proxy/{name}/items/a%20b/c?x=1&x=2&q=a%2Bb%26c&empty=",
        headers={
            "X-Custom": "custom value",
            "X-User-ID": "spoofed",  # only the gateway sets identity headers
            "X-Session-ID": "spoofed",
            "X-Route-Key": "client tries to override",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "must not pass",
            "Keep-Alive": "timeout=5",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    echo = r.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/base/items/a%20b/c"
    assert echo["query"] == "x=1&x=2&q=a%2Bb%26c&empty="
    assert echo["body"] == ""
    headers = echo["headers"]
    assert headers["host"] == f"127.0.0.1:{stub.port}"
    assert headers["x-custom"] == "custom value"
    assert headers["x-route-key"] == "secret"  # the route's configured header wins
    assert headers["x-forwarded-for"] == "127.0.0.1"
    for absent in ("x-user-id", "x-session-id", "x-hop", "keep-alive"):
        assert absent not in headers, absent


def test_bodies_methods_and_identity(http: httpx.Client, admin: Account, stub: StubBackend) -> None:
    name = route_name()
    register_route(http, admin, name, stub.url, path="/svc", method="GET")
    user = new_account(http)
    payload = orjson.dumps({"text": "héllo", "n": [1, 2.5, None], "nested": {"ok": True}})
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = http.request(
            method,
            f"/api/proxy/{name}/things/7",
            content=payload,
            headers={
                **user.headers,
                "Content-Type": "application/json",
                "Cookie": "gw_session=secret",
                "X-API-Key": "test-api-key",
            },
        )
        assert r.status_code == 200, r.text
        echo = r.json()
        # The incoming method is forwarded, whatever the route's registered method.
        assert (echo["method"], echo["path"]) == (method, "/svc/things/7")
        assert echo["body"].encode() == payload
        assert echo["headers"]["content-type"] == "application/json"
        assert echo["headers"]["content-length"] == str(len(payload))
        assert echo["headers"]["x-user-id"] == user.username
        assert echo["headers"]["x-session-id"] == user.session_id
        # The caller's credentials for the gateway stay here (PYGW_PROXY_FORWARD_CREDENTIALS).
        for credential in ("authorization", "cookie", "x-api-key"):
            assert credential not in echo["headers"], credential

    # Any content type goes through byte for byte; an invalid token is just anonymous here.
    r = http.post(
        f"/api/proxy/{name}",
        content=b"line one\nline two",
        headers={"Content-Type": "text/plain", "Authorization": "Bearer not-a-jwt"},
    )
    echo = r.json()
    assert (echo["path"], echo["body"]) == ("/svc", "line one\nline two")
    assert echo["headers"]["content-type"] == "text/plain"
    assert "x-user-id" not in echo["headers"]


def test_backend_errors_and_headers_pass_through(
    http: httpx.Client, admin: Account, stub: StubBackend
) -> None:
    name = route_name()
    register_route(http, admin, name, stub.url)
    # More 5xx answers than the breaker threshold: they never open the circuit.
    for _ in range(BREAKER_FAILURES + 2):
        r = http.post(f"/api/proxy/{name}/status/500", content=b'{"q":1}')
        assert r.status_code == 500
        assert r.json()["path"] == "/base/status/500"  # the backend's own body, not an envelope
        assert r.json()["body"] == '{"q":1}'
    for status in (404, 418, 503, 599):
        r = http.get(f"/api/proxy/{name}/status/{status}")
        assert r.status_code == status
        assert r.json()["path"] == f"/base/status/{status}"
    r = http.get(f"/api/proxy/{name}/text")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == "plain text, not JSON"
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.headers["x-stub"] == "yes"
    r = http.get(f"/api/proxy/{name}/empty")
    assert (r.status_code, r.content) == (200, b"")
    assert "content-type" not in r.headers


def test_require_auth(http: httpx.Client, admin: Account, stub: StubBackend) -> None:
    name = route_name()
    register_route(http, admin, name, stub.url, require_auth=True)
    r = http.get(f"/api/proxy/{name}/x")
    assert_envelope(r, 401)
    assert r.json()["error"] == "Not authenticated"
    r = http.get(f"/api/proxy/{name}/x", headers={"Authorization": "Bearer nope"})
    assert r.json()["error"] == "Invalid token"
    user = new_account(http)
    r = http.get(f"/api/proxy/{name}/x", headers=user.headers)
    assert r.status_code == 200
    assert r.json()["headers"]["x-user-id"] == user.username


def test_unknown_route_and_escaping_paths(
    http: httpx.Client, admin: Account, stub: StubBackend
) -> None:
    assert_envelope(http.get("/api/proxy/no_such_api"), 404, "API 'no_such_api' not found")
    assert_envelope(http.post("/api/proxy/no_such_api/a/b"), 404, "API 'no_such_api' not found")
    name = route_name()
    register_route(http, admin, name, stub.url, path="/jail")
    before = sum(stub.hits.values())
    for rest in ("a/%2e%2e/%2e%2e/admin", "..%2fadmin", "%2E"):
        r = http.get(f"/api/proxy/{name}/{rest}")
        assert r.status_code == 400, (rest, r.text)
    # Sent byte for byte (an HTTP client would normalise some): each climbs out of /jail on
    # some backend (Tomcat's ..;/, IIS and Windows backslashes, a backend decoding twice).
    for rest in ESCAPES:
        status, body = raw_get(http, f"/api/proxy/{name}/{rest}")
        assert status == 400, (rest, status, body)
        assert b"Invalid proxy path" in body, (rest, body)
    assert sum(stub.hits.values()) == before  # nothing reached the backend
    for rest in ("a%20b", "100%25", "v1.2/x..y", "...", "%7Euser"):  # not dot segments
        status, _ = raw_get(http, f"/api/proxy/{name}/{rest}")
        assert status == 200, rest


ESCAPES = [
    "..;/admin",
    "a/..;/..;/admin",
    "..%3b/admin",
    "..%5cadmin",
    "..%5Cadmin",
    "a\\..\\admin",
    "%2e%2e/admin",
    "%252e%252e/admin",
    "%252E%252E%252Fadmin",
    "%25252e%25252e/admin",
    ".%2e/admin",
    "%2e./admin",
    "%ef%bc%8e%ef%bc%8e/admin",  # fullwidth dots, NFKC ".."
    "..%00/admin",
    "%c0%ae%c0%ae/admin",  # overlong UTF-8 dots
]


def raw_get(http: httpx.Client, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side normalisation); (status, body)."""
    port = http.base_url.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_timeout_is_504(http: httpx.Client, admin: Account, stub: StubBackend) -> None:
    name = route_name()
    register_route(http, admin, name, stub.url, timeout=0.5)
    start = time.monotonic()
    r = http.get(f"/api/proxy/{name}/hang")
    elapsed = time.monotonic() - start
    assert_envelope(r, 504, f"API '{name}' did not answer within 0.5 s")
    assert 0.4 < elapsed < 3, elapsed


def test_only_idempotent_methods_are_retried(
    http: httpx.Client, admin: Account, stub: StubBackend
) -> None:
    # The stub closes the connection without answering: a connection error each time.
    expected = {"GET": 2, "PUT": 2, "DELETE": 2, "OPTIONS": 2, "POST": 1, "PATCH": 1}
    for method, attempts in expected.items():
        name = route_name()
        register_route(http, admin, name, stub.url, path=f"/{name}")
        r = http.request(method, f"/api/proxy/{name}/drop", content=b"x")
        assert_envelope(r, 502, f"API '{name}' is unreachable")
        assert stub.hits[f"/{name}/drop"] == attempts, method


def test_dead_backend_opens_the_circuit_then_recovers(
    http: httpx.Client, admin: Account, gw: GatewayProcess
) -> None:
    port = free_port()  # nothing listens there (yet)
    name = route_name("dead")
    register_route(http, admin, name, f"http://127.0.0.1:{port}")
    for _ in range(BREAKER_FAILURES):
        assert_envelope(http.get(f"/api/proxy/{name}/x"), 502, f"API '{name}' is unreachable")
    r = http.get(f"/api/proxy/{name}/x")
    assert_envelope(r, 503, f"Circuit open for API '{name}'")
    assert 1 <= int(r.headers["retry-after"]) <= BREAKER_RESET + 1

    # Half-open after the reset time: the trial fails (still dead), the circuit re-opens.
    time.sleep(BREAKER_RESET + 0.1)
    assert_envelope(http.get(f"/api/proxy/{name}/x"), 502)
    assert_envelope(http.get(f"/api/proxy/{name}/x"), 503)

    with StubBackend(port) as backend:
        # Still open: the backend is not even asked.
        assert_envelope(http.post(f"/api/proxy/{name}/x"), 503)
        assert sum(backend.hits.values()) == 0
        time.sleep(BREAKER_RESET + 0.1)
        r = http.post(f"/api/proxy/{name}/x", content=b"trial")  # the half-open trial
        assert r.status_code == 200, r.text
        assert r.json()["body"] == "trial"
        for _ in range(BREAKER_FAILURES + 1):  # closed again
            assert http.get(f"/api/proxy/{name}/x").status_code == 200
        assert backend.hits["/base/x"] == BREAKER_FAILURES + 2

    metrics = http.get("/metrics").text
    for outcome, count in (("circuit_open", 3), ("unreachable", 4), ("2xx", 5)):
        line = f'pygw_proxy_requests_total{{outcome="{outcome}",route="{name}"}} {count}.0'
        assert line in metrics, (outcome, [m for m in metrics.splitlines() if name in m])


# -- WebSocket messages for ws_supported routes --------------------------------------------------
async def test_ws_supported_route(
    http: httpx.Client, admin: Account, stub: StubBackend, gw: GatewayProcess
) -> None:
    name = route_name("ws")
    plain = route_name("plain")
    register_route(
        http, admin, name, stub.url, path="/hook", headers={"X-Route-Key": "k"}, ws_supported=True
    )
    register_route(http, admin, plain, stub.url, path="/hook")
    user = new_account(http)
    ws = await WS.open(gw.ws_url, user.token, user.session_id)
    try:
        data = {"text": "héllo", "n": [1, 2.5, None]}
        reply = await ws.request({"type": name, "data": data})
        assert reply["type"] == f"{name}_response"
        echo = reply["data"]
        assert (echo["method"], echo["path"]) == ("POST", "/hook")
        assert orjson.loads(echo["body"]) == {
            "user_id": user.username,
            "session_id": user.session_id,
            "message": data,
        }
        assert echo["headers"]["content-type"] == "application/json"
        assert echo["headers"]["x-user-id"] == user.username
        assert echo["headers"]["x-session-id"] == user.session_id
        assert echo["headers"]["x-route-key"] == "k"

        reply = await ws.request({"type": name})  # no data: message is null
        assert orjson.loads(reply["data"]["body"])["message"] is None

        # A route without ws_supported is not a message type a user may send.
        reply = await ws.request({"type": plain, "data": 1})
        assert reply["type"] == "error"
        assert reply["message"] == f"Unauthorized: role 'user' cannot send '{plain}'"

        # Backend failures are error frames; the socket stays usable.
        register_route(http, admin, name, stub.url, path="/hook/status/500", ws_supported=True)
        reply = await ws.request({"type": name, "data": 1})
        assert (reply["type"], reply["code"]) == ("error", 502)
        assert reply["message"] == f"API '{name}' answered 500"
        register_route(http, admin, name, f"http://127.0.0.1:{free_port()}", ws_supported=True)
        reply = await ws.request({"type": name, "data": 1})
        assert (reply["type"], reply["code"]) == ("error", 502)
        assert f"API '{name}' is unreachable" in reply["message"]
        register_route(
            http, admin, name, stub.url, path="/hook/hang", timeout=0.3, ws_supported=True
        )
        reply = await ws.request({"type": name, "data": 1})
        assert (reply["type"], reply["code"]) == ("error", 504)
        assert (await ws.request({"type": "ping"}))["type"] == "pong"
    finally:
        await ws.conn.close()


# -- several nodes -------------------------------------------------------------------------------
def test_routes_are_hot_reloaded_on_every_node(redis_server: RedisServer, tmp_path: Path) -> None:
    with StubBackend() as stub:
        a = GatewayProcess(
            redis_url=redis_server.url, env=GATEWAY_ENV, log_path=tmp_path / "a.log"
        ).start()
        b: GatewayProcess | None = None
        try:
            with httpx.Client(base_url=a.url, timeout=10) as ca:
                admin = admin_account(ca)
                first = route_name("first")
                register_route(ca, admin, first, stub.url, path="/one")
                # A node started later loads the stored routes.
                b = GatewayProcess(
                    redis_url=redis_server.url, env=GATEWAY_ENV, log_path=tmp_path / "b.log"
                ).start()
                with httpx.Client(base_url=b.url, timeout=10) as cb:
                    assert cb.get(f"/api/proxy/{first}/x").json()["path"] == "/one/x"

                    # Registered on B: usable on A within a second.
                    second = route_name("second")
                    register_route(cb, admin, second, stub.url, path="/two")
                    took = wait_for(
                        lambda: ca.get(f"/api/proxy/{second}/x").status_code == 200,
                        1.0,
                        "route registered on B usable on A",
                    )
                    assert ca.get(f"/api/proxy/{second}/x").json()["path"] == "/two/x", took

                    # Replaced on A: B follows.
                    register_route(ca, admin, second, stub.url, path="/two-v2")
                    wait_for(
                        lambda: cb.get(f"/api/proxy/{second}/x").json()["path"] == "/two-v2/x",
                        1.0,
                        "replacement reaching B",
                    )

                    # Removed on B: gone on A too.
                    r = cb.delete("/api/unregister", params={"name": first}, headers=admin.headers)
                    assert r.status_code == 200
                    wait_for(
                        lambda: ca.get(f"/api/proxy/{first}/x").status_code == 404,
                        1.0,
                        "unregistration reaching A",
                    )
                    names_a = [i["name"] for i in ca.get("/api/list", headers=admin.headers).json()]
                    names_b = [i["name"] for i in cb.get("/api/list", headers=admin.headers).json()]
                    assert names_a == names_b == [second]
        finally:
            if b is not None:
                b.stop()
            a.stop()


def test_openapi_documents_the_routes(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/api/register"]) == {"post"}
    assert set(paths["/api/unregister"]) == {"delete"}
    assert set(paths["/api/list"]) == {"get"}
    for path in ("/api/proxy/{name}", "/api/proxy/{name}/{rest}"):
        assert set(paths[path]) == {"get", "post", "put", "patch", "delete", "options"}
    params = paths["/api/proxy/{name}/{rest}"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["name", "rest"]
    assert "RouteRegisterRequest" in spec["components"]["schemas"]
    ours = [p for p in paths if p.startswith(("/api/proxy", "/api/register", "/api/unreg"))]
    ours.append("/api/list")
    ids = [op["operationId"] for p in ours for op in paths[p].values()]
    others = [op["operationId"] for p in paths if p not in ours for op in paths[p].values()]
    assert len(ids) == len(set(ids)) == 15
    assert not set(ids) & set(others)


# -- safe defaults (review item 17d) -------------------------------------------------------------
NON_PUBLIC = [
    ("http://127.0.0.1:9", "127.0.0.1, a loopback address"),
    ("http://localhost:9", "localhost resolves to"),  # ::1 or 127.0.0.1, both loopback
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
    ("http://[fe80::1]:80", "fe80::1, a link-local address"),
    ("http://[::1]:8080", "::1, a loopback address"),
    ("http://[::ffff:127.0.0.1]", "::ffff:127.0.0.1, a loopback address"),
    ("http://0.0.0.0:80", "0.0.0.0, an unspecified address"),
    ("http://10.1.2.3", "10.1.2.3, a private address"),
    ("https://192.168.0.1", "192.168.0.1, a private address"),
    ("http://100.64.0.1", "100.64.0.1, a non-public address"),
    ("http://2130706433:9", "2130706433 resolves to 127.0.0.1"),  # 127.0.0.1 as one number
]


@pytest.fixture(scope="module")
def strict_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, ...]]:
    """Two nodes sharing Redis: ``strict`` with the proxy's defaults, ``relaxed`` with private
    backends and credential forwarding allowed."""
    logs = tmp_path_factory.mktemp("strict")
    relaxed_env = {
        **GATEWAY_ENV,
        "PYGW_PROXY_ALLOW_PRIVATE": "true",
        "PYGW_PROXY_FORWARD_CREDENTIALS": "true",
    }
    strict_env = {k: v for k, v in GATEWAY_ENV.items() if k != "PYGW_PROXY_ALLOW_PRIVATE"}
    with (
        RedisServer() as redis,
        GatewayProcess(redis_url=redis.url, env=strict_env, log_path=logs / "s.log") as strict,
        GatewayProcess(redis_url=redis.url, env=relaxed_env, log_path=logs / "r.log") as relaxed,
    ):
        yield strict, relaxed


def test_non_public_backends_are_refused_by_default(
    strict_pair: tuple[GatewayProcess, ...],
) -> None:
    strict, _ = strict_pair
    with httpx.Client(base_url=strict.url, timeout=10) as http:
        admin = admin_account(http)
        for base_url, reason in NON_PUBLIC:
            body = {"name": route_name(), "base_url": base_url, "path": "/p", "method": "GET"}
            r = http.post("/api/register", json=body, headers=admin.headers)
            assert_envelope(r, 422)
            (error,) = r.json()["errors"]
            assert error["loc"] == ["body", "base_url"]
            assert reason in error["msg"], (base_url, error)
            assert "PYGW_PROXY_ALLOW_PRIVATE=true" in error["msg"]
        listed = http.get("/api/list", headers=admin.headers).json()
        assert not [i for i in listed if i["base_url"] in dict(NON_PUBLIC)]
        # A public address passes (not called here).
        public = {"name": route_name(), "base_url": "http://93.184.215.14", "path": "/p"}
        r = http.post("/api/register", json={**public, "method": "GET"}, headers=admin.headers)
        assert r.status_code == 200, r.text


def test_a_loopback_route_registered_elsewhere_is_not_called(
    strict_pair: tuple[GatewayProcess, ...], stub: StubBackend
) -> None:
    """A route stored by a node that allows private backends (or before the upgrade): the strict
    node checks the address at every connection and answers 502 without calling it."""
    strict, relaxed = strict_pair
    name = route_name()
    with httpx.Client(base_url=relaxed.url, timeout=10) as rh:
        admin = admin_account(rh)
        register_route(rh, admin, name, f"http://localhost:{stub.port}", method="GET")
        user = new_account(rh)
        # The relaxed node calls it, and forwards the caller's credentials (opted in).
        r = rh.get(f"/api/proxy/{name}/x", headers={**user.headers, "Cookie": "c=1"})
        assert r.status_code == 200, r.text
        assert r.json()["headers"]["authorization"] == f"Bearer {user.token}"
        assert r.json()["headers"]["cookie"] == "c=1"
    before = sum(stub.hits.values())
    with httpx.Client(base_url=strict.url, timeout=10) as sh:
        wait_for(lambda: sh.get(f"/api/proxy/{name}/x").status_code != 404, 2.0, "the route")
        r = sh.get(f"/api/proxy/{name}/x")
        assert_envelope(r, 502, f"API '{name}' refused: localhost resolves to")
        assert "a loopback address" in r.json()["detail"]
        metrics = sh.get("/metrics").text
    assert sum(stub.hits.values()) == before
    assert f'pygw_proxy_requests_total{{outcome="private_address",route="{name}"}} 2.0' in metrics
