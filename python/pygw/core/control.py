"""Cluster control messages: typed, with one encoding.

Every node receives every control message (its own included) through the broker's control
channel. Producers build one of the dataclasses below and hand it to
:meth:`pygw.broker.base.Broker.publish_control`; the broker encodes it with :func:`encode`, and
every node's broker decodes it with :func:`decode` and passes it to its
:class:`~pygw.broker.base.BrokerHandler`. Unknown or malformed messages (from a newer or broken
peer) decode to None and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pygw.core.codes import CLOSE_NORMAL, CLOSE_POLICY


@dataclass(slots=True, frozen=True)
class Revoke:
    """An access token (by ``jti``) is revoked until ``exp``."""

    jti: str
    exp: int
    op: str = field(default="revoke", init=False)


@dataclass(slots=True, frozen=True)
class RevokeUser:
    """Every access token of ``user`` issued before generation ``gen`` is revoked (until
    ``until``, when they have all expired); the user's sockets opened with such a token close
    with ``code`` and ``reason``. Sent on logout, password change, account deletion and role
    changes."""

    user: str
    gen: int
    until: int
    code: int = CLOSE_POLICY
    reason: str = "Token revoked"
    op: str = field(default="revoke_user", init=False)


@dataclass(slots=True, frozen=True)
class Disconnect:
    """Close ``user``'s sockets (only those of login ``family`` when given)."""

    user: str
    family: str | None = None
    code: int = CLOSE_NORMAL
    reason: str = ""
    op: str = field(default="disconnect", init=False)


@dataclass(slots=True, frozen=True)
class RoutesChanged:
    """The dynamic route table changed in storage: reload it."""

    op: str = field(default="routes", init=False)


@dataclass(slots=True, frozen=True)
class Query:
    """A cluster-wide question (``Broker.gather``); answers go to the list ``reply_to``."""

    name: str
    args: dict[str, Any]
    reply_to: str
    op: str = field(default="query", init=False)


@dataclass(slots=True, frozen=True)
class StatsWanted:
    """An operator's console is watching: publish this node's stats to ``admin:stats`` until
    ``until`` (UNIX seconds)."""

    until: float
    op: str = field(default="stats", init=False)


ControlMessage = Revoke | RevokeUser | Disconnect | RoutesChanged | Query | StatsWanted


def encode(message: ControlMessage, origin: str) -> bytes:
    """The wire form: a JSON object with ``op``, the message's fields and the sender's id."""
    body: dict[str, Any] = {"origin": origin}
    for name in message.__slots__:
        body[name] = getattr(message, name)
    return orjson.dumps(body)


def decode(raw: bytes) -> ControlMessage | None:
    """The message, or None for anything this node does not understand."""
    try:
        body = orjson.loads(raw)
        op = body.get("op")
        if op == "revoke":
            return Revoke(str(body["jti"]), int(body["exp"]))
        if op == "revoke_user":
            return RevokeUser(
                str(body["user"]),
                int(body["gen"]),
                int(body["until"]),
                int(body.get("code", CLOSE_POLICY)),
                str(body.get("reason", "Token revoked")),
            )
        if op == "disconnect":
            family = body.get("family")
            return Disconnect(
                str(body["user"]),
                None if family is None else str(family),
                int(body.get("code", CLOSE_NORMAL)),
                str(body.get("reason", "")),
            )
        if op == "routes":
            return RoutesChanged()
        if op == "stats":
            return StatsWanted(float(body["until"]))
        if op == "query":
            args = body.get("args") or {}
            return Query(str(body["name"]), dict(args), str(body["reply_to"]))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None
    return None
