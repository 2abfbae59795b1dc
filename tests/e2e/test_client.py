"""``pygw.client`` against real gateways, the cases of the JS client's tests: request/reply,
channels and presence, keep-alive answers, no reconnect after logout (1000), a token refresh
after 1008, resuming with ``since`` after close()/connect() (a gap when history cannot cover),
and reconnecting on its own after the gateway restarts, recovering exactly what was published
meanwhile (Redis-backed: the restart keeps users, tokens and history)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from conftest import Account, new_account
from gateway_process import GatewayProcess
from pygw.client import (
    Client,
    ClientClosed,
    Disconnect,
    Gap,
    Message,
    PygwError,
    RequestTimeout,
    Subscribed,
    backoff_delay,
    connect_url,
)
from redis_server import RedisServer

API_KEY = "py-client-test-key"
NAMESPACES = orjson.dumps(
    [
        {"name": "room", "history_size": 100, "history_ttl": 600, "presence": True},
        {"name": "tiny", "history_size": 2, "history_ttl": 600},
    ]
).decode()
FAST = {"min_reconnect_delay": 0.05, "max_reconnect_delay": 0.4}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Memory backend; keep-alive pings every 0.3 s, silent sockets closed after 1 s."""
    proc = GatewayProcess(
        env={
            "PYGW_NAMESPACES": NAMESPACES,
            "PYGW_ALLOW_UNKNOWN_NAMESPACES": "false",
            "PYGW_PING_INTERVAL": "0.3",
            "PYGW_INACTIVITY_TIMEOUT": "1",
            "PYGW_API_KEYS": API_KEY,
        },
        log_path=tmp_path_factory.mktemp("client") / "gateway.log",
    )
    with proc:
        yield proc


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        yield c


class Recorder:
    """A client's events, in order."""

    def __init__(self, client: Client) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in ("connecting", "connected", "disconnected", "error"):
            client.on(name, self._record(name))  # type: ignore[arg-type]

    def _record(self, name: str) -> Callable[[Any], None]:
        return lambda payload: self.events.append((name, payload))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def disconnects(self) -> list[Disconnect]:
        return [payload for name, payload in self.events if name == "disconnected"]


