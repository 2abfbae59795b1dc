"""Shared plumbing for the benchmarks: processes pinned to cores, the load generator, CPU and RSS
sampling, credentials, statistics, tables and the JSON results files.

Placement: servers (gateways, the raw socketify server, redis-server) run on core 0
(``GATEWAY_CPUS``), the load generator on core 1 (``taskset -c 1``). A child inherits its parent's
CPU affinity and resource limits, so servers are started while this process is temporarily pinned
to core 0 and after RLIMIT_NOFILE was raised here; the real ``tests/gateway_process.py``
(:class:`GatewayProcess`) and ``tests/redis_server.py`` (:class:`RedisServer`) start them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from pygw.core.rates import RATE_CLASSES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "results"
LOADGEN = ROOT / "target" / "release" / "pygw-loadgen"
GATEWAY_CPUS = {0}
CLIENT_CPUS = {1}
CLIENT_TASKSET = ["taskset", "-c", "1"]
SOURCE_IPS = "127.0.0.1-127.0.0.16"
API_KEY = "bench-api-key-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RATE_LIMITS_OFF = {
    # Capacity benchmarks from one client address: pygw's default per-IP/per-connection limits
    # (PYGW_RATE_*, see python/pygw/limits.py) would turn them into 429s; "0" turns a class off.
    f"PYGW_RATE_{name.upper()}": "0"
    for name in RATE_CLASSES
}
DEFAULT_ARGON2 = {
    "PYGW_ARGON2_MEMORY_KIB": str(19 * 1024),
    "PYGW_ARGON2_TIME_COST": "2",
    "PYGW_ARGON2_PARALLELISM": "1",
}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gateway_process import FAST_ARGON2, TEST_SECRET, GatewayProcess  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

if str(ROOT / "tests") not in sys.path:  # tests/redis_cluster.py imports its siblings by name
    sys.path.append(str(ROOT / "tests"))
from redis_cluster import RedisClusterServers  # noqa: E402

__all__ = ["FAST_ARGON2", "TEST_SECRET", "GatewayProcess", "RedisClusterServers", "RedisServer"]


# -- environment ------------------------------------------------------------------------------
def raise_nofile(want: int = 1_000_000) -> int:
    """Raise this process's RLIMIT_NOFILE (inherited by every server and client started later).

    As root the hard limit can go up to fs.nr_open; otherwise the soft limit goes to the hard."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except OSError:
        nr_open = hard
    target = min(want, nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run the block (and so start children) with this process pinned to ``cpus``."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    try:
        from importlib.metadata import version

        import socketify  # noqa: F401

        sock_v = version("socketify")
    except Exception:
        sock_v = "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "socketify": sock_v,
        "gateway_cpus": sorted(GATEWAY_CPUS),
        "client_cpus": sorted(CLIENT_CPUS),
    }


def today() -> str:
    return _dt.date.today().isoformat()


BENCH_PATHS = ("benches/", "docs/")
"""Uncommitted changes here do not change what is measured (the harness and the docs)."""


def code_changes(paths: list[str]) -> list[str]:
    """The paths of :func:`uncommitted` that can change what is measured: not the harness, its
    results or any Markdown."""
    return [p for p in paths if not p.startswith(BENCH_PATHS) and not p.endswith(".md")]


