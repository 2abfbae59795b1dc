"""Where the proxy may connect (review item 17d): route backends on loopback, link-local (cloud
metadata at 169.254.169.254), private, unspecified and other non-public addresses are refused
unless ``PYGW_PROXY_ALLOW_PRIVATE=true`` — at registration (:func:`check_base_url`) and at every
new connection (:mod:`pygw.proxy.guarded`, which connects only to the addresses it checked, so a
name that resolves differently later, DNS rebinding included, cannot reach them either)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from pygw.core.netaddr import non_public_kind

ALLOW_SETTING = "PYGW_PROXY_ALLOW_PRIVATE=true"


class PrivateAddress(Exception):
    """A backend's host is or resolves to an address the proxy may not connect to."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` stands for (an IP literal: itself); OSError when it resolves to
    nothing."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def refuse_private(host: str, addresses: list[str]) -> None:
    """PrivateAddress naming the first address of ``addresses`` that is not public (all of them
    must be: a name with one private answer could be made to pick it)."""
    for address in addresses:
        kind = non_public_kind(ipaddress.ip_address(address))
        if kind is not None:
            named = address if address == host else f"{host} resolves to {address}"
            article = "an" if kind[0] in "aeiou" else "a"
            raise PrivateAddress(
                f"{named}, {article} {kind} address: backends on non-public addresses need "
                f"{ALLOW_SETTING}"
            )


async def check_base_url(base_url: str) -> None:
    """Refuse (PrivateAddress) a ``base_url`` whose host is or resolves to a non-public address.
    A host that does not resolve now passes: each connection is checked again."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError):
        return
    refuse_private(host, addresses)
