"""pygw against the gateways users would pick instead, measured from outside in the same run.

    python -m benches peers [--runs R] [--sizes 1000,10000] [--servers raw,pygw,socketio,centrifuge]
                            [--skip fanout,http,paced,rtt,idle,redis] [--hold S] [--raw-hold S]
                            [--conns N] [--tries N] [--json PATH]

The peers are small reference servers in ``benches/peers/`` built by ``make peers`` (this
command runs it when they are missing): **Socket.IO 4.8** on Node (``socketio/server.js``,
npm; ``@socket.io/redis-adapter`` for two nodes) and a Go server on the **Centrifuge** library
(``centrifuge/main.go``, Debian's ``golang-github-centrifugal-centrifuge-dev``; Redis broker for
two nodes). Both authenticate each connection with an HS256 JWT (the tokens pygw gets), let
clients subscribe and publish, and publish from an HTTP endpoint; ``pygw-loadgen --protocol``
speaks their protocols. ``raw`` is the raw socketify server (no gateway logic, no auth): the
ceiling of pygw's transport.

Subscribers get 30 s to connect and subscribe (set-up is not measured). Each run records how
much of core 0 other processes used (``foreign_cpu_pct_core0``); ``--tries 2`` retries runs
where that passed 10% (during the first 9 minutes only, to stay within 15).

Every server runs on core 0 (one core each: Go sees one CPU, Node's event loop is one thread),
the load generator on core 1, over 127.0.0.1. Each repetition runs every measure for raw, pygw,
socketio and centrifuge back to back (interleaved); figures are the median of ``--runs`` (3):

- ``fanout``: one channel, 1k subscribers x 1,000 messages and 10k x 100 (100-byte payload),
  published over one WebSocket with 64 unacknowledged (burst): deliveries/s, latency;
- ``http``: 1k subscribers x 200 messages published by ``POST /api/publish`` (64 in flight);
- ``paced``: 10k subscribers, 5 messages/s for 2 s (50k deliveries/s): latency and CPU at a
  light load;
- ``rtt``: 100 connections x 2 requests in flight for 3 s (after 1 s of warm-up): pygw's
  ``ping`` command, a Socket.IO ``ping`` event with an ack, Centrifuge's PING command (each
  server's cheapest request/reply; raw: an echo);
- ``idle``: a fresh server takes a connect storm of ``--conns`` (10k) JWT-authenticated
  WebSockets (1,000 connects in flight), then holds them idle ``--hold`` s (25 = every server's
  keep-alive interval, so the window holds one keep-alive round per connection; raw, which
  sends no keep-alive, 5 s): RSS per
  connection after the storm and after the hold, idle CPU, storm time, connect latency;
- ``redis``: two nodes of each server and a redis-server, all on core 0, 10k subscribers
  split over both nodes, the publisher on the first (100 messages, burst).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benches import _harness as h
from benches import _measure as m

PEERS_DIR = h.ROOT / "benches" / "peers"
SOCKETIO_SERVER = PEERS_DIR / "socketio" / "server.js"
SOCKETIO_MODULES = PEERS_DIR / "socketio" / "node_modules"
CENTRIFUGE_BIN = h.ROOT / "target" / "peers" / "centrifuge-peer"
SERVERS = ("raw", "pygw", "socketio", "centrifuge")
MEASURES = ("fanout", "http", "paced", "rtt", "idle", "redis")
MESSAGES = {1000: 1000, 10_000: 100}
"""Messages per burst run by subscriber count (the ``fanout`` benchmark sends 200 at 10k; 100
keep the peers' 10k runs, at ~150k deliveries/s, under 10 s each)."""
HTTP_MESSAGES = 200
PACED_RATE = 5
PACED_MESSAGES = 10
RTT_CONNS, RTT_DEPTH, RTT_SECONDS = 100, 2, 3.0
QUIET_WAIT = 1.0
"""Seconds each run waits at most for a quiet machine (the harness default is 30)."""
RETRY_BUDGET = 540.0
"""Contended runs are retried (``--tries``) only during the first this many seconds, so that a
busy machine cannot push the whole run past 15 minutes."""
CONNECT_TIMEOUT = 30.0
"""Per subscriber, TCP connect to subscribed: set-up is not measured, and Socket.IO accepts
~1k JWT connections/s on one core (a 10k set-up takes ~10 s)."""


@dataclass
class Server:
    """One running server (or two nodes of it) as the load generator sees it."""

    name: str
    protocol: str
    ws_urls: list[str]
    pub_http: str
    pids: list[int]
    creds: bool = True
    stop: list[Callable[[], None]] = field(default_factory=list)


def ensure_peers() -> None:
    """Build the peers (``make peers``) if the Go binary or the npm packages are missing or older
    than their sources."""
    sources = [PEERS_DIR / "centrifuge" / "main.go", PEERS_DIR / "socketio" / "package-lock.json"]
    built = [CENTRIFUGE_BIN, SOCKETIO_MODULES / ".installed"]
    if all(b.exists() for b in built) and min(b.stat().st_mtime for b in built) >= max(
        s.stat().st_mtime for s in sources
    ):
        return
    print("building the peers (make peers)...", flush=True)
    subprocess.run(["make", "-s", "peers"], cwd=h.ROOT, check=True, timeout=1200)


def _peer_process(name: str, port: int, redis_url: str | None) -> h.PinnedServer:
    log = h.LOG_DIR / f"peer-{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    if name == "socketio":
        node = shutil.which("node") or "node"
        cmd = [node, str(SOCKETIO_SERVER), "--port", str(port), "--secret", h.TEST_SECRET]
        cmd += ["--api-key", h.API_KEY] + (["--redis-url", redis_url] if redis_url else [])
    else:
        cmd = [str(CENTRIFUGE_BIN), "-port", str(port), "-secret", h.TEST_SECRET]
        cmd += ["-api-key", h.API_KEY]
        if redis_url:  # redis://127.0.0.1:PORT/0 -> 127.0.0.1:PORT
            cmd += ["-redis", redis_url.split("//", 1)[1].split("/", 1)[0]]
    return h.PinnedServer(cmd, port, name=name, log_path=log)


def ws_url(name: str, port: int) -> str:
    if name == "socketio":
        return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    if name == "centrifuge":
        return f"ws://127.0.0.1:{port}/connection/websocket"
    return m.ws_url(port, name != "raw")


def start(name: str, *, nodes: int = 1, redis_url: str | None = None) -> Server:
    """Start ``nodes`` processes of server ``name`` (more than one share ``redis_url``)."""
    srv = Server(
        name,
        "pygw" if name in ("raw", "pygw") else name,
        [],
        "",
        [],
        creds=name != "raw",
    )
    try:
        for i in range(nodes):
            if name == "pygw":
                gw = h.start_gateway(redis_url=redis_url, name=f"peers-{i}")
                srv.stop.append(gw.stop)
                port, pid = gw.port, h.gateway_pid(gw)
            else:
                proc: h.PinnedServer = (
                    h.RawServer()
                    if name == "raw"
                    else _peer_process(name, h.free_port(), redis_url)
                )
                proc.start()
                srv.stop.append(proc.stop)
                port, pid = proc.port, proc.pid
            srv.ws_urls.append(ws_url(name, port))
            srv.pids.append(pid)
            if i == 0:
                srv.pub_http = f"http://127.0.0.1:{port}/api/publish"
    except BaseException:
        stop(srv)
        raise
    return srv


def stop(srv: Server) -> None:
    for fn in reversed(srv.stop):
        fn()
    srv.stop.clear()


@contextmanager
def running(names: list[str], **kw: Any) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for name in names:
            servers[name] = start(name, **kw)
        yield servers
    finally:
        for srv in servers.values():
            stop(srv)


# -- measures ---------------------------------------------------------------------------------
def fanout(srv: Server, creds: Path, n: int, **kw: Any) -> dict[str, float]:
    pids = srv.pids
    pub_url = srv.pub_http if kw.get("via") == "http" else srv.ws_urls[0]
    return m.fanout(
        srv.ws_urls,
        pids,
        subscribers=n,
        creds=creds if srv.creds else None,
        protocol=srv.protocol,
        pub_url=pub_url,
        connect_timeout=CONNECT_TIMEOUT,
        **kw,
    )


RTT_FRAMES = {
    # server: (request, pygw reply type); the peers' replies are matched by their ids
    "raw": (m.ECHO, "echo"),
    "pygw": (m.PING, "pong"),
    "socketio": ('42{id}["ping"]', "pong"),
    "centrifuge": ('{"id":{id},"method":7}', "pong"),
}


def rtt(srv: Server, creds: Path) -> dict[str, float]:
    frame, expect = RTT_FRAMES[srv.name]
    return m.ws_rtt(
        0,
        srv.pids,
        frame=frame,
        expect=expect,
        creds=creds if srv.creds else None,
        conns=RTT_CONNS,
        depth=RTT_DEPTH,
        duration=RTT_SECONDS,
        url=srv.ws_urls[0],
        protocol=srv.protocol,
    )


def idle(name: str, creds: Path, conns: int, hold: float) -> dict[str, float]:
    """A fresh server, a storm of ``conns`` connections, an idle hold (see the docstring)."""
    srv = start(name)
    try:
        time.sleep(0.5)  # finish starting
        r = m.hold(
            srv.ws_urls[0],
            srv.pids[0],
            conns=conns,
            duration=hold,
            creds=creds if srv.creds else None,
            protocol=srv.protocol,
        )
    finally:
        stop(srv)
    connected = r["connected"] or 1.0
    r["rss_end_per_conn_bytes"] = (r["rss_end_mib"] - r["rss_before_mib"]) * 2**20 / connected
    return r


def redis_fanout(names: list[str], creds: Path, n: int, record: Callable[..., None]) -> None:
    """Two nodes of each server and one redis-server, all on core 0 (see the docstring)."""
    with h.redis_server() as redis:
        assert redis.pid is not None
        with running(names, nodes=2, redis_url=redis.url) as servers:
            for name, srv in servers.items():
                pids = [*srv.pids, redis.pid]
                record(
                    f"redis/{n}/{name}",
                    lambda srv=srv, pids=pids: m.fanout(
                        srv.ws_urls,
                        pids,
                        subscribers=n,
                        messages=MESSAGES.get(n, 200),
                        creds=creds,
                        protocol=srv.protocol,
                        pub_url=srv.ws_urls[0],
                        connect_timeout=CONNECT_TIMEOUT,
                    ),
                )


def versions() -> dict[str, str]:
    """What the peers were built from (recorded in the results)."""

    def out(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return "?"
        return r.stdout.strip() or "?"

    def npm(pkg: str) -> str:
        path = SOCKETIO_MODULES / pkg / "package.json"
        if not path.exists():
            return "?"
        return str(__import__("json").loads(path.read_text()).get("version", "?"))

    deb = "golang-github-centrifugal-centrifuge-dev"
    return {
        "node": out([shutil.which("node") or "node", "--version"]),
        "socket.io": npm("socket.io"),
        "engine.io": npm("engine.io"),
        "@socket.io/redis-adapter": npm("@socket.io/redis-adapter"),
        "redis (node client)": npm("redis"),
        "jsonwebtoken": npm("jsonwebtoken"),
        "go": out(["go", "version"]),
        "centrifuge (Debian)": out(["dpkg-query", "-W", "-f", "${Version}", deb]),
        "golang-jwt (Debian)": out(
            ["dpkg-query", "-W", "-f", "${Version}", "golang-github-golang-jwt-jwt-dev"]
        ),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--skip", default="", help=f"measures to leave out: {','.join(MEASURES)}")
    parser.add_argument("--conns", type=int, default=10_000, help="idle: connections held")
    parser.add_argument("--hold", type=float, default=25.0, help="idle: seconds held")
    parser.add_argument("--raw-hold", type=float, default=5.0, help="idle: raw's hold (no pings)")
    parser.add_argument(
        "--tries", type=int, default=1, help="attempts of a run contended by other processes"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    names = [s for s in args.servers.split(",") if s]
    skip = {s for s in args.skip.split(",") if s}
    for bad in [n for n in names if n not in SERVERS] + [s for s in skip if s not in MEASURES]:
        parser.error(f"unknown server or measure {bad!r}")
    big, small = max(sizes), min(sizes)
    h.raise_nofile()
    h.ensure_loadgen()
    if any(n in ("socketio", "centrifuge") for n in names):
        ensure_peers()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    h.QUIET_MAX_WAIT = QUIET_WAIT
    tmp = Path(tempfile.mkdtemp(prefix="pygw-peers-"))
    creds = h.mint_creds(tmp / "creds.jsonl", max(big, args.conns) + 1, prefix="p")
    runs: dict[str, list[dict[str, float]]] = {}
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    run_no = [0]

    def record(key: str, fn: Callable[[], dict[str, float]]) -> None:
        print(f"[run {run_no[0]}/{args.runs}] {key}", flush=True)
        t0 = time.monotonic()
        tries = args.tries if time.monotonic() - t_start < RETRY_BUDGET else 1
        runs.setdefault(key, []).append(h.clean_run(fn, tries=tries))
        phase = key.split("/", 1)[0]
        timings[phase] = timings.get(phase, 0.0) + time.monotonic() - t0

    for rep in range(args.runs):
        run_no[0] = rep + 1
        if {"fanout", "http", "paced", "rtt"} - skip:
            with running(names) as servers:
                for n in sizes if "fanout" not in skip else []:
                    for name, srv in servers.items():
                        record(
                            f"fanout/{n}/{name}",
                            lambda srv=srv, n=n: fanout(
                                srv, creds, n, messages=MESSAGES.get(n, 200)
                            ),
                        )
                for name, srv in servers.items() if "http" not in skip else []:
                    record(
                        f"http/{small}/{name}",
                        lambda srv=srv: fanout(
                            srv, creds, small, messages=HTTP_MESSAGES, via="http"
                        ),
                    )
                for name, srv in servers.items() if "paced" not in skip else []:
                    record(
                        f"paced/{big}/{name}",
                        lambda srv=srv: fanout(
                            srv, creds, big, messages=PACED_MESSAGES, rate=PACED_RATE
                        ),
                    )
                for name, srv in servers.items() if "rtt" not in skip else []:
                    record(f"rtt/{RTT_CONNS}/{name}", lambda srv=srv: rtt(srv, creds))
        if "idle" not in skip:
            for name in names:
                hold = args.raw_hold if name == "raw" else args.hold
                record(
                    f"idle/{args.conns}/{name}",
                    lambda name=name, hold=hold: idle(name, creds, args.conns, hold),
                )
        peers_and_pygw = [n for n in names if n != "raw"]
        if "redis" not in skip and peers_and_pygw:
            redis_fanout(peers_and_pygw, creds, big, record)

    results = {
        key: {k: h.summarize([r.get(k) for r in rs if k in r]) for k in rs[0]}
        for key, rs in runs.items()
    }
    elapsed = time.monotonic() - t_start
    doc: dict[str, Any] = {
        "config": {
            "runs": args.runs,
            "sizes": sizes,
            "servers": names,
            "skipped": sorted(skip),
            "messages": MESSAGES,
            "http_messages": HTTP_MESSAGES,
            "payload_bytes": 100,
            "window": 64,
            "paced": {"rate": PACED_RATE, "messages": PACED_MESSAGES},
            "rtt": {"conns": RTT_CONNS, "depth": RTT_DEPTH, "seconds": RTT_SECONDS},
            "rtt_frames": {k: v[0] for k, v in RTT_FRAMES.items()},
            "idle": {"conns": args.conns, "hold_s": args.hold, "raw_hold_s": args.raw_hold},
            "tries": args.tries,
        },
        "versions": versions(),
        "elapsed_s": round(elapsed, 1),
        "phase_seconds": {k: round(v, 1) for k, v in timings.items()},
        "results": results,
    }
    from benches import _report

    print(_report.peers(doc))
    print(f"peers: {elapsed:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    h.write_results("peers", doc, args.json, argv=argv, bench="peers")
    return 0
