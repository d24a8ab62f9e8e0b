"""Telegram's flood control for sending methods: token buckets per bot, per group and per chat.

Limits from the Bots FAQ: ~30 messages/s per bot, 20 messages/minute per group, about one message per
second per chat with short bursts. A refused call consumes nothing and learns how many whole seconds
to wait (`retry_after`, at least 1), which is what Telegram's 429 carries.

Paid broadcasts (`allow_paid_broadcast`): such a message may go beyond the bot's ~30/s, up to 1000/s,
and each message beyond the free rate costs 0.1 Telegram Star from the bot's balance (the Bot API's
TransactionPartnerTelegramApi counts "requests that exceeded regular limits and were therefore
billed"). A message within the free rate costs nothing; the per-group and per-chat limits still apply.
A billed message the balance cannot pay for is refused with BALANCE_TOO_LOW and costs nothing.
Balances are kept in tenths of a Star (exact) and set through the control API (`/_sim/stars`).
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


# The fee of one billed paid-broadcast message, in tenths of a Star (0.1 Star).
PAID_MESSAGE_TENTHS = 1


class StarBalanceTooLow(Exception):
    """A paid message beyond the free rate that the bot's Star balance cannot pay for."""


class FloodControl:
    """Decides whether one more message may go out now; callers hold the state lock."""

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._buckets: dict[tuple[str, int, int], TokenBucket] = {}
        # Per bot: Star balance and the paid messages billed, both in tenths of a Star / messages.
        # Not cleared by reset() (a configuration change): the balance is the bot's, not the limiter's.
        self.star_tenths: dict[int, int] = {}
        self.billed: dict[int, int] = {}

    def stars(self, bot_id: int) -> dict[str, float | int]:
        """The bot's balance (Stars) and how many paid messages were billed so far."""
        return {"balance": self.star_tenths.get(bot_id, 0) / 10, "billed_messages": self.billed.get(bot_id, 0)}

    def set_stars(self, bot_id: int, balance: float) -> None:
        self.star_tenths[bot_id] = max(0, round(balance * 10))

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: tuple[str, int, int], capacity: float, rate: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.capacity != capacity or bucket.rate != rate:
            bucket = TokenBucket(capacity=capacity, rate=rate, tokens=capacity, updated=now)
            self._buckets[key] = bucket
        return bucket

    def acquire(self, bot_id: int, chat_id: int, is_group: bool, now: float, *, paid: bool = False) -> int | None:
        """Take one message slot; return None if allowed, else the retry_after seconds. With `paid`,
        a message beyond the free bot rate uses the paid rate and is billed (StarBalanceTooLow when
        the balance cannot pay; nothing is taken then)."""
        cfg = self._config
        if not cfg.enforce_flood_limits:
            return None
        free = self._bucket(("bot", bot_id, 0), max(cfg.per_bot_per_sec, 1.0), cfg.per_bot_per_sec, now)
        buckets = [
            self._bucket(("chat", bot_id, chat_id), float(max(cfg.per_chat_burst, 1)), cfg.per_chat_per_sec, now),
        ]
        if is_group:
            buckets.append(
                self._bucket(
                    ("group", bot_id, chat_id), max(cfg.per_group_per_min, 1.0), cfg.per_group_per_min / 60.0, now
                )
            )
        billed = False
        bot_bucket = free
        if paid and free.wait(now) > 0:
            rate = cfg.paid_per_bot_per_sec
            bot_bucket = self._bucket(("paid", bot_id, 0), max(rate, 1.0), rate, now)
            billed = True
        buckets.append(bot_bucket)
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        if billed:
            if self.star_tenths.get(bot_id, 0) < PAID_MESSAGE_TENTHS:
                raise StarBalanceTooLow
            self.star_tenths[bot_id] -= PAID_MESSAGE_TENTHS
            self.billed[bot_id] = self.billed.get(bot_id, 0) + 1
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None
