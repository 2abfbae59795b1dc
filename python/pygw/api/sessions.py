"""``/sessions/*``: accounts, login/logout/refresh, sessions and connection records (SPEC §2)."""

from __future__ import annotations

import uuid

from pygw._native import Claims
from pygw.api.models import (
    ConnectionResponse,
    LoginRequest,
    LoginResponse,
    MessageResponse,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    SessionCreateRequest,
    SessionResponse,
    SessionSummary,
    SessionUpdateRequest,
    UserInfo,
    UserSessionsResponse,
)
from pygw.api.services import Services
from pygw.auth.credentials import check_new_credentials, check_password
from pygw.auth.service import LoginResult, ensure_owner_or_admin, new_session_data
from pygw.core.errors import Forbidden, NotFound, NotOwner, PygwError
from pygw.core.timeutil import now_iso
from pygw.core.weborigin import listening_ws_base, public_ws_base
from pygw.http.routing import Context, Router
from pygw.store.base import SessionRecord
from pygw.transport.types import HTTPRequest

TAGS = ("sessions",)
NOT_YOURS = "Access denied"
"""Another user's ``/sessions/users/{user}/...`` (the original's text; admins may read them)."""


def ws_base(svc: Services, request: HTTPRequest) -> str:
    """``PYGW_PUBLIC_URL`` (as ``ws``/``wss``, mount prefix included), else the address this
    node listens on (+ the ASGI mount prefix). Never the request's ``Host``: a forged one would
    hand clients (or a cache) a socket URL elsewhere."""
    if svc.settings.public_url:
        return public_ws_base(svc.settings.public_url)
    base = listening_ws_base(svc.node.host or svc.settings.host, svc.node.port)
    # Under an ASGI host app the gateway is mounted below a prefix (e.g. ``/gw``).
    return f"{base}{request.state.get('root_path', '')}"


def session_response(svc: Services, request: HTTPRequest, s: SessionRecord) -> dict[str, object]:
    # The literal "{access_token}" placeholder is part of the original's contract.
    url = f"{ws_base(svc, request)}/ws/connect?session_id={s.session_id}&token={{access_token}}"
    return {
        "session_id": s.session_id,
        "user_id": s.user_id,
        "chat_id": s.chat_id,
        "data": s.data,
        "ws_url": url,
    }


def login_response(result: LoginResult, expires_in: int) -> LoginResponse:
    return LoginResponse(
        access_token=result.access.token,
        expires_in=expires_in,
        user=UserInfo(username=result.username, role=result.role),
        session_id=result.session_id,
        refresh_token=result.refresh.token,
    )


SESSION_DENIED = "Session access denied"


def missing_session(claims: Claims, session_id: str) -> PygwError:
    """The answer for a session that does not exist. The original checks access before
    existence, so a user asking for a session that is not theirs gets 403 "Session access
    denied" whether or not it exists; 404 "Session not found" is for the caller's own login
    session (the token's ``sid``) and for admins, who may read any session."""
    if claims.role == "admin" or session_id == claims.sid:
        return NotFound("Session not found")
    return Forbidden(SESSION_DENIED)


router = Router()


def client_ip(ctx: Context, svc: Services) -> str:
    """The caller's address (behind ``PYGW_TRUSTED_PROXIES`` only, the forwarded one)."""
    return svc.client_address.resolve(ctx.request.headers, ctx.request.client_ip)


@router.post(
    "/sessions/register",
    body=RegisterRequest,
    response_model=RegisterResponse,
    summary="Register a user",
    description=(
        "Always role user. Limited per client address (PYGW_RATE_REGISTER, 429); names in "
        "PYGW_ADMIN_USERS are reserved for the operator (400 Username is reserved)."
    ),
    tags=TAGS,
    errors=(400, 422, 429),
)
async def register(ctx: Context, svc: Services) -> RegisterResponse:
    body: RegisterRequest = ctx.body
    check_new_credentials(svc.settings, body.email, body.password)
    await svc.limits.register(client_ip(ctx, svc))
    await svc.auth.register(body.username, body.email, body.password)
    return RegisterResponse(username=body.username)


