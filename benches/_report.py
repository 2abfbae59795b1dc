"""Markdown tables from benches/results/*.json (for docs/BENCHMARKS.md).

    python -m benches._report [name ...]               # print them
    python -m benches._report --write docs/BENCHMARKS.md

``--write`` replaces the text between each ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``
marker with the table generated from ``benches/results/NAME.json`` (``k6_ramp``: every
``k6_ramp*.json``), headed by the run's date, revision and command.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from benches import _harness as h


def rng(s: dict[str, Any] | None, digits: int = 0, scale: float = 1.0) -> str:
    return h.fmt_range(s, digits, scale)


def md(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def load(name: str) -> dict[str, Any] | None:
    p = h.RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def limits(d: dict[str, Any]) -> str:
    r = d["results"]
    rows = []
    pairs = [
        (
            "WS round trips/s (100 conns x 2 in flight)",
            "ws_echo",
            "ws_ping",
            "raw echo / pygw `ping`",
            "round_trips_per_s",
            ">= 50,000",
        ),
        (
            "WS round trips/s",
            "ws_echo",
            "ws_update_api_key",
            "raw echo / pygw `update_api_key` (session write + ack)",
            "round_trips_per_s",
            "-",
        ),
        (
            "HTTP req/s (50 conns)",
            "http_get",
            "http_health",
            "`GET /health` both",
            "requests_per_s",
            "-",
        ),
        (
            "HTTP req/s",
            "http_post",
            "http_update",
            "raw `POST /echo` / pygw `POST /sessions/update/{sid}` (100 conns)",
            "requests_per_s",
            ">= 20,000",
        ),
        (
            "fan-out deliveries/s, 1k subs",
            "fanout_raw_1000",
            "fanout_1000",
            "publish over WS",
            "deliveries_per_s",
            "-",
        ),
        (
            "fan-out deliveries/s, 10k subs",
            "fanout_raw_10000",
            "fanout_10000",
            "publish over WS",
            "deliveries_per_s",
            ">= 2,000,000",
        ),
    ]
    for label, rk, pk, what, metric, target in pairs:
        if rk not in r or pk not in r:
            continue
        rv, pv = r[rk], r[pk]
        frac = h.ratio(pv[metric]["median"], rv[metric]["median"])
        tnum = float(target.replace(">= ", "").replace(",", "")) if target != "-" else None
        verdict = (
            "-"
            if tnum is None
            else (
                f"{target}: **met**" if pv[metric]["median"] >= tnum else f"{target}: **NOT MET**"
            )
        )
        rows.append(
            [
                label,
                what,
                rng(rv[metric]),
                rng(pv[metric]),
                h.pct_str(frac),
                f"{rng(pv['p99_ms'], 1)}" if "p99_ms" in pv else "-",
                f"{rng(rv['server_cpu_pct'])} / {rng(pv['server_cpu_pct'])}",
                f"{rng(rv['client_cpu_pct'])} / {rng(pv['client_cpu_pct'])}",
                verdict,
            ]
        )
    a = d.get("argon2") or {}
    if a:
        raw2, raw1 = a["raw_2_threads"], a["raw_1_thread"]
        login = a["pygw_login"]["logins_per_s"]
        frac = h.ratio(login["median"], raw2["median"])
        rows.append(
            [
                "argon2id m=19 MiB t=2 p=1",
                "raw verify/s on 2 threads (1 thread: "
                + rng(raw1, 1)
                + ") / pygw `POST /sessions/login`/s",
                rng(raw2, 1),
                rng(login, 1),
                h.pct_str(frac),
                rng(a["pygw_login"]["p99_ms"], 1),
                "- / " + rng(a["pygw_login"]["server_cpu_pct"]),
                "-",
                ">= 90%: **met**" if frac and frac >= 0.9 else ">= 90%: **NOT MET**",
            ]
        )
    return md(
        [
            "measure",
            "what",
            "raw ceiling",
            "pygw",
            "pygw/raw",
            "pygw p99 ms",
            "server CPU % raw/pygw",
            "client CPU % raw/pygw",
            "target",
        ],
        rows,
    )


def lifecycle(d: dict[str, Any]) -> str:
    """One row per phase; a run through nginx adds each server process's CPU % (``cpu_pct.*``:
    over the whole phase invocation)."""
    r = d["results"]
    seed = d.get("seed", {})
    procs = sorted(
        {k.removeprefix("cpu_pct.") for p in r.values() for k in p if k.startswith("cpu_pct.")},
        key=lambda n: (n != "nginx", n == "redis", n),
    )
    if len(procs) < 2:  # one gateway: its CPU is the servers' CPU column
        procs = []
    rows = []
    for phase in (
        "register",
        "login",
        "http_updates",
        "ws_connect",
        "ws_messages",
        "register_default_argon2",
        "login_default_argon2",
    ):
        if phase not in r:
            continue
        p = r[phase]
        s = seed.get(phase.replace("_default_argon2", ""), {})
        count = p.get("requests", p.get("connections", {})).get("median")
        rows.append(
            [
                phase,
                h.fmt_num(count),
                rng(p["throughput_per_s"]),
                rng(p.get("avg_ms"), 1) if "avg_ms" in p else "-",
                rng(p["p50_ms"], 1),
                rng(p["p99_ms"], 1),
                f"{100 * p['success_rate']['median']:.1f}%",
                rng(p.get("server_cpu_pct")),
                *([" / ".join(rng(p.get(f"cpu_pct.{n}")) for n in procs)] if procs else []),
                f"{s['throughput_per_s']:,.0f}/s, avg {s['avg_ms']:,.1f} ms" if s else "-",
            ]
        )
    return md(
        [
            "phase",
            "count",
            "per second",
            "avg ms",
            "p50 ms",
            "p99 ms",
            "success",
            "servers' CPU %" if procs else "gateway CPU %",
            *([f"CPU % {' / '.join(procs)}"] if procs else []),
            "seed (same phase)",
        ],
        rows,
    )


def fanout(d: dict[str, Any]) -> str:
    r = d["results"]
    rows = []
    for name, v in r.items():
        kind, n = name.split("/")
        rk = "raw-paced/" + n if kind.endswith("paced") else "raw/" + n
        frac = h.ratio(
            v["deliveries_per_s"]["median"], r.get(rk, {}).get("deliveries_per_s", {}).get("median")
        )
        target = "-"
        if n == "10000" and kind in ("ws", "http", "redis-2-nodes", "redis-cluster-2-nodes"):
            target = (
                ">= 2M: **met**" if v["deliveries_per_s"]["median"] >= 2e6 else ">= 2M: **NOT MET**"
            )
        rows.append(
            [
                kind,
                f"{int(n):,}",
                rng(v["deliveries_per_s"]),
                "-" if kind.startswith("raw") else h.pct_str(frac),
                rng(v["p50_ms"], 1),
                rng(v["p99_ms"], 1),
                f"{v['lost']['max']:.0f}/{v['duplicates']['max']:.0f}",
                rng(v["server_cpu_pct"]),
                rng(v["client_cpu_pct"]),
                target,
            ]
        )
    return md(
        [
            "publish",
            "subscribers",
            "deliveries/s",
            "of raw",
            "p50 ms",
            "p99 ms",
            "lost/dup (max)",
            "server CPU %",
            "client CPU %",
            "target",
        ],
        rows,
    )


def compression_rows(
    results: dict[str, Any], payloads: tuple[str, ...] = ("fanout", "json-1.5k")
) -> tuple[list[str], list[list[str]]]:
    """``compression``: one row per mode and payload (headers, rows)."""
    rows = []
    for mode, entry in results.items():
        for payload in payloads:
            v = entry[payload]
            off = results.get("off", {}).get(payload)
            wire = v["wire_bytes_per_delivery"]["median"]
            saved = "-"
            if off is not None and mode != "off":
                saved = h.pct_str(1 - wire / off["wire_bytes_per_delivery"]["median"])
            cpu = v["server_us_per_delivery"]["median"]
            cost = "-"
            if off is not None and mode != "off":
                cost = f"{cpu / off['server_us_per_delivery']['median']:.1f}x"
            rows.append(
                [
                    mode,
                    payload,
                    f"{v['frame_bytes']['median']:.0f}",
                    rng(v["wire_bytes_per_delivery"], 1),
                    saved,
                    rng(v["server_us_per_delivery"], 2),
                    cost,
                    f"{entry['rss_per_conn_bytes'] / 1024:.1f}",
                    rng(v["deliveries_per_s"]),
                    rng(v["foreign_cpu_pct_core0"]),
                ]
            )
    headers = [
        "mode",
        "payload",
        "frame B",
        "wire B / delivery",
        "saved",
        "server us / delivery",
        "CPU vs off",
        "RSS KiB / socket",
        "deliveries/s (client-bound)",
        "other load on core 0 %",
    ]
    return headers, rows


def compression(d: dict[str, Any]) -> str:
    cfg = d["config"]
    headers, rows = compression_rows(d["results"])
    return (
        f"{cfg['subscribers']} subscribers x {cfg['messages']} publications per payload and run"
        f" ({cfg['runs']} runs), {cfg.get('in_flight_publishes', 8)} publish requests in flight,"
        f" {cfg['client']}.\n\n" + md(headers, rows)
    )


def asgi_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``asgi``: one row per server and measure (headers, rows)."""
    rows = []
    for name, r in results.items():
        server, what = name.split("/")
        key = "requests_per_s" if what.startswith("http") else "round_trips_per_s"
        uws = results.get(f"uws/{what}", {}).get(key, {}).get("median")
        rows.append(
            [
                server,
                "`GET /health`, 50 conns" if what == "http_health" else "WS `ping`, 100 conns x 2",
                rng(r[key]),
                "-" if server == "uws" else h.pct_str(h.ratio(r[key]["median"], uws)),
                rng(r["p50_ms"], 2),
                rng(r["p99_ms"], 2),
                f"{r['errors']['max']:.0f}",
                rng(r["server_cpu_pct"]),
                rng(r["client_cpu_pct"]),
            ]
        )
    headers = [
        "server",
        "measure",
        "per second",
        "of uWS",
        "p50 ms",
        "p99 ms",
        "errors (max)",
        "server CPU %",
        "client CPU %",
    ]
    return headers, rows


