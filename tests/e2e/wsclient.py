"""A small WebSocket test client over loopback (the `websockets` library)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

_ids = itertools.count(1)


class WS:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.welcome: dict[str, Any] = {}
        self.backlog: list[dict[str, Any]] = []
        """Frames read while waiting for a specific reply."""

    @classmethod
    async def open(
        cls, ws_base: str, token: str, session_id: str | None = None, *, welcome: bool = True
    ) -> WS:
        query = f"token={token}" + (f"&session_id={session_id}" if session_id else "")
        conn = await websockets.connect(
            f"{ws_base}/ws/connect?{query}", max_size=None, open_timeout=10
        )
        ws = cls(conn)
        if welcome:
            ws.welcome = await ws.recv()
            assert ws.welcome["type"] == "connected", ws.welcome
        return ws

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = orjson.dumps(message).decode()
        await self.conn.send(message)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        assert isinstance(raw, str), "pygw sends JSON as TEXT frames"
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send with a fresh id; return the reply carrying it (other frames go to backlog)."""
        rid = next(_ids)
        await self.send({**message, "id": rid})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            raw = await asyncio.wait_for(self.conn.recv(), max(0.01, deadline - loop.time()))
            frame = orjson.loads(raw)
            if frame.get("id") == rid:
                return frame  # type: ignore[no-any-return]
            self.backlog.append(frame)

    async def messages(self, n: int, channel: str | None = None, timeout: float = 5.0) -> list[Any]:
        """The next ``n`` message frames (of ``channel`` if given), other frames skipped."""
        out: list[Any] = []
        while len(out) < n:
            frame = await self.recv(timeout)
            if frame.get("type") == "message" and (channel is None or frame["channel"] == channel):
                out.append(frame)
        return out

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close; (close code, reason). Frames before it are skipped."""
        try:
            while True:
                await asyncio.wait_for(self.conn.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code if rcvd else None), (rcvd.reason if rcvd else "")

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> WS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