@router.post(
    "/sessions/login",
    body=LoginRequest,
    response_model=LoginResponse,
    summary="Log in: access and refresh tokens plus a new session",
    description=(
        "Replaces the user's previous login: its tokens are revoked and its WebSockets "
        "closed (1000) on every node. Cost is dominated by argon2id verification "
        "(about 50/s per core at the default OWASP parameters)."
    ),
    tags=TAGS,
    errors=(401, 422, 429),
)
async def login(ctx: Context, svc: Services) -> LoginResponse:
    body: LoginRequest = ctx.body
    # Before any password work: refused attempts cost no argon2 CPU (429, Retry-After).
    address = client_ip(ctx, svc)
    await svc.limits.login(body.username, address)
    result = await svc.auth.login(body.username, body.password)
    await svc.limits.login_succeeded(body.username, address)
    return login_response(result, svc.settings.access_ttl)


@router.post(
    "/sessions/refresh",
    body=RefreshRequest,
    response_model=LoginResponse,
    summary="Exchange a refresh token for new tokens (rotation)",
    description="Reusing a spent refresh token revokes the whole family (401 Token revoked).",
    tags=TAGS,
    errors=(401, 422),
)
async def refresh(ctx: Context, svc: Services) -> LoginResponse:
    body: RefreshRequest = ctx.body
    result = await svc.auth.refresh(body.refresh_token)
    return login_response(result, svc.settings.access_ttl)


@router.post(
    "/sessions/logout",
    auth="user",
    response_model=MessageResponse,
    summary="Log out: revoke the token, close this login's WebSockets",
    tags=TAGS,
    errors=(401,),
)
async def logout(ctx: Context, svc: Services) -> dict[str, str]:
    await svc.auth.logout(ctx.claims)
    return {"message": "Logged out successfully"}


@router.post(
    "/sessions/change_password",
    auth="user",
    body=PasswordChangeRequest,
    response_model=MessageResponse,
    summary="Change the caller's password; every login of the caller ends",
    description=(
        "Checks `current_password` (counted like a login attempt: 429 when over the login "
        "limits), stores `new_password`, then revokes every token of the caller and closes "
        'their WebSockets (1000 "Password changed") on every node: log in again.'
    ),
    tags=TAGS,
    errors=(400, 401, 422, 429),
)
async def change_password(ctx: Context, svc: Services) -> dict[str, str]:
    body: PasswordChangeRequest = ctx.body
    check_password(svc.settings, body.new_password, "new_password")
    address = client_ip(ctx, svc)
    await svc.limits.login(ctx.claims.sub, address)
    await svc.auth.change_password(ctx.claims, body.current_password, body.new_password)
    await svc.limits.login_succeeded(ctx.claims.sub, address)
    return {"message": "Password changed successfully"}


@router.post(
    "/sessions/delete_account",
    auth="user",
    response_model=MessageResponse,
    summary="Delete the caller's account, sessions and tokens",
    tags=TAGS,
    errors=(401,),
)
async def delete_account(ctx: Context, svc: Services) -> dict[str, str]:
    await svc.auth.delete_account(ctx.claims)
    return {"message": "Account deleted successfully"}


@router.post(
    "/sessions/create",
    auth="user",
    body=SessionCreateRequest,
    response_model=SessionResponse,
    summary="Create a session, or reuse one the caller owns",
    description=(
        "Reuses `session_id` if given and the caller's; without one, the caller's login session "
        "(the access token's `sid`) while it exists; else creates a new session."
    ),
    tags=TAGS,
    errors=(401, 413, 422),
)
async def create(ctx: Context, svc: Services) -> dict[str, object]:
    body: SessionCreateRequest = ctx.body
    owner = ctx.claims.sub
    if body.user_id and body.user_id != owner and ctx.claims.role == "admin":
        owner = body.user_id
    # Without a session_id the caller's login session (the token's sid) is reused, as the
    # original does: a client that connects the returned ws_url updates its login session.
    reuse = body.session_id or ctx.claims.sid
    if reuse:
        existing = await svc.storage.get_session(reuse)
        if existing is not None and existing.user_id == owner:
            if body.chat_id is not None and body.chat_id != existing.chat_id:
                updated = await svc.storage.update_session(
                    existing.session_id, chat_id=body.chat_id
                )
                existing = updated or existing
            return session_response(svc, ctx.request, existing)
    now = now_iso()
    record = SessionRecord(
        session_id=str(uuid.uuid4()),
        user_id=owner,
        chat_id=body.chat_id,
        data=new_session_data(),
        created_at=now,
        last_access=now,
    )
    await svc.storage.create_session(record)
    return session_response(svc, ctx.request, record)


