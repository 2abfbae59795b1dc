"""One behaviour suite for every broker (parametrized: memory, one Redis, a Redis Cluster of 3
primaries and 3 replicas): delivery exactly once, offsets and epochs, history and recovery,
user pushes, presence, control messages, cluster queries and the node list.

"Nodes" are broker instances in this process, each with its own recording handler; with Redis
they share the server (or cluster) like gateway processes would. The memory broker is one node.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from conftest import backend_url
from pygw.broker.base import Broker
from pygw.broker.memory import MemoryBroker
from pygw.broker.redis import RedisBroker
from pygw.core import control
from pygw.core.channels import USER_PUBLISH, PublishOptions, user_channel

HISTORY = PublishOptions(history_size=10, history_ttl=600)


class Node:
    """A BrokerHandler that records what its broker hands it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.publications: list[tuple[str, int, bytes]] = []
        self.controls: list[control.ControlMessage] = []
        self.resyncs = 0
        self.broker: Broker

    def on_publication(
        self, channel: str, offset: int, envelope: bytes, published_us: int = 0
    ) -> None:
        self.publications.append((channel, offset, envelope))

    def on_control(self, message: control.ControlMessage) -> None:
        self.controls.append(message)

    def answer(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"asked": name, "args": args, "me": self.node_id}

    def on_resync(self) -> None:
        self.resyncs += 1

    def stats(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "connections": 7}

    def received(self, channel: str) -> list[tuple[int, Any]]:
        return [
            (offset, orjson.loads(env)["data"])
            for ch, offset, env in self.publications
            if ch == channel
        ]


NodeFactory = Callable[[], Awaitable[Node]]


