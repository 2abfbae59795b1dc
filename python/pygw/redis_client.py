"""Redis plumbing shared by the storage, the broker and the rate limiter: one way to open a
client (one Redis, or Redis Cluster through redis-py's cluster client), one meaning of "Redis is
unreachable", one way to run Lua scripts (EVALSHA, loading the script again when Redis lost its
script cache), and on a cluster one way to make a write durable (``WAIT`` for a replica on the
connection that wrote, see :class:`Replication`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal, overload

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MasterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pygw.core.errors import BackendUnavailable

log = logging.getLogger("pygw.redis")

UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING) and refused/reset sockets
    RedisTimeoutError,
    ReadOnlyError,  # a replica after failover: writes impossible until the master returns
    MasterDownError,
    ClusterDownError,  # CLUSTERDOWN: a shard lost its primary and no replica took over yet
    ClusterError,  # redirections exhausted while the slot map settles
    RedisClusterException,  # no node reachable, slot not covered
    OSError,
    TimeoutError,
)

Client = Redis | RedisCluster
"""What :func:`connect` returns: one Redis, or the cluster client."""


async def _into_task() -> None:
    """redis-py's timeouts need a current Task; a handler's first step runs eagerly inside a
    uWS callback (see ``transport/eager.py``), where there is none. Yielding once moves the rest
    of the handler into a Task (a new pool connection would otherwise fail with "Timeout should
    be used inside a task")."""
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


class _Pipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await _into_task()
        return await super().execute(raise_on_error)


class TaskSafeRedis(Redis):
    """A client whose commands and pipelines may be awaited from an eagerly started handler."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await _into_task()
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class _ClusterPipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await _into_task()
        return await super().execute(raise_on_error, allow_redirections)


class TaskSafeRedisCluster(RedisCluster):
    """The cluster client, awaitable from an eagerly started handler (see TaskSafeRedis)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await _into_task()
        return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> _ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


CLUSTER_RETRIES = 6
"""Attempts after the first of a cluster command that found its node unreachable or the
cluster down. With the backoff below they span ~2 s: long enough to ride over a replica taking
over with a short ``cluster-node-timeout``, short enough that a request fails (503, or a
write-behind flush kept for the next tick) instead of hanging through a long outage."""


@overload
def connect(
    url: str,
    *,
    cluster: Literal[False] = False,
    socket_timeout: float = ...,
    client_name: str | None = ...,
    decode_responses: bool = ...,
    max_connections: int = ...,
) -> TaskSafeRedis: ...


@overload
def connect(
    url: str,
    *,
    cluster: bool,
    socket_timeout: float = ...,
    client_name: str | None = ...,
    decode_responses: bool = ...,
    max_connections: int = ...,
) -> Client: ...


def connect(
    url: str,
    *,
    cluster: bool = False,
    socket_timeout: float = 2.0,
    client_name: str | None = None,
    decode_responses: bool = False,
    max_connections: int = 128,
) -> Client:
    """A pooled asyncio client (hiredis parser when installed) that reconnects by itself.

    One Redis: a command failing on a dead pooled connection (e.g. after a Redis restart) is
    retried once on a new one, and while Redis is down calls fail fast. The pool *blocks* (up
    to ``socket_timeout``) when all ``max_connections`` are busy, instead of failing a burst of
    concurrent commands with "Too many connections".

    ``cluster``: ``url`` names any node of a Redis Cluster; redis-py's cluster client learns
    the slot map, follows MOVED/ASK and, when a node stops answering, refreshes the map and
    retries (:data:`CLUSTER_RETRIES`) so a failover costs a few failed attempts, not errors.
    ``max_connections`` is then per node."""
    if cluster:
        client: Client = TaskSafeRedisCluster.from_url(
            url,
            decode_responses=decode_responses,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            client_name=client_name,
            max_connections=max_connections,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES),
        )
        return client
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        client_name=client_name,
    )
    single = TaskSafeRedis(connection_pool=pool)
    single.auto_close_connection_pool = True  # aclose() closes the pool we made
    return single


async def close_client(client: Client) -> None:
    """Close the client and every pooled connection (also those a dead server left behind)."""
    await client.aclose()
    if isinstance(client, Redis):
        await client.connection_pool.disconnect()


@contextlib.contextmanager
def unavailable_on_error(op: str) -> Iterator[None]:
    """Raise every "cannot reach Redis" error as BackendUnavailable."""
    try:
        yield
    except UNREACHABLE as exc:
        raise BackendUnavailable(
            f"Redis unavailable during {op}: {type(exc).__name__}: {exc}"
        ) from exc


