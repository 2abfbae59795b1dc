"""The deployment as users run it, on this machine: Debian's nginx with the project's
``docker/nginx.conf`` in front of three pygw nodes sharing one redis-server (tests/deployment.py).

Through nginx: a login on one node and WebSockets on every node, a publication reaching
subscribers on every node exactly once, a logout closing the user's sockets on every node,
X-Forwarded-For believed only from the trusted proxy, /metrics kept off the public side. Directly
on the nodes: the probe paths the Kubernetes manifests name, and every metric the Grafana
dashboard and the alert rules query.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_cluster import no_more_messages
from wsclient import WS

from conftest import Account, new_account, unique
from deploy_files import (
    DOCKER,
    EXTERNAL_METRICS,
    ROOT,
    alert_queries,
    dashboard_queries,
    read_env_file,
    selectors,
    template_metrics,
)
from deployment import Deployment, client_address, http_client
from gateway_process import free_port

API_KEY = "deploy-key"
LOGIN_IP_LIMIT = 3
ENV = {
    "PYGW_API_KEYS": API_KEY,
    "PYGW_NAMESPACES": orjson.dumps(
        [{"name": "hist", "history_size": 100, "history_ttl": 600}]
    ).decode(),
    # Tight per-IP login limit (per username stays at its default): every test logs in from an
    # address of its own (client_address), the X-Forwarded-For test exhausts some on purpose.
    "PYGW_RATE_LOGIN_IP": f"{LOGIN_IP_LIMIT}/60",
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Deployment(tmp_path_factory.mktemp("deployment"), env=ENV) as dep:
        yield dep


def account(dep: Deployment) -> Account:
    """A new user, registered and logged in through nginx from an address of its own."""
    with http_client(dep.url, client_address()) as client:
        return new_account(client)


async def one_socket_per_node(dep: Deployment, user: Account) -> dict[str, WS]:
    """Open WebSockets through nginx until every node holds one of ``user``'s (nginx balances
    with least_conn, so this takes one socket per node unless sockets of an earlier test are
    still being closed); extra sockets are closed."""
    by_node: dict[str, WS] = {}
    extra: list[WS] = []
    for _ in range(3 * len(dep.nodes)):
        ws = await WS.open(dep.ws_url, user.token, user.session_id)
        node = ws.welcome["gateway_id"]
        if node in by_node:
            extra.append(ws)
        else:
            by_node[node] = ws
        if len(by_node) == len(dep.nodes):
            break
    for ws in extra:
        await ws.close()
    if len(by_node) < len(dep.nodes):
        for ws in by_node.values():
            await ws.close()
    assert set(by_node) == {dep.node_id(i) for i in range(len(dep.nodes))}, len(extra)
    return by_node


async def test_login_on_one_node_websockets_on_every_node(deployment: Deployment) -> None:
    user = account(deployment)
    sockets = await one_socket_per_node(deployment, user)
    try:
        # The session written by the node that answered the login is the one each node checks
        # at once (the upgrade carries session_id); each socket works.
        for node, ws in sockets.items():
            assert ws.welcome["user_id"] == user.username
            reply = await ws.request({"type": "ping"})
            assert reply["type"] == "pong", (node, reply)
    finally:
        for ws in sockets.values():
            await ws.close()


async def test_publish_reaches_subscribers_on_every_node_exactly_once(
    deployment: Deployment,
) -> None:
    subscriber, publisher = account(deployment), account(deployment)
    channel = f"hist:{unique('room')}"
    sockets = await one_socket_per_node(deployment, subscriber)
    try:
        for ws in sockets.values():
            assert (await ws.request({"type": "subscribe", "channel": channel}))["type"] == (
                "subscribed"
            )
        async with await WS.open(deployment.ws_url, publisher.token) as pub:
            for i in range(20):
                reply = await pub.request({"type": "publish", "channel": channel, "data": i})
                assert reply["type"] == "published", reply
        with http_client(deployment.url, headers={"X-API-Key": API_KEY}) as api:
            for i in range(20, 40):
                r = api.post("/api/publish", json={"channel": channel, "data": i})
                assert r.status_code == 200, r.text
        for node, ws in sockets.items():
            got = await ws.messages(40, channel)
            assert [m["data"] for m in got] == list(range(40)), node
            offsets = [m["offset"] for m in got]
            assert offsets == list(range(offsets[0], offsets[0] + 40)), node
            assert await no_more_messages(ws) == [], node
    finally:
        for ws in sockets.values():
            await ws.close()


async def test_logout_closes_the_users_sockets_on_every_node(deployment: Deployment) -> None:
    user = account(deployment)
    sockets = await one_socket_per_node(deployment, user)
    with http_client(deployment.url, client_address()) as client:
        r = client.post("/sessions/logout", headers=user.headers)
        assert r.status_code == 200, r.text
    for node_id, ws in sockets.items():
        assert await ws.closed() == (1000, "Logged out"), node_id
    # Every node refuses the revoked token from now on.
    for node in deployment.nodes:
        r = httpx.get(f"{node.url}/sessions/{user.session_id}", headers=user.headers)
        assert r.status_code == 401, (node.url, r.text)


def login_attempt(client: httpx.Client, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        "/sessions/login",
        json={"username": unique("nobody"), "password": "wrong-password-0"},
        headers=headers,
    )


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1  # pygw's header passes through nginx
    assert r.json()["status_code"] == 429


def test_forwarded_for_is_believed_only_from_the_trusted_proxy(deployment: Deployment) -> None:
    """Nodes trust 127.0.0.1 (where nginx connects from); clients use other loopback addresses.
    nginx appends the address it sees to X-Forwarded-For; pygw walks it from the right."""
    a, b, direct, named = (client_address() for _ in range(4))
    with http_client(deployment.url, a) as via_nginx:
        # Whatever a client writes into X-Forwarded-For itself, its bucket is its own address:
        # a new forged address per attempt does not buy a fresh allowance.
        for i in range(LOGIN_IP_LIMIT):
            r = login_attempt(via_nginx, forwarded_for=f"198.51.100.{i}")
            assert r.status_code == 401, r.text
        assert_limited(login_attempt(via_nginx, forwarded_for="198.51.100.200"))
    # Another client through the same nginx has its own bucket: pygw keyed the attempts on the
    # client nginx named, not on nginx's own address.
    with http_client(deployment.url, b) as via_nginx:
        assert login_attempt(via_nginx).status_code == 401

    # Directly on a node from an untrusted address, X-Forwarded-For is ignored: the attempts
    # naming ``named`` are counted against ``direct``...
    node = deployment.nodes[0]
    with http_client(node.url, direct) as forged:
        for _ in range(LOGIN_IP_LIMIT):
            assert login_attempt(forged, forwarded_for=named).status_code == 401
        assert_limited(login_attempt(forged, forwarded_for=named))
    # ...and ``named`` itself still has its whole allowance.
    with http_client(deployment.url, named) as via_nginx:
        for _ in range(LOGIN_IP_LIMIT):
            assert login_attempt(via_nginx).status_code == 401
        assert_limited(login_attempt(via_nginx))


def test_public_side_hides_metrics_and_passes_request_ids_and_large_bodies(
    deployment: Deployment,
) -> None:
    with http_client(deployment.url, client_address()) as client:
        assert client.get("/metrics").status_code == 404
        # nginx names every request; pygw echoes the id (and logs with it).
        r = client.get("/health")
        assert r.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])
        r = client.get("/health", headers={"X-Request-ID": "deploy-req-1"})
        assert r.headers["X-Request-ID"] == "deploy-req-1"
        # A body over PYGW_MAX_BODY_BYTES (1 MiB) is refused by nginx in pygw's envelope (pygw's
        # own early 413 would reach the client as a 502: see docker/nginx.conf).
        r = client.post(
            "/sessions/register?x=1",
            content=b"x" * (1024 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        body = r.json()
        assert body.keys() == {"error", "detail", "status_code", "timestamp", "path"}
        assert body["status_code"] == 413
        assert body["path"] == "/sessions/register"
        # One byte less passes nginx and is pygw's to judge (not JSON: 422).
        r = client.post(
            "/sessions/register",
            content=b"x" * (1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
    assert "request_id=deploy-req-1" in deployment.nginx.log_path.read_text()
    r = httpx.get(deployment.nodes[0].url + "/metrics")
    assert r.status_code == 200
    assert "pygw_ws_connections" in r.text


def k8s_probe_paths() -> dict[str, str]:
    deployment = yaml.safe_load((ROOT / "k8s" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }


def test_probe_paths_of_the_manifests_answer_on_every_node(deployment: Deployment) -> None:
    paths = k8s_probe_paths()
    assert paths["readinessProbe"] == "/health/ready"
    assert paths["livenessProbe"] == "/health/live"
    for node in deployment.nodes:
        for probe, path in paths.items():
            r = httpx.get(node.url + path)
            assert r.status_code == 200, (node.url, probe, r.text)


SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
TARGET_LABELS = frozenset({"instance", "job"})
"""Labels Prometheus adds to every scraped series."""


async def test_dashboard_and_alerts_query_metrics_a_node_exposes(deployment: Deployment) -> None:
    """Every metric the Grafana dashboard and the alert rules select is a family of a live
    node's /metrics, of a type with that sample name, and carries the labels the query matches
    on (a bit of traffic on the node first, so its labelled families have samples)."""
    node = deployment.nodes[0]
    with http_client(node.url, client_address()) as client:
        user = new_account(client)
        assert login_attempt(client).status_code == 401
    async with await WS.open(node.ws_url, user.token) as ws:
        await ws.request({"type": "ping"})
        await ws.request({"type": "publish", "channel": f"hist:{unique()}", "data": 1})
    deadline = time.monotonic() + 5
    while True:  # the close of that socket is counted once the node has seen it
        families = {
            f.name: f for f in text_string_to_metric_families(httpx.get(node.url + "/metrics").text)
        }
        if families["pygw_ws_closes"].samples or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    def family_of(name: str) -> tuple[str, set[frozenset[str]]] | None:
        for family in families.values():
            for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
                if family.name + suffix == name:
                    labelsets = {frozenset(s.labels) for s in family.samples if s.name == name}
                    return family.type, labelsets
        return None

    queries = [*dashboard_queries(), *alert_queries()]
    checked = set()
    for query in queries:
        for selector in selectors(query.expr):
            if selector.metric in EXTERNAL_METRICS:
                continue
            found = family_of(selector.metric)
            assert found is not None, f"{query.where}: {selector.metric} is not exposed"
            _type, labelsets = found
            wanted = selector.labels - TARGET_LABELS
            if wanted:
                assert any(wanted <= labels for labels in labelsets), (
                    f"{query.where}: {selector.metric} has no sample labelled {sorted(wanted)}"
                )
            checked.add(selector.metric)
    for name in template_metrics():
        assert family_of(name) is not None, f"dashboard variable: {name} is not exposed"
    # The dashboard covers the families operators asked for.
    assert {
        "pygw_ws_connections",
        "pygw_deliveries_total",
        "pygw_publish_deliver_seconds_bucket",
        "pygw_http_responses_total",
        "pygw_write_behind_pending",
        "pygw_session_flush_seconds_bucket",
        "process_open_fds",
    } <= checked


def healthcheck(port: int, path: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command (docker/healthcheck.py) against 127.0.0.1:<port>."""
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), path],
        env={**os.environ, "PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_image_command_with_env_example_and_its_healthcheck(
    deployment: Deployment, tmp_path: Path
) -> None:
    """What the container runs: ``pygw serve`` without flags, configured only by the
    environment (docker/.env.example, compose's own variables, the Dockerfile's HOST/PORT), and
    the HEALTHCHECK script: healthy once serving, readiness 503 while draining, unhealthy when
    the process is gone."""
    port, metrics_port = free_port(), free_port()
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYGW_") and k not in ("REDIS_URL", "SECRET_KEY", "HOST", "PORT")
    }
    env = {
        **inherited,
        **read_env_file(DOCKER / ".env.example"),
        "REDIS_URL": deployment.redis.url,
        "PYGW_TRUSTED_PROXIES": "127.0.0.1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYGW_METRICS_PORT": str(metrics_port),
    }
    log_path = tmp_path / "image.log"
    pygw = Path(sys.executable).with_name("pygw")
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(pygw), "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while healthcheck(port, "/health").returncode != 0:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert healthcheck(port, "/health/ready").returncode == 0
        with http_client(f"http://127.0.0.1:{port}", client_address()) as client:
            new_account(client)  # the example's settings (default argon2 parameters) work
            assert client.get("/metrics").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200

        proc.send_signal(signal.SIGTERM)  # .env.example drains for PYGW_DRAIN_SECONDS=10
        deadline = time.monotonic() + 5
        while (ready := healthcheck(port, "/health/ready")).returncode == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "503" in ready.stderr and "draining" in ready.stderr
        assert healthcheck(port, "/health/live").returncode == 0
        proc.send_signal(signal.SIGTERM)  # a second signal ends the drain
        assert proc.wait(15) == 0
        gone = healthcheck(port, "/health")
        assert gone.returncode == 1
        assert "Connection refused" in gone.stderr
        # PYGW_JSON_LOGS=true: one JSON object per line.
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        assert lines
        assert all(isinstance(orjson.loads(line), dict) for line in lines), lines[:3]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
