"""SSE fan-out beside WebSocket fan-out: one channel, N subscribers of each kind, same gateway.

    python -m benches sse [--runs R] [--sizes 1000,10000] [--messages 50] [--json PATH]

Rows, each R runs (median, range), the gateway on core 0, the clients on core 1, both publishing
``--messages`` publications through ``POST /api/publish`` (an API key):

- ``ws``: N WebSocket subscribers (``pygw-loadgen fanout --via http``, 64 publishes in flight);
- ``sse``: N ``GET /sse/connect`` streams held by a Python asyncio client in this process
  (raw sockets that count events; 64 publishes in flight, as for ``ws``);
- ``mixed`` (``--mixed``): N streams and N WebSockets on one channel at once, the load generator
  publishing (HTTP, 64 in flight) and measuring its WebSockets, this process counting what
  reaches the streams: losses and duplicates with both kinds subscribed (the two clients share a
  core, so the rates there are the clients').

The Python SSE client is much slower than the Rust load generator, so deliveries/s of the ``sse``
row is bounded by the client as well as the server; ``server us/delivery`` (the gateway's CPU
time over the publish phase divided by the deliveries) is the figure to compare. Latency is
publish -> event parsed by the client, on 1 in 50 streams. Payload: ~100 bytes of data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benches import _harness as h
from benches import _measure as m

CHANNEL = "bench-sse"
LOADGEN_CHANNEL = "loadgen"
"""The channel ``pygw-loadgen fanout`` subscribes its WebSockets to and publishes on."""
MARK = b'"type":"message"'
STAMP = re.compile(rb'"t":(\d+)')
CONNECT_CONCURRENCY = 500
PUBLISH_WINDOW = 64
"""Publishes in flight, as the load generator's HTTP publisher has (64 keep-alive connections)."""
SAMPLE_EVERY = 50


class Subscriber(asyncio.Protocol):
    """One SSE stream: counts publication events (split-safe), parses timestamps if sampled."""

    def __init__(self, run: SSERun, sample: bool) -> None:
        self.run = run
        self.sample = sample
        self.ready = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.tail + data
        if not self.ready.done():
            if b'"type":"subscribed"' in buf:
                self.ready.set_result(None)
            elif b"HTTP/1.1 200" not in buf and buf.startswith(b"HTTP/1.1"):
                self.ready.set_exception(RuntimeError(buf[:200].decode(errors="replace")))
            self.tail = buf[-(len(MARK) - 1) :]
            return
        count = buf.count(MARK) - self.tail.count(MARK)
        self.tail = buf[-(len(MARK) - 1) :]
        if count:
            if self.sample:
                now = time.time_ns()
                self.run.latencies += [(now - int(t)) / 1e6 for t in STAMP.findall(data)]
            self.run.received(count)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before subscribed"))


class SSERun:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.done = asyncio.get_running_loop().create_future()

    def received(self, n: int) -> None:
        self.count += n
        self.last = time.monotonic()
        if not self.first:
            self.first = self.last
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(None)


