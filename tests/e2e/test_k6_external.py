"""The k6 scripts the way k6 users run them: ``k6 run -e BASE_URL=http://host:port k6/smoke.js``
against a gateway started separately (with pygw's default rate limits), from another directory,
the script creating its accounts in ``setup()``; and reading them from a ``CREDS`` file named
relative to the current directory. Bounded: each run is stopped after 120 s."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import new_account
from gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
K6 = Path(sys.executable).parent / "k6"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # The tests' gateways lift the per-address login limit; this one keeps pygw's default.
    env = {"PYGW_RATE_LOGIN_IP": "30/60"}
    log = tmp_path_factory.mktemp("k6") / "gateway.log"
    with GatewayProcess(env=env, log_path=log) as proc:
        yield proc


def k6_run(cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """(exit status, the summary's metrics, output) of ``k6 run`` started from a shell that
    changed to ``cwd`` (as a person does: the shell keeps $PWD, which k6 sees)."""
    cmd = [str(K6), "run", "--no-usage-report", "--summary-export", "summary.json", *args]
    shell = ["bash", "-c", 'cd "$0" && exec "$@"', str(cwd), *cmd]
    done = subprocess.run(shell, capture_output=True, text=True, timeout=120, check=False)
    summary = cwd / "summary.json"  # relative to the current directory, as k6 users expect
    metrics = json.loads(summary.read_text())["metrics"] if summary.exists() else {}
    return done.returncode, metrics, done.stdout[-3000:] + done.stderr[-3000:]


def test_smoke_against_a_running_gateway(gw: GatewayProcess, tmp_path: Path) -> None:
    code, metrics, output = k6_run(
        tmp_path, "-e", f"BASE_URL={gw.url}", str(ROOT / "k6" / "smoke.js")
    )
    assert code == 0, output
    assert metrics["gw_sessions"]["count"] >= 50, metrics["gw_sessions"]
    assert metrics["gw_msgs_replied"]["count"] == metrics["gw_msgs_sent"]["count"] > 0
    assert metrics["gw_errors"]["count"] == 0
    assert metrics["checks"]["fails"] == 0 and metrics["checks"]["passes"] > 0


def test_smoke_reads_accounts_relative_to_the_current_directory(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        accounts = [new_account(http, "k6creds") for _ in range(3)]
    creds = [
        {"username": a.username, "token": a.token, "session_id": a.session_id} for a in accounts
    ]
    (tmp_path / "creds.json").write_text(json.dumps(creds))
    code, metrics, output = k6_run(
        tmp_path,
        *("-e", f"BASE_URL={gw.url}", "-e", "CREDS=creds.json", "-e", "VUS=6"),
        *("-e", "DURATION=3s", str(ROOT / "k6" / "smoke.js")),
    )
    assert code == 0, output
    assert metrics["gw_sessions"]["count"] >= 6 and metrics["gw_errors"]["count"] == 0
    # The sessions used were those accounts' logins: their keys were updated over WebSocket.
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for account in accounts:
            data = http.get(f"/sessions/{account.session_id}", headers=account.headers).json()
            assert str(data["data"]["api_key"]).startswith("k6-"), data
