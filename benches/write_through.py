"""What ``PYGW_SESSION_WRITE_THROUGH`` costs: session updates per second with write-behind (the
default) and with write-through, in the same run, against one redis-server.

    python -m benches write_through [--users U] [--updates N] [--concurrency C] [--rounds R]
                                    [--json PATH]

Per round and mode, a fresh gateway (core 0, with the redis-server) and U fresh users; then
U x N ``POST /sessions/update/{sid}`` (``{"data":{"k<i>":<i>}}``), C in flight over keep-alive
connections (benches/_client.py, one asyncio process on core 1). The modes alternate within a
round, so both see the same machine; the table gives each mode's median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from benches import _client as c
from benches import _harness as h

MODES = {"write-behind": "false", "write-through": "true"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benches write_through")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--updates", type=int, default=100, help="updates per user")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def update_requests(
    creds: list[dict[str, str]], updates: int
) -> list[tuple[str, str, Any, dict[str, str]]]:
    return [
        (
            "POST",
            f"/sessions/update/{cred['session_id']}",
            {"data": {f"k{i}": i}},
            {"Authorization": f"Bearer {cred['token']}"},
        )
        for i in range(updates)
        for cred in creds
    ]


def one_mode(redis_url: str, mode: str, args: argparse.Namespace, tag: str) -> dict[str, float]:
    gw = h.start_gateway(
        redis_url=redis_url, env={"PYGW_SESSION_WRITE_THROUGH": MODES[mode]}, name=tag
    )
    try:
        creds, _reg, _login = c.create_accounts(gw.port, args.users, f"{tag}_")
        requests = update_requests(creds, args.updates)
        with h.pinned(h.CLIENT_CPUS):
            phase = asyncio.run(c.run_phase(mode, "127.0.0.1", gw.port, requests, args.concurrency))
        return phase.summary()
    finally:
        gw.stop()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with h.pinned(h.GATEWAY_CPUS):
        server = h.RedisServer()
    try:
        for r in range(args.rounds):
            for mode in MODES:
                result = one_mode(server.url, mode, args, f"wt{r}{mode[6]}")
                runs[mode].append(result)
                print(
                    f"round {r + 1} {mode}: {result['throughput_per_s']:.0f} updates/s, "
                    f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                    f"ok {result['ok']}/{result['requests']}",
                    flush=True,
                )
    finally:
        server.close()
    summary = {
        mode: {
            key: statistics.median(run[key] for run in results)
            for key in ("throughput_per_s", "p50_ms", "p99_ms", "success_rate")
        }
        for mode, results in runs.items()
    }
    rows = [
        [
            mode,
            f"{s['throughput_per_s']:.0f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['success_rate']:.3f}",
        ]
        for mode, s in summary.items()
    ]
    print(h.table(["mode", "updates/s", "p50 ms", "p99 ms", "ok"], rows))
    params = {k: v for k, v in vars(args).items() if k != "json"}
    h.write_results(
        "write_through", {"params": params, "runs": runs, "median": summary}, args.json, argv=argv
    )
    return 0
