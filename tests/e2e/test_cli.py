"""The command line: help, flags and environment, workers without Redis, user creation, and
asymmetric JWT algorithms configured through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import login
from gateway_process import GatewayProcess
from redis_server import RedisServer


def pygw(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("PYGW_") and k != "REDIS_URL"
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pygw", *args],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        timeout=60,
    )


def test_help_explains_flags_and_environment() -> None:
    top = pygw("--help")
    assert top.returncode == 0
    assert "serve" in top.stdout and "users" in top.stdout
    serve = pygw("serve", "--help")
    assert serve.returncode == 0
    for flag in ("--host", "--port", "--redis-url", "--workers", "--log-level"):
        assert flag in serve.stdout
    for env in ("HOST, PORT", "REDIS_URL", "PYGW_WORKERS", "LOGGING_LEVEL", "SECRET_KEY"):
        assert env in serve.stdout


def test_bad_configuration_is_refused_with_a_clear_message() -> None:
    r = pygw("serve", env={"PORT": "eighty"})
    assert r.returncode == 2
    assert "PORT='eighty' is not a valid int" in r.stderr
    r = pygw("serve", "--workers", "2", "--port", "1")
    assert r.returncode == 2
    assert "needs --redis-url" in r.stderr
    r = pygw("serve", env={"ALGORITHM": "RS256"})
    assert r.returncode == 2
    assert "PYGW_JWT_PRIVATE_KEY" in r.stderr
    r = pygw("serve", env={"PYGW_PING_INTERVAL": "0"})
    assert r.returncode == 2
    assert "PYGW_PING_INTERVAL and PYGW_INACTIVITY_TIMEOUT must be > 0" in r.stderr
    r = pygw("serve", env={"PYGW_WS_MAX_CONNECTIONS": "-1"})
    assert r.returncode == 2
    assert "PYGW_WS_MAX_CONNECTIONS must be >= 0" in r.stderr


def test_users_create_makes_an_admin(tmp_path: Path) -> None:
    with RedisServer() as redis:
        env = {
            "REDIS_URL": redis.url,
            "PYGW_ARGON2_MEMORY_KIB": "1024",
            "PYGW_ARGON2_TIME_COST": "1",
        }
        r = pygw(
            "users",
            "create",
            "boss",
            "--role",
            "admin",
            "--password-stdin",
            env=env,
            stdin="boss-password\n",
        )
        assert r.returncode == 0, r.stderr
        assert "created user 'boss' with role admin" in r.stdout
        again = pygw(
            "users", "create", "boss", "--password-stdin", env=env, stdin="boss-password\n"
        )
        assert again.returncode == 1
        assert "already exists" in again.stderr
        short = pygw("users", "create", "tiny", "--password-stdin", env=env, stdin="short\n")
        assert short.returncode == 2
        with (
            GatewayProcess(redis_url=redis.url, log_path=tmp_path / "gw.log") as gw,
            httpx.Client(base_url=gw.url) as http,
        ):
            account = login(http, "boss", "boss-password")
            assert http.get("/admin/users", headers=account.headers).status_code == 200


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_asymmetric_algorithms_from_the_environment(tmp_path: Path) -> None:
    for algorithm, key in (
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ):
        private_pem, public_pem = _pem(key)
        key_file = tmp_path / f"{algorithm}.pem"
        key_file.write_text(private_pem)
        env = {"ALGORITHM": algorithm, "PYGW_JWT_PRIVATE_KEY": f"@{key_file}"}
        with (
            GatewayProcess(env=env, log_path=tmp_path / f"{algorithm}.log") as gw,
            httpx.Client(base_url=gw.url) as http,
        ):
            http.post(
                "/sessions/register",
                json={"username": "kim", "email": "k@x.io", "password": "kim-password"},
            )
            account = login(http, "kim", "kim-password")
            header = pyjwt.get_unverified_header(account.token)
            assert header["alg"] == algorithm
            claims = pyjwt.decode(account.token, public_pem, algorithms=[algorithm])
            assert claims["sub"] == "kim"
            minted = pyjwt.encode(
                {
                    "sub": "kim",
                    "user_id": "kim",
                    "role": "user",
                    "exp": int(time.time()) + 60,
                    "jti": "x1",
                },
                private_pem,
                algorithm=algorithm,
            )
            r = http.get(
                "/sessions/users/kim/sessions", headers={"Authorization": f"Bearer {minted}"}
            )
            assert r.status_code == 200, r.text
            forged = pyjwt.encode(
                {"sub": "kim", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256"
            )
            r = http.get(
                "/sessions/users/kim/sessions", headers={"Authorization": f"Bearer {forged}"}
            )
            assert r.status_code == 401
