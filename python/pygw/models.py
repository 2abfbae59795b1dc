"""Request and response bodies of the HTTP API (SPEC §2, §5).

Field names and shapes are the wire contract of the original gateway; pydantic validates input
(422 with ``loc``/``msg``/``type`` items) and generates the OpenAPI schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@+=-]+$"),
]
Email = Annotated[
    str, StringConstraints(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
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
    last_seen: str
    connected_at: str | None = None


# --- health ------------------------------------------------------------------------------------
class HealthResponse(Model):
    model_config = ConfigDict(extra="allow")
    status: Literal["healthy", "unhealthy"]


class WSHealthResponse(Model):
    model_config = ConfigDict(extra="allow")
    status: Literal["healthy", "unhealthy"]
    active_connections: int


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
