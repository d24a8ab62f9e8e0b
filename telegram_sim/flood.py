"""Telegram's flood control for sending methods: token buckets per bot, per group and per chat.

Limits from the Bots FAQ: ~30 messages/s per bot, 20 messages/minute per group, about one message per
second per chat with short bursts. A refused call consumes nothing and learns how many whole seconds
to wait (`retry_after`, at least 1), which is what Telegram's 429 carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from telegram_sim.config import SimConfig


@dataclass
class TokenBucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, now: float) -> float:
        self.refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


class FloodControl:
    """Decides whether one more message may go out now; callers hold the state lock."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._buckets: dict[tuple[str, int, int], TokenBucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: tuple[str, int, int], capacity: float, rate: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.capacity != capacity or bucket.rate != rate:
            bucket = TokenBucket(capacity=capacity, rate=rate, tokens=capacity, updated=now)
            self._buckets[key] = bucket
        return bucket

    def acquire(self, bot_id: int, chat_id: int, is_group: bool, now: float) -> int | None:
        """Take one message slot; return None if allowed, else the retry_after seconds."""
        cfg = self._config
        if not cfg.enforce_flood_limits:
            return None
        buckets = [
            self._bucket(("bot", bot_id, 0), max(cfg.per_bot_per_sec, 1.0), cfg.per_bot_per_sec, now),
            self._bucket(("chat", bot_id, chat_id), float(max(cfg.per_chat_burst, 1)), cfg.per_chat_per_sec, now),
        ]
        if is_group:
            buckets.append(
                self._bucket(
                    ("group", bot_id, chat_id), max(cfg.per_group_per_min, 1.0), cfg.per_group_per_min / 60.0, now
                )
            )
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None
