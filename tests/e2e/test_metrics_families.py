"""The observability families operators expect, each moved by a scripted workload: process
metrics, client messages in and out by type, close codes, broker round trips, the write-behind
queue, and /metrics on its own port."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from test_operations import delta, scrape
from wsclient import WS

from conftest import new_account
from gateway_process import GatewayProcess, free_port
from redis_server import RedisServer


async def test_message_close_and_broker_families_move_by_the_workload(tmp_path: Path) -> None:
    with (
        GatewayProcess(log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        a = new_account(http)
        before = scrape(http)
        async with await WS.open(gw.ws_url, a.token) as ws:
            for _ in range(4):
                assert (await ws.request({"type": "ping"}))["type"] == "pong"
            await ws.request({"type": "subscribe", "channel": "fam:1"})
            for i in range(3):
                await ws.request({"type": "publish", "channel": "fam:1", "data": i})
            await ws.request({"type": "no_such_type"})
            await ws.send("not json")
            await ws.recv()  # its error frame
        # The client closed normally (1000); a second one is closed by the server (1008).
        async with await WS.open(gw.ws_url, a.token) as ws:
            for _ in range(25):  # past PYGW_WS_MAX_ERRORS (20): "Too many errors"
                await ws.send("not json")
            code, _reason = await ws.closed()
            assert code == 1008
        after = scrape(http)

    def moved(name: str) -> float:
        return delta(after, before, name)

    assert moved('pygw_ws_messages_received_total{type="ping"}') == 4
    assert moved('pygw_ws_messages_received_total{type="subscribe"}') == 1
    assert moved('pygw_ws_messages_received_total{type="publish"}') == 3
    # The unknown type, one frame that is not JSON, then 21 more on the second socket: the
    # 21st error closes it (PYGW_WS_MAX_ERRORS=20) and frames after that are not read.
    assert moved('pygw_ws_messages_received_total{type="other"}') == 23
    assert moved('pygw_ws_messages_sent_total{type="pong"}') == 4
    assert moved('pygw_ws_messages_sent_total{type="subscribed"}') == 1
    assert moved('pygw_ws_messages_sent_total{type="published"}') == 3
    assert moved('pygw_ws_messages_sent_total{type="error"}') == 23
    assert moved("pygw_ws_messages_out_total") == sum(
        moved(k) for k in after if k.startswith("pygw_ws_messages_sent_total")
    )
    assert moved('pygw_ws_closes_total{code="1000"}') == 1
    assert moved('pygw_ws_closes_total{code="1008"}') == 1
    assert moved("pygw_broker_publish_seconds_count") == 3
    # Process families (CPU, memory, descriptors, GC).
    assert after["process_resident_memory_bytes"] > 10 * 2**20
    assert after["process_open_fds"] > 3
    assert after["process_max_fds"] >= after["process_open_fds"]
    assert after["process_cpu_seconds_total"] > 0
    assert any(k.startswith("python_gc_collections_total") for k in after)


def test_write_behind_queue_depth_and_flushes(redis_server: RedisServer, tmp_path: Path) -> None:
    # A long flush interval holds the updates in the queue until SIGTERM.
    gw = GatewayProcess(
        redis_url=redis_server.url,
        env={"BATCH_WRITE_INTERVAL_MS": "600000"},
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        with httpx.Client(base_url=gw.url) as http:
            accounts = [new_account(http) for _ in range(5)]
            before = scrape(http)
            for account in accounts:
                for i in range(3):
                    r = http.post(
                        f"/sessions/update/{account.session_id}",
                        json={"data": {"n": i}},
                        headers=account.headers,
                    )
                    assert r.status_code == 200
            after = scrape(http)
        assert after["pygw_write_behind_pending"] - before["pygw_write_behind_pending"] == 5
        assert after["pygw_write_behind_dropped_total"] == 0
        gw.signal(signal.SIGTERM)
        assert gw.wait(20) == 0
    finally:
        gw.stop()


async def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    port = free_port()
    with GatewayProcess(env={"PYGW_METRICS_PORT": str(port)}, log_path=tmp_path / "gw.log") as gw:
        async with httpx.AsyncClient() as http:
            hidden = await http.get(f"{gw.url}/metrics")
            assert hidden.status_code == 404
            page = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert page.status_code == 200
            assert "pygw_ws_connections " in page.text
            assert "process_resident_memory_bytes" in page.text
        # The API still works beside it.
        with httpx.Client(base_url=gw.url) as client:
            account = new_account(client)
        async with await WS.open(gw.ws_url, account.token) as ws:
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
    # The metrics server went away with the gateway.
    try:
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
        stopped = False
    except httpx.HTTPError:
        stopped = True
    assert stopped


def test_http_latency_by_route_template_and_status(tmp_path: Path) -> None:
    with (
        GatewayProcess(log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url) as http,
    ):
        a = new_account(http)
        before = scrape(http)
        for i in range(5):
            r = http.post(
                f"/sessions/update/{a.session_id}", json={"data": {"n": i}}, headers=a.headers
            )
            assert r.status_code == 200
        assert http.get("/sessions/nope-1", headers=a.headers).status_code in (403, 404)
        for _ in range(3):
            assert http.get(f"/no/such/path/{a.username}").status_code == 404
        after = scrape(http)

    def count(route: str, method: str, status: int) -> float:
        key = (
            f'pygw_http_request_seconds_count{{method="{method}",route="{route}",'
            f'status="{status}"}}'
        )
        return delta(after, before, key)

    # Five updates under their template, not five session ids.
    assert count("/sessions/update/{session_id}", "POST", 200) == 5
    assert sum(count("/sessions/{session_id}", "GET", s) for s in (403, 404)) == 1
    # Paths that match no route share one label: the label set stays bounded.
    assert count("unmatched", "GET", 404) == 3
    assert not any(a.username in k for k in after if k.startswith("pygw_http_request"))
    total = 'pygw_http_request_seconds_sum{method="POST",route="/sessions/update/{session_id}"'
    assert sum(v for k, v in after.items() if k.startswith(total)) > 0
