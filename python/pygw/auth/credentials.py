"""What a new account's credentials must satisfy, by configuration: ``PYGW_PASSWORD_MIN_LENGTH``
characters of password (default 8) and, with ``PYGW_EMAIL_CHECK=strict`` (the default), an email
that looks like one. The original gateway accepted any text for both; a deployment migrating its
clients can relax them (README, "Compatibility notes"). Login accepts any existing password."""

from __future__ import annotations

import re

from pygw.config import Settings
from pygw.core.errors import Invalid

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_password(settings: Settings, password: str, field: str = "password") -> None:
    """Raise :class:`Invalid` (422, ``loc`` body.<field>) for a password that is too short."""
    minimum = settings.password_min_length
    if len(password) < minimum:
        raise Invalid(
            f"String should have at least {minimum} character{'s' if minimum > 1 else ''}",
            ("body", field),
        )


def check_email(settings: Settings, email: str) -> None:
    """Raise :class:`Invalid` (422, ``loc`` body.email) for an email that does not look like
    one, unless the check is off."""
    if settings.email_check == "strict" and not EMAIL.match(email):
        raise Invalid("value is not a valid email address", ("body", "email"))


def check_new_credentials(settings: Settings, email: str, password: str) -> None:
    check_email(settings, email)
    check_password(settings, password)
