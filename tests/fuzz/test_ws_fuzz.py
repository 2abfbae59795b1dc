"""WebSocket frame fuzzing against real gateway processes (security review): authenticated
clients over loopback send generated and mutated frames (``ws_frames.Frames``: every client type
with mutated fields, byte mutations, random bytes, BINARY and fragmented messages, deep nesting,
huge ids, numbers past 64 bits, unpaired surrogates, oversized frames).

Checked throughout: every server frame is JSON text; no error frame with a 5xx code (a handler
failed); every batch ends with a ping on the same connection answered within ``PROBE_TIMEOUT``
(no hang), and every ``PROBE_EVERY`` frames a ping on a fresh connection; the gateway closes a
connection only with an expected code (1008 too many errors, 1009 frame too big); at the end the
gateway's log has no traceback and no ERROR line.

Seeded and bounded: ``PYGW_FUZZ_FRAMES`` frames on the memory backend (``make test``: 250,000;
``make fuzz``: 1,000,000), ``PYGW_FUZZ_REDIS_FRAMES`` on Redis (25,000; 100,000), both with the
error and rate limits off so that every frame is handled; then 10,000 frames with the default
limits (connections are closed 1008 and reopened); ``PYGW_FUZZ_SEED``. The figures
(frames/s, closes) are printed for docs/SECURITY.md.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from ws_frames import Frame, Frames, fragments

from gateway_process import GatewayProcess
from redis_server import RedisServer

FRAMES = int(os.environ.get("PYGW_FUZZ_FRAMES", "250000"))
REDIS_FRAMES = int(os.environ.get("PYGW_FUZZ_REDIS_FRAMES", "25000"))
LIMITED_FRAMES = 10_000
SEED = int(os.environ.get("PYGW_FUZZ_SEED", "20261205"))
CONNECTIONS = 4
BATCH = 100
PROBE_EVERY = 5000
PROBE_TIMEOUT = 10.0
EXPECTED_CLOSES = {1008: "too many errors or over the rate limit", 1009: "frame too big"}
MAX_MESSAGE_BYTES = 65536
NAMESPACES = [
    {"name": "hist", "history_size": 50, "history_ttl": 300, "presence": True},
    {"name": "pres", "presence": True},
    {"name": "news", "subscribe": "*", "publish": ["admin"]},
]


@dataclass
class Report:
    backend: str
    sent: int = 0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    replies: int = 0
    closes: collections.Counter[int | None] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, what: str, recent: collections.deque[Frame]) -> None:
        last = [(f.kind, f.payload[:200]) for f in list(recent)[-5:]]
        self.failures.append(f"{what}; last frames sent: {last!r}")

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        closes = ", ".join(f"{code}: {n}" for code, n in sorted(self.closes.items(), key=str))
        return (
            f"ws-fuzz {self.backend}: {self.sent} frames in {self.seconds:.1f} s "
            f"({rate:,.0f} frames/s), {self.replies} replies, closes {{{closes}}}, "
            f"{len(self.failures)} failures; kinds {dict(self.kinds)}"
        )


def gateway_env(limits: bool) -> dict[str, str]:
    env = {
        "PYGW_NAMESPACES": orjson.dumps(NAMESPACES).decode(),
        "PYGW_MESSAGE_ROLES": '{"admin_only": ["admin"]}',
        "PYGW_WS_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "PYGW_WS_MAX_BACKPRESSURE": str(16 << 20),
        "PYGW_RATE_WS_CONNECT": "0",
    }
    if not limits:  # keep connections open: the fuzzer reads every reply
        env |= {"PYGW_RATE_WS_MESSAGE": "0", "PYGW_WS_MAX_ERRORS": "1000000000"}
    return env


_users = itertools.count()


def login(url: str) -> str:
    name = f"wsfz{os.getpid()}_{next(_users)}"
    with httpx.Client(base_url=url, timeout=10) as c:
        c.post(
            "/sessions/register",
            json={"username": name, "email": f"{name}@example.com", "password": "fuzz-pass-1"},
        )
        r = c.post("/sessions/login", json={"username": name, "password": "fuzz-pass-1"})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


async def connect(gw: GatewayProcess, token: str) -> Any:
    return await websockets.connect(
        f"{gw.ws_url}/ws/connect?token={token}",
        max_size=None,
        ping_interval=None,
        open_timeout=PROBE_TIMEOUT,
        close_timeout=2,
    )


async def fresh_ping(gw: GatewayProcess, token: str) -> bool:
    """A new connection answers a ping."""
    async with await connect(gw, token) as ws:
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), PROBE_TIMEOUT))
        assert welcome["type"] == "connected"
        await ws.send('{"type":"ping","id":"fresh"}')
        while True:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), PROBE_TIMEOUT))
            if frame.get("id") == "fresh":
                return bool(frame["type"] == "pong")


async def send(ws: Any, frame: Frame) -> None:
    if frame.fragments > 1:
        await ws.send(fragments(frame.payload, frame.fragments))
    else:
        await ws.send(frame.payload)


@dataclass
class Probe:
    """The ping that ends a batch, and whether its pong came back."""

    id: str = ""
    answered: asyncio.Event = field(default_factory=asyncio.Event)


async def read_replies(
    ws: Any, probe: Probe, report: Report, recent: collections.deque[Frame]
) -> None:
    """Check every frame the gateway sends until it closes."""
    async for message in ws:
        report.replies += 1
        if not isinstance(message, str):
            report.fail(f"a BINARY frame from the gateway: {message[:100]!r}", recent)
            continue
        try:
            reply = orjson.loads(message)
        except orjson.JSONDecodeError:
            report.fail(f"a frame that is not JSON: {message[:200]!r}", recent)
            continue
        if reply.get("type") == "error" and reply.get("code", 0) >= 500:
            report.fail(f"error frame {reply!r} (a handler failed)", recent)
        if probe.id and reply.get("id") == probe.id:
            probe.answered.set()


async def fuzz_connection(
    gw: GatewayProcess, token: str, frames: Frames, count: int, report: Report
) -> None:
    """Send ``count`` frames on one connection, reopened whenever the gateway closes it."""
    sent = 0
    recent: collections.deque[Frame] = collections.deque(maxlen=20)
    probes = itertools.count()
    while sent < count and not report.failures:
        ws = await connect(gw, token)
        probe = Probe()
        reader = asyncio.create_task(read_replies(ws, probe, report, recent))
        hung = False
        try:
            while sent < count and not report.failures:
                for _ in range(min(BATCH, count - sent)):
                    frame = frames.next()
                    recent.append(frame)
                    await send(ws, frame)
                    sent += 1
                    report.sent += 1
                    report.kinds[frame.kind] += 1
                probe.id = f"probe-{next(probes)}"
                probe.answered.clear()
                await ws.send(orjson.dumps({"type": "ping", "id": probe.id}).decode())
                pong = asyncio.create_task(probe.answered.wait())
                await asyncio.wait(
                    [pong, reader], timeout=PROBE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
                pong.cancel()
                if reader.done():
                    break  # closed by the gateway: the code is checked below
                if not probe.answered.is_set():
                    report.fail(f"no pong within {PROBE_TIMEOUT} s (a hang)", recent)
                    hung = True
                    break
        except ConnectionClosed:
            pass
        ours = not reader.done()
        await ws.close()
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), PROBE_TIMEOUT)
        if ours or hung:
            continue  # closed by us: at the end, or after a hang (already a failure)
        received = ws.close_code
        report.closes[received] += 1
        if received not in EXPECTED_CLOSES:
            report.fail(f"closed by the gateway with {received} {ws.close_reason!r}", recent)


async def run_fuzz(gw: GatewayProcess, frames_total: int, backend: str) -> Report:
    report = Report(backend)
    tokens = [login(gw.url) for _ in range(CONNECTIONS + 1)]
    started = time.perf_counter()
    done = 0
    seeds = itertools.count(SEED)
    while done < frames_total and not report.failures:
        chunk = min(PROBE_EVERY, frames_total - done)
        await asyncio.gather(
            *(
                fuzz_connection(gw, tokens[i], Frames(next(seeds)), chunk // CONNECTIONS, report)
                for i in range(CONNECTIONS)
            )
        )
        done += chunk
        if not await fresh_ping(gw, tokens[-1]):
            report.failures.append("a fresh connection got no pong")
    report.seconds = time.perf_counter() - started
    return report


def log_problems(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if "Traceback" in line or " ERROR " in line][:20]


@pytest.fixture
def fuzz_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    with GatewayProcess(env=gateway_env(limits=False), log_path=tmp_path / "gw.log") as gw:
        yield gw


async def test_ws_frames_memory(
    fuzz_gateway: GatewayProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run_fuzz(fuzz_gateway, FRAMES, "memory")
    with capsys.disabled():
        print("\n" + report.summary())
    assert report.failures == []
    assert report.sent >= FRAMES - CONNECTIONS * BATCH
    assert fuzz_gateway.log_path is not None
    assert log_problems(fuzz_gateway.log_path) == []


async def test_ws_frames_redis(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "gw.log"
    with GatewayProcess(
        redis_url=redis_server.url, env=gateway_env(limits=False), log_path=log
    ) as gw:
        report = await run_fuzz(gw, REDIS_FRAMES, "redis")
    with capsys.disabled():
        print("\n" + report.summary())
    assert report.failures == []
    assert log_problems(log) == []


async def test_ws_frames_with_default_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default error and rate limits: connections are closed 1008 and reopened."""
    log = tmp_path / "gw.log"
    with GatewayProcess(env=gateway_env(limits=True), log_path=log) as gw:
        report = await run_fuzz(gw, LIMITED_FRAMES, "memory, default limits")
    with capsys.disabled():
        print("\n" + report.summary())
    assert report.failures == []
    assert report.closes[1008] > 0, "the default error limit should have closed connections"
    assert log_problems(log) == []
