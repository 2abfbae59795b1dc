"""A terminal chat on pygw with the Python client (``pygw.client``): it signs in, joins
``room:<room>``, prints what arrives and publishes each line you type. Stop the gateway and
start it again: the client reconnects on its own and, when the room's namespace keeps history,
prints what was said meanwhile.

Run (after ``make run`` in another terminal; the account is registered if it does not exist;
``PYGW_URL`` names another gateway):

    .venv/bin/python examples/client_chat.py ada correct-horse lobby
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import httpx

from pygw.client import Client, Disconnect, Gap, Message, Subscribed

BASE = os.environ.get("PYGW_URL", "http://localhost:8000")


async def sign_in(http: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    """Log in (registering first if needed); the login response's tokens."""
    credentials = {"username": username, "password": password}
    r = await http.post("/sessions/login", json=credentials)
    if r.status_code == 401:
        email = f"{username}@example.com"
        registered = await http.post("/sessions/register", json={**credentials, "email": email})
        registered.raise_for_status()
        r = await http.post("/sessions/login", json=credentials)
    r.raise_for_status()
    body: dict[str, str] = r.json()
    return body


async def main(username: str, password: str, room: str) -> None:
    async with httpx.AsyncClient(base_url=BASE, timeout=10) as http:
        login = await sign_in(http, username, password)
        refresh_token = login["refresh_token"]

        async def new_token() -> str | None:
            """After a 1008 (e.g. the access token expired): exchange the refresh token."""
            nonlocal refresh_token
            r = await http.post("/sessions/refresh", json={"refresh_token": refresh_token})
            if r.status_code != 200:
                return None  # the client stops
            refresh_token = r.json()["refresh_token"]
            return str(r.json()["access_token"])

        client = Client(BASE, token=login["access_token"], get_token=new_token)
        client.on("connected", lambda w: print(f"-- connected as {w['user_id']}"))
        client.on("disconnected", lambda d: print(f"-- disconnected {d.code}", _reconnecting(d)))
        async with client:
            channel = f"room:{room}"
            sub = await client.subscribe(channel, on_message=_show)
            sub.on("subscribed", _resubscribed)
            sub.on("gap", _gap)
            print(f"-- in {channel}; type a line to say it, Ctrl-D to leave")
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                if line.strip():
                    await sub.publish({"from": username, "text": line.rstrip("\n")})


def _show(message: Message) -> None:
    data = message.data if isinstance(message.data, dict) else {"text": message.data}
    print(f"[{message.offset}] {data.get('from', '?')}: {data.get('text', '')}")


def _reconnecting(d: Disconnect) -> str:
    return "(reconnecting)" if d.reconnect else "(stopped)"


def _resubscribed(info: Subscribed) -> None:
    if info.resubscribed:
        print("-- back; nothing missed" if info.recovered else "-- back")


def _gap(gap: Gap) -> None:
    print(f"-- messages missed while away could not be recovered (now at {gap.offset})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(*sys.argv[1:4]))