def asgi(d: dict[str, Any]) -> str:
    headers, rows = asgi_rows(d["results"])
    return md(headers, rows)


def sse(d: dict[str, Any]) -> str:
    rows, mixed = [], []
    for name, v in d["results"].items():
        kind, n = name.split("/")
        if kind == "mixed":
            mixed.append(
                [
                    f"{int(n):,}",
                    rng(v["ws_deliveries_per_s"]),
                    rng(v["sse_deliveries_per_s"]),
                    f"{v['ws_lost']['max']:.0f}/{v['ws_duplicates']['max']:.0f}",
                    f"{v['sse_lost']['max']:.0f}/{v['sse_duplicates']['max']:.0f}",
                ]
            )
            continue
        rows.append(
            [
                kind,
                f"{int(n):,}",
                rng(v["deliveries_per_s"]),
                rng(v["server_us_per_delivery"], 2),
                rng(v["p50_ms"], 1),
                rng(v["p99_ms"], 1),
                f"{v['lost']['max']:.0f}/{v['duplicates']['max']:.0f}",
                rng(v["server_cpu_pct"]),
                rng(v["client_cpu_pct"]),
            ]
        )
    before, after = d.get("load_average_before"), d.get("load_average_after")
    note = ""
    if before and after:
        la = [", ".join(f"{x:.2f}" for x in v) for v in (before, after)]
        note = f"\n\nLoad average (1, 5, 15 min) before the run: {la[0]}; after: {la[1]}."
    return (
        md(
            [
                "subscribers",
                "n",
                "deliveries/s",
                "server us/delivery",
                "p50 ms",
                "p99 ms",
                "lost/dup (max)",
                "server CPU %",
                "client CPU %",
            ],
            rows,
        )
        + (
            "\n\nBoth at once (n WebSockets and n streams on one channel):\n\n"
            + md(
                [
                    "n WS + n SSE",
                    "WS deliveries/s",
                    "SSE deliveries/s",
                    "WS lost/dup",
                    "SSE lost/dup",
                ],
                mixed,
            )
            if mixed
            else ""
        )
        + note
    )


