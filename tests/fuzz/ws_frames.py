"""Seeded generator of WebSocket client frames for the gateway's frame fuzzer: well-formed frames
of every client message type with mutated fields, byte-level mutations of them, random bytes,
deep nesting, huge ids and strings, numbers past 64 bits, unpaired surrogate escapes, oversized
frames, as TEXT, BINARY or fragmented messages. No I/O: ``Frames(seed).next()`` gives the next
frame to send."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

TYPES = [
    "ping",
    "pong",
    "update_api_key",
    "subscribe",
    "unsubscribe",
    "publish",
    "admin_only",
    "chat_message",
    "teleport",
    "",
    "PING",
    "message",
    "connected",
]
CHANNELS = [
    "room:1",
    "hist:fuzz",
    "pres:fuzz",
    "news:today",
    "user:someone",
    "admin:ops",
    "nonamespace",
    ":leading",
    "bad channel!",
    "caf\u00e9:x",
    "x" * 300,
    "room:" + "y" * 250,
    "",
]
SPECIAL_TEXT = [
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "1" * 400,
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\u0000"',
    "NaN",
    "Infinity",
    "[" * 40 + "]" * 40,
    '{"a":' * 40 + "1" + "}" * 40,
    "tru",
    '"\\x"',
    "{}",
    "[]",
    "null",
    '"' + "z" * 1000 + '"',
]


@dataclass(slots=True)
class Frame:
    """What to send: ``payload`` as TEXT (str) or BINARY (bytes), possibly in ``fragments``."""

    payload: str | bytes
    fragments: int = 1
    kind: str = ""


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


class Frames:
    """An endless, reproducible sequence of frames; ``max_bytes`` is the gateway's frame limit
    (a few frames just over it are generated on purpose)."""

    def __init__(self, seed: int, max_bytes: int = 65536) -> None:
        self.rng = random.Random(seed)
        self.max_bytes = max_bytes

    # -- JSON values ---------------------------------------------------------------------------
    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        pick = rng.randrange(12 if depth < 4 else 7)
        if pick == 0:
            return rng.choice(
                [0, -1, 1, 2**63 - 1, 2**64 - 1, -(2**63), 2**64, -(2**63) - 1, 10**30]
            )
        if pick == 1:
            return rng.choice([0.5, -1e-300, 1.5e308, 3.14159, -0.0])
        if pick == 2:
            return rng.choice(["", "hi", "\u00e9t\u00e9", "\u2603" * 10, 'a\nb"c\\d', "\x00"])
        if pick == 3:
            return "s" * rng.choice([1, 100, 5000])
        if pick in (4, 5, 6):
            return rng.choice([True, False, None])
        if pick in (7, 8):
            return [self.value(depth + 1) for _ in range(rng.randrange(5))]
        return {f"k{rng.randrange(50)}": self.value(depth + 1) for _ in range(rng.randrange(5))}

    def raw_value(self) -> str:
        """JSON text for a member: a generated value, or a special text (maybe not JSON)."""
        if self.rng.random() < 0.25:
            return self.rng.choice(SPECIAL_TEXT)
        if self.rng.random() < 0.03:
            return _nested(self.rng.choice([31, 32, 33, 200, 5000]))
        return json.dumps(self.value(), ensure_ascii=self.rng.random() < 0.5)

    # -- frames --------------------------------------------------------------------------------
    def structured(self) -> str:
        """A client frame of some type; each member present or not, well-typed or not."""
        rng = self.rng
        members: list[tuple[str, str]] = []
        if rng.random() < 0.95:
            members.append(("type", json.dumps(rng.choice(TYPES))))
        if rng.random() < 0.6:
            raw_id = rng.choice(
                [
                    str(rng.randrange(10**6)),
                    json.dumps(f"req-{rng.randrange(1000)}"),
                    "null",
                    "true",
                    "1.5",
                    json.dumps("i" * rng.choice([254, 255, 300])),
                    '{"nested": 1}',
                    "[1,2]",
                    "18446744073709551616",
                    _nested(40),
                ]
            )
            members.append(("id", raw_id))
        if rng.random() < 0.7:
            channel = rng.choice(CHANNELS)
            members.append(("channel", json.dumps(channel) if rng.random() < 0.9 else "5"))
        if rng.random() < 0.5:
            members.append(("data", self.raw_value()))
        if rng.random() < 0.2:
            members.append(("key", json.dumps("sk-" + "k" * rng.randrange(40))))
        if rng.random() < 0.1:
            since = rng.choice(
                [
                    '{"epoch":"e","offset":1}',
                    '{"epoch":"e","offset":-1}',
                    '{"epoch":1,"offset":1}',
                    '{"epoch":"e"}',
                    "[]",
                    '{"epoch":"e","offset":18446744073709551616}',
                ]
            )
            members.append(("since", since))
        if rng.random() < 0.05:
            members.append(members[0] if members else ("type", '"ping"'))  # a duplicate
        rng.shuffle(members)
        return "{" + ",".join(f'"{k}":{v}' for k, v in members) + "}"

    def mutated(self, text: str) -> bytes:
        """1-4 byte-level mutations of ``text``'s UTF-8 (the result may not be UTF-8)."""
        rng = self.rng
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            if not data:
                data += bytes([rng.randrange(256)])
            i = rng.randrange(len(data))
            op = rng.randrange(6)
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                data.insert(i, rng.choice(b'{}[]",:\\0123456789-.eE tfnu'))
            elif op == 2:
                del data[i : i + rng.randint(1, 8)]
            elif op == 3:
                j = rng.randrange(len(data))
                data[i:i] = data[min(i, j) : max(i, j)][:64]
            elif op == 4:
                data[i:i] = rng.choice(SPECIAL_TEXT).encode()[:100]
            else:
                data = data[:i]
        return bytes(data)

    def next(self) -> Frame:
        rng = self.rng
        roll = rng.random()
        if roll < 0.50:
            return Frame(self.structured(), kind="structured")
        if roll < 0.75:
            mutated = self.mutated(self.structured())
            try:
                return Frame(mutated.decode(), kind="mutated")
            except UnicodeDecodeError:
                return Frame(mutated, kind="mutated-binary")
        if roll < 0.82:
            return Frame(
                bytes(rng.randrange(256) for _ in range(rng.randrange(200))), kind="random"
            )
        if roll < 0.90:
            return Frame(self.structured().encode(), kind="binary")
        if roll < 0.97:
            text = self.structured()
            return Frame(text, fragments=rng.randint(2, 5), kind="fragmented")
        if roll < 0.9995:
            depth = rng.choice([33, 100, 1000, 20_000])
            inner = _nested(depth)
            if rng.random() < 0.5:
                return Frame(
                    '{"type":"publish","channel":"room:1","data":' + inner + "}", kind="deep"
                )
            return Frame('{"type":"ping","id":' + inner + "}", kind="deep-id")
        size = self.max_bytes + rng.choice([-200, 1, 5000])
        pad = "p" * max(0, size - 30)
        return Frame('{"type":"ping","pad":"' + pad + '"}', kind="oversized")


def fragments(payload: str | bytes, n: int) -> list[str] | list[bytes]:
    """``payload`` cut in ``n`` pieces (at least one byte or character each)."""
    step = max(1, len(payload) // n)
    return [payload[i : i + step] for i in range(0, len(payload), step)] or [payload[:0]]  # type: ignore[return-value]
