"""Push to pygw users and channels from any Python process (a backend, a worker, a cron job).

Run:  REDIS_URL=redis://localhost:6379 python examples/publisher.py alice "your report is ready"
"""

from __future__ import annotations

import asyncio
import os
import sys

from pygw import Publisher


async def main(user: str, text: str) -> None:
    async with Publisher(os.environ.get("REDIS_URL", "redis://localhost:6379")) as pub:
        await pub.push(user, {"type": "notification", "text": text})
        publication = await pub.publish("room:lobby", {"from": "backend", "text": text})
        print(f"pushed to {user}; published to room:lobby at offset {publication.offset}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
