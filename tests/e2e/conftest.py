"""End-to-end fixtures: real gateway processes on loopback, memory and Redis backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway_process import GatewayProcess, gateway_on

ADMIN = "root_admin"


@dataclass
class Account:
    username: str
    password: str
    token: str
    session_id: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def register(client: httpx.Client, username: str, password: str = "correct-horse-1") -> None:
    r = client.post(
        "/sessions/register",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert r.status_code == 200, r.text


def login(client: httpx.Client, username: str, password: str = "correct-horse-1") -> Account:
    r = client.post("/sessions/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    return Account(
        username, password, body["access_token"], body["session_id"], body["refresh_token"]
    )


def new_account(client: httpx.Client, prefix: str = "user") -> Account:
    username = unique(prefix)
    register(client, username)
    return login(client, username)


@pytest.fixture(scope="module", params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One gateway per backend for a test module (tests use unique usernames)."""
    yield from backend_gateway(
        request, tmp_path_factory, {"PYGW_ADMIN_USERS": ADMIN, "PYGW_API_KEYS": "test-api-key"}
    )


def backend_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> Iterator[GatewayProcess]:
    """Body of a module fixture parametrized with ``memory``/``redis``: a gateway with ``env``,
    on its own redis-server for the ``redis`` param; stopped (both) when the module is done."""
    yield from gateway_on(request.param, tmp_path_factory.mktemp("gw") / "gateway.log", env)


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10.0) as c:
        yield c


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
