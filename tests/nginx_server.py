"""A real, throw-away Debian ``nginx`` running the project's own ``docker/nginx.conf``.

The committed file is what is tested: :func:`render_config` changes only its marked substitution
points (the upstream's server lines, the listen line) and adds temp paths so nginx runs as a plain
process in a temp dir, as any user. Each substitution must match exactly once, so an edit of
``docker/nginx.conf`` that moves a marker fails here instead of testing another configuration.

nginx runs in the foreground (``daemon off``) and is stopped by the PID this object started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from gateway_process import free_port
from redis_server import _die_with_parent, terminate

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = Path(__file__).resolve().parent.parent / "docker" / "nginx.conf"

SERVERS_BLOCK = re.compile(
    r"^([ \t]*)# BEGIN pygw servers\n.*?^[ \t]*# END pygw servers\n", re.MULTILINE | re.DOTALL
)
SERVER_LINE = re.compile(r"^[ \t]*server[ \t]+\S+([^;\n]*);", re.MULTILINE)
LISTEN_LINE = re.compile(r"^([ \t]*)listen [^\n]*# pygw: listen\n", re.MULTILINE)
HTTP_BLOCK = re.compile(r"^http \{\n", re.MULTILINE)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class ConfigMarkerError(AssertionError):
    """docker/nginx.conf no longer has a substitution point the tests rely on."""


def _replace_once(pattern: re.Pattern[str], text: str, make: str, what: str) -> str:
    found = list(pattern.finditer(text))
    if len(found) != 1:
        raise ConfigMarkerError(f"docker/nginx.conf: expected one {what}, found {len(found)}")
    match = found[0]
    indent = match.group(1) if match.groups() else ""
    replacement = "".join(f"{indent}{line}\n" for line in make.splitlines())
    return text[: match.start()] + replacement + text[match.end() :]


def server_options(template: str) -> str:
    """The parameters of the committed upstream server line (``max_fails=... fail_timeout=...``),
    given to every loopback server in its place."""
    block = SERVERS_BLOCK.search(template)
    if block is None:
        raise ConfigMarkerError("docker/nginx.conf: no 'BEGIN/END pygw servers' block")
    lines = SERVER_LINE.findall(block.group(0))
    if len(lines) != 1:
        raise ConfigMarkerError(f"docker/nginx.conf: expected one server line, found {len(lines)}")
    return str(lines[0]).strip()


def render_config(template: str, *, listen: str, servers: Sequence[str], temp_dir: Path) -> str:
    """``docker/nginx.conf`` with ``servers`` (``host:port``, each with the committed server
    line's parameters) as the upstream, listening on ``listen``, temp paths under ``temp_dir``."""
    if not servers:
        raise ValueError("at least one upstream server is needed")
    options = server_options(template)
    lines = "\n".join(f"server {' '.join(filter(None, (addr, options)))};" for addr in servers)
    text = _replace_once(SERVERS_BLOCK, template, lines, "'BEGIN/END pygw servers' block")
    text = _replace_once(LISTEN_LINE, text, f"listen {listen};", "'# pygw: listen' line")
    temps = "\n".join(f"    {name}_temp_path {temp_dir / name};" for name in TEMP_PATHS)
    return _replace_once(HTTP_BLOCK, text, f"http {{\n{temps}", "'http {' line")


class NginxServer:
    """Debian's nginx with ``docker/nginx.conf`` on 127.0.0.1:<port> in front of ``servers``."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        port: int | None = None,
        template: Path = NGINX_CONF,
        listen_options: str = "",
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pygw-nginx-"))
        self.port = port or free_port()
        self.listen_options = listen_options
        """Parameters of the loopback listen line, e.g. ``reuseport`` (one accept queue per
        worker, so the kernel spreads connections evenly over the workers)."""
        self.servers = list(servers)
        self.template = template
        self.conf_path = self.dir / "nginx.conf"
        self.log_path = self.dir / "nginx.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def write_config(self) -> Path:
        for name in TEMP_PATHS:
            (self.dir / name).mkdir(exist_ok=True)
        text = render_config(
            self.template.read_text(),
            listen=f"127.0.0.1:{self.port} {self.listen_options}".strip(),
            servers=self.servers,
            temp_dir=self.dir,
        )
        self.conf_path.write_text(text)
        return self.conf_path

    def _globals(self) -> str:
        # Run as root (CI), nginx would hand its workers to "nobody", who cannot use the temp
        # dirs of this test run; keep them as the user running the tests.
        user = "user root;" if os.geteuid() == 0 else ""
        return f"daemon off; pid {self.dir / 'nginx.pid'}; {user}"

    def check(self) -> str:
        """``nginx -t`` on the rendered file; returns its output, raises if it is refused."""
        self.write_config()
        result = subprocess.run(
            [NGINX, "-t", "-p", str(self.dir), "-c", str(self.conf_path), "-g", self._globals()],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{result.stderr}")
        return result.stderr

    def start(self, timeout: float = 10.0) -> NginxServer:
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.write_config()
        cmd = [NGINX, "-p", str(self.dir), "-c", str(self.conf_path), "-g", self._globals()]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx on port {self.port} did not start:\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nginx's fast shutdown: open connections are cut), SIGKILL if stuck."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, timeout)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