async def until(what: str, predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        await asyncio.sleep(0.02)


def client_for(gw: GatewayProcess, account: Account | None = None, **options: Any) -> Client:
    if account is not None:
        options.setdefault("token", account.token)
    return Client(gw.ws_url, **{**FAST, **options})


def test_backoff_and_url() -> None:
    assert backoff_delay(0, 0.5, 30, lambda: 1) == 0.5
    assert backoff_delay(3, 0.5, 30, lambda: 1) == 4
    assert backoff_delay(20, 0.5, 30, lambda: 1) == 30
    assert backoff_delay(5, 0.5, 30, lambda: 0) == 0
    assert connect_url("http://h:1", "t k", "s") == "ws://h:1/ws/connect?token=t+k&session_id=s"
    assert connect_url("wss://h/ws/connect", "t") == "wss://h/ws/connect?token=t"


def test_importable_without_the_gateway() -> None:
    """The client needs neither the uWS library nor the native extension."""
    code = (
        "import sys, pygw.client\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('socketify', 'pygw')))\n"
        "assert loaded == ['pygw', 'pygw.client', 'pygw.core', 'pygw.core.version'], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_request_reply(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    async with client_for(gw, a, session_id=a.session_id) as client:
        assert client.welcome is not None
        assert client.welcome["user_id"] == a.username
        assert client.welcome["session_id"] == a.session_id
        replies = await asyncio.gather(*(client.request({"type": "ping"}) for _ in range(20)))
        assert all(r["type"] == "pong" for r in replies)
        assert len({r["id"] for r in replies}) == 20
        ack = await client.request({"type": "update_api_key", "key": "sk-1"})
        assert (ack["type"], ack["api_key"]) == ("ack", "sk-1")
        with pytest.raises(PygwError) as refused:
            await client.request({"type": "teleport"})
        # A type a user may not send (SPEC §3: the original's role table).
        assert refused.value.code == 403
        assert refused.value.message == "Unauthorized: role 'user' cannot send 'teleport'"
        with pytest.raises(RequestTimeout):  # a pong gets no reply
            await client.request({"type": "pong"}, timeout=0.2)
        assert (await client.request({"type": "ping"}))["type"] == "pong"
    with pytest.raises(ClientClosed):
        await client.request({"type": "ping"})


async def test_subscribe_publish_presence(gw: GatewayProcess, http: httpx.Client) -> None:
    a, b = new_account(http), new_account(http)
    channel = f"room:{a.username}"
    async with client_for(gw, a) as ca, client_for(gw, b) as cb:
        infos: list[Subscribed] = []
        sa = await ca.subscribe(channel)
        sa.on("subscribed", infos.append)
        got_b: list[Message] = []
        sb = await cb.subscribe(channel, on_message=got_b.append)
        offset = await cb.publish(channel, {"text": "hi"})
        message = await asyncio.wait_for(anext(sa), 5)
        assert message == Message(channel, {"text": "hi"}, offset)
        await until("b's copy", lambda: len(got_b) == 1)
        assert sa.offset == offset

        presence = await sa.presence()
        assert presence.count == 2
        assert sorted(m["user_id"] for m in presence.members.values()) == sorted(
            [a.username, b.username]
        )

        with pytest.raises(PygwError) as forbidden:
            await ca.subscribe("admin:ops")
        assert forbidden.value.code == 403
        assert ca.subscription("admin:ops") is None
        with pytest.raises(PygwError) as unknown:
            await ca.subscribe("nowhere:1")
        assert unknown.value.code == 404
        with pytest.raises(ValueError, match="already subscribed"):
            await ca.subscribe(channel)

        await sa.unsubscribe()
        assert [m async for m in sa] == []  # the iteration ends
        await sb.publish({"text": "after"})
        await until("b's second", lambda: len(got_b) == 2)
        await ca.request({"type": "ping"})  # anything in flight to `ca` has arrived
        with pytest.raises(PygwError) as not_subscribed:
            await ca.request({"type": "presence", "channel": channel})
        assert not_subscribed.value.code == 403
        assert infos == []  # registered after the first subscription: no resubscription


async def test_answers_keepalive_pings(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    client = client_for(gw, a)
    pings: list[dict[str, Any]] = []
    client.on("frame", lambda f: pings.append(f) if f["type"] == "ping" else None)
    recorder = Recorder(client)
    async with client:
        # The control: a bare socket that never answers is closed by the server meanwhile.
        async with websockets.connect(f"{gw.ws_url}/ws/connect?token={a.token}") as bare:
            await asyncio.sleep(2.5)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(bare.recv(), 2)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "Pong timeout")
        assert len(pings) >= 4
        assert recorder.count("disconnected") == 0
        assert client.state == "connected"
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_no_reconnect_after_logout(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    client = client_for(gw, a)
    recorder = Recorder(client)
    await client.connect()
    sub = await client.subscribe(f"room:{a.username}")
    r = http.post("/sessions/logout", headers=a.headers)
    assert r.status_code == 200, r.text
    with pytest.raises(ClientClosed) as ended:
        await asyncio.wait_for(anext(sub), 5)  # the iteration ends with why
    assert ended.value.code == 1000
    assert recorder.disconnects() == [Disconnect(1000, ended.value.reason, False)]
    await asyncio.sleep(0.6)  # several reconnect delays
    assert recorder.count("connecting") == 1
    assert client.state == "disconnected"
    with pytest.raises(ClientClosed):
        await client.request({"type": "ping"})
    await client.close()


async def test_token_refresh_after_1008(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    tokens: list[str] = []

    async def token() -> str:
        # The first token is bad (as an expired one would be); then refresh it.
        if not tokens:
            tokens.append("not-a-valid-token")
        else:
            r = await asyncio.to_thread(
                http.post, "/sessions/refresh", json={"refresh_token": a.refresh_token}
            )
            tokens.append(r.json()["access_token"])
        return tokens[-1]

    client = client_for(gw, token=token)
    recorder = Recorder(client)
    async with client:
        assert client.welcome is not None
        assert client.welcome["user_id"] == a.username
        assert len(tokens) == 2
        assert recorder.names() == ["connecting", "disconnected", "connecting", "connected"]
        assert recorder.disconnects() == [Disconnect(1008, "Invalid token", True)]

    # A token source that gives the same bad token again: stop, disconnected with 1008.
    calls = 0

    def same() -> str:
        nonlocal calls
        calls += 1
        return "still-not-a-token"

    stuck = client_for(gw, token=same)
    recorder = Recorder(stuck)
    with pytest.raises(ClientClosed) as ended:
        await stuck.connect()
    assert ended.value.code == 1008
    await asyncio.sleep(0.4)
    assert calls == 2
    assert recorder.count("connecting") == 1
    assert stuck.state == "disconnected"
    # A fixed token: the same.
    with pytest.raises(ClientClosed) as fixed_ended:
        async with client_for(gw, token="bad"):
            pass
    assert fixed_ended.value.code == 1008


async def test_close_connect_resumes_and_reports_gaps(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    client = client_for(gw, a)
    await client.connect()
    room: list[Any] = []
    tiny: list[Any] = []
    infos: list[Subscribed] = []
    gaps: list[Gap] = []
    sr = await client.subscribe(f"room:r-{a.username}", on_message=lambda m: room.append(m.data))
    sr.on("subscribed", infos.append)
    st = await client.subscribe(f"tiny:t-{a.username}", on_message=lambda m: tiny.append(m.data))
    st.on("gap", gaps.append)
    await sr.publish(0)
    await st.publish(0)
    await until("the first messages", lambda: room == [0] and tiny == [0])
    await client.close()
    for n in range(1, 6):
        for channel in (sr.channel, st.channel):  # tiny's history keeps only the last 2
            r = http.post(
                "/api/publish", json={"channel": channel, "data": n}, headers={"X-API-Key": API_KEY}
            )
            assert r.status_code == 200, r.text
    await client.connect()
    await until("both resubscribed", lambda: sr.state == st.state == "subscribed")
    await until("the missed messages", lambda: len(room) == 6)
    assert room == [0, 1, 2, 3, 4, 5]
    assert [(i.resubscribed, i.recovered) for i in infos] == [(True, True)]
    assert len(gaps) == 1
    assert st.recovered is False
    assert tiny == [0]  # nothing partial
    await st.publish(6)
    await until("tiny's next", lambda: len(tiny) == 2)
    assert tiny == [0, 6]
    await client.close()


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two Redis-backed gateways on one redis-server (tokens and history shared)."""
    env = {"PYGW_NAMESPACES": NAMESPACES, "PYGW_API_KEYS": API_KEY}
    with RedisServer() as redis:
        a = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "a.log")
        b = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "b.log")
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            a.stop()
            b.stop()


async def test_reconnects_after_restart_and_recovers_what_it_missed(
    two_nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    n_missed = 10
    node_a, node_b = two_nodes
    with httpx.Client(base_url=node_a.url, timeout=10) as http:
        account = new_account(http)
    client = client_for(node_a, account)
    recorder = Recorder(client)
    got: list[Any] = []
    infos: list[Subscribed] = []
    gaps: list[Gap] = []
    async with client:
        sub = await client.subscribe(
            f"room:restart-{account.username}", on_message=lambda m: got.append(m.data)
        )
        sub.on("subscribed", infos.append)
        sub.on("gap", gaps.append)
        await client.publish(sub.channel, 0)
        await until("the first message", lambda: got == [0])

        def publish(node: GatewayProcess, n: int) -> None:
            r = httpx.post(
                node.url + "/api/publish",
                json={"channel": sub.channel, "data": n},
                headers={"X-API-Key": API_KEY},
            )
            assert r.status_code == 200, r.text

        await asyncio.to_thread(node_a.stop)  # the client's gateway goes away (1001) ...
        await until("disconnected", lambda: recorder.count("disconnected") >= 1)
        assert recorder.disconnects()[0].reconnect is True
        for n in range(1, n_missed + 1):  # ... publications while it is down (another node) ...
            await asyncio.to_thread(publish, node_b, n)
        await asyncio.to_thread(node_a.start)  # ... and it is back: same port, same Redis
        for n in range(n_missed + 1, n_missed + 4):  # more, whether the client is back or not
            await asyncio.to_thread(publish, node_a, n)
        await until("reconnected", lambda: client.state == "connected", 15)
        await until("resubscribed", lambda: len(infos) == 1)
        await client.publish(sub.channel, n_missed + 4)
        await until("every message", lambda: len(got) >= n_missed + 5)
        await asyncio.sleep(0.2)  # a duplicate would show up now
        assert got == list(range(n_missed + 5))
        assert (infos[0].resubscribed, infos[0].recovered) == (True, True)
        assert gaps == []
        assert recorder.count("connected") == 2
        assert recorder.count("connecting") > 2  # it kept trying while the node was down
