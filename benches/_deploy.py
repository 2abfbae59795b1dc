"""The deployment users run, for benchmarks: Debian's nginx with the project's
``docker/nginx.conf`` in front of N ``pygw serve`` nodes sharing one ``redis-server`` — the very
fixture of the end-to-end tests (``tests/deployment.py``), started pinned to the servers' core
with the benchmark gateway environment (:func:`benches._harness.gateway_env`).

Load-test settings, none of which changes a production default:

- rate limits off and registrations queued (``gateway_env``): all load comes from one loopback
  address; the nodes still trust nginx's ``X-Forwarded-For`` (``PYGW_TRUSTED_PROXIES``) as in
  production;
- nginx listens with ``reuseport``: one accept queue per worker, so the kernel spreads the
  connections evenly over the (2) workers. Without it one worker may accept most of them, and
  each proxied WebSocket holds two descriptors in its worker, where this sandbox caps every
  process at 20,000 (``RLIMIT_NOFILE``, hard): 10k WebSockets in one worker would not fit.

:func:`processes` names every process of the deployment, for per-process CPU and RSS;
:func:`system_under_test` is what a benchmark with a ``--behind-nginx`` mode drives.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from benches import _harness as h
from deployment import Deployment  # tests/ is on sys.path (benches/_harness.py)

NGINX_LISTEN = "reuseport"


@contextlib.contextmanager
def deployment(
    nodes: int, *, argon2: str = "fast", env: dict[str, str] | None = None, name: str = "deploy"
) -> Iterator[Deployment]:
    """nginx + ``nodes`` pygw nodes + Redis on the servers' core; stopped by PID on exit."""
    log_dir = h.LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}"
    log_dir.mkdir(parents=True)
    with h.pinned(h.GATEWAY_CPUS):  # every server process inherits the pinning
        dep = Deployment(
            log_dir, nodes=nodes, env=h.gateway_env(argon2, env), nginx_listen=NGINX_LISTEN
        )
        dep.start(timeout=60)
    try:
        yield dep
    finally:
        dep.close()


def processes(dep: Deployment) -> dict[str, list[int]]:
    """``{"nginx": [master, workers...], "node-0": [pid], ..., "redis": [pid]}``."""
    assert dep.nginx.pid is not None and dep.redis.pid is not None
    out = {"nginx": [dep.nginx.pid, *h.children_of(dep.nginx.pid)]}
    for i, node in enumerate(dep.nodes):
        assert node.proc is not None
        out[dep.node_id(i)] = [node.proc.pid]
    out["redis"] = [dep.redis.pid]
    return out


@contextlib.contextmanager
def system_under_test(
    *,
    behind_nginx: bool,
    nodes: int = 1,
    backend: str = "memory",
    argon2: str = "fast",
    env: dict[str, str] | None = None,
    name: str = "gateway",
) -> Iterator[tuple[int, dict[str, list[int]]]]:
    """(the port clients use, every server process by name): one gateway (``gateway``, with
    ``backend="redis"`` a ``redis`` too), or with ``behind_nginx`` nginx in front of ``nodes``
    nodes on one Redis (:func:`processes`). All on the servers' core, stopped by PID on exit."""
    if behind_nginx:
        if backend != "redis":
            raise ValueError("behind nginx, the nodes share sessions through Redis")
        with deployment(nodes, argon2=argon2, env=env, name=name) as dep:
            yield dep.nginx.port, processes(dep)
        return
    if nodes != 1:
        raise ValueError("several nodes run only behind nginx")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(h.redis_server()) if backend == "redis" else None
        gw = h.start_gateway(
            argon2=argon2, name=name, env=env, redis_url=redis.url if redis else None
        )
        stack.callback(gw.stop)
        groups = {"gateway": [h.gateway_pid(gw)]}
        if redis is not None and redis.pid is not None:
            groups["redis"] = [redis.pid]
        yield gw.port, groups


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    """``--behind-nginx``, ``--nodes N``, ``--backend memory|redis``."""
    parser.add_argument(
        "--behind-nginx",
        action="store_true",
        help="drive nginx (docker/nginx.conf) in front of --nodes nodes on one redis-server",
    )
    parser.add_argument("--nodes", type=int, default=1, help="gateway nodes (--behind-nginx)")
    parser.add_argument(
        "--backend",
        choices=["memory", "redis"],
        help="the gateways' backend (default: memory; redis behind nginx)",
    )


def check_system_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse combinations :func:`system_under_test` cannot run; default ``args.backend``."""
    if args.nodes < 1 or (args.nodes > 1 and not args.behind_nginx):
        parser.error("--nodes N (N >= 1): several nodes run only --behind-nginx")
    if args.behind_nginx and args.backend == "memory":
        parser.error("--behind-nginx: the nodes share sessions through Redis (--backend redis)")
    args.backend = args.backend or ("redis" if args.behind_nginx else "memory")


def describe(
    args: argparse.Namespace, servers: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """What a result records about the system it measured (with ``servers``: how many
    processes each server had)."""
    out: dict[str, Any] = {
        "behind_nginx": args.behind_nginx,
        "nodes": args.nodes,
        "backend": args.backend,
        "nginx_listen": NGINX_LISTEN if args.behind_nginx else None,
    }
    if servers is not None:
        out["processes"] = {name: len(pids) for name, pids in servers.items()}
    return out