def uncommitted() -> list[str]:
    """Tracked files with uncommitted changes (``git status --porcelain``), repo-relative."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:].strip() for line in out.stdout.splitlines() if line.strip()]


def git_rev() -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when files that can change what is
    measured (:func:`code_changes`) have uncommitted changes."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip() + ("+dirty" if code_changes(uncommitted()) else "")


# -- the load generator -----------------------------------------------------------------------
def ensure_loadgen() -> Path:
    """Build ``pygw-loadgen`` (release) if it is missing or older than its sources."""
    src = ROOT / "benches" / "loadgen"
    files = [src / "Cargo.toml", *(p for p in (src / "src").rglob("*.rs"))]
    newest = max(p.stat().st_mtime for p in files if p.is_file())
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= newest:
        return LOADGEN
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    print("building pygw-loadgen (cargo build --release -p pygw-loadgen)...", flush=True)
    subprocess.run(
        [cargo, "build", "--release", "-q", "-p", "pygw-loadgen"], cwd=ROOT, check=True, timeout=900
    )
    return LOADGEN


class _Periodic:
    """Calls :meth:`_sample` every ``interval`` seconds in a thread while the ``with`` block
    runs, and once more when it ends."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class CPUSampler(_Periodic):
    """Samples utime+stime of some processes every ``interval`` seconds in a thread."""

    def __init__(self, pids: Sequence[int], interval: float = 0.05) -> None:
        super().__init__(interval)
        self.pids = list(pids)
        self.samples: list[tuple[float, float]] = []
        self.core_samples: list[tuple[float, list[float]]] = []

    def _sample(self) -> None:
        now = time.monotonic()
        self.samples.append((now, sum(cpu_seconds(pid) for pid in self.pids)))
        self.core_samples.append((now, core_busy_seconds()))

    def core_pct(self, start: float, end: float) -> list[float]:
        """Busy % of each core between the samples nearest to start and end (all processes)."""
        s = self.core_samples
        if len(s) < 2:
            return []
        a = min(s, key=lambda x: abs(x[0] - start))
        b = min(s, key=lambda x: abs(x[0] - end))
        if b[0] <= a[0]:
            a, b = s[0], s[-1]
        span = b[0] - a[0]
        return [round(100.0 * (y - x) / span, 1) for x, y in zip(a[1], b[1], strict=False)]

    def at(self, t: float) -> float:
        """CPU seconds at monotonic time t (linear interpolation)."""
        s = self.samples
        if not s:
            return 0.0
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in itertools.pairwise(s):
            if t0 <= t <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        return s[-1][1]

    def pct(self, start: float, end: float) -> float:
        if end <= start:
            return 0.0
        return round(100.0 * (self.at(end) - self.at(start)) / (end - start), 1)


class GroupSampler(_Periodic):
    """CPU seconds and RSS of named groups of processes (``{"nginx": [master, workers...]}``),
    sampled every ``interval`` seconds in a thread, with every core's busy time: the average and
    the busiest second of each group, and how many seconds it held a core (>= 95%)."""

    SATURATED_PCT = 95.0

    def __init__(self, groups: dict[str, Sequence[int]], interval: float = 1.0) -> None:
        super().__init__(interval)
        self.groups = {name: list(pids) for name, pids in groups.items()}
        # (time, CPU seconds of each group, busy seconds of each core)
        self.samples: list[tuple[float, dict[str, float], list[float]]] = []
        self.peak_rss: dict[str, int] = dict.fromkeys(self.groups, 0)
        self._last: dict[int, float] = {}

    def _sample(self) -> None:
        for pids in self.groups.values():  # a process that exited keeps its last figure
            for p in pids:
                self._last[p] = max(self._last.get(p, 0.0), cpu_seconds(p))
        cpu = {name: sum(self._last[p] for p in pids) for name, pids in self.groups.items()}
        for name, pids in self.groups.items():
            self.peak_rss[name] = max(self.peak_rss[name], sum(rss_bytes(p) for p in pids))
        self.samples.append((time.monotonic(), cpu, core_busy_seconds()))

    def _percents(self, seconds: Callable[[tuple[Any, ...]], float]) -> list[float]:
        """% of a core between consecutive samples, of the busy seconds ``seconds(sample)``."""
        return [
            100.0 * (seconds(b) - seconds(a)) / (b[0] - a[0])
            for a, b in itertools.pairwise(self.samples)
            if b[0] > a[0]
        ]

    def per_second(self, name: str) -> list[float]:
        """CPU % of group ``name`` between consecutive samples."""
        return self._percents(lambda sample: sample[1][name])

    def core_per_second(self, core: int) -> list[float]:
        """Busy % of core ``core`` (every process on it) between consecutive samples."""
        return self._percents(lambda sample: sample[2][core])

    def _figures(self, per_s: list[float], first: float, last: float) -> dict[str, float]:
        span = max(self.samples[-1][0] - self.samples[0][0], 1e-9)
        return {
            "cpu_pct_avg": round(100.0 * (last - first) / span, 1),
            "cpu_pct_1s_max": round(max(per_s, default=0.0), 1),
            "seconds_at_95pct_cpu": sum(1 for v in per_s if v >= self.SATURATED_PCT),
        }

    def report(self) -> dict[str, dict[str, float]]:
        """Per group: ``cpu_pct_avg`` over the whole sampling, ``cpu_pct_1s_max``,
        ``seconds_at_95pct_cpu``, ``peak_rss_mib``; ``core<N>``: each core's busy % likewise
        (every process on the machine, other people's included)."""
        out: dict[str, dict[str, float]] = {}
        if len(self.samples) < 2:
            return out
        (_, first, c0), (_, last, c1) = self.samples[0], self.samples[-1]
        for name in self.groups:
            out[name] = {
                **self._figures(self.per_second(name), first[name], last[name]),
                "peak_rss_mib": round(self.peak_rss[name] / 2**20, 1),
            }
        for core, (x, y) in enumerate(zip(c0, c1, strict=False)):
            out[f"core{core}"] = self._figures(self.core_per_second(core), x, y)
        return out


