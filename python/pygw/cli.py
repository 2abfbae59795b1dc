"""Command line: ``pygw serve`` and ``pygw users create``.

Every ``serve`` flag can also come from the environment (the original gateway's variable names,
see ``--help``); a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from pygw.auth.credentials import check_password
from pygw.config import ConfigError, Settings
from pygw.core.errors import BackendUnavailable, Invalid
from pygw.core.version import __version__

log = logging.getLogger("pygw.cli")

ENV_HELP = """\
environment (flags win over these):
  HOST, PORT                      bind address (default 0.0.0.0:8000)
  REDIS_URL                       use Redis (shared by every node); unset = embedded memory backend
  PYGW_REDIS_CLUSTER              true: REDIS_URL is any node of a Redis Cluster
  PYGW_WORKERS                    worker processes sharing the port (needs Redis when > 1)
  LOGGING_LEVEL                   DEBUG, INFO, WARNING, ERROR (default INFO)
  SECRET_KEY, ALGORITHM           JWT signing (HS256 default; RS256/ES256/EdDSA with
                                  PYGW_JWT_PRIVATE_KEY / PYGW_JWT_PUBLIC_KEY, PEM or @file)
  ACCESS_TOKEN_EXPIRE_MINUTES     access token lifetime (default 30)
  SESSION_TIMEOUT_MINUTES         session inactivity expiry (default 30)
  BATCH_WRITE_INTERVAL_MS         write-behind flush interval (default 100)
  PYGW_ADMIN_USERS                usernames reserved for admins (registration refuses them;
                                  existing accounts get role admin at login)
  PYGW_ADMIN_PASSWORD             creates the missing PYGW_ADMIN_USERS at start (value or @file)
  PYGW_API_KEYS                   keys accepted in X-API-Key by the server API
  PYGW_NAMESPACES                 channel namespaces (JSON list, or @file)
  PYGW_PUBLIC_URL                 what clients connect to (wss://gw.example.com): ws_url in
                                  session responses (default: HOST:PORT, never the request Host)
  PYGW_WS_ALLOWED_ORIGINS         browser origins that may open WebSockets besides the
                                  gateway's own (comma list; null = file:// pages; * = any)
  PYGW_PROXY_ALLOW_PRIVATE        true: route backends may be on loopback/private/link-local
                                  addresses (default: refused)
  PYGW_PROXY_FORWARD_CREDENTIALS  true: forward the caller's Authorization, Cookie and
                                  X-API-Key to route backends (default: not forwarded)
  PYGW_REUSE_PORT                 true: share the port with a process already listening on it
                                  (default: refuse to start when the port is in use)
  see README.md for the full list
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygw",
        description="pygw: real-time gateway (auth, sessions, WebSockets, channels).",
    )
    parser.add_argument("--version", action="version", version=f"pygw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway (HTTP API and WebSocket endpoint on one port).",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="bind address (env HOST; default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (env PORT; default 8000)")
    serve.add_argument(
        "--redis-url",
        help="Redis URL, e.g. redis://localhost:6379/0 (env REDIS_URL); "
        "without it pygw runs on its embedded memory backend (one node)",
    )
    serve.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="REDIS_URL names a node of a Redis Cluster (env PYGW_REDIS_CLUSTER)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port with SO_REUSEPORT (env PYGW_WORKERS; default 1;"
        " more than 1 needs Redis)",
    )
    serve.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        type=str.upper,
        help="log level (env LOGGING_LEVEL; default INFO)",
    )

    users = sub.add_parser("users", help="manage users")
    users_sub = users.add_subparsers(dest="users_command", metavar="action")
    create = users_sub.add_parser(
        "create",
        help="create a user (e.g. the first admin)",
        description="Create a user in the Redis that the gateways use (REDIS_URL or "
        "--redis-url). A gateway without Redis keeps its users in its own process: there, "
        "name the first admin in PYGW_ADMIN_USERS and register through the API.",
    )
    create.add_argument("username")
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--email", help="default: <username>@localhost")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument("--redis-url", help="env REDIS_URL")
    create.add_argument(
        "--redis-cluster", action="store_true", default=None, help="env PYGW_REDIS_CLUSTER"
    )

    migrate = sub.add_parser(
        "migrate-to-cluster",
        help="copy a one-Redis deployment's data into a Redis Cluster",
        description="Copy users, sessions, connection records, login state, routes and channel"
        " history from one Redis (pygw's or the original gateway's keys) into a Redis Cluster,"
        " under the cluster's hash-tagged key names, rebuilding the indexes. Idempotent: stop"
        " the gateways' writes for the last run, then start them with PYGW_REDIS_CLUSTER=true.",
    )
    migrate.add_argument("--from", dest="source", required=True, help="the one Redis (URL)")
    migrate.add_argument("--to", dest="target", required=True, help="any node of the cluster")
    migrate.add_argument("--dry-run", action="store_true", help="count only, write nothing")
    return parser


