"""Embedding pygw in a Python app: a chat with rooms.

Run:  python examples/chat_app.py --port 8000            (embedded memory backend)
      REDIS_URL=redis://localhost:6379 python examples/chat_app.py   (several nodes)

Clients register/login over HTTP as usual, connect to /ws/connect, then send
    {"type": "join", "room": "lobby"}
    {"type": "chat_message", "room": "lobby", "text": "hello"}
and receive {"type": "message", "channel": "room:lobby", "data": {...}, "offset": n}.
"""

from __future__ import annotations

import argparse
from typing import Any

from pygw import Gateway
from pygw.ws.connection import Connection

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
args = parser.parse_args()

# Rooms keep their last 100 messages for 10 minutes, so reconnecting clients catch up.
gw = Gateway(namespaces=[{"name": "room", "history_size": 100, "history_ttl": 600}])


@gw.on("join")
async def join(conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
    room = str(message.get("room", ""))
    members = await gw.broker.presence(f"room:{room}")
    await gw.publish(f"room:{room}", {"event": "joined", "user": conn.user_id})
    return {"type": "joined", "room": room, "members": len(members)}


@gw.on("chat_message")
async def chat(conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
    room = str(message.get("room", ""))
    text = str(message.get("text", ""))[:2000]
    pub = await gw.publish(f"room:{room}", {"from": conn.user_id, "text": text})
    return {"type": "chat_ok", "room": room, "offset": pub.offset}


@gw.on("shout", roles=["admin"])
async def shout(conn: Connection, message: dict[str, Any]) -> None:
    await gw.publish("room:lobby", {"from": conn.user_id, "text": str(message.get("text", ""))})


if __name__ == "__main__":
    gw.run(host=args.host, port=args.port)