def _deployment(p: dict[str, Any]) -> str:
    procs = int(p.get("processes", {}).get("median") or 1)
    gens = int(p.get("generators", {}).get("median") or 1)
    if "redis_rss_after_storm_mib" in p:
        return f"{procs} workers + Redis / {gens} loadgens"
    return f"1 process / {gens} loadgen" + ("s" if gens > 1 else "")


def connections(d: dict[str, Any]) -> tuple[str, str]:
    r = d["results"]
    rows = []
    for n in d["config"]["sizes"]:
        p, q = r.get(f"hold/pygw/{n}"), r.get(f"hold/raw/{n}")
        if not p or not q:
            continue
        rss, idle = p["rss_per_conn_bytes"]["median"], p["idle_cpu_pct"]["median"]
        raw_procs = int(q.get("processes", {}).get("median") or 1)
        rows.append(
            [
                f"{n:,}",
                f"{_deployment(p)} (raw: {raw_procs} process{'es' if raw_procs > 1 else ''})",
                f"{p['still_open']['median']:,.0f} / {q['still_open']['median']:,.0f}",
                f"{rss:,.0f}",
                f"{q['rss_per_conn_bytes']['median']:,.0f}",
                "**met**" if rss <= 4096 else "**NOT MET**",
                f"{idle:.2f}",
                f"{q['idle_cpu_pct']['median']:.2f}",
                f"{idle * 10_000 / n:.2f}",
                # The target is stated for 10k idle connections (issue 3); idle CPU grows with
                # the connection count (keep-alive pings), so larger sizes are compared per 10k.
                ("**met**" if idle < 2 else "**NOT MET**")
                if n == 10_000
                else ("met per 10k" if idle * 10_000 / n < 2 else "NOT MET per 10k"),
                f"{p['storm_s']['median']:.2f} / {q['storm_s']['median']:.2f}",
                f"{p['connect_p99_ms']['median']:,.0f} / {q['connect_p99_ms']['median']:,.0f}",
                f"{p['rss_before_mib']['median']:,.0f} → {p['rss_after_storm_mib']['median']:,.0f}",
            ]
        )
    t1 = md(
        [
            "idle WebSockets",
            "pygw servers / clients",
            "open pygw/raw",
            "pygw B/conn",
            "raw B/conn",
            "<= 4 KiB",
            "pygw idle CPU %",
            "raw idle CPU %",
            "pygw idle CPU % per 10k conns",
            "< 2% at 10k",
            "storm s pygw/raw",
            "connect p99 ms pygw/raw",
            "pygw RSS MiB before → after storm (all workers)",
        ],
        rows,
    )
    srows = []
    storm = d["config"]["storm"]
    memory = r.get(f"storm/pygw/{storm}")
    for kind in ("pygw", "pygw-redis", "pygw-cluster", "raw"):
        s = r.get(f"storm/{kind}/{storm}")
        if not s:
            continue
        vs = h.ratio(s["storm_s"]["median"], memory["storm_s"]["median"]) if memory else None
        srows.append(
            [
                {"pygw": "pygw (memory)", "pygw-redis": "pygw (one Redis)"}.get(
                    kind, "pygw (Redis Cluster)" if kind == "pygw-cluster" else kind
                ),
                f"{vs:.2f}x" if vs is not None else "-",
                f"{s['connected']['median']:,.0f}/{storm:,}",
                rng(s["storm_s"], 2),
                rng(s["connects_per_s"]),
                rng(s["connect_p50_ms"], 1),
                rng(s["connect_p95_ms"], 1),
                rng(s["connect_p99_ms"], 1),
                rng(s["storm_cpu_s"], 2),
                rng(s["client_cpu_pct_storm"]),
                rng(s.get("listen_overflows")),
            ]
        )
    t2 = md(
        [
            "server",
            "storm s / memory-backed",
            "connected",
            "storm s",
            "connects/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "server CPU s",
            "client CPU %",
            "SYN drops (ListenOverflows)",
        ],
        srows,
    )
    return t1, t2