def configure_logging(level: str, json_logs: bool = False) -> None:
    from pygw.logs import configure

    configure(level, json_logs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "users" and args.users_command == "create":
        return users_create(args)
    if args.command == "migrate-to-cluster":
        return migrate_to_cluster(args)
    parser.print_help()
    return 2


# -- serve --------------------------------------------------------------------------------------
def serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            redis_url=args.redis_url,
            redis_cluster=args.redis_cluster,
            workers=args.workers,
            logging_level=args.log_level,
        )
    except ConfigError as exc:
        print(f"pygw: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging_level, settings.json_logs)
    if settings.workers > 1 and not settings.redis_url:
        print(
            "pygw: --workers > 1 needs --redis-url (REDIS_URL): the memory backend lives in one"
            " process",
            file=sys.stderr,
        )
        return 2
    if settings.generated_secret:
        log.warning(
            "SECRET_KEY is not set: using a random key; tokens will not survive a restart"
            " and other nodes will not accept them"
        )
    if settings.workers == 1:
        return run_worker(settings)
    return supervise(settings)


def run_worker(settings: Settings) -> int:
    from pygw.gateway import Gateway

    try:
        Gateway(settings).run()
    except OSError as exc:
        log.error("%s", exc)
        return 1
    return 0


def supervise(settings: Settings) -> int:
    """Fork ``settings.workers`` gateway processes sharing the port; restart any that crash;
    forward SIGTERM/SIGINT and wait for them to flush and exit."""
    from pygw.transport.ports import PortInUse, ensure_port_free

    if not settings.reuse_port:
        try:
            ensure_port_free(settings.host, settings.port)
        except PortInUse as exc:
            log.error("%s", exc)
            return 1
    settings = settings.replace(reuse_port=True)  # the workers share it with each other
    base_id = settings.gateway_id
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = run_worker(settings.replace(gateway_id=f"{base_id}-w{index}"))
            os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for i in range(settings.workers):
        spawn(i)
    log.info("pygw supervising %d workers on port %d", settings.workers, settings.port)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("worker %d (pid %d) exited with %d; restarting", index, pid, code)
            time.sleep(0.5)
            spawn(index)
        elif code not in (0, -signal.SIGTERM):
            exit_code = 1
    return exit_code


# -- migrate-to-cluster -------------------------------------------------------------------------
def migrate_to_cluster(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisClusterException, RedisError

    from pygw.migrate import migrate_to_cluster as migrate

    try:
        report = asyncio.run(migrate(args.source, args.target, dry_run=args.dry_run))
    except (RedisError, RedisClusterException, OSError) as exc:
        print(f"pygw: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} from {args.source} to the cluster at {args.target}:")
    for line in report.lines():
        print(f"  {line}")
    return 0


# -- users create -------------------------------------------------------------------------------
def users_create(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(redis_url=args.redis_url, redis_cluster=args.redis_cluster)
    except ConfigError as exc:
        print(f"pygw: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        # The memory backend lives inside one gateway process: a user created here would be
        # thrown away when this command exits.
        print(
            "pygw: users create needs REDIS_URL (or --redis-url): the Redis your gateways use."
            " A gateway without Redis keeps users in its own process; there, start it with"
            f" PYGW_ADMIN_USERS={args.username} and register {args.username!r} through its"
            " API (POST /sessions/register).",
            file=sys.stderr,
        )
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
    try:
        check_password(settings, password)
    except Invalid as exc:
        print(f"pygw: password: {exc.message} (PYGW_PASSWORD_MIN_LENGTH)", file=sys.stderr)
        return 2
    configure_logging("ERROR")  # the storage's retry warnings are for servers, not this command
    try:
        return asyncio.run(_create_user(settings, args, password))
    except BackendUnavailable as exc:
        print(f"pygw: Redis at {settings.redis_url} is unreachable: {exc}", file=sys.stderr)
        return 1


async def _create_user(settings: Settings, args: argparse.Namespace, password: str) -> int:
    from pygw.auth.passwords import PasswordHasher
    from pygw.gateway import create_backends
    from pygw.store.base import UserRecord

    storage, _broker = create_backends(settings)
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        threads=1,
    )
    await storage.start()
    try:
        created = await storage.create_user(
            UserRecord(
                username=args.username,
                email=args.email or f"{args.username}@localhost",
                password=await hasher.hash(password),
                role=args.role,
            )
        )
    finally:
        await storage.close()
        hasher.close()
    if not created:
        print(f"pygw: user {args.username!r} already exists", file=sys.stderr)
        return 1
    print(f"created user {args.username!r} with role {args.role}")
    return 0
