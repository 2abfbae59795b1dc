"""A real, throw-away Redis Cluster for tests: 3 primaries and 3 replicas of Debian's
``redis-server`` (``--cluster-enabled yes``) on loopback, joined with
``redis-cli --cluster create ... --cluster-replicas 1``.

Every node is a :class:`redis_server.RedisServer` (its own temp dir, a free port and a free
cluster-bus port, ``--appendonly yes``) and is only ever signalled by the PID this object
started. ``cluster-node-timeout`` is short (1 s) so a killed primary's replica takes over
within a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from types import TracebackType

import redis
from redis.crc import key_slot

from redis_server import RedisServer, free_port

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NODE_TIMEOUT_MS = 1000


def _node_args(bus_port: int) -> list[str]:
    return [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
        "--cluster-port",
        str(bus_port),
        "--appendonly",
        "yes",
        # A replica's first full sync starts at once (the default waits 5 s for more replicas).
        "--repl-diskless-sync-delay",
        "0",
    ]


class RedisClusterServers:
    """``RedisClusterServers()`` starts at once; use as a context manager or call :meth:`close`.

    ``url`` names one node (any node is a valid entry point for a cluster client)."""

    def __init__(self, primaries: int = 3, replicas: int = 1, *, timeout: float = 60.0) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(RedisServer(extra_args=_node_args(free_port())))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            options = ["--cluster-replicas", str(replicas), "--cluster-yes"]
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *addresses, *options],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self.replicas = replicas
            self.wait_ok(timeout)
            self.wait_replicated(timeout)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def live_url(self) -> str:
        """A node that is up (after a test killed some)."""
        return f"redis://127.0.0.1:{self.live_nodes()[0].port}/0"

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)

    def info(self, node: RedisServer, section: str) -> dict[str, str]:
        with self.client(node) as c:
            raw = c.execute_command("CLUSTER", section)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line and line.strip()
        )

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and knows every slot's primary."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(
                    self.info(n, "INFO").get("cluster_state") == "ok"
                    and self.info(n, "INFO").get("cluster_slots_ok") == "16384"
                    for n in self.live_nodes()
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until every primary has its replicas online (synchronised, acknowledging writes)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self.online_replicas(n) >= self.replicas for n in self.primaries()):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster's replicas did not come online")
            time.sleep(0.05)

    def online_replicas(self, primary: RedisServer) -> int:
        with self.client(primary) as c:
            info = c.info("replication")
        return sum(
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )

    def role(self, node: RedisServer) -> str:
        with self.client(node) as c:
            return str(c.execute_command("ROLE")[0].decode())

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.live_nodes() if self.role(n) == "master"]

    def primary_of(self, key: str | bytes) -> RedisServer:
        """The live node that serves ``key``'s slot now (as the first live primary sees it)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        with self.client(self.primaries()[0]) as c:
            ranges = c.execute_command("CLUSTER", "SLOTS")
        for start, end, owner, *_replicas in ranges:
            if start <= slot <= end:
                for node in self.live_nodes():
                    if node.port == int(owner[1]):
                        return node
        raise LookupError(f"no live primary serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.live_nodes():
            if node is primary:
                continue
            with self.client(node) as c:
                role = c.execute_command("ROLE")
            if role[0] == b"slave" and int(role[2]) == primary.port:
                return node
        raise LookupError(f"no replica of 127.0.0.1:{primary.port}")

    def flushall(self) -> None:
        for node in self.primaries():
            with self.client(node) as c:
                c.flushall()
        # Replicas apply the flush asynchronously; scripts are per node.
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError), self.client(node) as c:
                c.script_flush()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []

    def __enter__(self) -> RedisClusterServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
