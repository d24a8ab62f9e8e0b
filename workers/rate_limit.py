"""Telegram send rate limits shared by every worker process through PostgreSQL.

Each limit is a token bucket row in `rate_buckets` (tgms_tui/backend/rate_buckets.py), refilled lazily
from the database clock, so any number of processes on any number of hosts share one budget:

- `bot:<bot>`               the bot's overall rate (TGMS_RATE_PER_SECOND, seed default 5/s)
- `paid:<bot>`              instead of `bot:<bot>` for a paid broadcast's copies (allow_paid_broadcast):
                            TGMS_PAID_RATE_PER_SECOND, default 1000/s, Telegram's paid limit
- `group:<bot>:<chat>`      Telegram's 20 messages per minute in a group (chat ids < 0)
- `chat:<bot>:<chat>`       at most one message per `chat_min_interval` (1 s) in any chat
- `pace:<key>`              optional pacing stream, e.g. one broadcast's "3 s between groups"

One acquire takes one token from every bucket it names *in one statement*: the rows are locked in key
order (`FOR UPDATE`, so no deadlocks and no read-then-write race) and updated only if all of them have
a token and none is paused. Either every bucket pays or none does, so a caller waiting on a busy chat
never burns the bot's tokens. A 429 sets `paused_until` on a bucket; acquire waits it out.

Bucket capacities default to 1: a token bucket with capacity C and rate r admits C - 1 + r*T calls in
any window of T seconds, so capacity 1 keeps every window at the configured rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import rate_buckets

from .metrics import METRICS

if TYPE_CHECKING:
    from tgms_tui.backend.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bucket:
    key: str
    capacity: float
    refill_per_sec: float


class RateLimitTimeout(TimeoutError):
    """acquire() could not get its tokens within the caller's `timeout`; nothing was consumed."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit: next token in {wait:.2f} s")
        self.wait = wait


