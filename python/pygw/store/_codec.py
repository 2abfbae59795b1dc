"""Encoding of records to and from the original gateway's stored shapes, tolerant on read."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from pygw.core.timeutil import iso_from_unix
from pygw.store.base import (
    ConnectionRecord,
    RefreshFamily,
    RouteRecord,
    SessionRecord,
    UnstorableValue,
    UserRecord,
)

log = logging.getLogger("pygw.store")

_TRUE = frozenset({"1", "true", "yes", "on"})
_NONE_STRINGS = frozenset({"", "None", "none", "null"})


_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
"""orjson encodes integers in this range only."""


def _plain_scalar(v: Any) -> bool:
    """A value orjson surely encodes, checked in O(1): an ASCII string (``isascii`` reads a
    flag; other strings may hold unpaired surrogates), a 64-bit integer, a bool, None."""
    t = type(v)
    if t is str:
        return bool(v.isascii())
    if t is int:
        return bool(_INT_MIN <= v <= _INT_MAX)
    return t is bool or v is None


def clone_json(value: Any) -> Any:
    """A deep copy through JSON; raises :class:`UnstorableValue` (a TypeError) for values that
    cannot be stored (see its documentation), before anything uses them.

    A flat dict of ASCII strings, 64-bit integers, booleans and nulls (the usual session patch)
    is copied directly: nothing in it can change under the caller or fail to serialise."""
    if type(value) is dict and all(
        type(k) is str and k.isascii() and _plain_scalar(v) for k, v in value.items()
    ):
        return dict(value)
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError as exc:  # orjson.JSONEncodeError is one
        raise UnstorableValue(f"cannot store session data: {exc}") from None


def encode_value(value: Any) -> bytes:
    """``orjson.dumps(value)``, or :class:`UnstorableValue`."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise UnstorableValue(str(exc)) from None


def _timestamp(value: Any, default: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso_from_unix(float(value))
    return default


def unix_from_iso(value: str, default: float) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, TypeError):
        return default


def epoch_seconds(value: str | None) -> float | None:
    """A stored timestamp as epoch seconds: the original writes ``time.time()``
    (``"1764900000.5"``), earlier pygw versions ISO-8601 text. None for a missing or null value
    (or text that is neither)."""
    if value is None or value in _NONE_STRINGS:
        return None
    try:
        return float(value)
    except ValueError:
        seconds = unix_from_iso(value, -1.0)
        return None if seconds < 0 else seconds


# -- users -------------------------------------------------------------------------------------
def user_to_hash(user: UserRecord) -> dict[str, str]:
    fields = {"password": user.password, "email": user.email, "role": user.role}
    if user.last_login is not None:
        fields["last_login"] = user.last_login
    return fields


def user_from_hash(username: str, fields: dict[str, str]) -> UserRecord:
    last_login = fields.get("last_login")
    return UserRecord(
        username=username,
        email=fields.get("email", ""),
        password=fields.get("password", ""),
        role=fields.get("role") or "user",
        last_login=None if last_login is None or last_login in _NONE_STRINGS else last_login,
    )


# -- sessions ----------------------------------------------------------------------------------
def session_to_json(session: SessionRecord) -> bytes:
    """The stored JSON; :class:`UnstorableValue` if it cannot be encoded."""
    return encode_value(session.to_json_dict())


def session_from_json(session_id: str, raw: str | bytes) -> SessionRecord | None:
    """Parse ``sessions:{id}``; missing fields get defaults, extra fields are ignored."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("session %s holds invalid JSON; treating it as missing", session_id)
        return None
    if not isinstance(doc, dict):
        log.warning("session %s is not a JSON object; treating it as missing", session_id)
        return None
    data = doc.get("data")
    chat_id = doc.get("chat_id")
    created_at = _timestamp(doc.get("created_at"), "")
    return SessionRecord(
        session_id=session_id,
        user_id=str(doc.get("user_id") or ""),
        chat_id=None if chat_id is None else str(chat_id),
        data=data if isinstance(data, dict) else {},
        created_at=created_at,
        last_access=_timestamp(doc.get("last_access"), created_at),
    )


# -- connection records ------------------------------------------------------------------------
def connection_to_hash(record: ConnectionRecord) -> dict[str, str]:
    """The original's shape: ``ws_connected`` "1"/"0" (what it compares against), times as epoch
    seconds written the way redis-py writes ``time.time()`` (``repr`` of the float)."""
    fields = {
        "session_id": record.session_id,
        "gateway_id": record.gateway_id,
        "ws_connected": "1" if record.ws_connected else "0",
        "last_seen": repr(float(record.last_seen)),
    }
    if record.connected_at is not None:
        fields["connected_at"] = repr(float(record.connected_at))
    return fields


def connection_from_hash(fields: dict[str, str]) -> ConnectionRecord:
    """Reads both the original's records and those earlier pygw versions wrote ("true"/"false",
    ISO-8601 times)."""
    return ConnectionRecord(
        session_id=fields.get("session_id", ""),
        gateway_id=fields.get("gateway_id", ""),
        ws_connected=fields.get("ws_connected", "").strip().lower() in _TRUE,
        last_seen=epoch_seconds(fields.get("last_seen")) or 0.0,
        connected_at=epoch_seconds(fields.get("connected_at")),
    )


# -- refresh families --------------------------------------------------------------------------
def family_to_hash(family: RefreshFamily) -> dict[str, str]:
    return {
        "username": family.username,
        "session_id": family.session_id,
        "refresh_jti": family.refresh_jti,
        "access_jti": family.access_jti,
        "access_exp": str(family.access_exp),
        "expires_at": str(family.expires_at),
        "revoked": "1" if family.revoked else "0",
    }


def family_from_hash(family: str, fields: dict[str, str]) -> RefreshFamily:
    return RefreshFamily(
        family=family,
        username=fields.get("username", ""),
        session_id=fields.get("session_id", ""),
        refresh_jti=fields.get("refresh_jti", ""),
        access_jti=fields.get("access_jti", ""),
        access_exp=int(float(fields.get("access_exp") or 0)),
        expires_at=int(float(fields.get("expires_at") or 0)),
        revoked=fields.get("revoked") == "1",
    )


def pairs_to_dict(flat: list[str]) -> dict[str, str]:
    """``[k1, v1, k2, v2, ...]`` (a Lua HGETALL) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


# -- dynamic routes ----------------------------------------------------------------------------
def route_to_json(route: RouteRecord) -> bytes:
    return orjson.dumps(
        {
            "base_url": route.base_url,
            "path": route.path,
            "method": route.method,
            "headers": route.headers,
            "timeout": route.timeout,
            "require_auth": route.require_auth,
            "ws_supported": route.ws_supported,
        }
    )


def route_from_json(name: str, raw: str | bytes) -> RouteRecord | None:
    """None (and a warning) for a value that is not a route object."""
    try:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        headers = doc.get("headers") or {}
        if not isinstance(headers, dict):
            raise TypeError("headers is not an object")
        return RouteRecord(
            name=name,
            base_url=str(doc["base_url"]),
            path=str(doc.get("path") or ""),
            method=str(doc.get("method") or "POST").upper(),
            headers={str(k): str(v) for k, v in headers.items()},
            timeout=float(doc.get("timeout") or 30.0),
            require_auth=bool(doc.get("require_auth", False)),
            ws_supported=bool(doc.get("ws_supported", False)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring malformed stored route %r: %s", name, exc)
        return None
