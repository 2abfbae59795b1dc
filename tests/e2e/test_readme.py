"""The README's snippets, run as written against real gateways: the quick start's curl calls
(bash), its client snippets in JavaScript (``clients/js`` on Node's built-in WebSocket) and in
Python (``pygw.client``, on ``websockets``, a runtime dependency), the embedding app and the
Publisher. The only change is
the port: ``localhost:8000`` becomes the test gateway's. Every ``js`` and ``python`` block of the
README must be one of these (a new snippet needs a test here). The load-testing commands are run
by test_k6_external.py."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from wsclient import WS

from conftest import login, register
from gateway_process import GatewayProcess, free_port
from redis_server import RedisServer

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(README.read_text()) if lang == language]


def block(language: str, marker: str) -> str:
    found = [code for code in blocks(language) if marker in code]
    assert len(found) == 1, f"one {language} block with {marker!r} in README.md, found {found}"
    return found[0]


QUICK_START = ("sh", "/sessions/login")
JS_CLIENT = ("js", "new PygwClient(")
PY_CLIENT = ("python", "from pygw.client import Client")
JS_PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "js" / "index.js"
EMBEDDING = ("python", "from pygw import Gateway")
PUBLISHER = ("python", "from pygw import Publisher")


def test_every_snippet_is_tested() -> None:
    for language, tested in (("js", [JS_CLIENT]), ("python", [PY_CLIENT, EMBEDDING, PUBLISHER])):
        assert len(blocks(language)) == len(tested), f"untested {language} snippet in README.md"
        for _, marker in tested:
            block(language, marker)


def test_python_examples_need_only_the_runtime_install() -> None:
    """`make run` installs pygw's runtime dependencies: the WS client must be one of them."""
    runtime = [r for r in importlib.metadata.requires("pygw") or [] if "extra ==" not in r]
    assert any(re.match(r"websockets\b", r) for r in runtime), runtime


def on_port(code: str, port: int) -> str:
    return code.replace("localhost:8000", f"127.0.0.1:{port}").replace("port=8000", f"port={port}")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(log_path=tmp_path_factory.mktemp("readme") / "gw.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def quick_start(gw: GatewayProcess) -> dict[str, str]:
    """Run the quick start's curl block in bash; the TOKEN and SID it exports."""
    script = on_port(block(*QUICK_START), gw.port) + '\necho "TOKEN=$TOKEN"\necho "SID=$SID"\n'
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"message":"User registered successfully"' in done.stdout, done.stdout
    exported = dict(
        line.split("=", 1)
        for line in done.stdout.splitlines()
        if line.startswith(("TOKEN=", "SID="))
    )
    assert exported.get("TOKEN") and exported.get("SID"), done.stdout
    return exported


def node_command() -> list[str]:
    node = shutil.which("node")
    assert node, "node is needed for the README's JavaScript snippet"
    has_it = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    probe = subprocess.run([node, "-e", has_it], check=False)
    return [node] if probe.returncode == 0 else [node, "--experimental-websocket"]


def test_javascript_client(gw: GatewayProcess, quick_start: dict[str, str], tmp_path: Path) -> None:
    """What the snippet logs, as JSON lines; it closes the client itself. The import is the
    one change besides the port: the snippet runs from the repository root, this copy does
    not."""
    harness = (
        "console.log = (value) => process.stdout.write(JSON.stringify(value) + '\\n');\n"
        "setTimeout(() => { console.error('timed out'); process.exit(2); }, 10000).unref();\n"
    )
    script = tmp_path / "client.mjs"
    code = on_port(block(*JS_CLIENT), gw.port).replace("./clients/js/index.js", str(JS_PACKAGE))
    script.write_text(harness + code)
    done = subprocess.run(
        [*node_command(), str(script)],
        env={**os.environ, **quick_start},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    logged = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert logged == [{"text": "hi"}], logged


def test_python_client(gw: GatewayProcess, quick_start: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(on_port(block(*PY_CLIENT), gw.port))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **quick_start},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed[0] == "ack k-1", printed
    offset, data = printed[1].split(" ", 1)
    assert int(offset) > 0 and data == "{'text': 'hi'}", printed
    with httpx.Client(base_url=gw.url) as http:
        headers = {"Authorization": f"Bearer {quick_start['TOKEN']}"}
        session = http.get(f"/sessions/{quick_start['SID']}", headers=headers).json()
    assert session["data"]["api_key"] == "k-1"


async def test_embedding_app(tmp_path: Path) -> None:
    port = free_port()
    app = tmp_path / "app.py"
    app.write_text(on_port(block(*EMBEDDING), port))
    with GatewayProcess(port=port, script=app, log_path=tmp_path / "app.log") as proc:
        with httpx.Client(base_url=proc.url) as http:
            register(http, "bo")
            bo = login(http, "bo")
        async with await WS.open(proc.ws_url, bo.token, bo.session_id) as ws:
            await ws.request({"type": "subscribe", "channel": "room:lobby"})
            reply = await ws.request({"type": "chat_message", "room": "lobby", "text": "hey"})
            assert reply["type"] == "chat_ok" and isinstance(reply["offset"], int)
            [message] = await ws.messages(1, "room:lobby")
            assert message["data"] == {"from": "bo", "text": "hey"}


async def test_publisher(tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        GatewayProcess(redis_url=redis.url, log_path=tmp_path / "gw.log") as gw,
    ):
        with httpx.Client(base_url=gw.url) as http:
            register(http, "alice")
            alice = login(http, "alice")
        async with await WS.open(gw.ws_url, alice.token, alice.session_id) as ws:
            await ws.request({"type": "subscribe", "channel": "room:lobby"})
            script = tmp_path / "publish.py"
            script.write_text(block(*PUBLISHER))
            done = await asyncio.create_subprocess_exec(
                sys.executable, str(script), env={**os.environ, "REDIS_URL": redis.url}
            )
            assert await asyncio.wait_for(done.wait(), 30) == 0
            got = {m["channel"]: m["data"] for m in await ws.messages(2)}
        assert got == {
            "user:alice": {"type": "invoice_ready"},
            "room:lobby": {"text": "maintenance at 10:00"},
        }
