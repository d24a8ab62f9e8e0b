"""One worker process of the shared-rate-limit test (tests/client/test_rate_limit_processes.py).

Run as `python -m tests.client.limiter_child '<json spec>'`: opens its own pool and client, prints
"ready", waits for "go" on stdin (so the processes start sending together), sends `count` messages
round-robin over `chats` through a TelegramClient with the shared RateLimiter, then prints a JSON
summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from tgms_tui.backend.db import open_pool
from workers.rate_limit import RateLimiter
from workers.telegram_api import TelegramClient
from workers.telegram_errors import TelegramError


class RecordingLimiter(RateLimiter):
    """Notes when the last token was granted, to measure grant-to-arrival delay at the simulator."""

    last_grant = 0.0

    async def acquire(self, *args: Any, **kwargs: Any) -> float:
        waited = await super().acquire(*args, **kwargs)
        self.last_grant = time.time()
        return waited


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    pool = await open_pool(spec["db_url"], min_size=1, max_size=2, name=f"child-{spec['name']}")
    await pool.wait()
    limiter = RecordingLimiter(pool, **spec["limiter"])
    errors: list[str] = []
    sent = 0
    granted: dict[str, float] = {}
    async with TelegramClient(spec["token"], api_base=spec["api_base"], limiter=limiter) as tg:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.time()
        for i in range(spec["count"]):
            chat_id = spec["chats"][i % len(spec["chats"])]
            text = f"{spec['name']}-{i}"
            try:
                await tg.send_message(chat_id, text)
                granted[text] = limiter.last_grant
                sent += 1
            except TelegramError as exc:
                errors.append(repr(exc))
    await pool.close()
    return {"name": spec["name"], "sent": sent, "errors": errors, "granted": granted, "started": started}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
