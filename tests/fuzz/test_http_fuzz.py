"""Schema-driven HTTP fuzzing (security review): schemathesis generates requests from the
gateway's own ``/openapi.json`` — valid and invalid bodies, parameters and headers — and sends
them with an admin token and an API key to a real gateway process. Checks: no 5xx, no answer
slower than ``RESPONSE_LIMIT`` seconds (a hang), responses conform to the schema where it
declares them. Proxy registration (``/api/register``) and the proxy (``/api/proxy/*``) are
left out: they reach out to other servers.

Seeded and bounded: ``PYGW_FUZZ_EXAMPLES`` examples per operation (``make test``: 25;
``make fuzz``: more), ``PYGW_FUZZ_SEED`` (printed on failure by Hypothesis too). One test per
operation, so an operation known to fail is marked ``xfail(strict=True)`` alone and flips as
soon as it is fixed.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from gateway_process import ADMIN_PASSWORD, GatewayProcess, gateway_on

EXAMPLES = int(os.environ.get("PYGW_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("PYGW_FUZZ_SEED", "20261205"))
RESPONSE_LIMIT = 5.0
"""Seconds: an answer slower than this counts as a hang (the slowest honest request is a
login's password hash, milliseconds with the tests' argon2 parameters)."""
ADMIN = "fuzz_admin"
API_KEY = "fuzz-api-key"
EXCLUDED = ("/api/register", "/api/proxy/", "/sse/connect", "/stream/connect")
"""Proxy registration (it registers routes to arbitrary backends), and the two stream endpoints:
an accepted request never ends, which this fuzzer would count as a hang. Their refusals (bad
token, body, channels, Last-Event-ID) are tested in tests/e2e/test_streams.py."""

OPERATIONS = [
    "POST /sessions/register",
    "POST /sessions/login",
    "POST /sessions/refresh",
    "POST /sessions/logout",
    "POST /sessions/delete_account",
    "POST /sessions/change_password",
    "POST /sessions/create",
    "GET /sessions/{session_id}",
    "POST /sessions/update/{session_id}",
    "GET /sessions/users/{user_id}/sessions",
    "GET /sessions/users/{user_id}/connection",
    "GET /health",
    "GET /health/live",
    "GET /health/ready",
    "GET /ws/health",
    "GET /health/connections",
    "POST /admin/users/promote",
    "POST /admin/users/demote",
    "GET /admin/users",
    "GET /admin/users/stats",
    "GET /admin/system/stats",
    "GET /admin/system/redis-info",
    "GET /admin/connections",
    "GET /admin/channels",
    "GET /admin/routes",
    "POST /admin/system/cleanup-sessions",
    "POST /api/publish",
    "POST /api/broadcast",
    "POST /api/push/{user_id}",
    "POST /api/disconnect/{user_id}",
    "GET /api/presence/{channel}",
    "GET /api/history/{channel}",
    "GET /metrics",
    "DELETE /api/unregister",
    "GET /api/list",
]
"""Every operation of ``/openapi.json`` but the excluded ones
(``test_every_operation_is_fuzzed`` keeps this list honest)."""

KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}
"""(test, backend, operation) that still fail, with the review item and who fixes it. Each is
marked xfail(strict=True) when it runs: once fixed, the run fails until the entry is removed."""

DESTRUCTIVE = {
    "POST /sessions/logout",
    "POST /sessions/delete_account",
    "POST /sessions/change_password",
}
"""Operations that revoke the token they are given: each example gets a fresh user's."""

HUGE = 2**64
"""Past what orjson encodes (security review item 1)."""


def nested(depth: int) -> object:
    doc: object = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


EDGE_BODIES: dict[str, list[dict[str, Any]]] = {
    "POST /sessions/update/{session_id}": [
        {"data": {"n": HUGE}},
        {"chat_id": "c", "data": {"n": [-HUGE]}},
        {"data": {"deep": nested(40)}},
    ],
    "POST /api/publish": [
        {"channel": "hist:fuzz", "data": HUGE},
        {"channel": "c", "data": {"deep": nested(40)}},
    ],
    "POST /api/broadcast": [{"channels": ["c", "hist:fuzz"], "data": {"n": HUGE}}],
    "POST /api/push/{user_id}": [{"data": [HUGE]}, {"data": nested(40)}],
}
"""Bodies every run sends (Hypothesis' explicit phase) besides the generated ones: values
schemas allow but storage or relaying cannot take. Generation finds them only by chance."""


