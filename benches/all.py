"""Every benchmark in sequence, as ``make bench`` runs it (about 25 minutes on 2 cores).

    python -m benches all [--quick] [--only a,b] [--skip a,b]

Runs ``jwt_verify``, ``limits``, ``lifecycle`` (1,000 users x 10), ``lifecycle_deploy``
(the same through nginx on 2 Redis-backed nodes), ``fanout``, ``connections``, ``cluster`` and
``peers`` (which needs ``make peers``; it runs it if needed) with their defaults
(``--quick``: one run each, shorter holds, 10k/50k idle connections only) and writes
``benches/results/<name>.json`` for each. A benchmark that fails is reported and the others
still run; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback

from benches import _harness as h

DEPLOY = ["--behind-nginx", "--nodes", "2", "--backend", "redis"]
ALIASES = {"lifecycle_deploy": "lifecycle"}
"""Plan names that run another benchmark module (with other arguments)."""

PLAN: list[tuple[str, list[str], list[str]]] = [
    # name (a module of benches/, or an ALIASES key), default args, --quick args
    (
        "jwt_verify",
        ["--json", str(h.RESULTS / "jwt_verify.json")],
        ["--n", "2000", "--json", str(h.RESULTS / "jwt_verify.json")],
    ),
    ("limits", [], ["--runs", "1"]),
    ("lifecycle", [], ["--runs", "1", "--default-sample", "50"]),
    ("lifecycle_deploy", DEPLOY, ["--runs", "1", *DEPLOY]),
    ("fanout", [], ["--runs", "1"]),
    ("connections", [], ["--runs", "1", "--sizes", "10000,50000", "--hold", "10"]),
    ("cluster", [], ["--runs", "1", "--pushes", "10000"]),
    ("peers", [], ["--runs", "1", "--hold", "10"]),
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches all", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--skip", default="")
    args = parser.parse_args(argv)
    only = {x for x in args.only.split(",") if x}
    skip = {x for x in args.skip.split(",") if x}
    h.ensure_loadgen()
    failed: list[str] = []
    timings: list[tuple[str, float]] = []
    t_all = time.monotonic()
    for name, default, quick in PLAN:
        if (only and name not in only) or name in skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(f"benches.{ALIASES.get(name, name)}")
            code = module.main(quick if args.quick else default)
        except Exception:
            traceback.print_exc()
            code = 1
        timings.append((name, time.monotonic() - t0))
        if code:
            failed.append(name)
    print("\n" + h.table(["benchmark", "seconds"], [[n, f"{s:.0f}"] for n, s in timings]))
    print(
        f"total {time.monotonic() - t_all:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0
