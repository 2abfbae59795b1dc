"""Cost of the session size limits (security review item 11) on the update path.

    python -m benches session_limits [--n N] [--repeat R] [--json PATH]

``MemoryStorage.update_session`` (the store's whole update, in this process, no HTTP) merging a
small patch (``{"api_key": "abc", "n": i}``) into a session, with the limits off (0, as before
them) and on (the defaults, 64 KiB / 16 KiB), for a small session and one of about 48 KB. Each
measurement runs N updates, R times, alternating off and on; the best run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pygw.store.base import SessionRecord
from pygw.store.memory import MemoryStorage

NOW = "2026-12-05T00:00:00+00:00"


async def run_once(limits: bool, session_kb: int, n: int) -> float:
    """Microseconds per update_session, one run of n updates."""
    storage = MemoryStorage(
        3600,
        session_max_bytes=65536 if limits else 0,
        session_update_max_bytes=16384 if limits else 0,
    )
    data: dict[str, Any] = {"conversation": [], "api_key": None}
    data |= {f"k{i}": "x" * 1000 for i in range(session_kb)}
    await storage.create_session(SessionRecord("sid", "alice", None, data, NOW, NOW))
    update = storage.update_session
    started = time.perf_counter()
    for i in range(n):
        await update("sid", data={"api_key": "abc", "n": i}, returning=False)
    return (time.perf_counter() - started) / n * 1e6


async def measure(n: int, repeat: int) -> list[dict[str, Any]]:
    results = []
    for session_kb in (0, 48):
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeat):
            for limits in (False, True):
                best[limits] = min(best[limits], await run_once(limits, session_kb, n))
        for limits in (False, True):
            results.append(
                {
                    "session": "small" if session_kb == 0 else f"{session_kb} KB",
                    "limits": "on (64 KiB / 16 KiB)" if limits else "off",
                    "us_per_update": round(best[limits], 3),
                }
            )
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches session_limits")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.n, args.repeat))
    print(f"{'session':<8} {'limits':<22} {'us/update':>10}")
    for r in results:
        print(f"{r['session']:<8} {r['limits']:<22} {r['us_per_update']:>10.3f}")
    if args.json is not None:
        report = {
            "bench": "session_limits",
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
            "n": args.n,
            "repeat": args.repeat,
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
