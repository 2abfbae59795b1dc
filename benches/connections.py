"""Idle WebSockets: memory per connection, idle CPU, and the connect storm.

    python -m benches connections [--sizes 10000,19500,50000,100000] [--hold S] [--storm N]
                                  [--runs R] [--json PATH]

For each size, a fresh pygw (core 0) takes a connect storm of N JWT-authenticated WebSockets
(``pygw-loadgen hold``, core 1, 1000 connects in flight, source addresses 127.0.0.1-16 so more
than ~28k connections fit in the port range), then holds them idle for ``--hold`` seconds
(default 25 = one keep-alive ping interval, so the idle window holds one server ping round and
its pongs). Sizes above the process descriptor limit are skipped and reported (this sandbox
caps RLIMIT_NOFILE at 20,000, even for root; past it accept() fails with EMFILE and uWS spins).
The generator samples the gateway's VmRSS and CPU before, after the storm and at the end:
RSS per connection = (after storm - before) / N; idle CPU = CPU over the hold / hold time.
The raw socketify server (no gateway logic, no pings) gets the same treatment in the same run.

Then the connect storm at ``--storm`` (20k, capped under the descriptor limit) clients: storm
time and connect latency p50/p95/p99 (TCP connect to the welcome frame), R runs each for pygw
(JWT verified per connection, tokens all distinct, cache cold) and raw.

Tokens are minted with the gateway's key by pygw's own codec (``sid`` = the token's session, so
no session lookup; the same verification as a login-issued token). 100k only runs when the
machine has the memory for it (MemAvailable > 4 GiB).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from benches import _harness as h
from benches import _measure as m

TARGET_RSS = 4096
TARGET_IDLE_CPU = 2.0


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches connections", description=__doc__)
    parser.add_argument("--sizes", default="10000,19500,50000,100000")
    parser.add_argument("--hold", type=float, default=25.0)
    parser.add_argument("--raw-hold", type=float, default=10.0)
    parser.add_argument("--storm", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    limit = h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-conns-"))
    creds = h.mint_creds(tmp / "creds.jsonl", min(max([*sizes, args.storm]), limit), prefix="c")
    results: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []

    # One process cannot hold more sockets than its RLIMIT_NOFILE allows. Past it, accept()
    # fails with EMFILE and uWS retries in a busy loop; so sizes over the limit are skipped
    # (reported), and the storm is capped just under it.
    usable = limit - 500
    if args.storm > usable:
        skipped.append(f"storm {args.storm}: capped to {usable} (RLIMIT_NOFILE {limit})")
        args.storm = usable
    for n in sizes:
        if n > usable:
            skipped.append(f"{n}: needs more descriptors than RLIMIT_NOFILE {limit} allows")
            continue
        if n >= 100_000 and mem_available() < 4 * 2**30:
            skipped.append(f"{n}: less than 4 GiB available")
            continue
        for kind in ("pygw", "raw"):
            print(f"hold {n:,} idle connections ({kind})", flush=True)
            h.wait_quiet()
            if kind == "pygw":
                gw = h.start_gateway(name=f"conns-{n}")
                try:
                    r = m.hold(
                        m.ws_url(gw.port),
                        h.gateway_pid(gw),
                        conns=n,
                        duration=args.hold,
                        creds=creds,
                    )
                finally:
                    gw.stop()
            else:
                with h.RawServer() as raw:
                    r = m.hold(
                        m.ws_url(raw.port, False),
                        raw.pid,
                        conns=n,
                        duration=args.raw_hold,
                        creds=None,
                    )
            results[f"hold/{kind}/{n}"] = {k: h.summarize([v]) for k, v in r.items()}

    for kind in ("pygw", "raw"):
        rs = []
        for i in range(args.runs):
            print(f"[run {i + 1}/{args.runs}] connect storm {args.storm:,} ({kind})", flush=True)
            h.wait_quiet()
            if kind == "pygw":
                gw = h.start_gateway(name="storm")
                try:
                    rs.append(
                        m.hold(
                            m.ws_url(gw.port),
                            h.gateway_pid(gw),
                            conns=args.storm,
                            duration=2,
                            creds=creds,
                        )
                    )
                finally:
                    gw.stop()
            else:
                with h.RawServer() as raw:
                    rs.append(
                        m.hold(
                            m.ws_url(raw.port, False),
                            raw.pid,
                            conns=args.storm,
                            duration=2,
                            creds=None,
                        )
                    )
        results[f"storm/{kind}/{args.storm}"] = {k: h.summarize([r[k] for r in rs]) for k in rs[0]}

    rows = []
    for n in sizes:
        p, r = results.get(f"hold/pygw/{n}"), results.get(f"hold/raw/{n}")
        if p is None or r is None:
            continue
        rss, idle = p["rss_per_conn_bytes"]["median"], p["idle_cpu_pct"]["median"]
        rows.append(
            [
                f"{n:,}",
                f"{p['still_open']['median']:,.0f}",
                h.fmt_range(p["rss_per_conn_bytes"]),
                h.fmt_range(r["rss_per_conn_bytes"]),
                f"{'met' if rss <= TARGET_RSS else 'NOT MET'}",
                h.fmt_range(p["idle_cpu_pct"], 2),
                h.fmt_range(r["idle_cpu_pct"], 2),
                f"{'met' if idle < TARGET_IDLE_CPU else 'NOT MET'}",
                f"{p['storm_s']['median']:.2f} / {r['storm_s']['median']:.2f}",
                f"{p['rss_after_storm_mib']['median']:.0f}",
            ]
        )
    print(
        h.table(
            [
                "idle conns",
                "open",
                "pygw B/conn",
                "raw B/conn",
                "<= 4 KiB",
                "pygw idle cpu %",
                "raw idle cpu %",
                "< 2%",
                "storm s pygw/raw",
                "pygw RSS MiB",
            ],
            rows,
        )
    )
    srows = []
    for kind in ("pygw", "raw"):
        s = results[f"storm/{kind}/{args.storm}"]
        srows.append(
            [
                kind,
                f"{s['connected']['median']:,.0f}/{args.storm:,}",
                h.fmt_range(s["storm_s"], 2),
                h.fmt_range(s["connects_per_s"]),
                h.fmt_range(s["connect_p50_ms"], 1),
                h.fmt_range(s["connect_p95_ms"], 1),
                h.fmt_range(s["connect_p99_ms"], 1),
                h.fmt_range(s["storm_cpu_s"], 2),
                h.fmt_range(s["client_cpu_pct_storm"]),
                h.fmt_range(s["listen_overflows"]),
            ]
        )
    print(
        h.table(
            [
                "server",
                "connected",
                "storm s",
                "connects/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "server cpu s",
                "client cpu %",
                "SYN drops",
            ],
            srows,
        )
    )
    for line in skipped:
        print(f"skipped {line}")
    h.write_results(
        "connections",
        {
            "config": {
                "sizes": sizes,
                "hold_s": args.hold,
                "raw_hold_s": args.raw_hold,
                "storm": args.storm,
                "runs": args.runs,
                "connect_concurrency": 1000,
                "source_ips": h.SOURCE_IPS,
                "rlimit_nofile": limit,
            },
            "targets": {"rss_per_conn_bytes": TARGET_RSS, "idle_cpu_pct": TARGET_IDLE_CPU},
            "skipped": skipped,
            "results": results,
        },
        args.json,
        argv=argv,
        bench="connections",
    )
    return 0