def connections_multi(d: dict[str, Any]) -> str:
    """Per-process detail of the multi-process holds (empty if there were none)."""
    rows = []
    for n in d["config"]["sizes"]:
        for kind in ("pygw", "raw"):
            det = d.get("details", {}).get(f"hold/{kind}/{n}")
            p = d["results"].get(f"hold/{kind}/{n}")
            if not det or not p:
                continue
            per = det["per_process"]
            conns = [x["conns_fds_delta"] for x in per]
            v = {k: x["median"] for k, x in p.items()}
            redis = (
                f"+{v['redis_rss_delta_mib']:,.0f} MiB, {v['redis_idle_cpu_pct']:.2f}%"
                if "redis_rss_delta_mib" in v
                else "-"
            )
            rows.append(
                [
                    f"{n:,}",
                    kind,
                    f"{det['workers']} x ~{n / det['workers']:,.0f}",
                    f"{min(conns):,}-{max(conns):,}",
                    " / ".join(f"{x:,}" for x in det["generator_conns"]),
                    f"{v['connected']:,.0f} / {v['failed']:,.0f}",
                    f"{v['connects_per_s']:,.0f}",
                    f"{v['connect_p50_ms']:,.0f} / {v['connect_p99_ms']:,.0f}",
                    f"{v['rss_before_mib']:,.0f} / {v['rss_after_storm_mib']:,.0f}"
                    f" / {v['rss_end_mib']:,.0f}",
                    f"{v['pss_before_mib']:,.0f} / {v['pss_after_storm_mib']:,.0f}",
                    f"{v['storm_cpu_s']:.1f}",
                    f"{v['hold_s']:.1f}",
                    redis,
                    f"{v['listen_overflows']:,.0f}",
                ]
            )
    if not rows:
        return ""
    return md(
        [
            "N",
            "server",
            "processes x expected conns",
            "conns per process (min-max)",
            "loadgen conns",
            "connected / failed",
            "connects/s",
            "connect p50 / p99 ms",
            "RSS MiB sum before / after storm / end",
            "PSS MiB sum before / after storm",
            "storm CPU s (sum)",
            "hold s",
            "Redis RSS, idle CPU",
            "SYN drops",
        ],
        rows,
    )


