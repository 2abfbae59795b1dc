"""Shutdown as rolling deploys use it: SIGTERM drains (not ready, WebSockets closed with 1001 in
batches over PYGW_DRAIN_SECONDS while HTTP is still served), then every acknowledged write is
flushed before the process exits, in bounded time."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import websockets
from wsclient import WS

from conftest import Account, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer


def test_sigterm_during_inflight_updates_loses_no_acknowledged_update(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Sixteen clients keep updating while SIGTERM arrives: every update answered 200 (before,
    during or after the signal) is in Redis once the process has exited."""
    gw = GatewayProcess(
        redis_url=redis_server.url,
        env={"BATCH_WRITE_INTERVAL_MS": "250"},
        log_path=tmp_path / "gw.log",
    ).start()
    writers = 16
    acked: list[list[int]] = [[] for _ in range(writers)]
    started = threading.Barrier(writers + 1)
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(writers)]

        def write(index: int, account: Account) -> None:
            with httpx.Client(base_url=gw.url, timeout=10) as c:
                started.wait()
                for i in range(100_000):
                    try:
                        r = c.post(
                            f"/sessions/update/{account.session_id}",
                            json={"data": {f"k{i}": i}},
                            headers=account.headers,
                        )
                    except httpx.HTTPError:
                        return  # the node is gone
                    if r.status_code != 200:
                        assert r.status_code == 503, r.text  # refused, not acknowledged
                        return
                    acked[index].append(i)

        threads = [threading.Thread(target=write, args=(i, a)) for i, a in enumerate(accounts)]
        for t in threads:
            t.start()
        started.wait()
        while sum(map(len, acked)) < 1000:  # 1,000 updates in, many more in flight
            time.sleep(0.005)
        gw.signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert gw.wait(30) == 0, gw.log_tail()
    finally:
        gw.stop()
    total = sum(map(len, acked))
    assert total > 1000
    with redis.Redis.from_url(redis_server.url) as r:
        for account, keys in zip(accounts, acked, strict=True):
            data = orjson.loads(r.get(f"sessions:{account.session_id}"))["data"]
            missing = [k for k in keys if data.get(f"k{k}") != k]
            assert not missing, f"{len(missing)} acknowledged update(s) lost: {missing[:10]}"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_drain_spreads_closes_over_the_window_and_reports_not_ready(
    backend: str, tmp_path: Path
) -> None:
    drain = 2.0
    server = RedisServer() if backend == "redis" else None
    gw = GatewayProcess(
        redis_url=server.url if server else None,
        env={"PYGW_DRAIN_SECONDS": str(drain)},
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(20)]
        sockets = [await WS.open(gw.ws_url, a.token, a.session_id) for a in accounts]
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        gw.signal(signal.SIGTERM)

        async def closed_at(ws: WS) -> tuple[float, int | None, str]:
            code, reason = await ws.closed(timeout=drain + 5)
            return loop.time() - signalled, code, reason

        closing = asyncio.gather(*(closed_at(ws) for ws in sockets))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=gw.url, timeout=5) as http:
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "draining"
            assert (await http.get("/health/live")).status_code == 200
            assert (await http.get("/health")).status_code == 200  # the original's probe
            # Still serving the API while draining.
            me = accounts[0]
            r = await http.get(f"/sessions/{me.session_id}", headers=me.headers)
            assert r.status_code == 200, r.text
        # New WebSockets go elsewhere.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await WS.open(gw.ws_url, accounts[1].token, accounts[1].session_id)
        assert refused.value.response.status_code == 503
        results = await closing
        times = sorted(t for t, _, _ in results)
        assert {(code, reason) for _, code, reason in results} == {(1001, "Server draining")}
        # Spread over the window: the first ones early, the last ones near its end.
        assert times[0] < drain / 2, times
        assert times[-1] > drain * 0.6, times
        assert gw.wait(drain + 15) == 0, gw.log_tail()
    finally:
        gw.stop()
        if server is not None:
            server.close()


def test_without_drain_sigterm_still_exits_promptly(tmp_path: Path) -> None:
    gw = GatewayProcess(log_path=tmp_path / "gw.log").start()
    try:
        started = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.wait(15) == 0, gw.log_tail()
        assert time.monotonic() - started < 5
    finally:
        gw.stop()