class RateLimiter:
    """Shared token buckets for Telegram sends. Safe to use from many tasks and processes."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        rate_per_second: float = 5.0,
        burst: float = 1.0,
        group_limit: int = 20,
        group_period: float = 60.0,
        group_burst: float = 1.0,
        chat_min_interval: float = 1.0,
        pace_interval: float = 3.0,
        paid_rate_per_second: float = 1000.0,
    ) -> None:
        if rate_per_second <= 0 or paid_rate_per_second <= 0 or group_limit <= 0 or group_period <= 0:
            raise ValueError("rates must be positive")
        self.pool = pool
        self.rate_per_second = rate_per_second
        self.paid_rate_per_second = paid_rate_per_second
        self.burst = max(1.0, float(burst))
        # A tenth of a second of paid tokens (like `bot_burst`), so batches of copies can pay at once.
        self.paid_burst = max(self.burst, float(round(paid_rate_per_second / 10)))
        self.group_rate = group_limit / group_period
        self.group_burst = max(1.0, float(group_burst))
        self.chat_min_interval = chat_min_interval
        self.pace_interval = pace_interval
        self._ensured: set[Bucket] = set()

    @classmethod
    def from_settings(cls, pool: AsyncConnectionPool, settings: Settings, **overrides: Any) -> RateLimiter:
        """The seed's defaults as configured: TGMS_RATE_PER_SECOND, TGMS_GROUP_MESSAGES_PER_MINUTE,
        TGMS_GROUP_DELAY_SECONDS (the pace between groups of one broadcast)."""
        kw: dict[str, Any] = {
            "rate_per_second": settings.rate_per_second,
            "group_limit": settings.group_per_minute,
            "pace_interval": settings.group_delay_seconds,
            "paid_rate_per_second": settings.paid_rate_per_second,
        }
        kw.update(overrides)
        return cls(pool, **kw)

    # -------------------------------------------------------------- bucket sets

    def _bot_bucket(self, bot_key: str, paid: bool) -> Bucket:
        """The bot's overall limit; a paid send (allow_paid_broadcast) has its own, faster one. The
        per-group and per-chat limits apply to paid sends too: Telegram lifts only the broadcast limit."""
        if paid:
            return Bucket(f"paid:{bot_key}", self.paid_burst, self.paid_rate_per_second)
        return Bucket(f"bot:{bot_key}", self.burst, self.rate_per_second)

    def buckets(
        self, bot_key: str, chat_id: int | None = None, pace_key: str | None = None, *, paid: bool = False
    ) -> list[Bucket]:
        """Every bucket one message from `bot_key` to `chat_id` must pay."""
        out = [self._bot_bucket(bot_key, paid)]
        if chat_id is not None:
            if chat_id < 0:  # groups, supergroups and channels have negative ids
                out.append(Bucket(f"group:{bot_key}:{chat_id}", self.group_burst, self.group_rate))
            if self.chat_min_interval > 0:
                out.append(Bucket(f"chat:{bot_key}:{chat_id}", 1.0, 1.0 / self.chat_min_interval))
        if pace_key is not None and self.pace_interval > 0:
            out.append(Bucket(f"pace:{pace_key}", 1.0, 1.0 / self.pace_interval))
        return sorted(out, key=lambda b: b.key)

    def _pause_bucket(self, bot_key: str, chat_id: int | None, paid: bool = False) -> Bucket:
        if chat_id is None:
            return self._bot_bucket(bot_key, paid)
        interval = self.chat_min_interval if self.chat_min_interval > 0 else 1.0
        return Bucket(f"chat:{bot_key}:{chat_id}", 1.0, 1.0 / interval)

    # -------------------------------------------------------------- operations

    async def try_acquire(
        self, bot_key: str, chat_id: int | None = None, *, pace_key: str | None = None, paid: bool = False
    ) -> float:
        """Take one token from every relevant bucket if all can pay now: returns 0.0. Otherwise
        take nothing and return the seconds until they could (a job may snooze that long)."""
        buckets = self.buckets(bot_key, chat_id, pace_key, paid=paid)
        missing = [b for b in buckets if b not in self._ensured]
        if missing:
            await self._ensure(missing)
        granted, wait, found = await self._take(buckets)
        if found < len(buckets):
            # A row vanished (pruned or another config): recreate and try once more.
            self._ensured.difference_update(buckets)
            await self._ensure(buckets)
            granted, wait, found = await self._take(buckets)
        if granted:
            return 0.0
        return max(wait, 0.001)

    async def acquire(
        self,
        bot_key: str,
        chat_id: int | None = None,
        *,
        pace_key: str | None = None,
        timeout: float | None = None,
        paid: bool = False,
    ) -> float:
        """Wait until one message from `bot_key` to `chat_id` is allowed, and take it.

        Returns the seconds waited. With `timeout`, raises RateLimitTimeout (consuming nothing)
        instead of waiting longer, so a job can snooze rather than hold a worker slot.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            wait = await self.try_acquire(bot_key, chat_id, pace_key=pace_key, paid=paid)
            if wait == 0.0:
                waited = loop.time() - started
                METRICS.rate_limited(waited)
                return waited
            if timeout is not None and loop.time() - started + wait > timeout:
                raise RateLimitTimeout(wait)
            # A little jitter so processes woken by the same refill do not collide in lockstep.
            await asyncio.sleep(wait + random.uniform(0.0, min(0.02, wait / 4)))

    def bot_capacity(self, *, paid: bool = False) -> float:
        """The capacity of the bot bucket a (paid) send pays: the most one batch can take at once."""
        return self._bot_bucket("", paid).capacity

    async def acquire_up_to(
        self,
        bot_key: str,
        want: int,
        *,
        timeout: float | None = None,
        batch: float | None = None,
        paid: bool = False,
        pace_key: str | None = None,
    ) -> int:
        """Wait until at least one call of `bot_key` (no particular chat) is allowed, and take as many
        tokens as are there, up to `want`: a batch of calls pays in one statement. Returns how many
        were taken (>= 1). With `timeout`, raises RateLimitTimeout (consuming nothing) instead of
        waiting longer. A caller refused sleeps until a share of the bucket (half its capacity, at
        most `want`; `batch` if given) has refilled, so several batch takers do not poll for every
        token. A smaller `batch` wakes sooner: less of the bucket's capacity is used up waiting, so a
        late wake-up loses no refill (the caller should be the only one of its process polling).
        `paid` and `pace_key` as for `acquire` (the per-chat buckets are `take_chats`')."""
        if want < 1:
            raise ValueError("want must be >= 1")
        buckets = self.buckets(bot_key, None, pace_key, paid=paid)
        keys = [b.key for b in buckets]
        target = max(1.0, min(float(want), self.burst / 2 if batch is None else batch))
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            if any(b not in self._ensured for b in buckets):
                await self._ensure(buckets)
            async with self.pool.connection() as conn:
                granted, wait, found = await rate_buckets.take_up_to(conn, keys, want, target)
            if found < len(buckets):
                self._ensured.difference_update(buckets)
                continue
            if granted:
                return granted
            wait = max(wait, 0.001)
            if timeout is not None and loop.time() - started + wait > timeout:
                raise RateLimitTimeout(wait)
            await asyncio.sleep(wait + random.uniform(0.0, min(0.01, wait / 4)))

    async def give_back(self, bot_key: str, tokens: int, *, paid: bool = False, pace_key: str | None = None) -> None:
        """Return tokens taken by `acquire_up_to` (same `paid`, `pace_key`) for calls that were not made."""
        if tokens > 0:
            keys = [b.key for b in self.buckets(bot_key, None, pace_key, paid=paid)]
            async with self.pool.connection() as conn:
                await rate_buckets.give_back(conn, keys, tokens)

    async def take_chats(self, bot_key: str, chat_ids: list[int]) -> list[float]:
        """The per-chat share of `acquire` for a batch whose bot tokens `acquire_up_to` took: one token
        from each chat's own buckets (per chat, per group), all-or-nothing per chat, in one
        statement. Per chat (distinct ids), 0.0 when taken, else the seconds until it could be."""
        per_chat = [
            [b for b in self.buckets(bot_key, chat) if b.key.startswith(("chat:", "group:"))] for chat in chat_ids
        ]
        wanted = [b for bs in per_chat for b in bs]
        if not wanted:
            return [0.0] * len(chat_ids)
        if any(b not in self._ensured for b in wanted):
            await self._ensure(wanted)
        async with self.pool.connection() as conn:
            verdicts = await rate_buckets.take_each(conn, [[b.key for b in bs] for bs in per_chat])
        waits: list[float] = []
        for bs, (granted, wait) in zip(per_chat, verdicts, strict=True):
            if granted or not bs:
                waits.append(0.0)
                continue
            if wait <= 0:  # a bucket row vanished (pruned): made again before the next try
                self._ensured.difference_update(bs)
            waits.append(max(wait, 0.05))
        return waits

    async def pause(self, bot_key: str, seconds: float, chat_id: int | None = None, *, paid: bool = False) -> None:
        """After a 429: no sends for this bot (or only to this chat; or only paid ones) for `seconds`,
        in every process."""
        bucket = self._pause_bucket(bot_key, chat_id, paid)
        METRICS.paused(seconds)
        async with self.pool.connection() as conn:
            await rate_buckets.pause(conn, bucket.key, bucket.capacity, bucket.refill_per_sec, seconds)
        self._ensured.add(bucket)
        log.info(
            "rate limit: paused %s for %.1f s",
            f"bot {bot_key}" if chat_id is None else f"bot {bot_key} in chat {chat_id}",
            seconds,
        )

    async def paused_for(self, bot_key: str, chat_id: int | None = None) -> float:
        """Seconds left on the longest pause that would block such a send (0 when none)."""
        async with self.pool.connection() as conn:
            return await rate_buckets.paused_for(conn, [b.key for b in self.buckets(bot_key, chat_id)])

    # -------------------------------------------------------------- internals

    async def _ensure(self, buckets: list[Bucket]) -> None:
        ordered = sorted(buckets, key=lambda b: b.key)
        async with self.pool.connection() as conn:
            await rate_buckets.ensure(conn, [(b.key, float(b.capacity), float(b.refill_per_sec)) for b in ordered])
        self._ensured.update(ordered)

    async def _take(self, buckets: list[Bucket]) -> tuple[bool, float, int]:
        async with self.pool.connection() as conn:
            return await rate_buckets.take(conn, [b.key for b in buckets])