def cluster(d: dict[str, Any]) -> str:
    """WAIT on cluster writes (on/off) and the cost of a push to an absent user."""
    r = d["results"]
    rows = []
    for key, label in (("wait/1", "WAIT 1 replica (default)"), ("wait/0", "primary ack only")):
        v = r.get(key)
        if v is None:
            continue
        rows.append(
            [
                label,
                rng(v["create_p50_us"]),
                rng(v["create_p99_us"]),
                rng(v["creates_per_s"]),
                rng(v["flush_ms"], 1),
                rng(v["flush_us_per_session"], 1),
            ]
        )
    body = md(
        [
            "cluster writes",
            "create_session p50 µs",
            "p99 µs",
            "creates/s (one at a time)",
            f"flush of {d['config']['sessions']:,} updates, ms",
            "µs per update",
        ],
        rows,
    )
    p = r.get("push")
    if p:
        body += "\n\n" + md(
            ["push to a user the node does not hold", "gateway CPU µs per push", "pushes/s sent"],
            [
                [
                    f"{d['config']['pushes']:,} pushes, none connected",
                    rng(p["gateway_us_per_push"], 1),
                    rng(p["pushes_per_s"]),
                ]
            ],
        )
    return body


def jwt(d: dict[str, Any]) -> str:
    rows = [
        [
            x["alg"],
            x["mode"],
            f"{x['ops_per_sec']:,.0f}",
            f"{x['us_per_op']:.2f}",
            f"{x['ratio_vs_pyjwt']:.1f}x",
        ]
        for x in d["results"]
    ]
    return md(["alg", "mode", "ops/s", "µs/op", "vs PyJWT"], rows)


def pct(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:.0f}"


PEER_MEASURES = {
    # kind: (label, metric, higher is better); {n}: the subscriber or connection count
    "fanout": ("fan-out {n} subs, WS publish, burst (deliveries/s)", "deliveries_per_s", True),
    "http": ("fan-out {n} subs, HTTP publish, burst (deliveries/s)", "deliveries_per_s", True),
    "paced": ("{n} subs, 5 msgs/s paced (server CPU %)", "server_cpu_pct", False),
    "rtt": ("request/reply, {n} conns x 2 in flight (round trips/s)", "round_trips_per_s", True),
    "redis": ("2 nodes + Redis, {n} subs, burst (deliveries/s)", "deliveries_per_s", True),
}


def _advantage(pygw: float | None, other: float | None, higher: bool) -> str:
    """How many times better pygw's median is than ``other``'s."""
    if not pygw or not other:
        return "-"
    x = pygw / other if higher else other / pygw
    return f"**{x:.1f}x**" if x >= 1 else f"**{x:.2f}x (behind)**"


