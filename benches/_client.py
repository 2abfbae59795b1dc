"""A small asyncio HTTP/1.1 keep-alive client for the phases that need response bodies (register,
login: the tokens) — everything else uses ``pygw-loadgen``. Latency per request is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Result:
    status: int
    latency: float
    body: bytes


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(payload)}")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            lname = name.strip().lower()
            if lname == "content-length":
                length = int(value.strip())
            elif lname == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


@dataclass
class Phase:
    name: str
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = sorted(r.latency for r in self.results)
        n = len(lat)
        ok = sum(1 for r in self.results if 200 <= r.status < 300)

        def q(p: float) -> float:
            return lat[min(n - 1, int(p * n))] * 1000 if n else 0.0

        return {
            "requests": n,
            "ok": ok,
            "success_rate": ok / n if n else 0.0,
            "wall_s": self.wall,
            "throughput_per_s": n / self.wall if self.wall else 0.0,
            "avg_ms": sum(lat) / n * 1000 if n else 0.0,
            "p50_ms": q(0.50),
            "p99_ms": q(0.99),
        }


async def run_phase(
    name: str,
    host: str,
    port: int,
    requests: Sequence[tuple[str, str, Any, dict[str, str] | None]],
    concurrency: int,
    timeout: float = 600.0,
) -> Phase:
    """Issue ``requests`` (method, path, json body, headers) over ``concurrency`` keep-alive
    connections; results keep the request order."""
    phase = Phase(name)
    results: list[Result | None] = [None] * len(requests)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        conn = Conn(host, port)
        try:
            while next_index < len(requests):
                i = next_index
                next_index += 1
                method, path, body, headers = requests[i]
                t = time.perf_counter()
                try:
                    status, data = await conn.request(method, path, body, headers)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    await conn.close()
                    status, data = 0, b""
                results[i] = Result(status, time.perf_counter() - t, data)
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(requests)))))),
        timeout,
    )
    phase.wall = time.perf_counter() - t0
    phase.results = [r for r in results if r is not None]
    return phase


def register_requests(prefix: str, n: int) -> list[tuple[str, str, Any, None]]:
    return [
        (
            "POST",
            "/sessions/register",
            {
                "username": f"{prefix}{i}",
                "email": f"{prefix}{i}@bench.example",
                "password": f"bench-pw-{i}",
            },
            None,
        )
        for i in range(n)
    ]


def login_requests(prefix: str, n: int) -> list[tuple[str, str, Any, None]]:
    return [
        (
            "POST",
            "/sessions/login",
            {"username": f"{prefix}{i}", "password": f"bench-pw-{i}"},
            None,
        )
        for i in range(n)
    ]


def creds_from_logins(phase: Phase, prefix: str) -> list[dict[str, str]]:
    creds = []
    for i, r in enumerate(phase.results):
        if r.status != 200:
            continue
        doc = json.loads(r.body)
        creds.append(
            {
                "token": doc["access_token"],
                "session_id": doc["session_id"],
                "username": f"{prefix}{i}",
            }
        )
    return creds


def write_creds(path: Path, creds: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in creds))
    return path


def create_accounts(
    port: int, n: int, prefix: str, concurrency: int = 64
) -> tuple[list[dict[str, str]], Phase, Phase]:
    """Register and log in ``n`` users through the API; returns (creds, register, login)."""

    async def go() -> tuple[Phase, Phase]:
        reg = await run_phase(
            "register", "127.0.0.1", port, register_requests(prefix, n), concurrency
        )
        log = await run_phase("login", "127.0.0.1", port, login_requests(prefix, n), concurrency)
        return reg, log

    reg, log = asyncio.run(go())
    return creds_from_logins(log, prefix), reg, log
