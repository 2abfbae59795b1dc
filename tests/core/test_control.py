"""Control messages: one encoding, decoded back to the same typed message; junk is ignored."""

from __future__ import annotations

import orjson
import pytest

from pygw.core import control


@pytest.mark.parametrize(
    "message",
    [
        control.Revoke("abc", 1_900_000_000),
        control.RevokeUser("alice", 1_700_000_000_123_456, 1_900_000_000),
        control.RevokeUser("bob", 7, 1_900_000_000, 1000, "Logged out"),
        control.Disconnect("alice"),
        control.Disconnect("bob", "fam1", 1008, "Token expired"),
        control.RoutesChanged(),
        control.Query("connections", {"limit": 5, "user": None}, "pygw:reply:1"),
    ],
)
def test_round_trip(message: control.ControlMessage) -> None:
    raw = control.encode(message, "node-a")
    assert orjson.loads(raw)["origin"] == "node-a"
    assert orjson.loads(raw)["op"] == message.op
    assert control.decode(raw) == message


def test_wire_form_of_disconnect_is_the_historical_one() -> None:
    # Nodes of the previous release read this shape: keep it.
    raw = control.encode(control.Disconnect("u", None, 1000, "Logged out"), "n")
    assert orjson.loads(raw) == {
        "origin": "n",
        "user": "u",
        "family": None,
        "code": 1000,
        "reason": "Logged out",
        "op": "disconnect",
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"op": "revoke"}',
        b'{"op": "revoke", "jti": "x", "exp": "soon"}',
        b'{"op": "launch-missiles"}',
        b'{"op": "revoke_user", "user": "u", "until": 1}',
        b'{"op": "revoke_user", "user": "u", "gen": "high", "until": 1}',
        b'{"op": "query", "name": "n", "args": 3, "reply_to": "k"}',
    ],
)
def test_malformed_or_unknown_messages_decode_to_none(raw: bytes) -> None:
    assert control.decode(raw) is None