def core_busy_seconds() -> list[float]:
    """Busy (non-idle, non-iowait) seconds of each core since boot, from /proc/stat."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                v = [int(x) for x in line.split()[1:]]
                out.append((sum(v[:8]) - v[3] - v[4]) / CLK_TCK)
    return out


QUIET_MAX_WAIT = 30.0
"""How long :func:`wait_quiet` waits by default (a benchmark with many short runs lowers it)."""


def wait_quiet(threshold_pct: float = 15.0, max_wait: float | None = None) -> float:
    """Wait until the machine is quiet (other sessions share it): both cores' busy % over a 0.5 s
    window below ``threshold_pct``, for at most ``max_wait`` s (default :data:`QUIET_MAX_WAIT`).
    Returns the last busy % seen."""
    deadline = time.monotonic() + (QUIET_MAX_WAIT if max_wait is None else max_wait)
    busy = 100.0
    while True:
        a = core_busy_seconds()
        time.sleep(0.5)
        b = core_busy_seconds()
        busy = max((y - x) / 0.5 * 100 for x, y in zip(a, b, strict=False)) if a else 0.0
        if busy < threshold_pct or time.monotonic() > deadline:
            return round(busy, 1)


def listen_drops() -> dict[str, int]:
    """The kernel's TcpExt ListenOverflows/ListenDrops counters (SYNs dropped because a listen
    socket's accept queue was full; the client retries after 1 s, then 3 s)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in itertools.pairwise(lines):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {"ListenOverflows": 0, "ListenDrops": 0}


def cpu_seconds(pid: int) -> float:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = data.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_kib(path: str, key: str) -> int:
    """Bytes of a ``key: N kB`` line of a /proc file; 0 if the file or line is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int:
    """Proportional set size (pages shared with other processes, e.g. forked workers, counted
    once in total): /proc/<pid>/smaps_rollup."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (scans /proc/*/stat for the parent pid)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = data.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1/0.0.0.0:``port`` (one per SO_REUSEPORT process)."""
    n = 0
    suffix = f":{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[3] == "0A" and parts[1].endswith(suffix):
                n += 1
    return n


def mem_available() -> int:
    return _proc_kib("/proc/meminfo", "MemAvailable:")


RUN_START_MARKERS = {
    "fanout": re.compile(r"\d+ subscribed, \d+ failed"),
    "ws-rtt": re.compile(r"\d+ connected, \d+ failed"),
}


