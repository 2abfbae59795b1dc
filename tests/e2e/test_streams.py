"""SSE (``GET /sse/connect``) and NDJSON (``POST /stream/connect``) streams against real gateway
processes, read by real HTTP clients (httpx, a raw socket for the slow reader) over loopback."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from conftest import ADMIN, Account, login, new_account
from gateway_process import GatewayProcess
from redis_server import RedisServer

API_KEY = "stream-test-key"
NAMESPACES = [
    {"name": "hist", "history_size": 50, "history_ttl": 300},
    {"name": "tiny", "history_size": 2, "history_ttl": 300},
    {"name": "staff", "subscribe": ["admin"], "publish": ["admin"]},
]
ENV = {
    "PYGW_ADMIN_USERS": ADMIN,
    "PYGW_API_KEYS": API_KEY,
    "PYGW_NAMESPACES": orjson.dumps(NAMESPACES).decode(),
    "PYGW_WS_MAX_BACKPRESSURE": str(64 * 1024),
}
TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(env=ENV, log_path=tmp_path_factory.mktemp("gw") / "gw.log") as proc:
        yield proc


@pytest.fixture
def http(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=TIMEOUT) as c:
        yield c


def publish(http: httpx.Client, channel: str, data: Any) -> int:
    r = http.post(
        "/api/publish", headers={"X-API-Key": API_KEY}, json={"channel": channel, "data": data}
    )
    assert r.status_code == 200, r.text
    return int(r.json()["offset"])


class SSE:
    """An SSE reader over an httpx streaming response: events as (id, frame)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream"
        self.lines = response.iter_lines()

    def event(self) -> tuple[str | None, dict[str, Any]]:
        event_id, data = None, None
        for line in self.lines:
            if line == "":
                if data is not None:
                    return event_id, orjson.loads(data)
                continue
            field, _, value = line.partition(": ")
            if field == "id":
                event_id = value
            elif field == "data":
                data = value
        raise EOFError("the stream ended")

    def until(self, kind: str) -> list[tuple[str | None, dict[str, Any]]]:
        """Events up to and including the first frame of type ``kind``."""
        seen = []
        while True:
            event = self.event()
            seen.append(event)
            if event[1]["type"] == kind:
                return seen


class NDJSON:
    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        self.lines = response.iter_lines()

    def frame(self) -> dict[str, Any]:
        for line in self.lines:
            if line:
                frame: dict[str, Any] = orjson.loads(line)
                return frame
        raise EOFError("the stream ended")

    def until(self, kind: str) -> list[dict[str, Any]]:
        seen = []
        while True:
            frame = self.frame()
            seen.append(frame)
            if frame["type"] == kind:
                return seen


