"""Redis Cluster costs: WAIT on acknowledged writes, and what a user push costs a node that
does not hold the user.

    python -m benches cluster [--runs R] [--sessions N] [--pushes P] [--json PATH]

A Redis Cluster of 3 primaries + 3 replicas runs on core 0, the measuring client on core 1.

- ``wait``: pygw's cluster storage (``RedisStorage(cluster=True)``) with ``wait_replicas`` 1
  (the default: a write counts once a replica confirmed it, ``WAIT 1``) and 0 (the primary's
  acknowledgement). Measured: a synchronous write (``create_session``, as at login: SET +
  indexes in two slots, one round trip per node) one after the other, its latency; and the
  write-behind flush of N sessions with one pending update each (MERGE scripts, one pipeline
  per primary, plus the WAITs), its duration. R runs each, alternating.
- ``push``: one gateway on the cluster with no connection at all; P pushes to distinct users
  (none connected) published through :class:`pygw.Publisher` (100 in flight). Every node
  subscribes to every user-shard channel, so each push reaches this gateway, which hands it
  to a uWS topic nobody is subscribed to. Measured: the gateway's CPU time per push (minus its
  idle CPU rate, sampled just before), i.e. what each node of a deployment pays for a push to a
  user it does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from benches import _harness as h
from pygw import Publisher
from pygw.core.timeutil import now_iso
from pygw.store.base import SessionRecord
from pygw.store.redis import RedisStorage

IDLE_S = 3.0
"""Seconds the idle gateway's CPU is sampled before the pushes (keep-alive timer, heartbeat)."""


def _session(user: str) -> SessionRecord:
    now = now_iso()
    return SessionRecord(uuid.uuid4().hex, user, None, {"conversation": []}, now, now)


async def _wait_run(url: str, wait_replicas: int, sessions: int) -> dict[str, float]:
    node = RedisStorage(
        url, session_ttl=600, batch_interval_ms=3_600_000, cluster=True, wait_replicas=wait_replicas
    )
    await node.start()
    try:
        created = [_session(f"u{i % 500}") for i in range(sessions)]
        lat = []
        for s in created:
            t = time.perf_counter()
            await node.create_session(s)
            lat.append(time.perf_counter() - t)
        for s in created:
            await node.update_session(s.session_id, data={"k": 1}, returning=False)
        t = time.perf_counter()
        await node.flush()
        flush_s = time.perf_counter() - t
        assert node.pending_writes == 0
    finally:
        await node.close()
    lat.sort()
    return {
        "create_p50_us": statistics.median(lat) * 1e6,
        "create_p99_us": lat[int(0.99 * (len(lat) - 1))] * 1e6,
        "creates_per_s": len(lat) / sum(lat),
        "flush_ms": flush_s * 1000,
        "flush_us_per_session": flush_s * 1e6 / sessions,
    }


async def _pushes(url: str, n: int, in_flight: int = 100) -> float:
    async with Publisher(url, cluster=True) as pub:
        started = time.perf_counter()
        for i in range(0, n, in_flight):
            await asyncio.gather(
                *(pub.push(f"absent-{j}", {"n": j}) for j in range(i, min(n, i + in_flight)))
            )
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches cluster", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--pushes", type=int, default=50_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    runs: dict[str, list[dict[str, float]]] = {"wait/1": [], "wait/0": []}
    push_runs: list[dict[str, float]] = []
    with h.redis_cluster() as cluster:
        for i in range(args.runs):
            for wait in (1, 0):
                print(f"[run {i + 1}/{args.runs}] writes, wait_replicas={wait}", flush=True)
                h.wait_quiet()
                cluster.flushall()
                runs[f"wait/{wait}"].append(
                    asyncio.run(_wait_run(cluster.url, wait, args.sessions))
                )
        cluster.flushall()
        gw = h.start_gateway(
            redis_url=cluster.url, env={"PYGW_REDIS_CLUSTER": "true"}, name="cluster-push"
        )
        try:
            pid = h.gateway_pid(gw)
            time.sleep(1.0)
            for i in range(args.runs):
                print(f"[run {i + 1}/{args.runs}] {args.pushes:,} pushes", flush=True)
                h.wait_quiet()
                idle0 = h.cpu_seconds(pid)
                time.sleep(IDLE_S)  # the gateway's own background work, subtracted below
                idle = (h.cpu_seconds(pid) - idle0) / IDLE_S
                cpu0, t0 = h.cpu_seconds(pid), time.monotonic()
                wall = asyncio.run(_pushes(cluster.url, args.pushes))
                time.sleep(0.5)  # the last pushes are handled
                cpu = h.cpu_seconds(pid) - cpu0 - idle * (time.monotonic() - t0)
                push_runs.append(
                    {
                        "pushes_per_s": args.pushes / wall,
                        "gateway_cpu_s": cpu,
                        "gateway_us_per_push": cpu * 1e6 / args.pushes,
                    }
                )
        finally:
            gw.stop()
    results: dict[str, Any] = {
        name: {k: h.summarize([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()
    }
    results["push"] = {k: h.summarize([r[k] for r in push_runs]) for k in push_runs[0]}
    w1, w0 = results["wait/1"], results["wait/0"]
    print(
        h.table(
            ["writes", "create p50 µs", "create p99 µs", "creates/s", "flush ms", "µs/session"],
            [
                [
                    f"WAIT 1 replica ({label})" if wait else "primary ack only",
                    h.fmt_range(r["create_p50_us"]),
                    h.fmt_range(r["create_p99_us"]),
                    h.fmt_range(r["creates_per_s"]),
                    h.fmt_range(r["flush_ms"], 1),
                    h.fmt_range(r["flush_us_per_session"], 1),
                ]
                for wait, label, r in ((1, "default", w1), (0, "", w0))
            ],
        )
    )
    p = results["push"]
    print(
        f"push to an absent user: {h.fmt_range(p['gateway_us_per_push'], 1)} µs of gateway CPU,"
        f" {h.fmt_range(p['pushes_per_s'])} pushes/s published"
    )
    h.write_results(
        "cluster",
        {
            "config": {
                "runs": args.runs,
                "sessions": args.sessions,
                "pushes": args.pushes,
                "cluster": "3 primaries + 3 replicas",
            },
            "results": results,
        },
        args.json,
        argv=argv,
        bench="cluster",
    )
    return 0
