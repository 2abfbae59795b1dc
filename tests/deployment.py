"""The deployment users run, on loopback: Debian's nginx with ``docker/nginx.conf`` in front of N
real ``pygw serve`` nodes sharing one real ``redis-server``.

Nodes keep their port across restarts, so nginx (which keeps running) finds a restarted node
where it left it: :meth:`Deployment.restart_node` is a rolling-restart step.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from types import TracebackType

import httpx

from gateway_process import GatewayProcess
from nginx_server import NginxServer
from redis_server import RedisServer

PROXY_ADDRESS = "127.0.0.1"
"""nginx reaches the nodes from this address; nodes trust it (``PYGW_TRUSTED_PROXIES``)."""

_client_hosts = itertools.count(1)


def client_address() -> str:
    """A loopback source address no other client of this test run uses (127.0.1.1, ...): a
    distinct client IP as nginx and pygw see it, for per-IP limits."""
    n = next(_client_hosts)
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def http_client(
    base_url: str, source: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Client:
    """An httpx client whose connections leave from ``source`` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    return httpx.Client(base_url=base_url, transport=transport, timeout=10.0, headers=headers)


class Deployment:
    """nginx + ``nodes`` gateways + Redis. Node ``i`` is ``PYGW_GATEWAY_ID=node-<i>``.

    The redis-server starts at once (the nodes and nginx in :meth:`start`). ``nginx_listen``:
    parameters for nginx's loopback listen line (:class:`NginxServer`'s ``listen_options``)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        nodes: int = 3,
        env: dict[str, str] | None = None,
        nginx_listen: str = "",
    ):
        self.log_dir = log_dir
        self.env = {"PYGW_TRUSTED_PROXIES": PROXY_ADDRESS, **(env or {})}
        self.redis = RedisServer()
        self.nodes = [
            GatewayProcess(
                redis_url=self.redis.url,
                env={**self.env, "PYGW_GATEWAY_ID": f"node-{i}"},
                log_path=log_dir / f"node-{i}.log",
            )
            for i in range(nodes)
        ]
        self.nginx = NginxServer(
            [f"127.0.0.1:{node.port}" for node in self.nodes], listen_options=nginx_listen
        )

    @property
    def url(self) -> str:
        """The public side: nginx."""
        return self.nginx.url

    @property
    def ws_url(self) -> str:
        return self.nginx.ws_url

    def start(self, timeout: float = 30.0) -> Deployment:
        try:
            for node in self.nodes:
                node.start(timeout)
            self.nginx.start()
            self.wait_through_proxy(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_through_proxy(self, timeout: float = 10.0) -> None:
        """Until nginx answers ``/health`` from a node."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers through nginx:\n{self.nginx.log_tail()}")
            time.sleep(0.05)

    def node_id(self, i: int) -> str:
        return f"node-{i}"

    def stop_node(self, i: int, timeout: float = 30.0) -> int | None:
        """SIGTERM node ``i`` and wait for it to exit (its drain included); its exit code."""
        return self.nodes[i].stop(timeout)

    def start_node(self, i: int, timeout: float = 30.0) -> GatewayProcess:
        """Start node ``i`` again on its port (nginx still points there)."""
        return self.nodes[i].start(timeout)

    def restart_node(self, i: int, timeout: float = 30.0) -> int | None:
        code = self.stop_node(i, timeout)
        self.start_node(i, timeout)
        return code

    def close(self) -> None:
        self.nginx.close()
        for node in self.nodes:
            node.stop()
        self.redis.close()

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
