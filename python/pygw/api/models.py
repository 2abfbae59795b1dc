"""Request and response bodies of the HTTP API (SPEC §2, §5).

Field names and shapes are the wire contract of the original gateway; pydantic validates input
(422 with ``loc``/``msg``/``type`` items) and generates the OpenAPI schemas.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
)

from pygw.proxy.forward import path_is_safe

Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@+=-]+$"),
]
# How strict email and password are is configuration (PYGW_EMAIL_CHECK, PYGW_PASSWORD_MIN_LENGTH),
# checked by the endpoint (pygw.auth.credentials); the models only bound their size.
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    Field(description="Must look like an email unless PYGW_EMAIL_CHECK=off"),
]
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    Field(description="At least PYGW_PASSWORD_MIN_LENGTH characters (default 8)"),
]
AnyPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


# --- auth --------------------------------------------------------------------------------------
class RegisterRequest(Model):
    username: Username
    email: Email
    password: Password


class RegisterResponse(Model):
    message: str = "User registered successfully"
    username: str


class LoginRequest(Model):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: AnyPassword


class UserInfo(Model):
    username: str
    role: str


class LoginResponse(Model):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserInfo
    session_id: str
    refresh_token: str


class PasswordChangeRequest(Model):
    current_password: AnyPassword
    new_password: Password


class RefreshRequest(Model):
    refresh_token: Annotated[str, StringConstraints(min_length=1)]


class MessageResponse(Model):
    message: str


# --- sessions ----------------------------------------------------------------------------------
class SessionCreateRequest(Model):
    user_id: str | None = None
    chat_id: str | None = None
    session_id: str | None = None


class SessionUpdateRequest(Model):
    chat_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class SessionResponse(Model):
    session_id: str
    user_id: str
    chat_id: str | None
    data: dict[str, Any]
    ws_url: str


class SessionSummary(Model):
    session_id: str
    chat_id: str | None
    last_access: str
    created_at: str


class UserSessionsResponse(Model):
    sessions: list[SessionSummary]
    count: int


class ConnectionResponse(Model):
    session_id: str
    gateway_id: str
    ws_connected: bool
    last_seen: float
    """Epoch seconds, as the original returns them."""
    connected_at: float | None = None


# --- health ------------------------------------------------------------------------------------
class HealthResponse(Model):
    model_config = ConfigDict(extra="allow")
    status: Literal["healthy", "unhealthy"]


class WSHealthConfig(Model):
    ping_interval: float
    pong_timeout: float
    inactivity_timeout: float
    cache_ttl: float


class WSHealthResponse(Model):
    model_config = ConfigDict(extra="allow")
    status: Literal["healthy", "unhealthy"]
    active_connections: int
    connection_states: int
    cache_users: int
    cache_sessions: int
    cache_messages: int
    config: WSHealthConfig


# --- admin -------------------------------------------------------------------------------------
class UsernameRequest(Model):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AdminUser(Model):
    username: str
    email: str
    role: str
    last_login: str | None
    session_count: int
    is_online: bool


class UserStats(Model):
    total_users: int
    active_sessions: int
    ws_connections: int
    memory_usage: dict[str, Any]


class SystemStats(Model):
    redis_connections: int
    memory_usage_mb: float
    uptime_seconds: float
    active_workers: int


class RedisInfo(Model):
    connected_clients: int
    used_memory_human: str
    used_memory_peak_human: str
    keyspace_hits: int
    keyspace_misses: int
    total_commands_processed: int


# --- dynamic routes (SPEC §2) ------------------------------------------------------------------
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
    | {"x-user-id", "x-session-id"}  # the gateway's own identity headers
)


def _check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def _check_route_path(value: str) -> str:
    """A path relative to ``base_url``: ``get`` (as the original's scripts send it) is ``/get``."""
    if value and not value.startswith("/"):
        value = "/" + value
    if "?" in value or "#" in value or any(c.isspace() for c in value):
        raise ValueError("must not contain a query, a fragment or whitespace")
    if not path_is_safe(value):
        raise ValueError("must not contain . or .. segments (in any encoding) or backslashes")
    return value


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name: {name!r}")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"header {name!r} cannot be configured")
        if any(c in header for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a control character in its value")
    return value


RouteName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
RouteMethod = Annotated[
    Literal["GET", "POST", "PUT", "PATCH", "DELETE"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]


class RouteRegisterRequest(Model):
    name: RouteName
    base_url: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_base_url)]
    path: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_route_path)]
    method: RouteMethod
    headers: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=8192)]],
        Field(max_length=64),
        AfterValidator(_check_headers),
    ] = Field(default_factory=dict)
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    require_auth: bool = False
    ws_supported: bool = False


class RouteRegisterResponse(Model):
    message: str
    name: str


class RouteInfo(Model):
    name: str
    base_url: str
    method: str
    path: str
    ws_supported: bool


# --- server push API (SPEC §5) -----------------------------------------------------------------
class PublishRequest(Model):
    channel: ChannelName
    data: JsonValue


class BroadcastRequest(Model):
    channels: Annotated[list[ChannelName], Field(min_length=1, max_length=1000)]
    data: JsonValue


class PushRequest(Model):
    data: JsonValue


class DeliveryResponse(Model):
    model_config = ConfigDict(extra="allow")
    deliveries: int
    """Local deliveries this node made (other nodes deliver to their own subscribers)."""


class ErrorItem(Model):
    loc: list[str | int]
    msg: str
    type: str


class ErrorEnvelope(Model):
    """Every HTTP error has this shape (422 adds ``errors``, 429 adds ``retry_after``)."""

    error: str
    detail: str | None
    status_code: int
    timestamp: str
    path: str
    errors: list[ErrorItem] | None = None
    retry_after: int | None = None
