"""Shared fixtures: throw-away redis-servers, a Redis Cluster, and the storage backends under
test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Protocol

import pytest
import redis

from browser import browser  # noqa: F401 - a fixture for every test module
from pygw.store.base import Storage
from pygw.store.memory import MemoryStorage
from pygw.store.redis import RedisStorage
from redis_cluster import RedisClusterServers
from redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for this test alone (free to stop, restart or break)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run; tests using it must not stop it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def clean_redis(shared_redis_server: RedisServer) -> Iterator[RedisServer]:
    """The shared server, emptied before the test."""
    with redis.Redis.from_url(shared_redis_server.url) as client:
        client.flushall()
    yield shared_redis_server


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisClusterServers]:
    """One Redis Cluster (3 primaries + 3 replicas) for the whole run; tests using it must not
    stop its nodes (the failover tests start their own)."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A fresh Redis Cluster for this test alone (free to kill, pause or reshard its nodes)."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def clean_cluster(shared_redis_cluster: RedisClusterServers) -> Iterator[RedisClusterServers]:
    """The shared cluster, emptied (every primary flushed) before the test."""
    shared_redis_cluster.flushall()
    yield shared_redis_cluster


class StorageFactory(Protocol):
    def __call__(
        self,
        *,
        session_ttl: float = ...,
        batch_interval_ms: int = ...,
        url: str | None = ...,
        **kwargs: Any,
    ) -> Awaitable[Storage]: ...


BACKENDS = ["memory", "redis", "cluster"]
"""Every backend kind: the embedded memory one, one Redis, a Redis Cluster."""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def backend_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The (emptied) shared server or cluster of ``backend``; None for memory."""
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("clean_redis")
        return server.url
    if backend == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("clean_cluster")
        return cluster.url
    return None


@pytest.fixture
async def make_storage(
    backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[StorageFactory]:
    """Build started storages of the parametrized backend; all are closed after the test.

    Redis storages use the (flushed) shared server or cluster unless ``url`` is given. The
    memory backend's periodic sweep is slowed down so tests control when expired entries are
    dropped.
    """
    created: list[Storage] = []
    shared_url = backend_url(backend, request)

    async def factory(
        *,
        session_ttl: float = 30.0,
        batch_interval_ms: int = 20,
        url: str | None = None,
        **kwargs: Any,
    ) -> Storage:
        storage: Storage
        if backend == "memory":
            kwargs.setdefault("sweep_interval", 3600.0)
            storage = MemoryStorage(session_ttl, **kwargs)
        else:
            assert shared_url is not None
            storage = RedisStorage(
                url or shared_url,
                session_ttl=session_ttl,
                batch_interval_ms=batch_interval_ms,
                cluster=backend == "cluster",
                **kwargs,
            )
        await storage.start()
        created.append(storage)
        return storage

    yield factory
    for storage in reversed(created):
        await storage.close()


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    """A started storage of each backend with a 30 s session TTL and a 20 ms flush interval."""
    return await make_storage()