def loadgen(
    mode: str,
    args: Sequence[str],
    *,
    server_pids: Sequence[int] = (),
    server_groups: dict[str, list[int]] | None = None,
    timeout: float = 300.0,
    warmup: float = 0.0,
    quiet_first: bool = True,
) -> dict[str, Any]:
    """Run ``pygw-loadgen <mode> args`` on the client core; return its JSON report.

    With ``server_pids``, adds ``server_cpu_pct``: the servers' CPU over the measured phase (from
    the generator's "connected"/"subscribed" line + warmup, for the phase's wall time; the whole
    invocation for ``http``); with ``server_groups`` (``{name: pids}``) also
    ``server_cpu_pct_by_process``, each group's CPU over the same window."""
    cmd = [*CLIENT_TASKSET, str(LOADGEN), mode, *args]
    report_quiet = wait_quiet() if quiet_first else None
    stderr_lines: list[tuple[float, str]] = []
    groups = {name: CPUSampler(pids) for name, pids in (server_groups or {}).items()}
    with CPUSampler(server_pids) as sampler, contextlib.ExitStack() as stack:
        for group in groups.values():
            stack.enter_context(group)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr_lines.append((time.monotonic(), line.rstrip()))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        reader.join(5)
        t1 = time.monotonic()
    text = out.strip()
    start = text.find("{")
    if proc.returncode not in (0,) or start < 0:
        tail = "\n".join(line for _, line in stderr_lines[-15:])
        raise RuntimeError(f"pygw-loadgen {mode} exited {proc.returncode}:\n{tail}\n{text[:500]}")
    report: dict[str, Any] = json.loads(text[start:])
    report["busy_before_pct"] = report_quiet
    if server_pids:
        run = report.get("generator_during_run", {}).get("wall_s", 0.0)
        marker = RUN_START_MARKERS.get(mode)
        begin = t0
        if marker is not None:
            for ts, line in stderr_lines:
                if marker.search(line):
                    begin = ts + warmup
                    break
        end = begin + run if marker is not None and run else t1
        end = min(end, t1)
        report["server_cpu_pct"] = sampler.pct(begin, end)
        report["server_cpu_pct_by_process"] = {n: g.pct(begin, end) for n, g in groups.items()}
        report["server_cpu_pct_whole"] = sampler.pct(t0, t1)
        cores = sampler.core_pct(begin, end)
        report["core_busy_pct"] = cores
        # Busy time on the servers' core that is not the servers': other processes on this
        # shared machine (the CPU sampler itself is on the client core).
        if cores:
            core0 = cores[min(GATEWAY_CPUS)]
            report["foreign_cpu_pct_core0"] = round(max(0.0, core0 - report["server_cpu_pct"]), 1)
    return report


# -- servers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOG_DIR = Path(tempfile.gettempdir()) / "pygw-bench-logs"


REGISTER_MAX_WAITING = "10000"
"""Registrations in flight from a benchmark (hundreds, cheap argon2) queue instead of getting
429 beyond the production bound of 64 (``PYGW_REGISTER_MAX_WAITING``)."""


def gateway_env(argon2: str = "fast", env: dict[str, str] | None = None) -> dict[str, str]:
    """A benchmark gateway's environment: rate limits off (one client address), registrations
    queued rather than refused, ``argon2`` fast or default, then ``env``."""
    return {
        "PYGW_API_KEYS": API_KEY,
        "LOGGING_LEVEL": "WARNING",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "240",
        "PYGW_REGISTER_MAX_WAITING": REGISTER_MAX_WAITING,
        **RATE_LIMITS_OFF,
        **(DEFAULT_ARGON2 if argon2 == "default" else FAST_ARGON2),
        **(env or {}),
    }


def start_gateway(
    *,
    argon2: str = "fast",
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    name: str = "gateway",
    args: list[str] | None = None,
) -> GatewayProcess:
    """A ``pygw serve`` process (via tests/gateway_process.py) pinned to ``cpus`` (core 0).

    ``args`` are extra ``pygw serve`` arguments (``--workers K``: a supervisor forking K workers
    that inherit the pinning)."""
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    full_env = gateway_env(argon2, env)
    gw = GatewayProcess(redis_url=redis_url, env=full_env, args=args, log_path=log_path)
    with pinned(cpus or GATEWAY_CPUS):
        gw.start(timeout=60)
    return gw


def gateway_pid(gw: GatewayProcess) -> int:
    assert gw.proc is not None
    return gw.proc.pid


