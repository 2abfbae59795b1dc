"""Idle WebSockets: memory per connection, idle CPU, and the connect storm.

    python -m benches connections [--sizes 10000,19000,50000,100000] [--hold S] [--raw-hold S]
                                  [--storm N] [--runs R] [--multi-above N] [--json PATH]

For each size, fresh servers (core 0) take a connect storm of N JWT-authenticated WebSockets
(``pygw-loadgen hold``, core 1, 1000 connects in flight in total), then hold them idle for
``--hold`` seconds (default 25 = one keep-alive ping interval, so the idle window holds one
full round of server pings, sent in 16 groups, and their pongs). The raw server (no gateway
logic, no pings) gets the same treatment in the same run (``--raw-hold``, default 10 s).

One process cannot hold more sockets than its RLIMIT_NOFILE allows, on either side, and this
sandbox caps it at 20,000 (a hard limit, even for root). So:

- sizes up to ``--multi-above`` (default: the limit minus 1,000; pygw itself refuses upgrades
  past the limit minus 512, ``FD_RESERVE``) run as **one process**: ``pygw serve`` (memory
  backend) and one ``pygw-loadgen hold`` (source addresses 127.0.0.1-16), which
  samples the server's VmRSS and CPU before, after the storm and at the end;
- larger sizes run as a **multi-process deployment**: a redis-server plus ``pygw serve --workers
  K --redis-url ...`` (a supervisor forking K workers that share the port with SO_REUSEPORT; K =
  ceil(N / 15,000), so each worker expects at most 15k connections, well under the limit even if
  the kernel spreads them unevenly), all on core 0; and L = ceil(N / 19,000) ``pygw-loadgen hold``
  processes started together on core 1, each with its own slice of the credentials (distinct
  users) and its own 127.0.0.x source-address range. The raw ceiling runs the same way: K
  ``raw_server.py`` processes listening on one port (SO_REUSEPORT is uSockets' default). This
  script finds the workers (the supervisor's children, from /proc) and samples every worker's
  VmRSS, PSS, CPU and open descriptors itself, before the storm, once every generator has
  reported the end of its storm, and ``--hold`` seconds later (the generators hold a few seconds
  longer, so every connection is still open at the last sample). Redis is sampled too.

RSS per connection = sum over the server processes of (RSS after the storm - RSS before) / N
connected: each process's base RSS is excluded (the totals are reported beside it). Idle CPU =
the servers' CPU seconds over the hold / hold wall time (the sum over workers: one core's %).
In the multi-process rows the connect latency p50 is the median of the generators' p50s and
p95/p99 the maximum of theirs (each generator holds an equal share, so the merged percentile
lies between their minimum and maximum).

Then the connect storm at ``--storm`` (20k, capped under the descriptor limit) clients against
one process: storm time and connect latency p50/p95/p99 (TCP connect to the welcome frame), R
runs each (alternating) for pygw on its memory backend, pygw on one redis-server, pygw on a
Redis Cluster of 3 primaries + 3 replicas (Redis on core 0 too; JWT verified per connection,
tokens all distinct, cache cold) and raw, and the kernel's ListenOverflows (SYNs dropped on a
full accept queue).

Tokens are minted with the gateway's key by pygw's own codec (``sid`` = the token's session, so
no session lookup; the same verification as a login-issued token). 100k only runs when the
machine has the memory for it (MemAvailable > 4 GiB, checked before each size).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benches import _harness as h
from benches import _measure as m

TARGET_RSS = 4096
TARGET_IDLE_CPU = 2.0
PER_WORKER = 15_000
"""Multi-process runs: at most this many connections expected per server process."""
PER_LOADGEN = 19_000
"""Multi-process runs: at most this many connections per load generator process."""
IPS_PER_LOADGEN = 8
HOLD_MARGIN = 8.0
"""Generators hold this much longer than the measured window (their storms end at different
moments; the window starts when the last one is done)."""
CONNECT_CONCURRENCY = 1000
GENERATOR_KEYS = (
    "conns",
    "storm",
    "hold_s",
    "errors",
    "connect_failures",
    "unexpected_closes",
    "server_pings_answered",
    "error_samples",
)
MIN_MEM_100K = 4 * 2**30


# -- multi-process runs -----------------------------------------------------------------------
def _sample(pids: list[int]) -> dict[str, Any]:
    t = time.monotonic()
    cpu = [h.cpu_seconds(p) for p in pids]
    return {
        "t": t,
        "cpu_s": cpu,
        "rss": [h.rss_bytes(p) for p in pids],
        "pss": [h.pss_bytes(p) for p in pids],
        "fds": [h.fd_count(p) for p in pids],
    }


def _wait_listening(port: int, n: int, parent: int | None, timeout: float = 90.0) -> list[int]:
    """Wait until ``n`` sockets listen on ``port`` (and, for a supervisor, it has ``n``
    children); returns the children's PIDs (empty without ``parent``)."""
    deadline = time.monotonic() + timeout
    kids: list[int] = []
    while time.monotonic() < deadline:
        kids = h.children_of(parent) if parent is not None else []
        if (parent is None or len(kids) == n) and h.listening_sockets(port) == n:
            return kids
        time.sleep(0.2)
    raise TimeoutError(f"{n} listeners on port {port} not up after {timeout}s (children {kids})")


