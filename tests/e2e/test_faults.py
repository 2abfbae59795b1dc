"""What survives a node killed with SIGKILL and a Redis restart (docs/SECURITY.md, "Faults"):
real gateway processes sharing one real redis-server, clients over loopback."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from wsclient import WS

from conftest import Account, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer

DEAD_NODE_BOUND = 25.0
"""Seconds after a node's last heartbeat within which its users' records say offline
(HEARTBEAT_TTL + 2 * REAP_EVERY, pygw.ws.liveness)."""


def connection_states(base_url: str, accounts: list[Account]) -> dict[str, tuple[str, bool] | None]:
    """user -> (gateway_id, ws_connected) as ``GET /sessions/users/{u}/connection`` says, None
    while there is no record yet (it is written behind)."""
    states: dict[str, tuple[str, bool] | None] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for a in accounts:
            r = client.get(f"/sessions/users/{a.username}/connection", headers=a.headers)
            assert r.status_code in (200, 404), r.text
            body = r.json()
            states[a.username] = (
                (body["gateway_id"], body["ws_connected"]) if r.status_code == 200 else None
            )
    return states


async def test_users_of_a_killed_node_go_offline_within_the_bound(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """30 users connected to node A; A is SIGKILLed: node B reports all of them offline within
    the documented bound (before: their records said online forever)."""
    node_a = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "a.log").start()
    node_b = GatewayProcess(redis_url=redis_server.url, log_path=tmp_path / "b.log").start()
    sockets: list[WS] = []
    try:
        with httpx.Client(base_url=node_a.url, timeout=10) as client:
            accounts = [new_account(client) for _ in range(30)]
        sockets = [await WS.open(node_a.ws_url, a.token, a.session_id) for a in accounts]
        gateway_a = sockets[0].welcome["gateway_id"]
        deadline = time.monotonic() + 5
        while True:  # the records are written behind (one batch interval)
            states = await asyncio.to_thread(connection_states, node_b.url, accounts)
            if all(state == (gateway_a, True) for state in states.values()):
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)

        node_a.signal(signal.SIGKILL)
        killed = time.monotonic()
        node_a.wait(10)
        while True:
            states = await asyncio.to_thread(connection_states, node_b.url, accounts)
            online = [user for user, state in states.items() if state is None or state[1]]
            if not online:
                print(f"offline {time.monotonic() - killed:.1f} s after the SIGKILL")
                break
            waited = time.monotonic() - killed
            assert waited < DEAD_NODE_BOUND + 2, (
                f"{len(online)} user(s) still online {waited:.1f} s after node A was killed"
            )
            await asyncio.sleep(0.5)
        assert all(state is not None and state[0] == gateway_a for state in states.values())
        # A user who reconnects to B is online again, on B (the reaper leaves B's records).
        again = await WS.open(node_b.ws_url, accounts[0].token, accounts[0].session_id)
        sockets.append(again)
        await asyncio.sleep(7)  # past a reap of node B
        states = await asyncio.to_thread(connection_states, node_b.url, accounts[:1])
        assert states[accounts[0].username] == (again.welcome["gateway_id"], True)
    finally:
        for ws in sockets:
            await ws.conn.close()
        node_a.stop()
        node_b.stop()
