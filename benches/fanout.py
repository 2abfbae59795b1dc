"""Fan-out: one channel, 1k and 10k subscribers; deliveries/s and publish->deliver latency.

    python -m benches fanout [--runs R] [--sizes 1000,10000] [--skip-redis] [--skip-cluster]
                             [--skip-paced] [--json PATH]

Rows, each R runs (median, range), servers on core 0, ``pygw-loadgen fanout`` on core 1:

- ``raw``: the raw socketify server (no gateway logic) publishing from asyncio (uWS batches per
  socket) — the ceiling, measured in the same run;
- ``ws``: pygw, one publisher connection sending ``publish`` frames (64 unacknowledged);
- ``http``: pygw, ``POST /api/publish`` with an API key over 64 keep-alive connections;
- ``redis-2-nodes``: two pygw processes sharing a real redis-server (all three on core 0),
  subscribers split over both, the publisher (WS) on the first; deliveries on the second node go
  through Redis pub/sub;
- ``redis-cluster-2-nodes``: the same two nodes on a Redis Cluster of 3 primaries + 3 replicas
  (``PYGW_REDIS_CLUSTER=true``; the gateways and the six redis-servers all on core 0): the
  channel's publications cross the one shard that owns it (sharded pub/sub).

Saturation runs publish as fast as the window allows (``--messages`` 1000 at 1k subscribers, 200
at 10k): deliveries/s is the ceiling and latency there is mostly queueing. ``paced`` rows publish
5 messages/s for 8 s to 10k subscribers (50k deliveries/s) to show latency at a light steady
load. Each paced message leaves in its own loop iteration, so uWS cannot batch it with others:
one send() per subscriber (~5 us each); at 20 messages/s (200k deliveries/s) both the raw
server and pygw are already at ~100% CPU. Payload: 100 bytes of data per message.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from benches import _harness as h
from benches import _measure as m

MESSAGES = {1000: 1000, 10_000: 200}
PACED_RATE = 5
"""Publishes/s of the paced rows: 50k deliveries/s to 10k subscribers, well under the ceiling."""
PACED_MESSAGES = 40
TARGET_10K = 2_000_000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches fanout", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-fanout-"))
    creds = h.mint_creds(tmp / "subs.jsonl", max(sizes) + 1, prefix="f")
    runs: dict[str, list[dict[str, float]]] = {}

    def record(name: str, fn: Any) -> None:
        for i in range(args.runs):
            print(f"[run {i + 1}/{args.runs}] {name}", flush=True)
            runs.setdefault(name, []).append(h.clean_run(fn))

    with h.RawServer() as raw:
        gw = h.start_gateway(name="fanout")
        try:
            gpid = h.gateway_pid(gw)
            g_ws, r_ws = m.ws_url(gw.port), m.ws_url(raw.port, False)
            for n in sizes:
                msgs = MESSAGES.get(n, 200)
                record(
                    f"raw/{n}",
                    lambda n=n, msgs=msgs: m.fanout(
                        [r_ws], [raw.pid], subscribers=n, messages=msgs, creds=None
                    ),
                )
                record(
                    f"ws/{n}",
                    lambda n=n, msgs=msgs: m.fanout(
                        [g_ws], [gpid], subscribers=n, messages=msgs, creds=creds
                    ),
                )
                record(
                    f"http/{n}",
                    lambda n=n, msgs=msgs: m.fanout(
                        [g_ws],
                        [gpid],
                        subscribers=n,
                        messages=msgs,
                        creds=creds,
                        via="http",
                        pub_url=f"http://127.0.0.1:{gw.port}/api/publish",
                    ),
                )
            if not args.skip_paced:
                n = max(sizes)
                record(
                    f"raw-paced/{n}",
                    lambda: m.fanout(
                        [r_ws],
                        [raw.pid],
                        subscribers=n,
                        messages=PACED_MESSAGES,
                        creds=None,
                        rate=PACED_RATE,
                    ),
                )
                record(
                    f"ws-paced/{n}",
                    lambda: m.fanout(
                        [g_ws],
                        [gpid],
                        subscribers=n,
                        messages=PACED_MESSAGES,
                        creds=creds,
                        rate=PACED_RATE,
                    ),
                )
        finally:
            gw.stop()

    def two_nodes(name: str, url: str, redis_pids: list[int], env: dict[str, str]) -> None:
        """Rows ``name/<n>``: two gateways on ``url``, subscribers split over both."""
        a = h.start_gateway(redis_url=url, env=env, name=f"fanout-{name}-a")
        b = h.start_gateway(redis_url=url, env=env, name=f"fanout-{name}-b")
        try:
            pids = [h.gateway_pid(a), h.gateway_pid(b), *redis_pids]
            urls = [m.ws_url(a.port), m.ws_url(b.port)]
            for n in sizes:
                msgs = MESSAGES.get(n, 200)
                record(
                    f"{name}/{n}",
                    lambda n=n, msgs=msgs: m.fanout(
                        urls, pids, subscribers=n, messages=msgs, creds=creds, pub_url=urls[0]
                    ),
                )
        finally:
            a.stop()
            b.stop()

    if not args.skip_redis:
        with h.redis_server() as redis:
            assert redis.pid is not None
            two_nodes("redis-2-nodes", redis.url, [redis.pid], {})
    if not args.skip_cluster:
        with h.redis_cluster() as cluster:
            cluster_env = {"PYGW_REDIS_CLUSTER": "true"}
            two_nodes("redis-cluster-2-nodes", cluster.url, h.cluster_pids(cluster), cluster_env)

    results = {
        name: {k: h.summarize([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()
    }
    rows = []
    for name, r in results.items():
        kind, n = name.split("/")
        raw_key = f"raw/{n}" if not kind.endswith("paced") else f"raw-paced/{n}"
        frac = h.ratio(
            r["deliveries_per_s"]["median"],
            results.get(raw_key, {}).get("deliveries_per_s", {}).get("median"),
        )
        target = "-"
        if n == "10000" and not kind.endswith("paced") and kind != "raw":
            met = r["deliveries_per_s"]["median"] >= TARGET_10K
            target = f">= 2M: {'met' if met else 'NOT MET'}"
        rows.append(
            [
                kind,
                f"{int(n):,}",
                h.fmt_range(r["deliveries_per_s"]),
                "-" if kind.startswith("raw") else h.pct_str(frac),
                h.fmt_range(r["p50_ms"], 1),
                h.fmt_range(r["p99_ms"], 1),
                f"{r['lost']['max']:.0f}/{r['duplicates']['max']:.0f}",
                h.fmt_range(r["server_cpu_pct"]),
                h.fmt_range(r["client_cpu_pct"]),
                target,
            ]
        )
    print(
        h.table(
            [
                "publish via",
                "subs",
                "deliveries/s",
                "of raw",
                "p50 ms",
                "p99 ms",
                "lost/dup",
                "server cpu %",
                "client cpu %",
                "target",
            ],
            rows,
        )
    )
    h.write_results(
        "fanout",
        {
            "config": {
                "runs": args.runs,
                "sizes": sizes,
                "messages": MESSAGES,
                "payload_bytes": 100,
                "window": 64,
            },
            "target_10k_deliveries_per_s": TARGET_10K,
            "results": results,
        },
        args.json,
        argv=argv,
        bench="fanout",
    )
    return 0