@router.get(
    "/sessions/{session_id}",
    auth="user",
    response_model=SessionResponse,
    summary="Read a session (owner or admin)",
    tags=TAGS,
    errors=(401, 403, 404),
)
async def get_session(ctx: Context, svc: Services) -> dict[str, object]:
    session_id = ctx.params["session_id"]
    session = await svc.storage.get_session(session_id)
    if session is None:
        raise missing_session(ctx.claims, session_id)
    ensure_owner_or_admin(ctx.claims, session.user_id, SESSION_DENIED)
    return session_response(svc, ctx.request, session)


@router.post(
    "/sessions/update/{session_id}",
    auth="user",
    body=SessionUpdateRequest,
    response_model=SessionResponse,
    summary="Merge data into a session (write-behind)",
    description=(
        "`data` is shallow-merged into the session's data. The write is coalesced and "
        "flushed to Redis every BATCH_WRITE_INTERVAL_MS; reads on the same node see it at once. "
        "With PYGW_SESSION_WRITE_THROUGH=true the answer waits until Redis has it. "
        "413: the update is larger than PYGW_SESSION_UPDATE_MAX_BYTES (16 KiB), or the session "
        "would become larger than PYGW_SESSION_MAX_BYTES (64 KiB); nothing is written."
    ),
    tags=TAGS,
    errors=(401, 403, 404, 413, 422),
)
async def update_session(ctx: Context, svc: Services) -> dict[str, object]:
    sid = ctx.params["session_id"]
    body: SessionUpdateRequest = ctx.body
    try:
        # Not copied out: the response is encoded before anything else can run.
        updated = await svc.storage.update_session(
            sid, chat_id=body.chat_id, data=body.data, owner=ctx.claims.sub, returning=False
        )
    except NotOwner:
        raise Forbidden(SESSION_DENIED) from None
    if updated is None:
        raise missing_session(ctx.claims, sid)
    return session_response(svc, ctx.request, updated)


@router.get(
    "/sessions/users/{user_id}/sessions",
    auth="user",
    response_model=UserSessionsResponse,
    summary="List a user's sessions (self or admin)",
    tags=TAGS,
    errors=(401, 403),
)
async def user_sessions(ctx: Context, svc: Services) -> UserSessionsResponse:
    user_id = ctx.params["user_id"]
    ensure_owner_or_admin(ctx.claims, user_id, NOT_YOURS)
    sessions = await svc.storage.list_user_sessions(user_id)
    items = [
        SessionSummary(
            session_id=s.session_id,
            chat_id=s.chat_id,
            last_access=s.last_access,
            created_at=s.created_at,
        )
        for s in sessions
    ]
    return UserSessionsResponse(sessions=items, count=len(items))


@router.get(
    "/sessions/users/{user_id}/connection",
    auth="user",
    response_model=ConnectionResponse,
    summary="A user's connection record (self or admin)",
    tags=TAGS,
    errors=(401, 403, 404),
)
async def user_connection(ctx: Context, svc: Services) -> ConnectionResponse:
    user_id = ctx.params["user_id"]
    ensure_owner_or_admin(ctx.claims, user_id, NOT_YOURS)
    record = await svc.storage.get_connection(user_id)
    if record is None:
        raise NotFound("Connection not found")
    return ConnectionResponse(
        session_id=record.session_id,
        gateway_id=record.gateway_id,
        ws_connected=record.ws_connected,
        last_seen=record.last_seen,
        connected_at=record.connected_at,
    )
