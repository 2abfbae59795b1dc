"""Measurements shared by several benchmarks, each returning a flat dict of numbers per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benches import _harness as h

PING = '{"type":"ping","id":{id}}'
UPDATE_API_KEY = '{"type":"update_api_key","key":"k{id}","id":{id}}'
ECHO = '{"type":"echo","id":{id}}'


def ws_url(port: int, creds: bool = True) -> str:
    base = f"ws://127.0.0.1:{port}/ws/connect"
    return base + "?session_id={sid}&token={token}" if creds else base


def protocol_args(protocol: str) -> list[str]:
    """The load generator's ``--protocol`` option (nothing for pygw's own, the default)."""
    return [] if protocol == "pygw" else ["--protocol", protocol]


def common(r: dict[str, Any]) -> dict[str, float]:
    """The CPU figures of a :func:`benches._harness.loadgen` report; ``cpu_pct.<name>`` for
    each server process group it sampled."""
    by_process = r.get("server_cpu_pct_by_process", {})
    return {
        "server_cpu_pct": r.get("server_cpu_pct", 0.0),
        "client_cpu_pct": r.get("generator_during_run", {}).get("cpu_pct", 0.0),
        "foreign_cpu_pct_core0": r.get("foreign_cpu_pct_core0", 0.0),
        **{f"cpu_pct.{name}": pct for name, pct in by_process.items()},
    }


def ws_rtt(
    port: int,
    pids: list[int],
    *,
    frame: str,
    expect: str,
    creds: Path | None,
    conns: int = 100,
    depth: int = 2,
    duration: float = 4.0,
    warmup: float = 1.0,
    extra: list[str] | None = None,
    url: str | None = None,
    protocol: str = "pygw",
    groups: dict[str, list[int]] | None = None,
) -> dict[str, float]:
    """``ws-rtt`` against ``url`` (default: pygw's ``/ws/connect`` on ``port``), speaking
    ``protocol`` (``pygw``, ``socketio``, ``centrifuge``: see ``pygw-loadgen --help``);
    ``groups``: server processes by name, for per-process CPU (:func:`common`)."""
    url = url or ws_url(port, creds is not None)
    args = ["--url", url, "--conns", str(conns), "--depth", str(depth)]
    args += protocol_args(protocol)
    args += ["--duration", str(duration), "--warmup", str(warmup), "--frame", frame]
    args += ["--expect", expect, "--connect-concurrency", "500", *(extra or [])]
    if creds is not None:
        args += ["--creds", str(creds)]
    timeout = duration + warmup + 120
    r = h.loadgen(
        "ws-rtt", args, server_pids=pids, server_groups=groups, warmup=warmup, timeout=timeout
    )
    lat = r["latency"]
    rts = r["round_trips"]
    errors = r["errors"]
    conn = r["conns"]
    return {
        "round_trips_per_s": r["round_trips_per_s"],
        "round_trips": rts,
        "avg_ms": lat["avg_us"] / 1000,
        "p50_ms": lat["p50_us"] / 1000,
        "p99_ms": lat["p99_us"] / 1000,
        "errors": errors,
        "success_rate": rts / (rts + errors) if rts + errors else 0.0,
        "connected": conn["connected"],
        "connect_wall_s": conn["connect_wall_s"],
        "connect_p50_ms": conn["connect_latency"]["p50_us"] / 1000,
        "connect_p99_ms": conn["connect_latency"]["p99_us"] / 1000,
        **common(r),
    }


def http_load(
    url: str,
    pids: list[int],
    *,
    conns: int = 50,
    duration: float = 4.0,
    requests: int | None = None,
    body: str | None = None,
    headers: list[str] | None = None,
    creds: Path | None = None,
    warmup: float = 0.0,
    groups: dict[str, list[int]] | None = None,
) -> dict[str, float]:
    args = ["--url", url, "--conns", str(conns), "--connect-concurrency", "500"]
    if requests is not None:
        args += ["--requests", str(requests), "--duration", "600"]
    else:
        args += ["--duration", str(duration), "--warmup", str(warmup)]
    if body is not None:
        args += ["--body", body, "--header", "Content-Type: application/json"]
    for hd in headers or []:
        args += ["--header", hd]
    if creds is not None:
        args += ["--creds", str(creds)]
    r = h.loadgen("http", args, server_pids=pids, server_groups=groups, timeout=700)
    lat = r["latency"]
    n = r["requests"]
    ok = r["status_classes"]["2xx"]
    return {
        "requests_per_s": r["requests_per_s"],
        "requests": n,
        "avg_ms": lat["avg_us"] / 1000,
        "p50_ms": lat["p50_us"] / 1000,
        "p99_ms": lat["p99_us"] / 1000,
        "success_rate": ok / n if n else 0.0,
        "errors": r["errors"] + (n - ok),
        "wall_s": r["measure_s"],
        **common(r),
    }


def fanout(
    sub_urls: list[str],
    pids: list[int],
    *,
    subscribers: int,
    messages: int,
    creds: Path | None,
    via: str = "ws",
    pub_url: str | None = None,
    window: int = 64,
    rate: float = 0.0,
    latency_sample: int = 1,
    protocol: str = "pygw",
    connect_timeout: float | None = None,
) -> dict[str, float]:
    args = ["--url", sub_urls[0], "--subscribers", str(subscribers), "--messages", str(messages)]
    args += protocol_args(protocol)
    if connect_timeout is not None:
        args += ["--connect-timeout", str(connect_timeout)]
    args += ["--connect-concurrency", "1000", "--window", str(window), "--via", via]
    args += ["--timeout", "120", "--latency-sample", str(latency_sample)]
    if len(sub_urls) > 1:
        args += ["--sub-urls", ",".join(sub_urls)]
    if creds is not None:
        args += ["--creds", str(creds)]
    if pub_url is not None:
        args += ["--pub-url", pub_url]
    if via == "http":
        args += ["--api-key", h.API_KEY]
    if rate:
        args += ["--rate", str(rate)]
    if subscribers > 20000:
        args += ["--source-ips", h.SOURCE_IPS]
    r = h.loadgen("fanout", args, server_pids=pids, timeout=300)
    d = r["deliveries"]
    lat = r["latency"]
    return {
        "deliveries_per_s": d["per_s"],
        "deliveries": d["unique"],
        "expected": d["expected"],
        "lost": d["lost"],
        "duplicates": d["duplicates"],
        "reordered": d.get("reordered", 0),
        "p50_ms": lat["p50_us"] / 1000,
        "p99_ms": lat["p99_us"] / 1000,
        "publishes_per_s": r["publisher"]["publishes_per_s"],
        "subscribers_ready": r["subscribers"]["ready"],
        "setup_wall_s": r["subscribers"]["setup_wall_s"],
        "errors": r["errors"],
        "timed_out": 1.0 if r.get("timed_out") else 0.0,
        **common(r),
    }


def hold(
    url: str,
    pid: int,
    *,
    conns: int,
    duration: float,
    creds: Path | None,
    concurrency: int = 1000,
    protocol: str = "pygw",
) -> dict[str, float]:
    args = ["--url", url, "--conns", str(conns), "--duration", str(duration), "--pid", str(pid)]
    args += protocol_args(protocol)
    args += ["--connect-concurrency", str(concurrency), "--connect-timeout", "30"]
    args += ["--source-ips", h.SOURCE_IPS]
    if creds is not None:
        args += ["--creds", str(creds)]
    before = h.listen_drops()
    r = h.loadgen("hold", args, timeout=duration + 300)
    after = h.listen_drops()
    out = flatten_hold(r)
    out["listen_overflows"] = after["ListenOverflows"] - before["ListenOverflows"]
    return out


def flatten_hold(r: dict[str, Any]) -> dict[str, float]:
    storm = r["storm"]
    lat = storm.get("connect_latency") or {}
    server = r.get("server", {})
    out = {
        "connected": r["conns"]["connected"],
        "still_open": r["conns"]["still_open"],
        "failed": r["conns"]["failed"],
        "storm_s": storm["wall_s"],
        "connects_per_s": storm.get("connects_per_s", 0.0),
        "connect_p50_ms": lat.get("p50_us", 0.0) / 1000,
        "connect_p95_ms": lat.get("p95_us", 0.0) / 1000,
        "connect_p99_ms": lat.get("p99_us", 0.0) / 1000,
        "client_cpu_pct_storm": r.get("generator_during_storm", {}).get("cpu_pct", 0.0),
        "client_cpu_pct_hold": r.get("generator_during_hold", {}).get("cpu_pct", 0.0),
        "hold_s": r.get("hold_s", 0.0),
    }
    if "rss_delta_per_conn_bytes" in server:
        out["rss_per_conn_bytes"] = server["rss_delta_per_conn_bytes"]
        out["idle_cpu_pct"] = server["idle_cpu_pct"]
        out["storm_cpu_s"] = server["storm_cpu_s"]
        out["rss_before_mib"] = server["before"]["rss_bytes"] / 2**20
        out["rss_after_storm_mib"] = server["after_storm"]["rss_bytes"] / 2**20
        out["rss_end_mib"] = server["end"]["rss_bytes"] / 2**20
    return out
