"""Settings: environment variables of the original gateway (same names, same meaning) plus
``PYGW_*`` ones, overridable by CLI flags and by keyword arguments when embedding.

Precedence: explicit arguments > environment > defaults.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pygw.core.netaddr import parse_networks
from pygw.core.rates import RATE_CLASSES, parse_rate
from pygw.core.weborigin import check_public_url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA")
WS_COMPRESSION = ("off", "shared", "dedicated")


class ConfigError(ValueError):
    """A setting has a value pygw cannot use; the message names the setting."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _read_file_or_value(value: str) -> bytes:
    """PEM settings accept the PEM text itself or ``@/path/to/file``."""
    if value.startswith("@"):
        return Path(value[1:]).read_bytes()
    return value.encode()


def namespaces_from_env(env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Channel namespaces from ``PYGW_NAMESPACES`` (a JSON list, or ``@file``)."""
    env = os.environ if env is None else env
    raw = env.get("PYGW_NAMESPACES")
    if not raw:
        return []
    try:
        parsed = orjson.loads(_read_file_or_value(raw))
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"PYGW_NAMESPACES is not valid JSON: {exc}") from None
    if not isinstance(parsed, list):
        raise ConfigError("PYGW_NAMESPACES must be a JSON list of namespace objects")
    return parsed


FD_RESERVE = 512
"""Descriptors kept free of WebSockets: listeners, Redis pools, the proxy pool, HTTP clients."""


@dataclass(slots=True)
class Settings:
    # --- original gateway's settings (SPEC §1) ---
    redis_url: str | None = None
    secret_key: str = ""
    algorithm: str = "HS256"
    access_token_expire_minutes: float = 30
    session_timeout_minutes: float = 30
    host: str = "0.0.0.0"
    port: int = 8000
    logging_level: str = "INFO"
    batch_write_interval_ms: int = 100
    # --- pygw ---
    session_max_bytes: int = 64 * 1024
    """Bytes of a session's stored JSON (data, chat_id, timestamps): an update that would make
    a session larger is refused (413) and changes nothing. 0 = no limit."""
    session_update_max_bytes: int = 16 * 1024
    """Bytes of one session update (its ``data`` and ``chat_id`` as JSON); larger: 413.
    0 = no limit."""
    session_write_through: bool = False
    """Redis: a session update is acknowledged only once Redis has it (the node's pending
    updates are flushed at once, concurrent ones together) instead of write-behind."""
    redis_cluster: bool = False
    """``REDIS_URL`` names a node of a Redis Cluster (sharded pub/sub, hash-tagged keys)."""
    redis_wait_replicas: int = 1
    """Redis Cluster: a write counts as done once this many replicas confirmed it (WAIT), when
    its shard has a replica; 0 = the primary's acknowledgement is enough."""
    workers: int = 1
    gateway_id: str = ""
    public_url: str | None = None
    """What clients connect to (``wss://gw.example.com``; ``https://`` is taken as ``wss://``):
    the base of ``ws_url``, and an origin whose pages may open WebSockets. Unset: ``ws_url``
    names the listening address (never the request's Host header)."""
    admin_users: tuple[str, ...] = ()
    """Usernames reserved for the operator's admins: registration refuses them; existing
    accounts of these names get role admin at login."""
    admin_password: str = ""
    """``PYGW_ADMIN_PASSWORD`` (value or @file): at start, the ``admin_users`` that do not exist
    are created with role admin and this password."""
    api_keys: tuple[str, ...] = ()
    jwt_private_key: bytes | None = None
    jwt_public_key: bytes | None = None
    refresh_token_expire_days: float = 7
    token_cache_size: int = 100_000
    max_body_bytes: int = 1 << 20
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19 * 1024
    argon2_parallelism: int = 1
    password_threads: int = 0
    """Threads hashing passwords; 0 = one per CPU core."""
    register_max_waiting: int = 64
    """Registrations queued for a hashing slot before more are refused with 429 (per process)."""
    ping_interval: float = 25.0
    inactivity_timeout: float = 60.0
    ws_max_message_bytes: int = 64 * 1024
    ws_max_backpressure: int = 256 * 1024
    """Bytes queued for one client before it is closed with 1013 (it stopped reading)."""
    ws_max_errors: int = 20
    ws_max_subscriptions: int = 256
    """Channels one WebSocket may be subscribed to at once; a subscribe beyond it gets an error
    frame (429) and the connection stays open. 0 = no limit."""
    channel_meta_ttl: float = 86400.0
    """Seconds a channel's offsets (epoch, top; Redis ``pygw:chmeta:<ch>``) are kept after its
    last publication (or first subscription); at least its namespace's ``history_ttl``. A
    client resuming after they expired is told ``recovered: false``."""
    ws_compression: str = "off"
    """permessage-deflate for WebSockets (uWS transport), for clients that offer it: ``off``;
    ``shared``, one compressor for the whole process (no context kept between messages, no
    memory per socket); ``dedicated``, one compressor (uWS's 3 KB one: a 512-byte window) and
    one decompressor (32 KiB window) per socket, context kept: far smaller frames when a message
    repeats the previous one, worse than ``shared`` on larger varied ones. Costs and savings:
    docs/TRANSPORTS.md, docs/BENCHMARKS.md."""
    metrics_port: int = 0
    """Serve ``/metrics`` on this port only (and not on the API port); 0 = on the API port."""
    stats_interval: float = 1.0
    """Seconds between two snapshots a node publishes to ``admin:stats`` while a console
    watches (0 = never)."""
    drain_seconds: float = 0.0
    """After SIGTERM: seconds the node keeps serving while not ready, closing its WebSockets
    (1001) in batches spread over the window, before it stops accepting and flushes."""
    shutdown_timeout: float = 10.0
    """Bound on each later shutdown step (in-flight requests, the final flush, closing the
    backends); a step that takes longer is logged and abandoned so the process always exits."""
    ws_max_connections: int = 0
    """WebSockets this process accepts; more upgrades get 503. 0 = the open-file limit minus
    :data:`FD_RESERVE` (so accept() never fails with EMFILE, which makes uWS spin)."""
    breaker_failures: int = 5
    """Consecutive connect errors/timeouts of a dynamic route that open its circuit."""
    breaker_reset_seconds: float = 30.0
    """How long an open circuit answers 503 before letting one trial request through."""
    proxy_max_connections: int = 256
    """Connections the proxy's pooled HTTP client may open (all routes together)."""
    proxy_max_response_bytes: int = 16 << 20
    """Larger backend responses are refused with 502 instead of being buffered."""
    proxy_forward_credentials: bool = False
    """Forward the caller's ``Authorization``, ``Cookie`` and ``X-API-Key`` to route backends
    (off: they are the gateway's credentials, not the backend's)."""
    proxy_allow_private: bool = False
    """Allow route backends on loopback, link-local, private, unspecified and other non-public
    addresses (off: refused at registration and at every connection)."""
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    message_roles: dict[str, list[str]] = field(default_factory=dict)
    """Client message type -> roles allowed to send it (unlisted types: any role)."""
    allow_unknown_namespaces: bool = True
    json_logs: bool = False
    access_log: bool = False
    http_batch: bool = True
    """Run the HTTP requests that arrived in one event-loop iteration back to back and write
    their answers together (2-3x the throughput). HTTP/1.1 pipelining is then not supported:
    a pipelined request behind an unanswered one closes the connection."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the HTTP API from browsers (``*``, exact, ``https://*.x.com``)."""
    cors_allow_credentials: bool = False
    ws_allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to open WebSockets besides the gateway's own (the request's Host,
    or ``public_url``); ``*`` = any. Requests without Origin (non-browser clients) are always
    allowed."""
    # Rate limits (GCRA, "count/seconds[:burst]", "" or "0" = off; docs/RATE_LIMITS.md).
    rate_login: str = "5/60"
    """Login attempts per (username, client IP) (shared through Redis)."""
    rate_login_ip: str = "30/60"
    """Login attempts per client IP (shared through Redis)."""
    rate_login_user: str = "20/60"
    """Login attempts per username from any address; over it attempts are slowed down (by up
    to ``LOGIN_SLOWDOWN_MAX`` seconds), never refused (shared through Redis)."""
    rate_register: str = "5/60:10"
    """Registrations per client IP (shared through Redis)."""
    rate_http: str = ""
    """HTTP requests per user, else per client IP. Off: with Redis it costs a round-trip each."""
    rate_ws_message: str = "100/1:200"
    """Client WebSocket messages per connection (in-process)."""
    rate_ws_connect: str = "20/1:50"
    """WebSocket upgrades per client IP (shared through Redis)."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers (IPs/CIDRs) whose X-Forwarded-For / X-Real-IP give the client address."""
    # --- compatibility with the original's clients (README, "Compatibility notes") ---
    ws_frames: str = "text"
    """``text``: every JSON frame is a TEXT frame. ``original``: ``ack``, ``error`` and route
    responses go out as BINARY frames and errors without ``code``, as the original sent them."""
    password_min_length: int = 8
    """Characters a new password needs (the original accepted any; 1 = any non-empty)."""
    email_check: str = "strict"
    """``strict``: a registration's email must look like an email; ``off``: any text (the
    original's behaviour), at most 254 characters."""
    reuse_port: bool = False
    """Share the port with processes already listening on it (``SO_REUSEPORT``). Off: a port
    another process listens on is refused at start. ``--workers`` children always share."""
    generated_secret: bool = False
    """True when no SECRET_KEY was given and a random one was made for this process."""

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment, then apply non-None ``overrides``."""
        env = os.environ if env is None else env
        s = cls()
        get = env.get

        def num(name: str, conv: Any, attr: str) -> None:
            raw = get(name)
            if raw is None or raw == "":
                return
            try:
                setattr(s, attr, conv(raw))
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {conv.__name__}") from None

        s.redis_url = get("REDIS_URL") or None
        s.secret_key = get("SECRET_KEY", "")
        s.algorithm = get("ALGORITHM", s.algorithm)
        num("ACCESS_TOKEN_EXPIRE_MINUTES", float, "access_token_expire_minutes")
        num("SESSION_TIMEOUT_MINUTES", float, "session_timeout_minutes")
        s.host = get("HOST", s.host)
        num("PORT", int, "port")
        s.logging_level = get("LOGGING_LEVEL", s.logging_level)
        num("BATCH_WRITE_INTERVAL_MS", int, "batch_write_interval_ms")

        s.redis_cluster = _flag(get("PYGW_REDIS_CLUSTER"))
        s.session_write_through = _flag(get("PYGW_SESSION_WRITE_THROUGH"))
        num("PYGW_REDIS_WAIT_REPLICAS", int, "redis_wait_replicas")
        num("PYGW_WORKERS", int, "workers")
        s.gateway_id = get("PYGW_GATEWAY_ID", "")
        s.public_url = get("PYGW_PUBLIC_URL") or None
        s.admin_users = _split(get("PYGW_ADMIN_USERS", ""))
        if get("PYGW_ADMIN_PASSWORD"):
            raw_password = _read_file_or_value(env["PYGW_ADMIN_PASSWORD"])
            s.admin_password = raw_password.decode(errors="replace").rstrip("\r\n")
        s.api_keys = _split(get("PYGW_API_KEYS", ""))
        if get("PYGW_JWT_PRIVATE_KEY"):
            s.jwt_private_key = _read_file_or_value(env["PYGW_JWT_PRIVATE_KEY"])
        if get("PYGW_JWT_PUBLIC_KEY"):
            s.jwt_public_key = _read_file_or_value(env["PYGW_JWT_PUBLIC_KEY"])
        num("PYGW_REFRESH_TOKEN_EXPIRE_DAYS", float, "refresh_token_expire_days")
        num("PYGW_TOKEN_CACHE_SIZE", int, "token_cache_size")
        num("PYGW_MAX_BODY_BYTES", int, "max_body_bytes")
        num("PYGW_ARGON2_TIME_COST", int, "argon2_time_cost")
        num("PYGW_ARGON2_MEMORY_KIB", int, "argon2_memory_kib")
        num("PYGW_ARGON2_PARALLELISM", int, "argon2_parallelism")
        num("PYGW_PASSWORD_THREADS", int, "password_threads")
        num("PYGW_REGISTER_MAX_WAITING", int, "register_max_waiting")
        num("PYGW_PING_INTERVAL", float, "ping_interval")
        num("PYGW_INACTIVITY_TIMEOUT", float, "inactivity_timeout")
        num("PYGW_WS_MAX_MESSAGE_BYTES", int, "ws_max_message_bytes")
        num("PYGW_WS_MAX_BACKPRESSURE", int, "ws_max_backpressure")
        num("PYGW_WS_MAX_ERRORS", int, "ws_max_errors")
        num("PYGW_WS_MAX_SUBSCRIPTIONS", int, "ws_max_subscriptions")
        num("PYGW_CHANNEL_META_TTL", float, "channel_meta_ttl")
        num("PYGW_SESSION_MAX_BYTES", int, "session_max_bytes")
        num("PYGW_SESSION_UPDATE_MAX_BYTES", int, "session_update_max_bytes")
        num("PYGW_WS_MAX_CONNECTIONS", int, "ws_max_connections")
        num("PYGW_DRAIN_SECONDS", float, "drain_seconds")
        num("PYGW_STATS_INTERVAL", float, "stats_interval")
        num("PYGW_METRICS_PORT", int, "metrics_port")
        num("PYGW_SHUTDOWN_TIMEOUT", float, "shutdown_timeout")
        num("PYGW_BREAKER_FAILURES", int, "breaker_failures")
        num("PYGW_BREAKER_RESET_SECONDS", float, "breaker_reset_seconds")
        num("PYGW_PROXY_MAX_CONNECTIONS", int, "proxy_max_connections")
        num("PYGW_PROXY_MAX_RESPONSE_BYTES", int, "proxy_max_response_bytes")
        s.proxy_forward_credentials = _flag(get("PYGW_PROXY_FORWARD_CREDENTIALS"))
        s.proxy_allow_private = _flag(get("PYGW_PROXY_ALLOW_PRIVATE"))
        s.namespaces = namespaces_from_env(env)
        roles = get("PYGW_MESSAGE_ROLES")
        if roles:
            try:
                parsed_roles = orjson.loads(_read_file_or_value(roles))
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"PYGW_MESSAGE_ROLES is not valid JSON: {exc}") from None
            if not isinstance(parsed_roles, dict) or not all(
                isinstance(v, list) and all(isinstance(r, str) for r in v)
                for v in parsed_roles.values()
            ):
                raise ConfigError(
                    'PYGW_MESSAGE_ROLES must map types to role lists: {"t": ["admin"]}'
                )
            s.message_roles = parsed_roles
        s.allow_unknown_namespaces = get("PYGW_ALLOW_UNKNOWN_NAMESPACES", "true").lower() in (
            "1",
            "true",
            "yes",
        )
        s.json_logs = _flag(get("PYGW_JSON_LOGS"))
        s.access_log = _flag(get("PYGW_ACCESS_LOG"))
        s.http_batch = _flag(get("PYGW_HTTP_BATCH", "true"))
        s.cors_origins = _split(get("PYGW_CORS_ORIGINS", ""))
        s.cors_allow_credentials = _flag(get("PYGW_CORS_ALLOW_CREDENTIALS"))
        s.ws_allowed_origins = _split(get("PYGW_WS_ALLOWED_ORIGINS", ""))
        for name in RATE_CLASSES:
            rate = get(f"PYGW_RATE_{name.upper()}")
            if rate is not None:
                setattr(s, f"rate_{name}", rate)
        s.trusted_proxies = _split(get("PYGW_TRUSTED_PROXIES", ""))
        s.ws_frames = get("PYGW_WS_FRAMES", s.ws_frames).strip().lower()
        s.ws_compression = get("PYGW_WS_COMPRESSION", s.ws_compression).strip().lower()
        num("PYGW_PASSWORD_MIN_LENGTH", int, "password_min_length")
        s.email_check = get("PYGW_EMAIL_CHECK", s.email_check).strip().lower()
        s.reuse_port = _flag(get("PYGW_REUSE_PORT"))

        for key, value in overrides.items():
            if value is None:
                continue
            if not hasattr(s, key):
                raise ConfigError(f"unknown setting {key!r}")
            setattr(s, key, value)
        s.finalize()
        return s

    def finalize(self) -> None:
        """Validate and fill derived defaults. Idempotent."""
        self.logging_level = self.logging_level.upper()
        if self.logging_level not in LOG_LEVELS:
            raise ConfigError(f"LOGGING_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        if not (0 < self.port < 65536):
            raise ConfigError("PORT must be between 1 and 65535")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        for cls in RATE_CLASSES:
            try:
                parse_rate(getattr(self, f"rate_{cls}"))
            except ValueError as exc:
                raise ConfigError(f"PYGW_RATE_{cls.upper()}: {exc}") from None
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"PYGW_TRUSTED_PROXIES: {exc}") from None
        if self.public_url:
            try:
                self.public_url = check_public_url(self.public_url)
            except ValueError as exc:
                raise ConfigError(f"PYGW_PUBLIC_URL: {exc}") from None
        if self.admin_password and len(self.admin_password) < 8:
            raise ConfigError("PYGW_ADMIN_PASSWORD must have at least 8 characters")
        if self.breaker_failures < 1 or self.breaker_reset_seconds <= 0:
            raise ConfigError(
                "PYGW_BREAKER_FAILURES must be >= 1 and PYGW_BREAKER_RESET_SECONDS > 0"
            )
        if self.proxy_max_connections < 1 or self.proxy_max_response_bytes < 1:
            raise ConfigError(
                "PYGW_PROXY_MAX_CONNECTIONS and PYGW_PROXY_MAX_RESPONSE_BYTES must be >= 1"
            )
        if self.ping_interval <= 0 or self.inactivity_timeout <= 0:
            raise ConfigError("PYGW_PING_INTERVAL and PYGW_INACTIVITY_TIMEOUT must be > 0 seconds")
        if not (0 <= self.metrics_port < 65536):
            raise ConfigError("PYGW_METRICS_PORT must be between 0 and 65535")
        if self.drain_seconds < 0 or self.shutdown_timeout <= 0:
            raise ConfigError("PYGW_DRAIN_SECONDS must be >= 0 and PYGW_SHUTDOWN_TIMEOUT > 0")
        if self.ws_max_connections < 0:
            raise ConfigError("PYGW_WS_MAX_CONNECTIONS must be >= 0 (0 = from the open-file limit)")
        if self.ws_frames not in ("text", "original"):
            raise ConfigError("PYGW_WS_FRAMES must be text or original")
        if self.ws_compression not in WS_COMPRESSION:
            raise ConfigError("PYGW_WS_COMPRESSION must be off, shared or dedicated")
        if not (1 <= self.password_min_length <= 1024):
            raise ConfigError("PYGW_PASSWORD_MIN_LENGTH must be between 1 and 1024")
        if self.register_max_waiting < 0:
            raise ConfigError("PYGW_REGISTER_MAX_WAITING must be >= 0")
        if self.email_check not in ("strict", "off"):
            raise ConfigError("PYGW_EMAIL_CHECK must be strict or off")
        if self.redis_cluster and not self.redis_url:
            raise ConfigError("PYGW_REDIS_CLUSTER needs REDIS_URL (any node of the cluster)")
        if self.redis_wait_replicas < 0:
            raise ConfigError("PYGW_REDIS_WAIT_REPLICAS must be >= 0")
        if self.session_max_bytes < 0 or self.session_update_max_bytes < 0:
            raise ConfigError(
                "PYGW_SESSION_MAX_BYTES and PYGW_SESSION_UPDATE_MAX_BYTES must be >= 0"
                " (0 = no limit)"
            )
        if self.ws_max_subscriptions < 0:
            raise ConfigError("PYGW_WS_MAX_SUBSCRIPTIONS must be >= 0 (0 = no limit)")
        if self.channel_meta_ttl < 1:
            raise ConfigError("PYGW_CHANNEL_META_TTL must be at least 1 second")
        if self.batch_write_interval_ms < 1:
            raise ConfigError("BATCH_WRITE_INTERVAL_MS must be at least 1")
        if self.algorithm.startswith("HS"):
            if not self.secret_key:
                # One process: a random key is safe (tokens die with the process).
                # Workers and nodes must share a key: the CLI passes this one to its workers.
                self.secret_key = secrets.token_hex(32)
                self.generated_secret = True
        elif self.jwt_public_key is None and self.jwt_private_key is None:
            raise ConfigError(
                f"ALGORITHM={self.algorithm} needs PYGW_JWT_PRIVATE_KEY"
                " (to issue tokens) and/or PYGW_JWT_PUBLIC_KEY (to verify them)"
            )
        if not self.gateway_id:
            self.gateway_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"

    @property
    def access_ttl(self) -> int:
        return int(self.access_token_expire_minutes * 60)

    @property
    def refresh_ttl(self) -> int:
        return int(self.refresh_token_expire_days * 86400)

    @property
    def session_ttl(self) -> float:
        return self.session_timeout_minutes * 60

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