@pytest.fixture
async def make_node(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    """Started brokers of the parametrized backend, each with a recording handler; closed after
    the test. Redis brokers share the (flushed) shared server or cluster."""
    url = backend_url(backend, request)
    nodes: list[Node] = []

    async def factory() -> Node:
        node = Node(f"node-{uuid.uuid4().hex[:6]}")
        if backend == "memory":
            node.broker = MemoryBroker()
        else:
            assert url is not None
            node.broker = RedisBroker(url, node_id=node.node_id, cluster=backend == "cluster")
        node.broker.stats_provider = node.stats
        await node.broker.start(node)
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        await node.broker.close()


async def nodes(make_node: NodeFactory, backend: str, n: int = 2) -> list[Node]:
    """``n`` nodes, or the one memory node."""
    return [await make_node() for _ in range(1 if backend == "memory" else n)]


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def settle(seconds: float = 0.2) -> None:
    """Give anything that should *not* arrive the time to arrive."""
    await asyncio.sleep(seconds)


def did_not_suspend(coro: Awaitable[Any]) -> bool:
    """Run ``coro`` one step: True if it finished without waiting for anything."""
    gen = coro.__await__()
    try:
        next(gen)
    except StopIteration:
        return True
    gen.close()
    return False


# -- delivery ------------------------------------------------------------------------------------
async def test_publications_reach_every_subscribed_node_once_in_order(
    make_node: NodeFactory, backend: str
) -> None:
    group = await nodes(make_node, backend, 3)
    channel = "room:" + uuid.uuid4().hex[:8]
    for node in group:
        await node.broker.subscribe(channel)
    publisher = group[0].broker
    pubs = [await publisher.publish(channel, orjson.dumps({"i": i})) for i in range(50)]
    assert [p.offset for p in pubs] == list(range(1, 51))
    assert len({p.epoch for p in pubs}) == 1 and pubs[0].epoch
    for node in group:
        await until(lambda node=node: len(node.received(channel)) >= 50)
    await settle()
    for node in group:
        assert node.received(channel) == [(i + 1, {"i": i}) for i in range(50)]
    frame = orjson.loads(pubs[0].envelope)
    assert frame == {"type": "message", "channel": channel, "data": {"i": 0}, "offset": 1}


async def test_publication_without_offset(make_node: NodeFactory, backend: str) -> None:
    (node, *_) = await nodes(make_node, backend)
    channel = "plain:" + uuid.uuid4().hex[:8]
    await node.broker.subscribe(channel)
    pub = await node.broker.publish(channel, b'"x"', PublishOptions(with_offset=False))
    assert (pub.offset, pub.epoch) == (0, "")
    assert orjson.loads(pub.envelope) == {"type": "message", "channel": channel, "data": "x"}
    await until(lambda: node.received(channel) == [(0, "x")])


async def test_unsubscribed_node_gets_nothing(make_node: NodeFactory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory broker is one node: its hub filters locally")
    a, b = await nodes(make_node, backend)
    channel = "room:" + uuid.uuid4().hex[:8]
    await a.broker.subscribe(channel)
    await b.broker.subscribe(channel)
    await b.broker.unsubscribe(channel)
    await settle(0.1)  # the UNSUBSCRIBE leaves with the next loop iteration
    await a.broker.publish(channel, b"1")
    await until(lambda: a.received(channel) == [(1, 1)])
    await settle()
    assert b.received(channel) == []


async def test_user_pushes_reach_every_node_once_without_a_subscription(
    make_node: NodeFactory, backend: str
) -> None:
    group = await nodes(make_node, backend, 3)
    users = [user_channel(f"u{i}-{uuid.uuid4().hex[:6]}") for i in range(40)]
    for node in group:
        # A connection's subscription to its own user channel costs nothing.
        assert all(did_not_suspend(node.broker.subscribe(u)) for u in users)
    for i, channel in enumerate(users):
        pub = await group[i % len(group)].broker.publish(channel, b'{"n":%d}' % i, USER_PUBLISH)
        assert orjson.loads(pub.envelope) == {
            "type": "message",
            "channel": channel,
            "data": {"n": i},
        }
    for node in group:
        await until(lambda node=node: len(node.publications) >= len(users))
    await settle()
    for node in group:
        got = sorted((ch, orjson.loads(env)["data"]["n"]) for ch, _, env in node.publications)
        assert got == sorted((ch, i) for i, ch in enumerate(users))


async def test_user_push_frame_keeps_unusual_user_ids(make_node: NodeFactory, backend: str) -> None:
    (node, *_) = await nodes(make_node, backend)
    channel = user_channel("odd:id{with}braces 0:1:é")
    await node.broker.publish(channel, b"[1,2]", USER_PUBLISH)
    await until(lambda: node.received(channel) == [(0, [1, 2])])


# -- history and recovery --------------------------------------------------------------------------
async def test_top_history_and_recovery(make_node: NodeFactory, backend: str) -> None:
    group = await nodes(make_node, backend)
    channel = "hist:" + uuid.uuid4().hex[:8]
    broker = group[0].broker
    epoch, top = await broker.top(channel)
    assert top == 0 and epoch
    for i in range(15):
        pub = await broker.publish(channel, orjson.dumps(i), HISTORY)
    assert pub.offset == 15 and pub.epoch == epoch
    reader = group[-1].broker  # another node reads what the first wrote
    assert await reader.top(channel) == (epoch, 15)
    history = await reader.history(channel, since=10, limit=3)
    assert [(off, orjson.loads(data)) for off, data in history] == [(11, 10), (12, 11), (13, 12)]
    assert [off for off, _ in await reader.history(channel)] == list(range(6, 16))  # 10 kept

    rec = await reader.recover(channel, epoch, 12)
    assert (rec.recovered, rec.epoch, rec.offset) == (True, epoch, 15)
    assert [orjson.loads(e)["offset"] for e in rec.envelopes] == [13, 14, 15]
    assert orjson.loads(rec.envelopes[0]) == {
        "type": "message",
        "channel": channel,
        "data": 12,
        "offset": 13,
    }
    assert (await reader.recover(channel, epoch, 15)).recovered  # nothing missed
    assert not (await reader.recover(channel, epoch, 2)).recovered  # trimmed away
    assert not (await reader.recover(channel, "other-epoch", 12)).recovered
    assert not (await reader.recover(channel, epoch, 99)).recovered  # from the future


# -- presence --------------------------------------------------------------------------------------
async def test_presence_across_nodes(make_node: NodeFactory, backend: str) -> None:
    group = await nodes(make_node, backend)
    channel = "pres:" + uuid.uuid4().hex[:8]
    first, last = group[0].broker, group[-1].broker  # the same node on memory
    await first.presence_join(channel, "c0", {"user_id": "u0"})
    await last.presence_join(channel, "c1", {"user_id": "u1"})
    members = await first.presence(channel)
    assert {k: v["user_id"] for k, v in members.items()} == {"c0": "u0", "c1": "u1"}
    await last.presence_leave(channel, "c1")
    assert set(await first.presence(channel)) == {"c0"}
    await first.presence_leave(channel, "c0")
    await first.presence_leave(channel, "never-joined")
    assert await last.presence(channel) == {}


# -- control messages, queries, nodes ---------------------------------------------------------
async def test_control_messages_round_trip_to_every_node(
    make_node: NodeFactory, backend: str
) -> None:
    group = await nodes(make_node, backend, 3)
    sent: list[control.ControlMessage] = [
        control.Revoke("jti-" + uuid.uuid4().hex, 1_900_000_000),
        control.Disconnect("alice", "fam-1", 1000, "Logged out"),
        control.RoutesChanged(),
    ]
    for message in sent:
        await group[-1].broker.publish_control(message)
    for node in group:
        await until(lambda node=node: len(node.controls) >= len(sent))
    await settle()
    for node in group:
        assert node.controls == sent


async def test_gather_and_nodes(make_node: NodeFactory, backend: str) -> None:
    group = await nodes(make_node, backend, 3)
    ids = {node.node_id for node in group}
    listed = await group[0].broker.nodes()
    if backend == "memory":
        assert listed == {group[0].node_id: group[0].stats()}
    else:  # heartbeats of every live node (Redis may hold others' from earlier tests: filtered)
        assert {i: listed[i]["connections"] for i in ids} == dict.fromkeys(ids, 7)
    answers = await group[1 % len(group)].broker.gather("connections", {"limit": 3}, wait=3.0)
    assert sorted(a["me"] for a in answers) == sorted(ids)
    assert all(a["asked"] == "connections" and a["args"] == {"limit": 3} for a in answers)


async def test_closed_node_leaves_the_node_list(make_node: NodeFactory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory broker is one node")
    a, b = await nodes(make_node, backend)
    assert {a.node_id, b.node_id} <= set(await a.broker.nodes())
    await b.broker.close()
    assert b.node_id not in await a.broker.nodes()
