"""Refuse to share a port by accident.

uSockets binds its listeners with ``SO_REUSEPORT`` (so ``--workers`` processes can share one
port). The kernel then lets *any* later process bind the same port too, and splits new
connections between them: a second ``pygw serve`` on a busy port would start without a word and
take half the traffic into an unrelated gateway. :func:`ensure_port_free` tells that case apart
before listening: a probe socket bound *without* ``SO_REUSEPORT`` fails with ``EADDRINUSE``
when anything listens there (``SO_REUSEADDR`` keeps TIME_WAIT remnants of a previous run from
counting). It is a check, not a lock: two processes starting in the same instant can both pass.
"""

from __future__ import annotations

import errno
import socket


class PortInUse(OSError):
    """Another process listens on the address and port."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if something listens on ``host:port`` (port 0 never does)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return  # the listener reports the bad host itself
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    continue  # e.g. no IPv6 here: not a conflict, uSockets will say
                raise PortInUse(
                    errno.EADDRINUSE,
                    f"{host or '*'}:{port} is already in use by another process; stop it, choose"
                    " another --port, or set PYGW_REUSE_PORT=true to share the port with it"
                    " (the kernel then splits connections between the two)",
                ) from None