async def _connect(
    port: int, tokens: list[str], run: SSERun, channel: str, sample: bool = True
) -> list[Subscriber]:
    """One SSE stream per token on ``channel``, each subscribed when this returns."""
    loop = asyncio.get_running_loop()
    subs: list[Subscriber] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(i: int, token: str) -> None:
        async with gate:
            _, sub = await loop.create_connection(
                lambda: Subscriber(run, sample and i % SAMPLE_EVERY == 0), "127.0.0.1", port
            )
            subs.append(sub)
            assert sub.transport is not None
            sub.transport.write(
                f"GET /sse/connect?channels={channel}&token={token} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            await asyncio.wait_for(sub.ready, 60)

    await asyncio.gather(*(connect(i, t) for i, t in enumerate(tokens)))
    return subs


async def _sse_fanout(port: int, pid: int, tokens: list[str], messages: int) -> dict[str, float]:
    run = SSERun(len(tokens) * messages)
    setup_start = time.monotonic()
    subs = await _connect(port, tokens, run, CHANNEL)
    setup = time.monotonic() - setup_start
    pad = "x" * 60
    url = f"http://127.0.0.1:{port}/api/publish"
    headers = {"X-API-Key": h.API_KEY}
    errors = 0
    cpu0 = os.times()
    with h.CPUSampler([pid]) as cpu:
        start = time.monotonic()
        async with httpx.AsyncClient(
            limits=httpx.Limits(max_connections=PUBLISH_WINDOW), timeout=30
        ) as client:
            window = asyncio.Semaphore(PUBLISH_WINDOW)

            async def publish(i: int) -> None:
                nonlocal errors
                async with window:
                    data = {"i": i, "t": time.time_ns(), "pad": pad}
                    r = await client.post(
                        url, headers=headers, json={"channel": CHANNEL, "data": data}
                    )
                    errors += r.status_code != 200

            await asyncio.gather(*(publish(i) for i in range(messages)))
            with contextlib.suppress(TimeoutError):  # counted as lost
                await asyncio.wait_for(run.done, 120)
        end = run.last or time.monotonic()
    cpu1 = os.times()
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()
    await asyncio.sleep(1.0)  # the gateway counts them out
    wall = max(end - start, 1e-9)
    server_cpu_s = cpu.at(end) - cpu.at(start)
    lat = sorted(run.latencies) or [0.0]
    return {
        "deliveries_per_s": run.count / wall,
        "deliveries": float(run.count),
        "expected": float(run.expected),
        "lost": float(max(0, run.expected - run.count)),
        "duplicates": float(max(0, run.count - run.expected)),
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "server_cpu_pct": cpu.pct(start, end),
        "server_us_per_delivery": 1e6 * server_cpu_s / max(run.count, 1),
        "client_cpu_pct": round(
            100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall, 1
        ),
        "setup_wall_s": setup,
        "errors": float(errors),
        "foreign_cpu_pct_core0": 0.0,
    }


def sse_fanout(port: int, pid: int, tokens: list[str], messages: int) -> dict[str, float]:
    return asyncio.run(_sse_fanout(port, pid, tokens, messages))


async def _mixed(
    port: int, pid: int, tokens: list[str], creds: Path, messages: int
) -> dict[str, float]:
    """N SSE streams and N WebSockets on the load generator's channel at once: the load
    generator publishes (HTTP, 64 in flight) and measures its WebSockets; this client counts
    what reaches the streams. Both clients share one core: the rates are the clients' (the
    Python one starves the load generator); what this row shows is that every publication
    reaches every socket and every stream exactly once when both kinds are subscribed."""
    n = len(tokens)
    run = SSERun(n * messages)
    subs = await _connect(port, tokens, run, LOADGEN_CHANNEL, sample=False)
    loop = asyncio.get_running_loop()
    ws = await loop.run_in_executor(None, ws_fanout, port, pid, creds, n, messages)
    with contextlib.suppress(TimeoutError):  # counted as lost
        await asyncio.wait_for(run.done, 60)
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()
    await asyncio.sleep(1.0)
    return {
        "ws_deliveries_per_s": ws["deliveries_per_s"],
        "ws_lost": ws["lost"],
        "ws_duplicates": ws["duplicates"],
        "sse_deliveries": float(run.count),
        "sse_deliveries_per_s": run.count / max(run.last - run.first, 1e-9),
        "sse_lost": float(max(0, run.expected - run.count)),
        "sse_duplicates": float(max(0, run.count - run.expected)),
        "foreign_cpu_pct_core0": ws.get("foreign_cpu_pct_core0", 0.0),
    }


def mixed(port: int, pid: int, tokens: list[str], creds: Path, messages: int) -> dict[str, float]:
    return asyncio.run(_mixed(port, pid, tokens, creds, messages))


def ws_fanout(port: int, pid: int, creds: Path, n: int, messages: int) -> dict[str, float]:
    r = m.fanout(
        [m.ws_url(port)],
        [pid],
        subscribers=n,
        messages=messages,
        creds=creds,
        via="http",
        pub_url=f"http://127.0.0.1:{port}/api/publish",
    )
    wall = r["deliveries"] / max(r["deliveries_per_s"], 1e-9)
    r["server_us_per_delivery"] = 1e6 * (r["server_cpu_pct"] / 100 * wall) / max(r["deliveries"], 1)
    return r


MIXED_HEADERS = [
    "n WS + n SSE",
    "WS deliveries/s",
    "SSE deliveries/s",
    "WS lost/dup",
    "SSE lost/dup",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches sse", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument(
        "--mixed", action="store_true", help="also N WebSockets and N streams at once"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-sse-"))
    creds = h.mint_creds(tmp / "subs.jsonl", max(sizes) + 1, prefix="s")
    tokens = [json.loads(line)["token"] for line in creds.read_text().splitlines()]
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {}

    def record(name: str, fn: Any) -> None:
        for i in range(args.runs):
            print(f"[run {i + 1}/{args.runs}] {name}", flush=True)
            runs.setdefault(name, []).append(h.clean_run(fn))

    gw = h.start_gateway(name="sse")
    try:
        pid = h.gateway_pid(gw)
        for n in sizes:
            record(f"ws/{n}", lambda n=n: ws_fanout(gw.port, pid, creds, n, args.messages))
            record(f"sse/{n}", lambda n=n: sse_fanout(gw.port, pid, tokens[:n], args.messages))
            if args.mixed:
                record(
                    f"mixed/{n}",
                    lambda n=n: mixed(gw.port, pid, tokens[:n], creds, args.messages),
                )
    finally:
        gw.stop()
    load_after = os.getloadavg()
    results = {
        name: {k: h.summarize([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()
    }
    rows = []
    for name, r in results.items():
        kind, n = name.split("/")
        if kind == "mixed":
            continue
        rows.append(
            [
                kind,
                f"{int(n):,}",
                h.fmt_range(r["deliveries_per_s"]),
                h.fmt_range(r["server_us_per_delivery"], 2),
                h.fmt_range(r["p50_ms"], 1),
                h.fmt_range(r["p99_ms"], 1),
                f"{r['lost']['max']:.0f}/{r['duplicates']['max']:.0f}",
                h.fmt_range(r["server_cpu_pct"]),
                h.fmt_range(r["client_cpu_pct"]),
            ]
        )
    print(
        h.table(
            [
                "subscribers",
                "n",
                "deliveries/s",
                "server us/delivery",
                "p50 ms",
                "p99 ms",
                "lost/dup",
                "server cpu %",
                "client cpu %",
            ],
            rows,
        )
    )
    mixed_rows = [
        [
            f"{int(name.split('/')[1]):,}",
            h.fmt_range(r["ws_deliveries_per_s"]),
            h.fmt_range(r["sse_deliveries_per_s"]),
            f"{r['ws_lost']['max']:.0f}/{r['ws_duplicates']['max']:.0f}",
            f"{r['sse_lost']['max']:.0f}/{r['sse_duplicates']['max']:.0f}",
        ]
        for name, r in results.items()
        if name.startswith("mixed/")
    ]
    if mixed_rows:
        print(h.table(MIXED_HEADERS, mixed_rows))
    print(f"load average before {load_before}, after {load_after}")
    h.write_results(
        "sse",
        {
            "config": {
                "runs": args.runs,
                "sizes": sizes,
                "messages": args.messages,
                "payload_bytes": 100,
                "publish": "POST /api/publish",
            },
            "load_average_before": load_before,
            "load_average_after": load_after,
            "results": results,
        },
        args.json,
        argv=argv,
        bench="sse",
    )
    return 0