ScriptArg = str | bytes | int | float
ScriptCall = tuple[Sequence[str], Sequence[ScriptArg]]
"""(keys, args) of one script call."""


class LuaScript:
    """A script run by SHA1, loaded on demand (after a Redis restart or SCRIPT FLUSH)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client: Client, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    async def run_many(
        self,
        client: Client,
        calls: Sequence[ScriptCall],
        replication: Replication | None = None,
    ) -> list[Any]:
        """Every call in one pipeline (on a cluster: one per node, sent together). A call's own
        error is returned in its place, not raised (NOSCRIPT excepted: the script is loaded and
        those calls run again).

        With ``replication``, a call whose write no replica confirmed (see
        :meth:`Replication.confirm`) gets :class:`NotReplicated` in its place."""
        results = await self._pipeline(client, calls, replication)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await client.script_load(self.source)
            again = await self._pipeline(client, [calls[i] for i in missing], replication)
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(
        self, client: Client, calls: Sequence[ScriptCall], replication: Replication | None
    ) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
        if replication is None or not isinstance(pipe, ClusterPipeline):
            return list(await pipe.execute(raise_on_error=False))
        return await replication.execute(pipe, [keys[0] for keys, _ in calls])


class NotReplicated(Exception):
    """A write reached its primary, but no replica confirmed it within the WAIT timeout although
    the shard has one: if the primary dies now, the write may be lost. The caller keeps what it
    wrote and sends it again."""


class Replication:
    """Cluster writes that count as done only once a replica has them.

    A primary acknowledges a write before its replicas receive it; if it dies in between, the
    replica that takes over never had it. ``WAIT n timeout`` blocks until ``n`` replicas
    acknowledged every earlier write *of the same connection*, so it is appended to the pipeline
    that wrote, once per node (redis-py sends a node's share of a pipeline, in order, on one
    connection). A node whose WAIT came back short is asked whether it has any replica at all
    (``INFO replication``): a shard without one (e.g. just after its primary failed over) cannot
    do better than its primary's acknowledgement, and is accepted as is (logged).
    """

    def __init__(self, client: RedisCluster, replicas: int = 1, timeout_ms: int = 500) -> None:
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.unreplicated_shards: set[str] = set()
        """Nodes last seen without a replica (warned about once)."""

    async def execute(self, pipe: ClusterPipeline, keys: Sequence[str]) -> list[Any]:
        """Run ``pipe`` (one command per key of ``keys``, in order) plus a WAIT per node; the
        commands' results, with :class:`NotReplicated` for the commands no replica confirmed.
        Errors are returned in place (``raise_on_error=False``); losing the connection to a
        node raises."""
        nodes: dict[str, ClusterNode] = {}
        owner: list[str] = []
        for key in keys:
            node = self.client.get_node_from_key(key)
            if node is None:
                raise RedisClusterException(f"no node serves {key!r}")
            nodes.setdefault(node.name, node)
            owner.append(node.name)
        for node in nodes.values():
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms, target_nodes=node)
        replies = list(await pipe.execute(raise_on_error=False))
        results, waits = replies[: len(keys)], replies[len(keys) :]
        unconfirmed = set()
        for (name, node), acked in zip(nodes.items(), waits, strict=True):
            if isinstance(acked, int) and acked >= self.replicas:
                continue
            if isinstance(acked, int) and not await self._has_replica(node):
                continue
            unconfirmed.add(name)
        for i, key in enumerate(keys):
            moved = self.client.get_node_from_key(key)
            # Not confirmed, or redirected meanwhile (then the WAIT covered another node).
            lost = owner[i] in unconfirmed or moved is None or moved.name != owner[i]
            if lost and not isinstance(results[i], Exception):
                results[i] = NotReplicated(f"{key!r}: no replica confirmed the write")
        return results

    async def _has_replica(self, node: ClusterNode) -> bool:
        info = await self.client.execute_command("INFO", "replication", target_nodes=node)
        online = [
            v
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        ]
        if online:
            self.unreplicated_shards.discard(node.name)
            return True
        if node.name not in self.unreplicated_shards:
            self.unreplicated_shards.add(node.name)
            log.warning(
                "Redis Cluster node %s has no online replica: its writes are acknowledged by"
                " the primary alone until one joins",
                node.name,
            )
        return False
