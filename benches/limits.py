"""Raw ceilings vs pygw, measured in the same run.

    python -m benches limits [--runs R] [--duration S] [--skip-argon2] [--json PATH]

A raw socketify server with no gateway logic (``benches/raw_server.py``: same transport layer,
same ``UVBridge``, same uWS options) and a ``pygw serve`` run side by side on core 0; the load
generator runs on core 1. Each measurement alternates raw and pygw, R times (median and range):

- WebSocket round trips/s, 100 connections x 2 in flight: raw echo vs pygw ``ping`` and
  ``update_api_key`` (a session write, acked);
- HTTP req/s, 50 keep-alive connections: raw ``GET /health`` vs pygw ``GET /health``; raw
  ``POST /echo`` vs pygw ``POST /sessions/update/{sid}`` (100 users, JWT auth, data merge);
- fan-out deliveries/s to 1k and 10k subscribers (publish over WS; the raw server publishes from
  asyncio, so uWS batches per socket);
- argon2id verify rate with pygw's default parameters (m=19 MiB, t=2, p=1) on 1 and 2 threads
  (both cores) vs pygw's login rate with the same parameters (gateway on both cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benches import _client as c
from benches import _harness as h
from benches import _measure as m

TARGETS = {
    "ws_ping": ("round trips/s", 50_000),
    "http_update": ("req/s", 20_000),
    "fanout_10000": ("deliveries/s", 2_000_000),
}


def argon2_rate(threads: int, seconds: float) -> float:
    from argon2 import PasswordHasher

    ph = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    digest = ph.hash("bench-password-123")
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            ph.verify(digest, "bench-password-123")
            counts[i] += 1

    t0 = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def pygw_login_rate(users: int, logins: int, concurrency: int, runs: int) -> dict[str, Any]:
    gw = h.start_gateway(argon2="default", cpus={0, 1}, name="login")
    try:
        creds, reg, _ = c.create_accounts(gw.port, users, "lg", concurrency=concurrency)
        assert len(creds) == users, "registration/login failed"

        def one(_: int) -> dict[str, float]:
            h.wait_quiet()
            reqs = c.login_requests("lg", users) * (logins // users)
            pid = h.gateway_pid(gw)
            with h.CPUSampler([pid]) as sampler:
                t0 = time.monotonic()
                phase = asyncio.run(c.run_phase("login", "127.0.0.1", gw.port, reqs, concurrency))
                t1 = time.monotonic()
            s = phase.summary()
            cores = sampler.core_pct(t0, t1)
            return {
                "logins_per_s": s["throughput_per_s"],
                "p50_ms": s["p50_ms"],
                "p99_ms": s["p99_ms"],
                "success_rate": s["success_rate"],
                "server_cpu_pct": sampler.pct(t0, t1),
                "machine_busy_pct": sum(cores),
            }

        return {"register": reg.summary(), **h.repeat(one, runs)}
    finally:
        gw.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches limits", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per WS/HTTP run")
    parser.add_argument("--skip-argon2", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-limits-"))
    results: dict[str, dict[str, Any]] = {}
    dur = args.duration

    with h.RawServer() as raw:
        gw = h.start_gateway(name="limits")
        try:
            gpid, rpid = h.gateway_pid(gw), raw.pid
            creds_list, _, _ = c.create_accounts(gw.port, 100, "lim")
            creds = c.write_creds(tmp / "users.jsonl", creds_list)
            subs = h.mint_creds(tmp / "subs.jsonl", 10_000, prefix="s")
            r_url, g_url = f"http://127.0.0.1:{raw.port}", f"http://127.0.0.1:{gw.port}"
            auth = ["Authorization: Bearer {token}"]
            body = '{"data":{"k":{id}}}'
            plan: list[tuple[str, str, Any]] = [
                (
                    "ws_echo",
                    "raw",
                    lambda: m.ws_rtt(
                        raw.port, [rpid], frame=m.ECHO, expect="echo", creds=None, duration=dur
                    ),
                ),
                (
                    "ws_ping",
                    "pygw",
                    lambda: m.ws_rtt(
                        gw.port, [gpid], frame=m.PING, expect="pong", creds=creds, duration=dur
                    ),
                ),
                (
                    "ws_update_api_key",
                    "pygw",
                    lambda: m.ws_rtt(
                        gw.port,
                        [gpid],
                        frame=m.UPDATE_API_KEY,
                        expect="ack",
                        creds=creds,
                        duration=dur,
                    ),
                ),
                (
                    "http_get",
                    "raw",
                    lambda: m.http_load(r_url + "/health", [rpid], duration=dur, warmup=0.5),
                ),
                (
                    "http_health",
                    "pygw",
                    lambda: m.http_load(g_url + "/health", [gpid], duration=dur, warmup=0.5),
                ),
                (
                    "http_post",
                    "raw",
                    lambda: m.http_load(
                        r_url + "/echo", [rpid], duration=dur, body=body, warmup=0.5
                    ),
                ),
                (
                    "http_update",
                    "pygw",
                    lambda: m.http_load(
                        g_url + "/sessions/update/{sid}",
                        [gpid],
                        conns=100,
                        duration=dur,
                        body=body,
                        headers=auth,
                        creds=creds,
                        warmup=0.5,
                    ),
                ),
            ]
            for n, msgs in ((1000, 1000), (10_000, 200)):
                plan.append(
                    (
                        f"fanout_raw_{n}",
                        "raw",
                        lambda n=n, msgs=msgs: m.fanout(
                            [m.ws_url(raw.port, False)],
                            [rpid],
                            subscribers=n,
                            messages=msgs,
                            creds=None,
                        ),
                    )
                )
                plan.append(
                    (
                        f"fanout_{n}",
                        "pygw",
                        lambda n=n, msgs=msgs: m.fanout(
                            [m.ws_url(gw.port)], [gpid], subscribers=n, messages=msgs, creds=subs
                        ),
                    )
                )
            runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in plan}
            for i in range(args.runs):
                for name, server, fn in plan:
                    print(f"[run {i + 1}/{args.runs}] {name} ({server})", flush=True)
                    runs[name].append(h.clean_run(fn))
            for name, server, _ in plan:
                keys = runs[name][0].keys()
                results[name] = {
                    "server": server,
                    **{k: h.summarize([r[k] for r in runs[name]]) for k in keys},
                }
        finally:
            gw.stop()

    argon2: dict[str, Any] = {}
    if not args.skip_argon2:
        with h.pinned({0, 1}):
            h.wait_quiet()
            argon2["raw_1_thread"] = h.summarize([argon2_rate(1, 2.0) for _ in range(args.runs)])
            argon2["raw_2_threads"] = h.summarize([argon2_rate(2, 3.0) for _ in range(args.runs)])
        argon2["pygw_login"] = pygw_login_rate(32, 192, 8, args.runs)

    rows, summary = report(results, argon2)
    print(h.table(["measure", "raw ceiling", "pygw", "pygw / raw", "target"], rows))
    h.write_results(
        "limits",
        {
            "config": {
                "runs": args.runs,
                "duration_s": dur,
                "ws_conns": 100,
                "ws_depth": 2,
                "http_conns": 50,
            },
            "summary": summary,
            "results": results,
            "argon2": argon2,
        },
        args.json,
        argv=argv,
        bench="limits",
    )
    return 0


def report(
    results: dict[str, Any], argon2: dict[str, Any]
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    rows: list[list[str]] = []
    summary: list[dict[str, Any]] = []

    def add(label: str, raw_key: str, key: str, metric: str, target: float | None) -> None:
        if raw_key not in results or key not in results:
            return
        rv, pv = results[raw_key][metric], results[key][metric]
        frac = h.ratio(pv["median"], rv["median"])
        met = None if target is None else pv["median"] >= target
        rows.append(
            [
                label,
                h.fmt_range(rv),
                h.fmt_range(pv),
                h.pct_str(frac),
                "-" if target is None else f">= {target:,.0f}: {'met' if met else 'NOT MET'}",
            ]
        )
        summary.append(
            {
                "measure": label,
                "raw": rv["median"],
                "pygw": pv["median"],
                "fraction": frac,
                "target": target,
                "target_met": met,
            }
        )

    add(
        "WS round trips/s: raw echo vs pygw ping", "ws_echo", "ws_ping", "round_trips_per_s", 50_000
    )
    add(
        "WS round trips/s: raw echo vs pygw update_api_key",
        "ws_echo",
        "ws_update_api_key",
        "round_trips_per_s",
        None,
    )
    add("HTTP req/s: GET /health", "http_get", "http_health", "requests_per_s", None)
    add(
        "HTTP req/s: raw POST /echo vs pygw session update",
        "http_post",
        "http_update",
        "requests_per_s",
        20_000,
    )
    add(
        "fan-out deliveries/s, 1k subscribers",
        "fanout_raw_1000",
        "fanout_1000",
        "deliveries_per_s",
        None,
    )
    add(
        "fan-out deliveries/s, 10k subscribers",
        "fanout_raw_10000",
        "fanout_10000",
        "deliveries_per_s",
        2_000_000,
    )
    if argon2:
        raw2 = argon2["raw_2_threads"]
        login = argon2["pygw_login"]["logins_per_s"]
        frac = h.ratio(login["median"], raw2["median"])
        met = frac is not None and frac >= 0.9
        rows.append(
            [
                "argon2id (19 MiB, t=2): raw verify/s (2 threads) vs pygw login/s",
                h.fmt_range(raw2, 1),
                h.fmt_range(login, 1),
                h.pct_str(frac),
                f">= 90% of raw: {'met' if met else 'NOT MET'}",
            ]
        )
        rows.append(
            [
                "argon2id raw verify/s, 1 thread",
                h.fmt_range(argon2["raw_1_thread"], 1),
                "-",
                "-",
                "-",
            ]
        )
        summary.append(
            {
                "measure": "argon2 login",
                "raw": raw2["median"],
                "pygw": login["median"],
                "fraction": frac,
                "target": 0.9,
                "target_met": met,
            }
        )
    return rows, summary
