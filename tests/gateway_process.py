"""Start real gateway processes (``python -m pygw serve``) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TEST_SECRET = "pygw-test-secret-key-0123456789abcdef"
# Cheap argon2 parameters keep tests fast; the default (OWASP) ones are exercised separately.
FAST_ARGON2 = {"PYGW_ARGON2_MEMORY_KIB": "1024", "PYGW_ARGON2_TIME_COST": "1"}
# Every test client is 127.0.0.1, like users behind one NAT: the per-IP login and registration
# limits are off unless a test sets them (tests/e2e/test_rate_limits.py, test_auth_security.py);
# the other limits keep their defaults.
TEST_LIMITS = {"PYGW_RATE_LOGIN_IP": "0", "PYGW_RATE_REGISTER": "0"}
# The password of the accounts named in PYGW_ADMIN_USERS, created by the gateway at start (the
# names are reserved: registration refuses them).
ADMIN_PASSWORD = "correct-horse-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """One ``pygw serve`` process on 127.0.0.1:<port>; stopped by PID."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        log_path: Path | None = None,
        script: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        self.extra_env = env or {}
        self.args = args or []
        self.log_path = log_path
        self.script = script
        """Run this Python file (an app embedding pygw, given --host/--port) instead of the CLI."""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PYGW_") and k not in ("REDIS_URL", "SECRET_KEY", "PORT", "HOST")
        }
        env.update(
            {
                "SECRET_KEY": TEST_SECRET,
                "LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "PYGW_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **FAST_ARGON2,
                **TEST_LIMITS,
            }
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0, expect_healthy: bool = True) -> GatewayProcess:
        entry = [str(self.script)] if self.script else ["-m", "pygw", "serve"]
        cmd = [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = out = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.environment(), stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                r = httpx.get(self.url + "/health", timeout=1.0)
                if r.status_code == 200 or not expect_healthy:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"gateway on port {self.port} did not become healthy: {self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway_on(
    backend: str, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[GatewayProcess]:
    """Body of a fixture: a started gateway with ``env`` on the ``memory`` or ``redis``
    backend (its own redis-server); both stopped when the fixture ends."""
    # Imported here: benches import this module as ``tests.gateway_process``.
    from redis_server import RedisServer

    redis = RedisServer() if backend == "redis" else None
    proc = GatewayProcess(redis_url=redis.url if redis else None, env=env, log_path=log_path)
    try:
        yield proc.start()
    finally:
        proc.stop()
        if redis is not None:
            redis.close()