class _Generator:
    """One ``pygw-loadgen hold`` process on the client core; its stderr is read line by line
    so the moment it reports the end of its storm is known."""

    def __init__(self, cmd: list[str]) -> None:
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.storm_done: float | None = None
        self.stderr: list[str] = []
        self.stdout = ""
        self._threads = [
            threading.Thread(target=self._err, daemon=True),
            threading.Thread(target=self._out, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.storm_done is None and "storm done" in line:
                self.storm_done = time.monotonic()
            self.stderr.append(line.rstrip())

    def _out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def finish(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        for t in self._threads:
            t.join(5)
        start = self.stdout.find("{")
        if self.proc.returncode != 0 or start < 0:
            tail = "\n".join(self.stderr[-15:])
            raise RuntimeError(f"pygw-loadgen hold exited {self.proc.returncode}:\n{tail}")
        report: dict[str, Any] = json.loads(self.stdout[start:])
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def fleet_hold(
    kind: str,
    n: int,
    *,
    hold: float,
    creds: list[str] | None,
    tmp: Path,
    name: str,
    per_worker: int = PER_WORKER,
    per_loadgen: int = PER_LOADGEN,
) -> tuple[dict[str, float], dict[str, Any]]:
    """One multi-process hold of ``n`` connections (see the module docstring). Returns the flat
    figures (same keys as :func:`benches._measure.hold`, plus totals) and the per-process
    details."""
    workers = math.ceil(n / per_worker)
    gens = math.ceil(n / per_loadgen)
    shares = [n // gens + (1 if i < n % gens else 0) for i in range(gens)]
    cc = math.ceil(CONNECT_CONCURRENCY / gens)
    with contextlib.ExitStack() as stack:
        aux: list[int] = []
        if kind == "pygw":
            redis = stack.enter_context(h.redis_server())
            assert redis.pid is not None
            aux = [redis.pid]
            gw = h.start_gateway(
                redis_url=redis.url, args=["--workers", str(workers)], name=f"{name}-{n}"
            )
            parent = h.gateway_pid(gw)
            stack.callback(_stop_supervisor, gw, parent)
            port = gw.port
            if workers == 1:  # no supervisor: the process is the worker
                _wait_listening(port, 1, None)
                pids = [parent]
            else:
                pids = _wait_listening(port, workers, parent)
        else:
            first = stack.enter_context(h.RawServer())
            port = first.port
            raws = [first] + [
                stack.enter_context(h.RawServer(port=port)) for _ in range(workers - 1)
            ]
            _wait_listening(port, workers, None)
            pids = [r.pid for r in raws]
        time.sleep(2.0)  # workers finish starting (Redis connections, first health checks)
        h.wait_quiet()
        url = m.ws_url(port, creds is not None)
        drops0 = h.listen_drops()["ListenOverflows"]
        before, aux0 = _sample(pids), _sample(aux)
        generators: list[_Generator] = []
        offset = 0
        for i, share in enumerate(shares):
            lo = 1 + IPS_PER_LOADGEN * i
            cmd = [*h.CLIENT_TASKSET, str(h.LOADGEN), "hold", "--url", url]
            cmd += ["--conns", str(share), "--duration", str(hold + HOLD_MARGIN)]
            cmd += ["--connect-concurrency", str(cc), "--connect-timeout", "30"]
            cmd += ["--source-ips", f"127.0.0.{lo}-127.0.0.{lo + IPS_PER_LOADGEN - 1}"]
            if creds is not None:
                path = tmp / f"fleet-{n}-{i}.jsonl"
                path.write_text("".join(creds[offset : offset + share]))
                cmd += ["--creds", str(path)]
            offset += share
            generators.append(_Generator(cmd))
        try:
            deadline = time.monotonic() + 60 + n / 1000
            while any(g.storm_done is None for g in generators):
                if time.monotonic() > deadline:
                    raise TimeoutError("connect storm did not finish")
                if any(g.proc.poll() is not None and g.storm_done is None for g in generators):
                    bad = next(g for g in generators if g.proc.poll() is not None)
                    raise RuntimeError("pygw-loadgen exited early:\n" + "\n".join(bad.stderr[-15:]))
                time.sleep(0.02)
            after, aux1 = _sample(pids), _sample(aux)
            drops1 = h.listen_drops()["ListenOverflows"]
            first_done = min(g.storm_done or 0.0 for g in generators)
            end_at = min(after["t"] + hold, first_done + hold + HOLD_MARGIN - 1.0)
            time.sleep(max(0.0, end_at - time.monotonic()))
            end, aux2 = _sample(pids), _sample(aux)
            reports = [g.finish(hold + HOLD_MARGIN + 120) for g in generators]
        finally:
            for g in generators:
                g.kill()
    t0 = min(g.launched for g in generators)
    storm_s = max(
        g.launched - t0 + r["storm"]["wall_s"] for g, r in zip(generators, reports, strict=True)
    )
    connected = sum(r["conns"]["connected"] for r in reports)
    window = end["t"] - after["t"]
    lat = [r["storm"].get("connect_latency") or {} for r in reports]
    client_cpu_storm = sum(r["generator_during_storm"]["cpu_s"] for r in reports)
    client_cpu_hold = sum(r["generator_during_hold"]["cpu_s"] for r in reports)
    rss_delta = sum(a - b for a, b in zip(after["rss"], before["rss"], strict=True))
    out: dict[str, float] = {
        "connected": connected,
        "still_open": sum(r["conns"]["still_open"] for r in reports),
        "failed": sum(r["conns"]["failed"] for r in reports),
        "storm_s": storm_s,
        "connects_per_s": connected / storm_s if storm_s else 0.0,
        "connect_p50_ms": statistics.median(x.get("p50_us", 0.0) for x in lat) / 1000,
        "connect_p95_ms": max(x.get("p95_us", 0.0) for x in lat) / 1000,
        "connect_p99_ms": max(x.get("p99_us", 0.0) for x in lat) / 1000,
        "client_cpu_pct_storm": 100 * client_cpu_storm / storm_s if storm_s else 0.0,
        "client_cpu_pct_hold": 100 * client_cpu_hold / window if window else 0.0,
        "hold_s": window,
        "rss_per_conn_bytes": rss_delta / connected if connected else 0.0,
        "idle_cpu_pct": 100 * (sum(end["cpu_s"]) - sum(after["cpu_s"])) / window,
        "storm_cpu_s": sum(after["cpu_s"]) - sum(before["cpu_s"]),
        "rss_before_mib": sum(before["rss"]) / 2**20,
        "rss_after_storm_mib": sum(after["rss"]) / 2**20,
        "rss_end_mib": sum(end["rss"]) / 2**20,
        "pss_before_mib": sum(before["pss"]) / 2**20,
        "pss_after_storm_mib": sum(after["pss"]) / 2**20,
        "listen_overflows": drops1 - drops0,
        "processes": len(pids),
        "generators": len(generators),
    }
    if aux:
        out["redis_rss_delta_mib"] = (aux1["rss"][0] - aux0["rss"][0]) / 2**20
        out["redis_rss_after_storm_mib"] = aux1["rss"][0] / 2**20
        out["redis_storm_cpu_s"] = aux1["cpu_s"][0] - aux0["cpu_s"][0]
        out["redis_idle_cpu_pct"] = 100 * (aux2["cpu_s"][0] - aux1["cpu_s"][0]) / window
    details = {
        "workers": len(pids),
        "generators": len(generators),
        "generator_conns": shares,
        "generator_connect_concurrency": cc,
        "per_process": [
            {
                "pid": pid,
                "conns_fds_delta": after["fds"][i] - before["fds"][i],
                "rss_before_mib": round(before["rss"][i] / 2**20, 1),
                "rss_after_storm_mib": round(after["rss"][i] / 2**20, 1),
                "rss_end_mib": round(end["rss"][i] / 2**20, 1),
                "pss_after_storm_mib": round(after["pss"][i] / 2**20, 1),
                "storm_cpu_s": round(after["cpu_s"][i] - before["cpu_s"][i], 2),
                "idle_cpu_s": round(end["cpu_s"][i] - after["cpu_s"][i], 3),
            }
            for i, pid in enumerate(pids)
        ],
        "storm_done_spread_s": round(max(g.storm_done or 0.0 for g in generators) - first_done, 3),
        "generator_reports": [{k: r.get(k) for k in GENERATOR_KEYS} for r in reports],
    }
    return out, details


def _stop_supervisor(gw: h.GatewayProcess, parent: int) -> None:
    """Stop the supervisor (it forwards SIGTERM to its workers) and make sure no worker it
    forked outlives it (they are ours too: killed by PID)."""
    kids = h.children_of(parent)
    gw.stop(timeout=30)
    deadline = time.monotonic() + 10
    while kids and time.monotonic() < deadline:
        kids = [k for k in kids if _alive(k)]
        time.sleep(0.1)
    for k in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(k, 9)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- the connect storm -----------------------------------------------------------------------------
STORM_KINDS = ("pygw", "pygw-redis", "pygw-cluster", "raw")
"""pygw on its memory backend, on one redis-server, on a Redis Cluster (3 primaries + 3
replicas); the raw server."""


def storm_once(kind: str, n: int, creds: Path) -> dict[str, float]:
    """One storm of ``n`` connects against a fresh server of ``kind`` (held 2 s)."""
    if kind == "raw":
        with h.RawServer() as raw:
            return m.hold(m.ws_url(raw.port, False), raw.pid, conns=n, duration=2, creds=None)
    with contextlib.ExitStack() as stack:
        url: str | None = None
        env: dict[str, str] = {}
        if kind == "pygw-redis":
            url = stack.enter_context(h.redis_server()).url
        elif kind == "pygw-cluster":
            url = stack.enter_context(h.redis_cluster()).url
            env = {"PYGW_REDIS_CLUSTER": "true"}
        gw = h.start_gateway(redis_url=url, env=env, name=f"storm-{kind}")
        stack.callback(gw.stop)
        time.sleep(1.0)  # the first heartbeat and flushes are done
        return m.hold(m.ws_url(gw.port), h.gateway_pid(gw), conns=n, duration=2, creds=creds)


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches connections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="10000,19000,50000,100000")
    parser.add_argument("--hold", type=float, default=25.0)
    parser.add_argument("--raw-hold", type=float, default=10.0)
    parser.add_argument("--storm", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--multi-above",
        type=int,
        default=0,
        help="sizes above this run multi-process (default: RLIMIT_NOFILE - 1000)",
    )
    parser.add_argument(
        "--per-worker", type=int, default=PER_WORKER, help="multi-process: conns per server"
    )
    parser.add_argument(
        "--per-loadgen", type=int, default=PER_LOADGEN, help="multi-process: conns per client"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    limit = h.raise_nofile()
    h.ensure_loadgen()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-conns-"))
    creds = h.mint_creds(tmp / "creds.jsonl", max([*sizes, args.storm]), prefix="c")
    cred_lines = creds.read_text().splitlines(keepends=True)
    results: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    skipped: list[str] = []
    t_start = time.monotonic()

    # One process cannot hold more sockets than its RLIMIT_NOFILE allows (past it, accept()
    # fails with EMFILE and uWS retries in a busy loop): larger sizes run multi-process, and the
    # one-process storm is capped just under it.
    usable = limit - 1000  # under pygw's own cap (open-file limit - FD_RESERVE)
    multi_above = args.multi_above or usable
    if args.storm > usable:
        skipped.append(f"storm {args.storm}: capped to {usable} (RLIMIT_NOFILE {limit})")
        args.storm = usable
    for n in sizes:
        avail = h.mem_available()
        if n >= 50_000 and avail < MIN_MEM_100K * n / 100_000:
            skipped.append(f"{n}: only {avail / 2**30:.1f} GiB available")
            continue
        multi = n > multi_above
        for kind in ("pygw", "raw"):
            label = "multi-process" if multi else "one process"
            print(f"hold {n:,} idle connections ({kind}, {label})", flush=True)
            h.wait_quiet()
            hold = args.hold if kind == "pygw" else args.raw_hold
            if multi:
                r, det = fleet_hold(
                    kind,
                    n,
                    hold=hold,
                    creds=cred_lines if kind == "pygw" else None,
                    tmp=tmp,
                    name="conns",
                    per_worker=args.per_worker,
                    per_loadgen=args.per_loadgen,
                )
                det["mem_available_gib_before"] = round(avail / 2**30, 1)
                details[f"hold/{kind}/{n}"] = det
            elif kind == "pygw":
                gw = h.start_gateway(name=f"conns-{n}")
                try:
                    r = m.hold(
                        m.ws_url(gw.port),
                        h.gateway_pid(gw),
                        conns=n,
                        duration=hold,
                        creds=creds,
                    )
                finally:
                    gw.stop()
                r["processes"] = r["generators"] = 1
            else:
                with h.RawServer() as raw:
                    r = m.hold(
                        m.ws_url(raw.port, False), raw.pid, conns=n, duration=hold, creds=None
                    )
                r["processes"] = r["generators"] = 1
            results[f"hold/{kind}/{n}"] = {k: h.summarize([v]) for k, v in r.items()}
            print(
                f"  {r['still_open']:,.0f} open, {r['rss_per_conn_bytes']:,.0f} B/conn,"
                f" idle CPU {r['idle_cpu_pct']:.2f}%, storm {r['storm_s']:.2f} s,"
                f" p99 {r['connect_p99_ms']:.0f} ms",
                flush=True,
            )
    t_holds = time.monotonic() - t_start

    storms: dict[str, list[dict[str, float]]] = {kind: [] for kind in STORM_KINDS}
    for i in range(args.runs):  # the kinds alternate within each run: same conditions
        for kind in STORM_KINDS:
            print(f"[run {i + 1}/{args.runs}] connect storm {args.storm:,} ({kind})", flush=True)
            h.wait_quiet()
            storms[kind].append(storm_once(kind, args.storm, creds))
    for kind, rs in storms.items():
        results[f"storm/{kind}/{args.storm}"] = {k: h.summarize([r[k] for r in rs]) for k in rs[0]}

    from benches import _report

    doc = {"config": {"sizes": sizes, "storm": args.storm}, "results": results}
    hold_table, storm_table = _report.connections(doc)
    print(hold_table + "\n\n" + storm_table)
    for line in skipped:
        print(f"skipped {line}")
    elapsed = time.monotonic() - t_start
    print(f"connections: {elapsed:.0f} s ({t_holds:.0f} s holds)")
    h.write_results(
        "connections",
        {
            "config": {
                "sizes": sizes,
                "hold_s": args.hold,
                "raw_hold_s": args.raw_hold,
                "storm": args.storm,
                "runs": args.runs,
                "connect_concurrency": CONNECT_CONCURRENCY,
                "source_ips": h.SOURCE_IPS,
                "rlimit_nofile": limit,
                "multi_above": multi_above,
                "per_worker": args.per_worker,
                "per_generator": args.per_loadgen,
                "ips_per_generator": IPS_PER_LOADGEN,
                "hold_margin_s": HOLD_MARGIN,
            },
            "targets": {"rss_per_conn_bytes": TARGET_RSS, "idle_cpu_pct": TARGET_IDLE_CPU},
            "skipped": skipped,
            "elapsed_s": round(elapsed, 1),
            "results": results,
            "details": details,
        },
        args.json,
        argv=argv,
        bench="connections",
    )
    return 0