BACKENDS = os.environ.get("PYGW_FUZZ_BACKENDS", "memory,redis").split(",")


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = {
        "PYGW_ADMIN_USERS": ADMIN,
        "PYGW_API_KEYS": API_KEY,
        "PYGW_RATE_LOGIN": "0",
        "PYGW_NAMESPACES": '[{"name": "hist", "history_size": 20, "presence": true}]',
    }
    yield from gateway_on(request.param, tmp_path_factory.mktemp("fuzz") / "gateway.log", env)


_names = itertools.count()


def account(
    client: httpx.Client, username: str | None = None, password: str = "fuzz-pass-1"
) -> dict[str, str]:
    """Register (if new) and log in; the login's token, session and name."""
    username = username or f"fz{os.getpid()}_{next(_names)}"
    client.post(
        "/sessions/register",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    r = client.post("/sessions/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    return {"token": body["access_token"], "session_id": body["session_id"], "user": username}


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> dict[str, str]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        # The gateway created the reserved admin account at start (PYGW_ADMIN_PASSWORD).
        return account(client, ADMIN, ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def schema(gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json")


def test_every_operation_is_fuzzed(schema: Any) -> None:
    live = [r.ok().label for r in schema.get_all_operations()]
    fuzzed = [label for label in live if not any(part in label for part in EXCLUDED)]
    assert sorted(fuzzed) == sorted(OPERATIONS)


def operation_of(request: pytest.FixtureRequest, test: str, label: str, schema: Any) -> Any:
    """The schema's operation ``label``; marks the test xfail(strict) if it is a known
    failure on this backend."""
    backend = request.node.callspec.params["gateway"]
    reason = KNOWN_FAILURES.get((test, backend, label))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    method, path = label.split(" ", 1)
    return schema[path][method]


def known_values(path: str, admin: dict[str, str]) -> dict[str, str]:
    """Path parameters that exist: the admin's own session and name, a channel with
    history and presence."""
    known = {"session_id": admin["session_id"], "user_id": admin["user"], "channel": "hist:fuzz"}
    return {k: v for k, v in known.items() if "{" + k + "}" in path}


def send(label: str, case: Any, gateway: GatewayProcess, admin: dict[str, str]) -> None:
    """Send one case and check its answer: no 5xx, no hang, the declared schema."""
    headers = {"Authorization": f"Bearer {admin['token']}", "X-API-Key": API_KEY}
    if label in DESTRUCTIVE:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            headers["Authorization"] = f"Bearer {account(client)['token']}"
    started = time.perf_counter()
    response = case.call(base_url=gateway.url, headers=headers, timeout=RESPONSE_LIMIT * 2)
    elapsed = time.perf_counter() - started
    assert elapsed < RESPONSE_LIMIT, f"{label}: {elapsed:.1f} s (hang?)"
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def still_serving(gateway: GatewayProcess) -> None:
    health = httpx.get(gateway.url + "/health", timeout=5)
    assert health.status_code == 200, "the gateway stopped answering"


def run(
    label: str, cases: Any, gateway: GatewayProcess, admin: dict[str, str], *, examples: int
) -> None:
    """Send ``examples`` generated cases and check each answer."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.seed(SEED)
    @hypothesis.given(case=cases)
    def fuzz(case: Any) -> None:
        send(label, case, gateway, admin)

    fuzz()
    still_serving(gateway)


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation(
    label: str,
    schema: Any,
    gateway: GatewayProcess,
    admin: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    """Generated requests, valid and invalid (half of them with parameters that exist)."""
    operation = operation_of(request, "generated", label, schema)
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    present = known_values(operation.path, admin)
    if present:
        strategies.append(operation.as_strategy(path_parameters=present))
    run(label, st.one_of(*strategies), gateway, admin, examples=EXAMPLES)


@pytest.mark.parametrize("label", sorted(EDGE_BODIES))
def test_edge_bodies(
    label: str,
    schema: Any,
    gateway: GatewayProcess,
    admin: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    """The explicit bodies of EDGE_BODIES, each once."""
    operation = operation_of(request, "edge", label, schema)
    present = known_values(operation.path, admin)
    explicit = [
        operation.Case(body=body, path_parameters=present, media_type="application/json")
        for body in EDGE_BODIES[label]
    ]
    for case in explicit:
        send(label, case, gateway, admin)
    still_serving(gateway)