class PinnedServer:
    """A server command started pinned like a gateway (core 0), ready once its port accepts
    connections, stopped by PID (SIGTERM, then SIGKILL). stdout/stderr go to ``log_path``
    (default: discarded)."""

    def __init__(
        self,
        cmd: Sequence[str],
        port: int,
        *,
        cpus: set[int] | None = None,
        name: str = "server",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``env``: the whole environment of the command (default: this process's)."""
        self.cmd = list(cmd)
        self.env = env
        self.port = port
        self.cpus = cpus or GATEWAY_CPUS
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> PinnedServer:
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")
        with pinned(self.cpus):
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out, stderr=out, env=self.env)
        if out is not subprocess.DEVNULL:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}{self._tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not start{self._tail()}")

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def __enter__(self) -> PinnedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawServer(PinnedServer):
    """The raw server (no gateway logic), pinned like a gateway; stopped by PID."""

    def __init__(self, cpus: set[int] | None = None, port: int | None = None) -> None:
        """``port``: share a port already used by other raw servers (SO_REUSEPORT)."""
        port = port or free_port()
        cmd = [sys.executable, "-m", "benches", "raw_server", "--port", str(port)]
        super().__init__([*cmd, "--max-seconds", "1800"], port, cpus=cpus, name="raw server")

    def __enter__(self) -> RawServer:
        self.start()
        return self


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    with pinned(GATEWAY_CPUS):
        server = RedisServer()
    with server:  # closed (stopped by PID, temp dir removed) on the way out
        yield server


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of 3 primaries + 3 replicas, every node pinned like the gateways."""
    with pinned(GATEWAY_CPUS):
        cluster = RedisClusterServers()
    with cluster:
        yield cluster


def cluster_pids(cluster: RedisClusterServers) -> list[int]:
    return [n.pid for n in cluster.nodes if n.pid is not None]


# -- credentials ------------------------------------------------------------------------------
def mint_creds(path: Path, n: int, *, prefix: str = "u", role: str = "user") -> Path:
    """N distinct users' access tokens signed with the gateway's key by pygw's own codec.

    Each token's ``sid`` is its own session id, so the upgrade needs no session lookup (the same
    path as a login-issued token's default session); the gateway verifies every token (cold cache).
    """
    from pygw._native import TokenCodec

    codec = TokenCodec("HS256", secret=TEST_SECRET.encode(), cache_size=16)
    now = int(time.time())
    with path.open("w") as f:
        for i in range(n):
            user = f"{prefix}{i}"
            sid = f"{prefix}-sid-{i}"
            payload = {
                "sub": user,
                "user_id": user,
                "role": role,
                "exp": now + 4 * 3600,
                "iat": now,
                "jti": f"{prefix}-jti-{i}",
                "sid": sid,
                "fam": f"{prefix}-fam-{i}",
                "typ": "access",
            }
            token = codec.sign(json.dumps(payload).encode())
            f.write(json.dumps({"token": token, "session_id": sid, "username": user}) + "\n")
    return path


# -- statistics and output --------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(vals), 3),
        "min": round(min(vals), 3),
        "max": round(max(vals), 3),
        "runs": [round(v, 3) for v in vals],
    }


def repeat(fn: Callable[[int], dict[str, float]], runs: int) -> dict[str, dict[str, Any]]:
    """Call fn(run_index) ``runs`` times; summarize every numeric key across runs."""
    per_key: dict[str, list[float]] = {}
    for i in range(runs):
        for key, value in fn(i).items():
            per_key.setdefault(key, []).append(value)
    return {key: summarize(values) for key, values in per_key.items()}


def fmt_num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_range(s: dict[str, Any] | None, digits: int = 0, scale: float = 1.0) -> str:
    """'median (min-max)' for a summary."""
    if not s or s.get("median") is None:
        return "-"
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if len(s.get("runs", [])) <= 1 or lo == hi:
        return fmt_num(med, digits)
    return f"{fmt_num(med, digits)} ({fmt_num(lo, digits)}-{fmt_num(hi, digits)})"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers))]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        out.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )
    return "\n".join(out)


def write_results(
    name: str,
    payload: dict[str, Any],
    path: Path | None = None,
    *,
    argv: Sequence[str] = (),
    bench: str | None = None,
) -> Path:
    """Write ``benches/results/<name>.json`` (or ``path``): date, git revision, the exact command
    (``python -m benches <bench or name> <argv>``), the machine, then ``payload``."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "date": today(),
        "git": git_rev(),
        "command": " ".join(["python -m benches", bench or name, *argv]),
        "uncommitted": uncommitted(),
        "machine": machine_info(),
        **payload,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 3)


def pct_str(r: float | None) -> str:
    return "-" if r is None else f"{100 * r:.0f}%"


CONTENDED_PCT = 10.0
"""A run during which other processes took more than this % of the servers' core is retried."""


def clean_run(fn: Callable[[], dict[str, float]], tries: int = 3) -> dict[str, float]:
    """Run ``fn`` until the servers' core was not contended (see :data:`CONTENDED_PCT`), at most
    ``tries`` times; the last result is kept either way, with ``attempts`` added."""
    result: dict[str, float] = {}
    for attempt in range(1, tries + 1):
        result = fn()
        result["attempts"] = attempt
        if result.get("foreign_cpu_pct_core0", 0.0) <= CONTENDED_PCT:
            break
        print(
            f"  contended: {result['foreign_cpu_pct_core0']}% of core 0 used by other processes;"
            " retrying"
            if attempt < tries
            else "  contended; keeping this run",
            flush=True,
        )
    return result
