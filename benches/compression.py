"""permessage-deflate: server CPU per delivery and bytes on the wire, off / shared / dedicated.

    python -m benches compression [--runs R] [--subscribers N] [--messages M] [--in-flight K]
                                  [--json PATH]

One gateway per ``PYGW_WS_COMPRESSION`` mode (pinned to core 0). ``N`` `websockets` clients
(Python, this process, core 1), each offering permessage-deflate, subscribe to one channel;
then, for each payload, ``M`` publications go through ``POST /api/publish`` (``K`` in flight,
default 8) and every subscriber receives all of them. With 8 in flight most publications leave in
their own loop iteration (one ``send()`` per subscriber each); with ``--in-flight 64`` more of
them share an iteration (uWS then writes a socket's queue in one go), though the Python clients
keep it far from the batched regime of ``fanout``'s Rust client. Per delivery:

- **server CPU**: the gateway's utime+stime over the round / deliveries (it includes the M
  publish requests, ~1/N of the total);
- **bytes on the wire**: bytes the clients' sockets received over the round / deliveries (frame
  headers included; counted below the WebSocket protocol, before inflating);
- **frame**: the JSON text frame as delivered (inflated).

Payloads: ``fanout``, the fan-out benchmark's 100-byte ``{"t":..,"s":..,"p":"xxx.."}`` (very
compressible padding); ``json-1.5k``, a ~1.5 KiB order-update record whose ids, names, prices
and timestamps differ from message to message (seeded, the same in every mode). The clients are
the bottleneck of deliveries/s here (Python inflating and parsing); the server's CPU per delivery
is what the modes cost. RSS per connection is the gateway's RSS growth from before the clients
connected to after the last round, divided by N (dedicated compressors are per socket).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from benches import _harness as h
from benches import _report

MODES = ("off", "shared", "dedicated")
CHANNEL = "bench:deflate"
IN_FLIGHT = 8
"""Publish requests in flight (default)."""
NO_KEEPALIVE = {"PYGW_PING_INTERVAL": "3600", "PYGW_INACTIVITY_TIMEOUT": "3600"}
NAMES = ("Ada", "Grace", "Linus", "Barbara", "Edsger", "Margaret", "Dennis", "Frances", "Ken")
PRODUCTS = ("keyboard", "monitor", "cable", "adapter", "dock", "headset", "webcam", "charger")
STATUSES = ("pending", "paid", "packed", "shipped", "delivered")


def fanout_payload(seq: int) -> dict[str, Any]:
    """What ``pygw-loadgen fanout`` publishes: 100 bytes of JSON, padded with ``x``."""
    base = {"t": time.time_ns() // 1000, "s": seq, "p": ""}
    pad = 100 - len(orjson.dumps(base))
    base["p"] = "x" * max(pad, 0)
    return base


def order_payload(seq: int) -> dict[str, Any]:
    """A ~1.5 KiB order update; its values differ with ``seq`` (a seeded generator)."""
    rnd = random.Random(seq)
    items: list[dict[str, Any]] = [
        {
            "sku": f"SKU-{rnd.randint(10000, 99999)}",
            "name": f"{rnd.choice(PRODUCTS)} {rnd.choice(('pro', 'mini', 'max', 'plus', 'lite'))}",
            "qty": rnd.randint(1, 5),
            "unit_price": round(rnd.uniform(2, 400), 2),
            "warehouse": f"WH-{rnd.randint(1, 40):02d}",
        }
        for _ in range(12)
    ]
    return {
        "event": "order.updated",
        "seq": seq,
        "order": {
            "id": f"ord_{rnd.getrandbits(64):016x}",
            "status": rnd.choice(STATUSES),
            "customer": {
                "id": f"cus_{rnd.getrandbits(48):012x}",
                "name": f"{rnd.choice(NAMES)} {rnd.choice(NAMES)}son",
                "email": f"{rnd.choice(NAMES).lower()}{rnd.randint(1, 999)}@example.com",
                "tier": rnd.choice(("standard", "gold", "platinum")),
            },
            "items": items,
            "total": round(sum(i["qty"] * i["unit_price"] for i in items), 2),
            "currency": "EUR",
            "shipping": {
                "city": rnd.choice(("Lyon", "Porto", "Gent", "Turin", "Graz", "Brno")),
                "postcode": f"{rnd.randint(10000, 99999)}",
                "carrier": rnd.choice(("dhl", "ups", "gls", "dpd")),
                "eta": f"2026-12-{rnd.randint(6, 28):02d}T{rnd.randint(8, 18):02d}:00:00Z",
            },
            "updated_at": f"2026-12-05T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00Z",
        },
    }


PAYLOADS = {"fanout": fanout_payload, "json-1.5k": order_payload}


class Counting(ClientConnection):
    """A subscriber: counts the bytes its socket received and the publications it got."""

    received = 0
    messages = 0
    frame_bytes = 0
    target = 0
    done: asyncio.Event | None = None
    lost: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        super().data_received(data)


async def read(conn: Counting) -> None:
    try:
        async for raw in conn:
            if isinstance(raw, str) and raw.startswith('{"type":"message"'):
                conn.messages += 1
                conn.frame_bytes = len(raw.encode())
                if conn.messages >= conn.target and conn.done is not None:
                    conn.done.set()
    except websockets.ConnectionClosed as exc:
        conn.lost = exc
        if conn.done is not None:
            conn.done.set()


async def subscribe_all(port: int, creds: list[dict[str, str]]) -> list[Counting]:
    async def one(c: dict[str, str]) -> Counting:
        url = f"ws://127.0.0.1:{port}/ws/connect?session_id={c['session_id']}&token={c['token']}"
        conn = await websockets.connect(
            url, compression="deflate", create_connection=Counting, max_size=None, open_timeout=30
        )
        assert isinstance(conn, Counting)
        await conn.recv()  # connected
        await conn.send(orjson.dumps({"type": "subscribe", "channel": CHANNEL, "id": 1}).decode())
        reply = orjson.loads(await conn.recv())
        assert reply["type"] == "subscribed", reply
        return conn

    conns: list[Counting] = []
    for i in range(0, len(creds), 100):  # 100 upgrades at a time
        conns += await asyncio.gather(*(one(c) for c in creds[i : i + 100]))
    return conns


async def round_(
    port: int,
    pid: int,
    conns: list[Counting],
    payload: str,
    messages: int,
    first_seq: int,
    in_flight: int,
) -> dict[str, float]:
    """Publish ``messages`` and wait until every subscriber has them; per-delivery figures."""
    make = PAYLOADS[payload]
    bodies = [
        orjson.dumps({"channel": CHANNEL, "data": make(first_seq + i)}) for i in range(messages)
    ]
    waiters = []
    for c in conns:
        c.done = asyncio.Event()
        c.target = c.messages + messages
        waiters.append(c.done.wait())
    received0 = sum(c.received for c in conns)
    cpu0, busy0, t0 = h.cpu_seconds(pid), h.core_busy_seconds(), time.monotonic()
    headers = {"X-API-Key": h.API_KEY, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        queue = iter(bodies)

        async def publisher() -> None:
            for body in queue:
                r = await http.post("/api/publish", content=body, headers=headers)
                r.raise_for_status()

        await asyncio.gather(*(publisher() for _ in range(in_flight)))
        await asyncio.wait_for(asyncio.gather(*waiters), 120)
    lost = [c.lost for c in conns if c.lost is not None]
    if lost:
        raise RuntimeError(f"{len(lost)} subscribers lost their connection: {lost[0]!r}")
    wall = time.monotonic() - t0
    cpu = h.cpu_seconds(pid) - cpu0
    busy1 = h.core_busy_seconds()
    deliveries = len(conns) * messages
    core0 = min(h.GATEWAY_CPUS)
    foreign = max(0.0, (busy1[core0] - busy0[core0]) - cpu) if busy0 else 0.0
    return {
        "server_us_per_delivery": cpu / deliveries * 1e6,
        "wire_bytes_per_delivery": (sum(c.received for c in conns) - received0) / deliveries,
        "frame_bytes": float(conns[0].frame_bytes),
        "deliveries_per_s": deliveries / wall,
        "server_cpu_pct": cpu / wall * 100,
        "foreign_cpu_pct_core0": foreign / wall * 100,
    }


async def measure_mode(
    mode: str, creds: list[dict[str, str]], runs: int, messages: int, in_flight: int
) -> dict[str, dict[str, float] | list[dict[str, float]]]:
    # The clients do not answer the gateway's JSON keep-alive pings: none within the run.
    env = {"PYGW_WS_COMPRESSION": mode, **NO_KEEPALIVE}
    gw = h.start_gateway(name=f"compression-{mode}", env=env)
    pid = h.gateway_pid(gw)
    try:
        rss0 = h.rss_bytes(pid)
        conns = await subscribe_all(gw.port, creds)
        readers = [asyncio.create_task(read(c)) for c in conns]
        negotiated = sum(1 for c in conns if c.protocol.extensions)
        out: dict[str, Any] = {"negotiated": negotiated}
        seq = 0
        for run in range(runs):
            for payload in PAYLOADS:
                print(f"[run {run + 1}/{runs}] {mode} {payload}", flush=True)
                h.wait_quiet(max_wait=10)
                r = await round_(gw.port, pid, conns, payload, messages, seq, in_flight)
                seq += messages
                out.setdefault(payload, []).append(r)
        out["rss_per_conn_bytes"] = (h.rss_bytes(pid) - rss0) / len(conns)
        for c in conns:
            await c.close()
        for t in readers:
            t.cancel()
        return out
    finally:
        gw.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches compression", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    h.raise_nofile()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-compression-"))
    path = h.mint_creds(tmp / "subs.jsonl", args.subscribers, prefix="z")
    creds = [orjson.loads(line) for line in path.read_text().splitlines()]
    raw: dict[str, Any] = {}
    for mode in modes:
        raw[mode] = asyncio.run(measure_mode(mode, creds, args.runs, args.messages, args.in_flight))
    results: dict[str, Any] = {}
    for mode in modes:
        entry = raw[mode]
        results[mode] = {
            "negotiated": entry["negotiated"],
            "rss_per_conn_bytes": round(entry["rss_per_conn_bytes"]),
        }
        for payload in PAYLOADS:
            rs = entry[payload]
            results[mode][payload] = {k: h.summarize([r[k] for r in rs]) for k in rs[0]}
    print(h.table(*_report.compression_rows(results)))
    h.write_results(
        "compression",
        {
            "config": {
                "runs": args.runs,
                "subscribers": args.subscribers,
                "messages": args.messages,
                "in_flight_publishes": args.in_flight,
                "client": f"websockets {websockets.__version__} (Python), compression=deflate",
            },
            "results": results,
        },
        args.json,
        argv=argv,
        bench="compression",
    )
    return 0