def connections(http: httpx.Client, user: str) -> int:
    """The user's open connections (WebSockets and streams) on the node."""
    admin = login(http, ADMIN)
    r = http.get("/admin/connections", params={"user": user}, headers=admin.headers)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def wait_closed(http: httpx.Client, user: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while connections(http, user):
        if time.monotonic() > deadline:
            pytest.fail(f"{user} still has a connection open")
        time.sleep(0.05)


def sse_stream(
    client: httpx.Client, account: Account, query: str, last_event_id: str | None = None
) -> Any:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return client.stream(
        "GET", f"/sse/connect?{query}&token={account.token}", headers=headers, timeout=TIMEOUT
    )


def test_sse_delivers_and_resumes_with_last_event_id(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    channel = f"hist:{a.username}"
    with httpx.Client(base_url=gw.url) as client:
        with sse_stream(client, a, f"channels={channel}") as r:
            sse = SSE(r)
            connected = sse.event()[1]
            assert connected["type"] == "connected" and connected["user_id"] == a.username
            _, subscribed = sse.event()
            assert subscribed["type"] == "subscribed" and subscribed["channel"] == channel
            epoch = subscribed["epoch"]
            offsets = [publish(http, channel, {"n": n}) for n in range(3)]
            got = [sse.event() for _ in offsets]
            assert [frame["data"] for _, frame in got] == [{"n": n} for n in range(3)]
            assert [event_id for event_id, _ in got] == [f"{epoch}:{o}" for o in offsets]
            last_id = got[-1][0]
        # Missed while away: three more, then a resume from the last id seen.
        missed = [publish(http, channel, {"n": n}) for n in range(3, 6)]
        with sse_stream(client, a, f"channels={channel}", last_event_id=last_id) as r:
            sse = SSE(r)
            events = sse.until("subscribed")
            replayed = [(i, f) for i, f in events if f["type"] == "message"]
            assert [f["data"] for _, f in replayed] == [{"n": n} for n in range(3, 6)]
            assert [i for i, _ in replayed] == [f"{epoch}:{o}" for o in missed]
            assert events[-1][1]["recovered"] is True
            assert not [f for _, f in events if f["type"] == "not_recovered"]
            live = publish(http, channel, {"n": 6})
            assert sse.event() == (
                f"{epoch}:{live}",
                {**replayed[0][1], "data": {"n": 6}, "offset": live},
            )


def test_sse_says_not_recovered_when_history_cannot_cover(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    channel = f"tiny:{a.username}"
    with httpx.Client(base_url=gw.url) as client:
        with sse_stream(client, a, f"channels={channel}") as r:
            sse = SSE(r)
            sse.until("subscribed")
            publish(http, channel, "first")
            last_id, _ = sse.event()
        for n in range(4):  # history keeps 2: the gap cannot be filled
            publish(http, channel, n)
        with sse_stream(client, a, f"channels={channel}", last_event_id=last_id) as r:
            events = SSE(r).until("subscribed")
        frames = [f for _, f in events[1:]]
        assert [f["type"] for f in frames] == ["not_recovered", "subscribed"]
        epoch, offset = str(last_id).rsplit(":", 1)
        assert frames[0]["since"] == {"epoch": epoch, "offset": int(offset)}
        assert frames[0]["offset"] == frames[1]["offset"] == int(offset) + 4
        assert frames[1]["recovered"] is False
        # An id of another epoch (history lost) cannot be trusted either.
        with sse_stream(client, a, f"channels={channel}", last_event_id="0badc0ffee:3") as r:
            kinds = [f["type"] for _, f in SSE(r).until("subscribed")]
        assert kinds == ["connected", "not_recovered", "subscribed"]


def test_ndjson_delivers_pushes_and_resumes_from_since(
    gw: GatewayProcess, http: httpx.Client
) -> None:
    a = new_account(http)
    channel = f"hist:{a.username}"
    with httpx.Client(base_url=gw.url, headers=a.headers) as client:
        with client.stream(
            "POST", "/stream/connect", json={"channels": [channel]}, timeout=TIMEOUT
        ) as r:
            nd = NDJSON(r)
            frames = nd.until("subscribed")
            assert [f["type"] for f in frames] == ["connected", "subscribed"]
            epoch = frames[-1]["epoch"]
            first = publish(http, channel, {"n": 1})
            assert nd.frame() == {
                "type": "message",
                "channel": channel,
                "data": {"n": 1},
                "offset": first,
            }
            pushed_by_api = http.post(
                f"/api/push/{a.username}",
                headers={"X-API-Key": API_KEY},
                json={"data": {"hello": "you"}},
            )
            assert pushed_by_api.status_code == 200, pushed_by_api.text
            pushed = nd.frame()
            assert pushed["data"] == {"hello": "you"}
        missed = [publish(http, channel, {"n": n}) for n in (2, 3)]
        since = {channel: {"epoch": epoch, "offset": first}}
        with client.stream(
            "POST", "/stream/connect", json={"channels": [channel], "since": since}
        ) as r:
            frames = NDJSON(r).until("subscribed")
        replayed = [f for f in frames if f["type"] == "message"]
        assert [(f["offset"], f["data"]) for f in replayed] == [
            (missed[0], {"n": 2}),
            (missed[1], {"n": 3}),
        ]
        assert frames[-1]["recovered"] is True and frames[-1]["offset"] == missed[-1]


def test_logout_closes_the_stream(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    with (
        httpx.Client(base_url=gw.url, headers=a.headers) as client,
        client.stream("POST", "/stream/connect", timeout=TIMEOUT) as r,
    ):
        nd = NDJSON(r)
        assert nd.frame()["type"] == "connected"
        logout = http.post("/sessions/logout", headers=a.headers)
        assert logout.status_code == 200, logout.text
        closing = nd.frame()
        assert closing == {"type": "close", "code": 1000, "reason": "Logged out"}
        with pytest.raises(EOFError):
            nd.frame()  # the response ended
    assert connections(http, a.username) == 0


def test_refusals_are_plain_http_errors(gw: GatewayProcess, http: httpx.Client) -> None:
    a = new_account(http)
    missing = http.get("/sse/connect?channels=hist:x")
    assert missing.status_code == 401 and missing.json()["error"] == "Not authenticated"
    bad = http.get("/sse/connect?channels=hist:x&token=not.a.token")
    assert bad.status_code == 401 and bad.json()["error"] == "Invalid token"
    bad = http.post("/stream/connect", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401 and bad.json()["error"] == "Invalid token"
    # EventSource cannot send headers; other programs must not put tokens in URLs.
    query_token = http.post(f"/stream/connect?token={a.token}")
    assert query_token.status_code == 401
    # A page of another site cannot open a stream with a token it got hold of (as for /ws).
    foreign = http.get(
        f"/sse/connect?channels=hist:ok&token={a.token}", headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403, foreign.text
    staff = http.get(f"/sse/connect?channels=hist:ok,staff:room&token={a.token}")
    assert staff.status_code == 403
    assert staff.json()["error"] == "Permission denied: cannot subscribe 'staff:room'"
    many = {"channels": [f"hist:{n}" for n in range(300)]}  # PYGW_WS_MAX_SUBSCRIPTIONS: 256
    too_many = http.post("/stream/connect", headers=a.headers, json=many)
    assert too_many.status_code == 429
    assert too_many.json()["error"] == "Too many channels: 300 (at most 256 per connection)"
    body = http.post("/stream/connect", headers=a.headers, json={"channels": "hist:x"})
    assert body.status_code == 400 and '"channels" must be a list' in body.json()["error"]
    bad_id = http.get(
        f"/sse/connect?channels=hist:x&token={a.token}", headers={"Last-Event-ID": "nonsense"}
    )
    assert bad_id.status_code == 400 and "Last-Event-ID" in bad_id.json()["error"]
    assert connections(http, a.username) == 0, "nothing refused stays registered"


def test_a_stream_that_stops_reading_is_cut_off(gw: GatewayProcess, http: httpx.Client) -> None:
    """The WebSocket backpressure limit (64 KiB here) applies: a reader that stopped is closed
    with the close frame once its unsent bytes pass it."""
    a = new_account(http)
    channel = f"hist:{a.username}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(
        f"GET /sse/connect?channels={channel}&token={a.token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\n\r\n".encode()
    )
    try:
        time.sleep(0.3)
        chunk = {"blob": "x" * 16000}
        for _ in range(400):  # 6.4 MB: past what the kernel buffers hold (4 MB at most)
            publish(http, channel, chunk)
        wait_closed(http, a.username)
        sock.settimeout(5)
        received = b""
        while not received.endswith(b"\r\n0\r\n\r\n"):  # the last chunk: the answer ended
            data = sock.recv(1 << 16)
            assert data, "the connection closed before the last chunk"
            received += data
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'"type":"close","code":1013,"reason":"Backpressure limit exceeded"' in received
    finally:
        sock.close()


def test_streams_deliver_across_nodes_on_redis(tmp_path: Path) -> None:
    """A stream on one node gets publications made on another, and resumes on the other one."""
    with RedisServer() as redis:
        env = {"PYGW_API_KEYS": API_KEY, "PYGW_NAMESPACES": ENV["PYGW_NAMESPACES"]}
        one = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "one.log")
        two = GatewayProcess(redis_url=redis.url, env=env, log_path=tmp_path / "two.log")
        with (
            one,
            two,
            httpx.Client(base_url=one.url, timeout=TIMEOUT) as http1,
            httpx.Client(base_url=two.url, timeout=TIMEOUT) as http2,
        ):
            a = new_account(http1)
            channel = f"hist:{a.username}"
            with sse_stream(http2, a, f"channels={channel}") as r:
                sse = SSE(r)
                sse.until("subscribed")
                offset = publish(http1, channel, "from one")
                last_id, frame = sse.event()
                assert (frame["data"], frame["offset"]) == ("from one", offset)
            missed = publish(http2, channel, "while away")
            # A new EventSource (a new token) passes the last id in the query.
            b = login(http1, a.username)
            with sse_stream(http1, b, f"channels={channel}&last_event_id={last_id}") as r:
                events = SSE(r).until("subscribed")
            assert [(i, f["data"]) for i, f in events if f["type"] == "message"] == [
                (f"{str(last_id).rsplit(':', 1)[0]}:{missed}", "while away")
            ]
            assert events[-1][1]["recovered"] is True


def test_keepalive_and_token_expiry_reach_streams(tmp_path: Path) -> None:
    """``: ping`` comments on SSE streams and the ping frame on NDJSON ones, on the schedule;
    the stream closes with 1008 "Token expired" when its token does (2.4 s here)."""
    env = {
        "PYGW_ADMIN_USERS": ADMIN,
        "PYGW_PING_INTERVAL": "0.3",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "0.04",
    }
    with (
        GatewayProcess(env=env, log_path=tmp_path / "gw.log") as gw,
        httpx.Client(base_url=gw.url, timeout=TIMEOUT) as http,
    ):
        a = new_account(http)
        with sse_stream(http, a, "channels=") as r:
            lines = r.iter_lines()
            assert ": ping" in [next(lines) for _ in range(8)]
        with http.stream("POST", "/stream/connect", headers=a.headers) as r:
            nd = NDJSON(r)
            assert nd.frame()["type"] == "connected"
            assert nd.frame()["type"] == "ping"
            frames = nd.until("close")
            assert frames[-1] == {"type": "close", "code": 1008, "reason": "Token expired"}
            assert {f["type"] for f in frames[:-1]} <= {"ping"}
        wait_closed(http, a.username)


def test_drain_closes_streams_and_last_event_id_beats_a_stale_since(tmp_path: Path) -> None:
    env = {"PYGW_API_KEYS": API_KEY, "PYGW_NAMESPACES": ENV["PYGW_NAMESPACES"]}
    env["PYGW_DRAIN_SECONDS"] = "0.2"
    gw = GatewayProcess(env=env, log_path=tmp_path / "gw.log").start()
    try:
        with httpx.Client(base_url=gw.url, timeout=TIMEOUT) as http:
            a = new_account(http)
            channel = f"hist:{a.username}"
            with sse_stream(http, a, f"channels={channel}") as r:
                sse = SSE(r)
                epoch = sse.until("subscribed")[-1][1]["epoch"]
                first = publish(http, channel, 1)
                publish(http, channel, 2)
                last_id = [sse.event()[0] for _ in range(2)][-1]
            publish(http, channel, 3)
            # The URL still says "from the first"; the browser's id says "from the second".
            stale = f"channels={channel}&since={channel}:{epoch}:{first}"
            with sse_stream(http, a, stale, last_event_id=last_id) as r:
                sse = SSE(r)
                events = sse.until("subscribed")
                assert [f["data"] for _, f in events if f["type"] == "message"] == [3]
                gw.signal(signal.SIGTERM)
                assert sse.event()[1] == {
                    "type": "close",
                    "code": 1001,
                    "reason": "Server draining",
                }
        assert gw.wait(15) == 0
    finally:
        gw.stop()
