"""cProfile of an in-process gateway under ``pygw-loadgen``: where its Python time goes.

    python -m benches profile update_api_key [--seconds 4] [--top 30]
    python -m benches profile http_update
    python -m benches profile storm [--conns 10000]

One gateway (memory backend, rate limits off, fast argon2) runs in this process on core 0 with
cProfile enabled while the load generator runs on core 1:

- ``update_api_key``: 100 logged-in users, 2 frames in flight each (``ws-rtt``), as ``limits``;
- ``http_update``: 50 connections of ``POST /sessions/update/{sid}`` with a small patch;
- ``storm``: N JWT WebSockets connecting at once (``hold``, 1,000 connects in flight).

Prints the load generator's figures (cProfile slows the gateway: they are lower than the
benchmarks', and only the shares matter) and the functions by own time. A profile, not a
benchmark: nothing is written to ``benches/results``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benches import _client as c
from benches import _harness as h

PORT = 18_996


def _env() -> None:
    os.environ["SECRET_KEY"] = h.TEST_SECRET
    os.environ["LOGGING_LEVEL"] = "WARNING"
    os.environ.update(h.RATE_LIMITS_OFF)
    os.environ.update(h.FAST_ARGON2)


def _loadgen(what: str, port: int, creds: Path, seconds: float, conns: int) -> list[str]:
    ws = f"ws://127.0.0.1:{port}/ws/connect?session_id={{sid}}&token={{token}}"
    run = ["--duration", str(seconds + 2), "--warmup", "1", "--creds", str(creds)]
    if what == "update_api_key":
        frame = '{"type":"update_api_key","key":"k{id}","id":{id}}'
        rtt = ["ws-rtt", "--url", ws, "--conns", "100", "--depth", "2", *run]
        return [*rtt, "--frame", frame, "--expect", "ack"]
    if what == "http_update":
        url = f"http://127.0.0.1:{port}/sessions/update/{{sid}}"
        return [
            "http",
            "--url",
            url,
            "--conns",
            "50",
            "--body",
            '{"data":{"k":{id}}}',
            "--header",
            "Content-Type: application/json",
            "--header",
            "Authorization: Bearer {token}",
            *run,
        ]
    args = ["hold", "--url", ws, "--conns", str(conns), "--duration", "2", "--creds", str(creds)]
    return [*args, "--connect-concurrency", "1000", "--source-ips", h.SOURCE_IPS]


async def _profile(
    what: str, seconds: float, conns: int
) -> tuple[dict[str, Any], cProfile.Profile]:
    from pygw.config import Settings
    from pygw.gateway import Gateway

    tmp = Path(tempfile.mkdtemp(prefix="pygw-profile-"))
    gw = Gateway(Settings.from_env(port=PORT))
    port = await gw.start(host="127.0.0.1", port=PORT)
    try:
        if what == "storm":
            creds = h.mint_creds(tmp / "creds.jsonl", conns, prefix="pf")
        else:
            accounts, _, _ = await asyncio.to_thread(c.create_accounts, port, 100, "pf")
            creds = c.write_creds(tmp / "creds.jsonl", accounts)
        args = _loadgen(what, port, creds, seconds, conns)
        prof = cProfile.Profile()
        proc = await asyncio.create_subprocess_exec(
            *h.CLIENT_TASKSET,
            str(h.LOADGEN),
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        if what == "storm":
            prof.enable()
            t0 = time.process_time()
            while gw.hub.connection_count < conns and proc.returncode is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polling the count: no event to wait on
            prof.disable()
            cpu = time.process_time() - t0
            opened = gw.hub.connection_count
        else:
            await asyncio.sleep(1.5)  # connected and warm
            prof.enable()
            await asyncio.sleep(seconds)
            prof.disable()
            cpu, opened = 0.0, 0
        out, _ = await proc.communicate()
        report = {k: v for k, v in json.loads(out).items() if not isinstance(v, (dict, list))}
        if cpu:
            report["storm_cpu_s_profiled"] = round(cpu, 3)
            report["connections"] = opened
        return report, prof
    finally:
        await gw.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches profile", description=__doc__)
    parser.add_argument("what", choices=["update_api_key", "http_update", "storm"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--conns", type=int, default=10_000, help="storm: connections")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, {0})
    _env()
    report, prof = asyncio.run(_profile(args.what, args.seconds, args.conns))
    print(json.dumps(report))
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return 0
