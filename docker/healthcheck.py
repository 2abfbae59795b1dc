#!/usr/bin/env python3
"""The image's HEALTHCHECK: ``pygw-healthcheck [PATH]`` exits 0 when ``GET PATH`` (default
``/health``) on this container's pygw (``127.0.0.1:$PORT``) answers 200 within 3 seconds, else 1
with the reason on stderr. The runtime image has no curl; this needs only the standard library."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def check(path: str = "/health") -> tuple[bool, str]:
    """(healthy, what was seen)."""
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:  # 503: Redis does not answer (or draining, on /ready)
        return False, f"{url}: {exc.code} {exc.read(500).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str]) -> int:
    healthy, seen = check(argv[1] if len(argv) > 1 else "/health")
    if not healthy:
        print(seen, file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