def peers(d: dict[str, Any]) -> str:
    """The peer comparison: throughput/latency rows, then the idle/connect-storm rows."""
    r = d["results"]
    servers = d["config"]["servers"]
    rows = []
    prefixes = dict.fromkeys(k.rsplit("/", 1)[0] for k in r if not k.startswith("idle/"))
    for prefix in prefixes:
        kind, n = prefix.split("/")
        label, metric, higher = PEER_MEASURES[kind]
        label = label.format(n=f"{int(n):,}")
        base = r.get(f"{prefix}/pygw", {}).get(metric, {}).get("median")
        for name in servers:
            v = r.get(f"{prefix}/{name}")
            if not v:
                continue
            value = v[metric] if metric != "server_cpu_pct" else v["deliveries_per_s"]
            if name == "pygw":
                adv = "-"
            elif name == "raw":
                raw = v[metric]["median"]
                adv = f"pygw at {h.pct_str(h.ratio(base, raw))} of raw" if higher else "-"
            else:
                adv = _advantage(base, v[metric]["median"], higher)
            lat = ("p50_ms", "p99_ms")
            lost = (
                f"{v['lost']['max']:.0f}/{v['duplicates']['max']:.0f}"
                if "lost" in v
                else f"{v['errors']['max']:.0f} errors"
            )
            rows.append(
                [
                    label,
                    name,
                    rng(value),
                    adv,
                    rng(v[lat[0]], 1),
                    rng(v[lat[1]], 1),
                    lost,
                    rng(v["server_cpu_pct"]),
                    rng(v["client_cpu_pct"]),
                ]
            )
    t1 = md(
        [
            "measure",
            "server",
            "result (deliveries/s or round trips/s)",
            "pygw vs this",
            "p50 ms",
            "p99 ms",
            "lost/dup (max)",
            "server CPU %",
            "client CPU %",
        ],
        rows,
    )
    conns = d["config"]["idle"]["conns"]
    base = r.get(f"idle/{conns}/pygw", {})

    def med(v: dict[str, Any], k: str) -> float | None:
        return v.get(k, {}).get("median")

    irows = []
    for name in servers:
        v = r.get(f"idle/{conns}/{name}")
        if not v:
            continue
        other = name not in ("pygw", "raw")
        irows.append(
            [
                name,
                f"{med(v, 'connected'):,.0f} / {med(v, 'still_open'):,.0f}",
                rng(v["rss_per_conn_bytes"]),
                rng(v["rss_end_per_conn_bytes"]),
                _advantage(
                    med(base, "rss_end_per_conn_bytes"), med(v, "rss_end_per_conn_bytes"), False
                )
                if other
                else "-",
                rng(v["idle_cpu_pct"], 2),
                _advantage(med(base, "idle_cpu_pct"), med(v, "idle_cpu_pct"), False)
                if other
                else "-",
                rng(v["storm_s"], 2),
                rng(v["connects_per_s"]),
                _advantage(med(base, "connects_per_s"), med(v, "connects_per_s"), True)
                if other
                else "-",
                f"{rng(v['connect_p50_ms'], 1)} / {rng(v['connect_p99_ms'], 1)}",
                rng(v["storm_cpu_s"], 2),
                rng(v["client_cpu_pct_storm"]),
            ]
        )
    t2 = md(
        [
            "server",
            "connected / open at end",
            "RSS B/conn after storm",
            "RSS B/conn after hold",
            "memory: pygw vs this",
            "idle CPU %",
            "idle CPU: pygw vs this",
            "storm s",
            "connects/s",
            "connects/s: pygw vs this",
            "connect p50 / p99 ms",
            "server CPU s (storm)",
            "client CPU % (storm)",
        ],
        irows,
    )
    cfg = d["config"]["idle"]
    hold = f"{cfg['hold_s']:.0f} s (raw {cfg['raw_hold_s']:.0f} s)"
    title = f"Idle connections and the connect storm, {conns:,} JWT WebSockets held {hold}:"
    return f"{t1}\n\n{title}\n\n{t2}"


