"""Client addresses: IP/CIDR settings, the address a request comes from behind trusted proxies
(``PYGW_TRUSTED_PROXIES``), and the key an address is rate-limited under."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str] | str) -> tuple[Network, ...]:
    """IPs and CIDRs (``10.0.0.0/8``, ``::1``; a comma list or an iterable); ValueError names
    the bad entry."""
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(out)


@functools.lru_cache(maxsize=8192)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # "[v6]" or "[v6]:port"
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalize_ip(text: str) -> str:
    """The canonical text of an address (IPv4-mapped IPv6 as IPv4); unparsable text unchanged."""
    ip = _parse_ip(text)
    return text if ip is None else str(ip)


@functools.lru_cache(maxsize=8192)
def ip_key(ip: str) -> str:
    """The rate-limit key of a client address: the address itself for IPv4, its /64 for IPv6
    (one subscriber usually holds a whole /64, so per-address limits would be free to dodge)."""
    addr = _parse_ip(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return ip if addr is None else str(addr)


class ClientAddress:
    """Resolves the client's address: the TCP peer, unless the peer is a trusted proxy; then the
    nearest untrusted hop of ``X-Forwarded-For`` (walked from the right, so entries a client
    wrote itself are never believed), else ``X-Real-IP``."""

    def __init__(self, trusted: Iterable[str] | str) -> None:
        self.networks = parse_networks(trusted)
        self._trusted = functools.lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, ip: str) -> bool:
        addr = _parse_ip(ip)
        return addr is not None and any(addr in net for net in self.networks)

    def resolve(self, headers: Mapping[str, str], peer: str) -> str:
        if not self.networks:
            return peer
        peer = normalize_ip(peer)
        if not self._trusted(peer):
            return peer
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            client = peer
            for hop in reversed(forwarded.split(",")):
                addr = _parse_ip(hop)
                if addr is None:
                    break  # garbage: keep the last address a trusted proxy vouched for
                client = str(addr)
                if not self._trusted(client):
                    break
            return client
        real = headers.get("x-real-ip")
        if real:
            addr = _parse_ip(real)
            if addr is not None:
                return str(addr)
        return peer


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def non_public_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not on the public internet (``loopback``, ``link-local``, ``private``,
    ``unspecified``, ``multicast``, ``non-public``), or None for a public one. An IPv4 address
    inside IPv6 (``::ffff:127.0.0.1``, NAT64 ``64:ff9b::a9fe:a9fe``) is judged as that IPv4
    address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"  # shared (100.64.0.0/10), reserved, documentation ranges
    return None
