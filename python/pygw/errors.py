"""Exceptions shared across pygw's layers."""

from __future__ import annotations


class PygwError(Exception):
    """Base class of pygw's own exceptions."""


class NotOwner(PygwError):
    """A session operation was asked on behalf of a user who does not own the session."""


class BackendUnavailable(PygwError):
    """The storage or broker backend (Redis) cannot be reached right now.

    HTTP routes turn it into 503 with the error envelope; the gateway keeps running and
    recovers by itself when the backend returns.
    """
