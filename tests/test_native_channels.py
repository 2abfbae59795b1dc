"""pygw._native ChannelPolicy: channel names, namespaces, built-in and configured rules."""

from __future__ import annotations

import json

import pytest

from pygw._native import ChannelPolicy

OK, BAD_NAME, FORBIDDEN, UNKNOWN = 0, 400, 403, 404

CONFIG = [
    {
        "name": "news",
        "subscribe": "*",
        "publish": ["editor", "admin"],
        "history_size": 50,
        "history_ttl": 300.5,
        "presence": True,
    },
    {"name": "chat", "subscribe": ["user", "admin"], "publish": ["user", "admin"]},
    {"name": "readonly", "subscribe": "*", "publish": []},
    {"name": "", "subscribe": "*", "publish": ["admin"], "history_size": 3},
]


def policy(
    config: list[dict[str, object]] | None = None, allow_unknown: bool = True
) -> ChannelPolicy:
    return ChannelPolicy(
        json.dumps(config if config is not None else CONFIG).encode(), allow_unknown
    )


@pytest.mark.parametrize(
    "channel",
    ["a", "chat:room-1", "x:y:z", "A_b-c.d@e=f/g+h:1", "n" * 255, "ends-with:"],
)
def test_valid_channel_names(channel: str) -> None:
    assert policy([]).check("subscribe", channel, "u1", "user") == OK


@pytest.mark.parametrize(
    "channel",
    ["", ":leading", "has space", "caf\u00e9", "semi;colon", "star*", "q?", "n" * 256, "tab\t"],
)
def test_invalid_channel_names(channel: str) -> None:
    for action in ("subscribe", "publish"):
        assert policy([]).check(action, channel, "u1", "admin") == BAD_NAME


def test_namespace_extraction() -> None:
    p = policy([])
    assert p.namespace("chat:room:1") == "chat"
    assert p.namespace("lobby") == ""
    assert p.namespace("user:42") == "user"


def test_configured_roles() -> None:
    p = policy()
    assert p.check("subscribe", "news:today", "u", "guest") == OK
    assert p.check("publish", "news:today", "u", "user") == FORBIDDEN
    assert p.check("publish", "news:today", "u", "editor") == OK
    assert p.check("subscribe", "chat:1", "u", "guest") == FORBIDDEN
    assert p.check("publish", "chat:1", "u", "user") == OK
    assert p.check("publish", "readonly:x", "u", "admin") == FORBIDDEN
    # The "" namespace holds channels without a colon.
    assert p.check("subscribe", "lobby", "u", "user") == OK
    assert p.check("publish", "lobby", "u", "user") == FORBIDDEN
    assert p.check("publish", "lobby", "u", "admin") == OK


def test_unknown_namespaces() -> None:
    assert policy(allow_unknown=True).check("publish", "misc:1", "u", "anyrole") == OK
    assert policy(allow_unknown=False).check("subscribe", "misc:1", "u", "admin") == UNKNOWN
    assert policy(allow_unknown=False).check("subscribe", "news:1", "u", "user") == OK


def test_personal_channels() -> None:
    for p in (policy(allow_unknown=False), policy([{"name": "user", "publish": "*"}])):
        assert p.check("subscribe", "user:42", "42", "user") == OK
        assert p.check("subscribe", "user:42", "43", "user") == FORBIDDEN
        assert p.check("subscribe", "user:42", "43", "admin") == FORBIDDEN
        assert p.check("publish", "user:42", "42", "user") == FORBIDDEN
        assert p.check("publish", "user:42", "42", "admin") == FORBIDDEN
        assert p.check("subscribe", "user:", "", "user") == FORBIDDEN
        assert p.check("subscribe", "user:a:b", "a:b", "user") == OK


def test_personal_channels_can_be_restricted_further() -> None:
    p = policy([{"name": "user", "subscribe": ["admin"], "history_size": 5}])
    assert p.check("subscribe", "user:1", "1", "user") == FORBIDDEN
    assert p.check("subscribe", "user:1", "1", "admin") == OK
    assert p.options("user:1") == (5, 0.0, False)


def test_admin_namespace_defaults() -> None:
    p = policy([])
    assert p.check("subscribe", "admin:ops", "u", "user") == FORBIDDEN
    assert p.check("publish", "admin:ops", "u", "user") == FORBIDDEN
    assert p.check("subscribe", "admin:ops", "u", "admin") == OK
    assert policy([], allow_unknown=False).check("publish", "admin:ops", "u", "admin") == OK
    # A colon-less "admin" channel belongs to the "" namespace.
    assert p.check("subscribe", "admin", "u", "user") == OK


def test_admin_namespace_can_be_configured() -> None:
    p = policy([{"name": "admin", "subscribe": "*"}])
    assert p.check("subscribe", "admin:ops", "u", "user") == OK
    assert p.check("publish", "admin:ops", "u", "user") == FORBIDDEN, "omitted: admin only"
    assert p.check("publish", "admin:ops", "u", "admin") == OK


def test_omitted_permissions_default_to_everyone() -> None:
    p = policy([{"name": "chat", "history_size": 10}], allow_unknown=False)
    assert p.check("subscribe", "chat:1", "u", "user") == OK
    assert p.check("publish", "chat:1", "u", "guest") == OK


def test_options() -> None:
    p = policy()
    assert p.options("news:today") == (50, 300.5, True)
    assert p.options("chat:1") == (0, 0.0, False)
    assert p.options("lobby") == (3, 0.0, False)
    assert p.options("unknown:1") == (0, 0.0, False)


def test_defaults() -> None:
    p = ChannelPolicy()
    assert p.check("publish", "anything:1", "u", "user") == OK
    assert p.options("anything:1") == (0, 0.0, False)


def test_unknown_action_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="action"):
        policy().check("unsubscribe", "chat:1", "u", "user")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b"not json", "invalid namespaces config"),
        (b'{"name": "x"}', "invalid namespaces config"),
        (b'[{"name": "x", "subscribe": "everyone"}]', "list of role"),
        (b'[{"name": "x", "publish": [1]}]', "invalid type"),
        (b'[{"name": "x", "subscribe": null}]', "invalid type"),
        (b'[{"name": "x", "histroy_size": 1}]', "unknown field"),
        (b'[{"name": "x", "history_size": -1}]', "invalid value"),
        (b'[{"name": "x", "history_size": 1.5}]', "invalid type"),
        (b'[{"name": "x", "history_ttl": -1}]', "history_ttl"),
        (b'[{"name": "x", "presence": "yes"}]', "invalid type"),
        (b'[{"subscribe": "*"}]', "name"),
        (b'[{"name": "a:b"}]', "invalid namespace name"),
        (b'[{"name": "sp ace"}]', "invalid namespace name"),
        (b'[{"name": "x"}, {"name": "x"}]', "twice"),
    ],
)
def test_invalid_configs(config: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChannelPolicy(config)
