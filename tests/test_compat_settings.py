"""Settings for clients of the original gateway: their defaults, and bad values refused with a
message that names the setting."""

from __future__ import annotations

import pytest

from pygw.config import ConfigError, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.ws_frames, s.password_min_length, s.email_check, s.reuse_port) == (
        "text",
        8,
        "strict",
        False,
    )


def test_values() -> None:
    s = Settings.from_env(
        {
            "PYGW_WS_FRAMES": "Original",
            "PYGW_PASSWORD_MIN_LENGTH": "1",
            "PYGW_EMAIL_CHECK": "off",
            "PYGW_REUSE_PORT": "true",
        }
    )
    assert (s.ws_frames, s.password_min_length, s.email_check, s.reuse_port) == (
        "original",
        1,
        "off",
        True,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PYGW_WS_FRAMES": "binary"}, "PYGW_WS_FRAMES must be text or original"),
        ({"PYGW_PASSWORD_MIN_LENGTH": "0"}, "PYGW_PASSWORD_MIN_LENGTH must be between 1"),
        ({"PYGW_PASSWORD_MIN_LENGTH": "short"}, "PYGW_PASSWORD_MIN_LENGTH='short' is not a valid"),
        ({"PYGW_EMAIL_CHECK": "lenient"}, "PYGW_EMAIL_CHECK must be strict or off"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
