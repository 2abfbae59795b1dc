"""The original gateway's benchmark phases (seed 000's ``benchmark-basic.py``), against pygw.

    python -m benches lifecycle [--users N] [--messages M] [--argon2 fast|default]
                                [--runs R] [--ws-seconds S] [--concurrency C]
                                [--default-sample K] [--json PATH]
                                [--behind-nginx] [--nodes N] [--backend memory|redis]

Per run, on a fresh gateway (memory backend, or ``--backend redis``; core 0; clients on core 1),
or with ``--behind-nginx`` a fresh deployment (benches/_deploy.py: nginx with
``docker/nginx.conf`` in front of ``--nodes`` nodes on one redis-server, all on core 0; every
request and WebSocket goes through nginx, each phase records each process's CPU):

1. register N users (``POST /sessions/register``), C requests in flight (asyncio client);
2. log them in (``POST /sessions/login``), C in flight; the tokens and session ids feed 3 and 4;
3. N x M HTTP session updates: ``POST /sessions/update/{sid}`` with ``{"data":{"k":<n>}}`` and the
   user's bearer token, over N keep-alive connections (``pygw-loadgen http --requests N*M``);
4. WebSocket ``update_api_key`` messages with acks over N connections (one per user, 1 in
   flight each) for S seconds (``pygw-loadgen ws-rtt``: duration-bound, so the count is what fit
   in S seconds; S defaults to enough for >= N x M at the measured rates). The connect storm
   of the N sockets is reported too.

``--argon2 fast`` (default) gives phases 1-2 cheap password hashing (1 MiB, t=1) so the run
measures the gateway, not argon2; login with the default parameters (19 MiB, t=2, p=1) is then
measured separately with K users (``--default-sample``), gateway on both cores, and reported in
its own rows. ``--argon2 default`` uses the default parameters throughout (slow by design:
~40-50 logins/s/core). The default-parameter sample runs for one memory-backed process only.

Registration with C in flight: the benchmark gateways queue them (``PYGW_REGISTER_MAX_WAITING``
raised, benches/_harness.py ``gateway_env``) where production refuses more than 64 waiting per
process with 429; rate limits are off (every client is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benches import _client as c
from benches import _deploy
from benches import _harness as h
from benches import _measure as m

SEED_10K = {
    # seed 000, "COMPLETE BENCHMARK RESULTS with NUM_USERS:10000" (10k users x 10 messages)
    "register": {"throughput_per_s": 5236.9, "avg_ms": 1054.3, "success_rate": 1.0},
    "login": {"throughput_per_s": 2727.7, "avg_ms": 1959.4, "success_rate": 1.0},
    "http_updates": {"throughput_per_s": 3467.5, "avg_ms": 2386.9, "success_rate": 1.0},
    "ws_messages": {"throughput_per_s": 4385.6, "avg_ms": 988.2, "success_rate": 1.0},
}
SEED_1K = {
    # seed 001, "Tested with 1000 users sending 100K total messages"
    "http_updates": {"throughput_per_s": 4306, "avg_ms": 22.8, "success_rate": 1.0},
    "ws_messages": {"throughput_per_s": 7008, "avg_ms": 11.2, "success_rate": 1.0},
}


def one_run(
    i: int, args: argparse.Namespace, ws_seconds: float, tmp: Path
) -> dict[str, dict[str, float]]:
    users, messages, concurrency = args.users, args.messages, args.concurrency
    prefix = f"lc{i}_"
    out: dict[str, dict[str, float]] = {}
    system = _deploy.system_under_test(
        behind_nginx=args.behind_nginx,
        nodes=args.nodes,
        backend=args.backend,
        argon2=args.argon2,
        name="lifecycle",
    )
    with system as (port, servers):
        pids = [pid for group in servers.values() for pid in group]
        h.wait_quiet()

        async def auth() -> tuple[c.Phase, c.Phase]:
            reg = await c.run_phase(
                "register", "127.0.0.1", port, c.register_requests(prefix, users), concurrency
            )
            log = await c.run_phase(
                "login", "127.0.0.1", port, c.login_requests(prefix, users), concurrency
            )
            return reg, log

        groups = {name: h.CPUSampler(group) for name, group in servers.items()}
        with h.CPUSampler(pids) as sampler, contextlib.ExitStack() as stack:
            for group in groups.values():
                stack.enter_context(group)
            t0 = time.monotonic()
            reg, log = asyncio.run(auth())
            t1 = time.monotonic()
        cpu = {
            "server_cpu_pct": sampler.pct(t0, t1),
            **{f"cpu_pct.{name}": group.pct(t0, t1) for name, group in groups.items()},
        }
        core0 = sampler.core_pct(t0, t1)[min(h.GATEWAY_CPUS)]
        cpu["foreign_cpu_pct_core0"] = round(max(0.0, core0 - cpu["server_cpu_pct"]), 1)
        out["register"] = {**reg.summary(), **cpu}
        out["login"] = {**log.summary(), **cpu}
        creds = c.write_creds(tmp / f"{prefix}creds.jsonl", c.creds_from_logins(log, prefix))
        n = sum(1 for _ in creds.open())
        url = f"http://127.0.0.1:{port}/sessions/update/{{sid}}"

        http = h.clean_run(
            lambda: m.http_load(
                url,
                pids,
                conns=n,
                requests=n * messages,
                body='{"data":{"k":{id}}}',
                headers=["Authorization: Bearer {token}"],
                creds=creds,
                groups=servers,
            )
        )
        http["throughput_per_s"] = http.pop("requests_per_s")
        out["http_updates"] = http

        ws = h.clean_run(
            lambda: m.ws_rtt(
                port,
                pids,
                frame=m.UPDATE_API_KEY,
                expect="ack",
                creds=creds,
                conns=n,
                depth=1,
                duration=ws_seconds,
                warmup=0.5,
                groups=servers,
            )
        )
        ws["throughput_per_s"] = ws.pop("round_trips_per_s")
        ws["requests"] = ws.pop("round_trips")
        out["ws_messages"] = ws
        out["ws_connect"] = {
            "connections": ws["connected"],
            "wall_s": ws["connect_wall_s"],
            "throughput_per_s": ws["connected"] / ws["connect_wall_s"]
            if ws["connect_wall_s"]
            else 0.0,
            "p50_ms": ws["connect_p50_ms"],
            "p99_ms": ws["connect_p99_ms"],
            "success_rate": ws["connected"] / n if n else 0.0,
        }
    return out


def default_params_login(sample: int, concurrency: int) -> dict[str, dict[str, float]]:
    """Register + log in ``sample`` users with the default argon2 parameters, gateway on both
    cores (the password pool has one thread per core)."""
    gw = h.start_gateway(argon2="default", cpus={0, 1}, name="lifecycle-argon2")
    try:
        h.wait_quiet()
        pid = h.gateway_pid(gw)
        with h.CPUSampler([pid]) as sampler:
            t0 = time.monotonic()
            _, reg, log = c.create_accounts(gw.port, sample, "ad_", concurrency=concurrency)
            t1 = time.monotonic()
        cpu = sampler.pct(t0, t1)
        return {
            "register_default_argon2": {**reg.summary(), "server_cpu_pct": cpu},
            "login_default_argon2": {**log.summary(), "server_cpu_pct": cpu},
        }
    finally:
        gw.stop()


PHASES = (
    "register",
    "login",
    "http_updates",
    "ws_connect",
    "ws_messages",
    "register_default_argon2",
    "login_default_argon2",
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches lifecycle", description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--argon2", choices=["fast", "default"], default="fast")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=500, help="register/login in flight")
    parser.add_argument("--ws-seconds", type=float, default=0.0, help="0 = auto")
    parser.add_argument("--default-sample", type=int, default=200)
    parser.add_argument("--json", type=Path)
    _deploy.add_system_arguments(parser)
    args = parser.parse_args(argv)
    _deploy.check_system_arguments(parser, args)
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-lifecycle-"))
    # Enough seconds for N x M messages at ~25k/s, at least 4.
    ws_seconds = args.ws_seconds or max(4.0, args.users * args.messages / 25_000)
    per_phase: dict[str, list[dict[str, float]]] = {}
    for i in range(args.runs):
        print(f"[run {i + 1}/{args.runs}] {args.users} users x {args.messages}", flush=True)
        for phase, values in one_run(i, args, ws_seconds, tmp).items():
            per_phase.setdefault(phase, []).append(values)
    plain = not args.behind_nginx and args.backend == "memory"
    if args.argon2 == "fast" and args.default_sample and plain:
        print(f"default-argon2 register/login of {args.default_sample} users", flush=True)
        for phase, values in default_params_login(args.default_sample, 64).items():
            per_phase.setdefault(phase, []).append(values)
    results: dict[str, dict[str, Any]] = {}
    for phase, runs in per_phase.items():
        results[phase] = {k: h.summarize([r[k] for r in runs]) for k in runs[0]}
    seed = SEED_10K if args.users >= 10_000 else SEED_1K
    rows = []
    for phase in PHASES:
        if phase not in results:
            continue
        r = results[phase]
        s = seed.get(phase.replace("_default_argon2", ""), {})
        count = r.get("requests", r.get("connections", {})).get("median")
        rows.append(
            [
                phase,
                h.fmt_num(count),
                h.fmt_range(r["throughput_per_s"]),
                h.fmt_range(r["avg_ms"], 1) if "avg_ms" in r else "-",
                h.fmt_range(r["p50_ms"], 1),
                h.fmt_range(r["p99_ms"], 1),
                f"{100 * r['success_rate']['median']:.2f}%",
                h.fmt_range(r.get("server_cpu_pct")),
                f"{s['throughput_per_s']:,.0f}/s avg {s['avg_ms']:,.1f} ms" if s else "-",
            ]
        )
    print(
        h.table(
            [
                "phase",
                "count",
                "per s",
                "avg ms",
                "p50 ms",
                "p99 ms",
                "success",
                "gw cpu %",
                "seed",
            ],
            rows,
        )
    )
    name = "lifecycle" + ("" if plain else "_deploy" if args.behind_nginx else f"_{args.backend}")
    h.write_results(
        name if args.users == 1000 else f"{name}_{args.users}",
        {
            "config": {
                "users": args.users,
                "messages": args.messages,
                "argon2": args.argon2,
                "runs": args.runs,
                "concurrency": args.concurrency,
                "ws_seconds": ws_seconds,
                "default_sample": args.default_sample if plain else 0,
                "system": _deploy.describe(args),
            },
            "seed": seed,
            "results": results,
        },
        args.json,
        argv=argv,
        bench="lifecycle",
    )
    return 0
