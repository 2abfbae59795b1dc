"""A new user's first hour, with real processes: a second ``pygw serve`` on a busy port is
refused (unless asked to share it), ``pygw users create`` fails clearly where it cannot keep the
user, and the README's snippets run as written."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from test_cli import pygw

from gateway_process import GatewayProcess, free_port
from redis_server import RedisServer


def gateway_ids(url: str, want: int, seconds: float = 15) -> set[str]:
    """The gateway ids answering /health on ``url``, a new connection each time (so the kernel
    spreads them over every listener of the port), until ``want`` were seen or time is up."""
    ids: set[str] = set()
    deadline = time.monotonic() + seconds
    while len(ids) < want and time.monotonic() < deadline:
        with httpx.Client(base_url=url, timeout=5) as client:
            ids.add(client.get("/health").json()["gateway_id"])
    return ids


# -- a port already in use ---------------------------------------------------------------------
def test_second_serve_on_a_busy_port_is_refused(tmp_path: Path) -> None:
    with GatewayProcess(log_path=tmp_path / "first.log") as first:
        started = time.monotonic()
        second = pygw("serve", "--host", "127.0.0.1", "--port", str(first.port))
        assert second.returncode == 1, second.stderr
        assert f"127.0.0.1:{first.port} is already in use" in second.stderr
        assert "PYGW_REUSE_PORT" in second.stderr
        assert "Traceback" not in second.stderr
        assert time.monotonic() - started < 30
        assert len(gateway_ids(first.url, 2, seconds=1)) == 1  # the first is alone on its port
    with RedisServer() as redis:
        busy = GatewayProcess(redis_url=redis.url, log_path=tmp_path / "busy.log").start()
        try:
            workers = pygw(
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(busy.port),
                "--workers",
                "2",
                env={"REDIS_URL": redis.url},
            )
            assert workers.returncode == 1, workers.stderr
            assert "already in use" in workers.stderr
        finally:
            busy.stop()


def test_sharing_the_port_when_asked(tmp_path: Path) -> None:
    with GatewayProcess(log_path=tmp_path / "first.log") as first:
        second = GatewayProcess(
            port=first.port, env={"PYGW_REUSE_PORT": "true"}, log_path=tmp_path / "second.log"
        )
        with second:
            assert second.proc is not None and second.proc.poll() is None
            assert len(gateway_ids(first.url, 2)) == 2  # the kernel splits connections


def test_a_free_port_after_a_previous_run_is_usable(tmp_path: Path) -> None:
    """Connections of a stopped gateway linger in TIME_WAIT: that is not "in use"."""
    port = free_port()
    with GatewayProcess(port=port, log_path=tmp_path / "a.log") as gw:
        for _ in range(3):
            httpx.get(gw.url + "/health", timeout=5)
    with GatewayProcess(port=port, log_path=tmp_path / "b.log") as again:
        assert httpx.get(again.url + "/health", timeout=5).status_code == 200


# -- pygw users create --------------------------------------------------------------------------
def test_users_create_without_redis_fails_clearly() -> None:
    r = pygw("users", "create", "alice", "--password-stdin", stdin="long-enough-pw\n")
    assert r.returncode == 2
    assert "needs REDIS_URL" in r.stderr and "PYGW_ADMIN_USERS=alice" in r.stderr
    assert "created" not in r.stdout


def test_users_create_with_redis_down_fails_clearly() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    r = pygw(
        "users",
        "create",
        "alice",
        "--password-stdin",
        env={"REDIS_URL": url},
        stdin="long-enough-pw\n",
    )
    assert r.returncode == 1
    assert f"Redis at {url} is unreachable" in r.stderr
    assert "Traceback" not in r.stderr and "created" not in r.stdout