def k6(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """One row per k6 result file, plus seed 002's published figures."""
    rows = []
    for label, d in runs:
        mt = d["metrics"]
        rtt = mt.get("gw_msg_rtt") or mt.get("ws_msg_rtt", {})
        con = mt.get("gw_connect_time") or mt.get("ws_connect_time", {})
        err = (mt.get("gw_errors") or mt.get("ws_errors", {})).get("count", 0)
        kinds = [
            f"{k.replace('gw_err_', '')} {v.get('count', 0):,}"
            for k, v in mt.items()
            if k.startswith("gw_err_") and v.get("count")
        ]
        sent = (mt.get("gw_msgs_sent") or {}).get("count")
        replied = (mt.get("gw_msgs_replied") or {}).get("count")
        sessions = (mt.get("gw_sessions") or mt.get("iterations") or {}).get("count")

        def ms(m: dict[str, Any], k: str) -> str:
            v = m.get(k)
            return "-" if v is None else f"{v:,.0f}"

        rows.append(
            [
                label,
                f"{mt.get('vus_max', {}).get('max', d.get('peak_vus')):,}",
                "-" if sessions is None else f"{sessions:,}",
                "-" if sent is None else f"{sent:,} / {replied:,}",
                f"{err:,}" + (f" ({', '.join(kinds)})" if kinds else ""),
                " / ".join(ms(rtt, k) for k in ("med", "p(90)", "p(95)", "p(99)", "max")),
                " / ".join(ms(con, k) for k in ("med", "p(90)", "p(95)", "p(99)")),
                f"{pct(d, 'gateway_cpu_pct_avg')} / {pct(d, 'gateway_cpu_pct_1s_max')}",
                f"{pct(d, 'k6_cpu_pct_avg')} / {pct(d, 'k6_cpu_pct_1s_max')}",
                f"{d.get('k6_peak_rss_mib', 0) / 1024:.1f}",
                "pass" if d.get("thresholds_passed") else "**FAIL**",
            ]
        )
    rows.append(
        [
            "seed 002 (Go service, AWS)",
            "9,992",
            "42,494",
            "42,494 / -",
            "0",
            "avg 3, p95 3, p99 6",
            "avg 159, p95 231, p99 325",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    return md(
        [
            "run",
            "peak VUs",
            "sessions",
            "msgs sent / replied",
            "errors",
            "msg RTT ms p50/p90/p95/p99/max",
            "connect ms p50/p90/p95/p99",
            "gateway CPU % avg / max 1 s",
            "k6 CPU % avg / max 1 s",
            "k6 RSS GiB",
            "thresholds",
        ],
        rows,
    )


def k6_deploy(d: dict[str, Any], beside: bool = True) -> str:
    """The ramp through nginx (``k6_deploy_ramp.json``) beside the one-process memory-backed
    ramp (``k6_ramp_beside_deploy.json``, the same session's, else ``k6_ramp.json``), then every
    process's CPU and RSS during the run (``beside=False``: without the one-process row)."""
    sysd = d.get("system", {})
    label = (
        f"nginx + {sysd.get('nodes')} nodes + {sysd.get('backend')}, git {d.get('git')}"
        if sysd.get("behind_nginx")
        else f"1 process, {sysd.get('backend')}, git {d.get('git')}"
    )
    runs = [(label, d)]
    for stem in ("k6_ramp_beside_deploy", "k6_ramp"):  # the same session's run, if there is one
        base = load(stem)
        if base is not None and beside and d.get("profile") == "ramp":
            runs.append(
                (f"1 process, memory, {base.get('date')}, git {base.get('git')} ({stem})", base)
            )
            break
    rows = []
    for name, p in d.get("processes_cpu", {}).items():
        rss = p.get("peak_rss_mib")
        rows.append(
            [
                name + (" (all processes on the core)" if name.startswith("core") else ""),
                f"{p['cpu_pct_avg']:.0f}",
                f"{p['cpu_pct_1s_max']:.0f}",
                f"{p['seconds_at_95pct_cpu']:,}",
                "-" if rss is None else f"{rss:,.0f}",
            ]
        )
    for core, p in d.get("other_processes_cpu", {}).items():
        rows.append(
            [
                f"other processes on {core} (not this run's)",
                f"{p['pct_avg']:.0f}",
                f"{max(p['per_second'], default=0):.0f}",
                f"{p['seconds_over_25pct']:,} over 25%",
                "-",
            ]
        )
    load_avg = d.get("load_average_before"), d.get("load_average_after")
    cpu = md(["process", "CPU % avg", "max 1 s", "seconds >= 95%", "peak RSS MiB"], rows)
    return (
        f"{k6(runs)}\n\nCPU (100 = one core) and memory during the run through nginx"
        f" ({d.get('k6_wall_s')} s of k6; machine load average before / after:"
        f" {load_avg[0]} / {load_avg[1]}):\n\n{cpu}"
    )


K6_PREVIOUS = {
    # results of the cffi transport (before the native uWS callbacks), kept for comparison
    "k6_ramp_run1_gogc100": "old transport (00a6217) run 1: GOGC=100, ping 25 s all at once",
    "k6_ramp_run2_gogc400": "old transport (00a6217) run 2: GOGC=400, ping 25 s all at once",
    "k6_ramp_run3_gogc400": "old transport (00a6217) run 3: GOGC=400, ping 25 s all at once",
    "k6_ramp_ping600": "old transport (00a6217) run 4: GOGC=400, `PYGW_PING_INTERVAL=600`",
}


def k6_runs() -> list[tuple[str, dict[str, Any]]]:
    """The current k6 ramp results (``k6_ramp*.json`` not in :data:`K6_PREVIOUS`), then the
    previous ones."""
    current = []
    for path in sorted(h.RESULTS.glob("k6_ramp*.json")):
        if path.stem in K6_PREVIOUS:
            continue
        d = json.loads(path.read_text())
        env = d.get("gateway_env") or {}
        gogc = str(d.get("k6_gogc", "?")).split()[0]
        memlimit = str(d.get("k6_gomemlimit", "none")).split()[0]
        gc = f"GOGC={gogc}" + (f" GOMEMLIMIT={memlimit}" if memlimit != "none" else "")
        ping = env.get("PYGW_PING_INTERVAL", "25")
        extra = ", ".join(f"`{k}={v}`" for k, v in env.items() if k != "PYGW_PING_INTERVAL")
        groups = d.get("gateway_ping_groups", 16)  # runs before it was recorded: 16
        label = f"git {d.get('git')} ({path.stem}): {gc}, ping {ping} s in {groups} groups"
        current.append((label + (f", {extra}" if extra else ""), d))
    previous = [(label, d) for stem, label in K6_PREVIOUS.items() if (d := load(stem)) is not None]
    return current + previous


def caption(d: dict[str, Any]) -> str:
    """The line above a generated table: date, revision and the command."""
    files = d.get("uncommitted")
    rev = f"git {d.get('git')}"
    if files is not None:  # judged from the recorded list, by the harness's current rule
        code = h.code_changes(files)
        rev = f"git {str(d.get('git')).removesuffix('+dirty')}"
        if code:
            rev += f"+dirty ({', '.join(code)})"
        else:
            rev += " (tree clean" + (", apart from docs and results" if files else "") + ")"
    return f"_Run {d.get('date')}, {rev}, `{d.get('command')}`._"


def section(name: str) -> str | None:
    """The generated text of ``<!-- table:NAME -->`` in docs/BENCHMARKS.md, or None."""
    if name == "k6_ramp":
        runs = k6_runs()
        return k6(runs) if runs else None
    d = load(name)
    if d is None:
        return None
    if name.startswith("k6_deploy"):
        body = k6_deploy(d, beside=name == "k6_deploy_ramp")  # the earlier runs: no repeat
    elif name == "limits":
        body = limits(d)
    elif name.startswith("lifecycle"):
        body = lifecycle(d)
    elif name == "fanout":
        body = fanout(d)
    elif name == "jwt_verify":
        body = jwt(d)
    elif name == "sse":
        body = sse(d)
    elif name == "peers":
        body = peers(d)
    elif name == "connections_storm":
        _holds, storms = connections(d)
        body = f"Connect storm, {d['config']['storm']:,} clients against one process:\n\n{storms}"
    elif name == "cluster":
        body = cluster(d)
    elif name.startswith("compression"):
        body = compression(d)
    elif name == "asgi":
        body = asgi(d)
    elif name == "connections":
        holds, storms = connections(d)
        cfg = d["config"]
        body = (
            f"{holds}\n\nConnect storm, {cfg['storm']:,} clients against one process"
            f" ({cfg.get('runs', 3)} runs):\n\n{storms}"
        )
        multi = connections_multi(d)
        if multi:
            body += "\n\nMulti-process holds, per process (one run each):\n\n" + multi
    else:
        return None
    return caption(d) + "\n\n" + body


def write_doc(path: Path) -> list[str]:
    """Replace every ``<!-- table:NAME -->`` ... ``<!-- /table:NAME -->`` block in ``path``
    whose results file exists; returns the names replaced."""
    text = path.read_text()
    done = []
    for match in re.finditer(r"<!-- table:([\w]+) -->", text):
        name = match.group(1)
        content = section(name)
        if content is None:
            continue
        begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
        i, j = text.index(begin), text.index(end)
        text = text[: i + len(begin)] + "\n" + content + "\n" + text[j:]
        done.append(name)
    path.write_text(text)
    return done


NAMES = [
    "compression",
    "compression_burst",
    "asgi",
    "limits",
    "lifecycle",
    "lifecycle_10000",
    "fanout",
    "connections",
    "peers",
    "connections_storm",
    "cluster",
    "jwt_verify",
    "k6_ramp",
    "sse",
    "k6_deploy_ramp",
    "k6_deploy_ramp_run2",
    "k6_deploy_ramp_contended",
    "lifecycle_deploy",
    "lifecycle_redis",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches._report", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"default: {' '.join(NAMES)}")
    parser.add_argument(
        "--write",
        type=Path,
        metavar="DOC",
        help="regenerate the tables between the markers of DOC (docs/BENCHMARKS.md) instead",
    )
    args = parser.parse_args(argv)
    if args.write:
        done = write_doc(args.write)
        print(f"{args.write}: regenerated {', '.join(done) or 'nothing'}")
        return 0
    for name in args.names or NAMES:
        content = section(name)
        if content is not None:
            print(f"\n### {name}\n\n{content}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
