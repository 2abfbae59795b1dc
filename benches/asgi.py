"""The ASGI adapter (``pygw.asgi.create_app``) under granian and uvicorn beside ``pygw serve``
(the uWS transport): HTTP requests/s and WebSocket round trips/s, same run.

    python -m benches asgi [--runs R] [--duration S] [--servers uws,granian,uvicorn] [--json PATH]

Each server is one process (granian: one worker, its supervisor beside it; uvicorn: one
process) pinned to core 0 with the same settings (memory backend, rate limits off);
``pygw-loadgen`` on core 1 drives, alternating the servers run by run:

- ``GET /health`` over 50 keep-alive connections;
- ``ping`` -> ``pong`` WebSocket round trips, 100 connections x 2 in flight (tokens minted with
  the gateway's key, as in ``limits``).

Uvicorn runs its default WebSocket implementation (``websockets``) and HTTP parser (h11, or
httptools when installed); granian its defaults (``--loop auto``: asyncio without uvloop).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benches import _harness as h
from benches import _measure as m
from benches import _report

SERVERS = ("uws", "granian", "uvicorn")
ASGI_COMMANDS = {
    "granian": ["-m", "granian", "--interface", "asgi", "--factory", "--workers", "1"],
    "uvicorn": ["-m", "uvicorn", "--factory", "--no-access-log"],
}


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers 200 (the ASGI lifespan started the gateway)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy")
        time.sleep(0.1)


class Server:
    """One server under test: its port and the pids whose CPU is counted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.pids: list[int] = []
        self._stop: Any = None

    def start(self) -> Server:
        if self.name == "uws":
            gw = h.start_gateway(name="asgi-bench-uws")
            self.port, self.pids, self._stop = gw.port, [h.gateway_pid(gw)], gw.stop
            return self
        port = h.free_port()
        env = h.GatewayProcess(env=h.gateway_env()).environment()
        cmd = [sys.executable, *ASGI_COMMANDS[self.name], "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "pygw.asgi:create_app"]
        log = h.LOG_DIR / f"asgi-bench-{self.name}-{os.getpid()}.log"
        server = h.PinnedServer(cmd, port, name=self.name, log_path=log, env=env).start(60)
        # granian: the supervisor and its worker; both count.
        self.port, self.pids = port, [server.pid, *h.children_of(server.pid)]
        self._stop = server.stop
        wait_healthy(f"http://127.0.0.1:{port}/health")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches asgi", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = [
        s for s in args.servers.split(",") if s == "uws" or importlib.util.find_spec(s) is not None
    ]
    h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-asgi-"))
    creds = h.mint_creds(tmp / "users.jsonl", 100, prefix="a")
    dur = args.duration
    servers = {name: Server(name).start() for name in names}
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for i in range(args.runs):
            for name, s in servers.items():
                print(f"[run {i + 1}/{args.runs}] {name}", flush=True)
                url = f"http://127.0.0.1:{s.port}/health"

                def http(s: Server = s, url: str = url) -> dict[str, float]:
                    return m.http_load(url, s.pids, duration=dur, warmup=0.5)

                def ping(s: Server = s) -> dict[str, float]:
                    return m.ws_rtt(
                        s.port, s.pids, frame=m.PING, expect="pong", creds=creds, duration=dur
                    )

                runs.setdefault(f"{name}/http_health", []).append(h.clean_run(http))
                runs.setdefault(f"{name}/ws_ping", []).append(h.clean_run(ping))
    finally:
        for s in servers.values():
            s.stop()
    results = {
        name: {k: h.summarize([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()
    }
    print(h.table(*_report.asgi_rows(results)))
    h.write_results(
        "asgi",
        {
            "config": {"runs": args.runs, "duration_s": dur, "servers": names},
            "results": results,
        },
        args.json,
        argv=argv,
        bench="asgi",
    )
    return 0
