"""Channel naming and the publish options a channel's namespace gives it.

A channel's namespace is the text before its first ``:``. ``user:<id>`` channels carry pushes
to one user (every connection of the user is subscribed to its own); they have no offsets and no
history. Other channels get offsets, and history and presence when their namespace says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

USER_PREFIX = "user:"


def user_channel(user_id: str) -> str:
    """The channel that reaches every connection of ``user_id``."""
    return USER_PREFIX + user_id


def is_user_channel(channel: str) -> bool:
    return channel.startswith(USER_PREFIX)


class NamespacePolicy(Protocol):
    """What a namespace configures (``pygw._native.ChannelPolicy`` implements it)."""

    def options(self, channel: str) -> tuple[int, float, bool]:
        """(history size, history TTL in seconds, presence) of ``channel``."""
        ...


@dataclass(slots=True, frozen=True)
class PublishOptions:
    history_size: int = 0
    history_ttl: float = 0.0
    with_offset: bool = True
    """User channels have no offsets (and so no history)."""


PLAIN_PUBLISH = PublishOptions()
"""Offsets, no history."""
USER_PUBLISH = PublishOptions(with_offset=False)


def publish_options(policy: NamespacePolicy, channel: str) -> PublishOptions:
    """How a publication to ``channel`` is stored and numbered."""
    if is_user_channel(channel):
        return USER_PUBLISH
    size, ttl, _presence = policy.options(channel)
    return PublishOptions(size, ttl, True)
