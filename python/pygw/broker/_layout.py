"""Keys and pub/sub channels of the Redis broker, on one Redis or on a Redis Cluster.

=================================  ===========================  ============================
what                               one Redis                    Redis Cluster (``{}`` = tag)
=================================  ===========================  ============================
channel offsets (epoch, top, ttl)  ``pygw:chmeta:<ch>``         ``pygw:chmeta:{<ch>}``
channel history (list)             ``pygw:hist:<ch>``           ``pygw:hist:{<ch>}``
channel presence (hash)            ``pygw:presence:<ch>``       ``pygw:presence:{<ch>}``
channel publications (pub/sub)     ``pygw:ch:<ch>``             ``pygw:ch:{<ch>}`` (sharded)
user pushes (pub/sub, 64 of them)  ``pygw:user:<k>``            ``pygw:user:{u<k>}`` (sharded)
control messages (pub/sub)         ``pygw:control``             ``pygw:control`` (sharded)
live nodes (set)                   ``pygw:nodes``               ``pygw:{nodes}``
a node's heartbeat (string, TTL)   ``pygw:node:<id>``           ``pygw:{nodes}:<id>``
a query's answers (list)           ``pygw:reply:<random>``      the same
=================================  ===========================  ============================

On a cluster a channel's offsets, history and publications share the channel's slot, so the
publish script is one call on one shard and the message crosses only that shard (``SPUBLISH``).
Heartbeats share one slot so the live nodes are read with one MGET.

User pushes: instead of a pub/sub channel per user (whose SUBSCRIBE every connect would wait
for), a push to ``user:<id>`` is published on one of :data:`USER_SHARDS` channels chosen by
CRC32 of the user channel, with the user channel's name in the payload. Every node subscribes to
all of them when it starts, so a connection is reachable as soon as it opens. See
``docs/DESIGN.md`` ("User deliveries").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

USER_SHARDS = 64
"""Pub/sub channels that carry user pushes. Every node and every Publisher must agree on it."""


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    cluster: bool

    def _tag(self, value: str) -> str:
        return f"{{{value}}}" if self.cluster else value

    def meta(self, channel: str) -> str:
        return "pygw:chmeta:" + self._tag(channel)

    def history(self, channel: str) -> str:
        return "pygw:hist:" + self._tag(channel)

    def presence(self, channel: str) -> str:
        return "pygw:presence:" + self._tag(channel)

    def pubsub(self, channel: str) -> bytes:
        return ("pygw:ch:" + self._tag(channel)).encode()

    def channel_of(self, pubsub: bytes) -> str:
        """The pygw channel a publication arrived on (inverse of :meth:`pubsub`)."""
        name = pubsub[len(b"pygw:ch:") :]
        return (name[1:-1] if self.cluster else name).decode()

    @property
    def control(self) -> bytes:
        return b"pygw:control"

    def user_shard(self, user_channel: str) -> bytes:
        k = zlib.crc32(user_channel.encode()) % USER_SHARDS
        return (f"pygw:user:{{u{k}}}" if self.cluster else f"pygw:user:{k}").encode()

    @property
    def user_shards(self) -> set[bytes]:
        if self.cluster:
            return {f"pygw:user:{{u{k}}}".encode() for k in range(USER_SHARDS)}
        return {f"pygw:user:{k}".encode() for k in range(USER_SHARDS)}

    @property
    def nodes(self) -> str:
        return "pygw:{nodes}" if self.cluster else "pygw:nodes"

    def node(self, node_id: str) -> str:
        return f"pygw:{{nodes}}:{node_id}" if self.cluster else f"pygw:node:{node_id}"

    @property
    def publish_command(self) -> str:
        return "SPUBLISH" if self.cluster else "PUBLISH"


SINGLE = BrokerLayout(cluster=False)
CLUSTER = BrokerLayout(cluster=True)
