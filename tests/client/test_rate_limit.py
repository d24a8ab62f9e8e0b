"""The shared token buckets against a real PostgreSQL (single process; the three-process proof
against the simulator is in test_rate_limit_processes.py)."""

from __future__ import annotations

import asyncio

import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.config import Settings
from workers.rate_limit import RateLimiter, RateLimitTimeout


async def bucket_tokens(pool: AsyncConnectionPool, key: str) -> float:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT tokens FROM rate_buckets WHERE key = %s", (key,))
        row = await cur.fetchone()
    assert row is not None, key
    return float(row[0])


async def test_grants_then_refuses_with_the_time_to_the_next_token(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=2.0, burst=1)
    assert await limiter.try_acquire("42") == 0.0
    wait = await limiter.try_acquire("42")
    # One token per 0.5 s; the refusal says how long until the next one.
    assert 0.0 < wait <= 0.5
    assert await bucket_tokens(pool, "bot:42") < 1.0


async def test_refused_multi_bucket_acquire_consumes_nothing(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=1.0, burst=5, chat_min_interval=100.0, group_limit=1000)
    assert await limiter.try_acquire("7", -100123) == 0.0
    bot_after_first = await bucket_tokens(pool, "bot:7")
    # The chat bucket (1 per 100 s) is empty now: further sends to that chat are refused ...
    for _ in range(3):
        assert await limiter.try_acquire("7", -100123) > 50.0
    # ... and did not take the bot's tokens, which another chat can still use.
    assert await bucket_tokens(pool, "bot:7") == pytest.approx(bot_after_first, abs=0.2)
    assert await limiter.try_acquire("7", -100999) == 0.0


async def test_group_bucket_applies_to_groups_only(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=100, burst=10, group_limit=1, group_period=600, chat_min_interval=0)
    assert await limiter.try_acquire("9", -5) == 0.0
    assert await limiter.try_acquire("9", -5) > 500  # 1 per 10 minutes in that group
    assert await limiter.try_acquire("9", 12345) == 0.0  # a private chat has no group bucket
    assert await limiter.try_acquire("9", 12345) == 0.0


async def test_pause_blocks_the_bot_until_it_ends(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=100)
    await limiter.pause("5", 30)
    wait = await limiter.try_acquire("5")
    assert 25 < wait <= 30
    assert 25 < await limiter.paused_for("5") <= 30
    with pytest.raises(RateLimitTimeout):
        await limiter.acquire("5", timeout=0.2)
    # A shorter pause does not shorten a longer one.
    await limiter.pause("5", 1)
    assert await limiter.try_acquire("5") > 25


async def test_chat_pause_leaves_other_chats_alone(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=100, burst=10, chat_min_interval=0.01)
    await limiter.pause("5", 30, chat_id=-77)
    assert await limiter.try_acquire("5", -77) > 25
    assert await limiter.try_acquire("5", -78) == 0.0


async def test_short_pause_is_waited_out(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=100)
    await limiter.pause("6", 0.3)
    waited = await limiter.acquire("6", timeout=5)
    assert waited >= 0.2


async def test_concurrent_tasks_share_one_budget(pool: AsyncConnectionPool) -> None:
    # 10 tasks want 2 tokens each at 20/s with capacity 1: the 20 grants cannot take less than 19
    # refill intervals. (A lower bound only: no test asserts an upper time bound.)
    limiter = RateLimiter(pool, rate_per_second=20.0)
    grants: list[float] = []
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        for _ in range(2):
            await limiter.acquire("11")
            grants.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(10)))
    assert len(grants) == 20
    assert max(grants) - min(grants) >= 19 / 20.0 * 0.95


async def test_changed_configuration_is_adopted(pool: AsyncConnectionPool) -> None:
    await RateLimiter(pool, rate_per_second=1, burst=10).try_acquire("3")
    await RateLimiter(pool, rate_per_second=2, burst=1).try_acquire("3")
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT capacity, refill_per_sec FROM rate_buckets WHERE key = 'bot:3'")
        assert await cur.fetchone() == (1.0, 2.0)


def test_defaults_come_from_settings() -> None:
    limiter = RateLimiter.from_settings(
        None,  # type: ignore[arg-type]  # no database needed to build bucket sets
        Settings(rate_per_second=5.0, group_delay_seconds=3.0, group_per_minute=20),
    )
    keys = {b.key: b for b in limiter.buckets("1", -100, pace_key="broadcast:9")}
    assert keys["bot:1"].refill_per_sec == 5.0
    assert keys["group:1:-100"].refill_per_sec == pytest.approx(20 / 60)
    assert keys["chat:1:-100"].refill_per_sec == 1.0
    assert keys["pace:broadcast:9"].refill_per_sec == pytest.approx(1 / 3)


@pytest.mark.parametrize("capacity", [1, 3])
async def test_concurrent_takers_never_overdraw(pool: AsyncConnectionPool, capacity: int) -> None:
    # Refill is negligible (one token per ~3 hours), so exactly `capacity` of 40 simultaneous takers on
    # 8 connections may win. A read-then-write race would let several more through.
    limiter = RateLimiter(
        pool,
        rate_per_second=0.0001,
        burst=capacity,
        group_burst=capacity,
        group_limit=1,
        group_period=1e4,
        chat_min_interval=0,
    )
    results = await asyncio.gather(*(limiter.try_acquire("13", -42) for _ in range(40)))
    assert sum(1 for r in results if r == 0.0) == capacity


async def test_batch_take_grants_what_the_bucket_holds_and_never_overdraws(pool: AsyncConnectionPool) -> None:
    # Capacity 10, one token per ~3 hours: 12 takers of up to 4 tokens on 8 connections share exactly 10.
    limiter = RateLimiter(pool, rate_per_second=0.0001, burst=10)
    results = await asyncio.gather(
        *(limiter.acquire_up_to("14", 4, timeout=0.5) for _ in range(12)), return_exceptions=True
    )
    granted = [r for r in results if isinstance(r, int)]
    assert sum(granted) == 10 and all(1 <= g <= 4 for g in granted)
    assert all(isinstance(r, RateLimitTimeout) for r in results if not isinstance(r, int))
    assert await bucket_tokens(pool, "bot:14") < 1.0


async def test_batch_take_waits_for_refill_respects_pauses_and_takes_tokens_back(pool: AsyncConnectionPool) -> None:
    limiter = RateLimiter(pool, rate_per_second=20.0, burst=4)
    assert await limiter.acquire_up_to("15", 10) == 4  # the whole bucket, not more
    loop = asyncio.get_running_loop()
    started = loop.time()
    taken = 0
    while taken < 6:  # 6 more tokens at 20/s cannot come in less than 0.3 s
        taken += await limiter.acquire_up_to("15", 6 - taken)
    assert taken == 6 and loop.time() - started >= 0.3 * 0.9
    await limiter.give_back("15", 3)
    assert await limiter.acquire_up_to("15", 10) >= 3
    await limiter.give_back("15", 100)  # never above the capacity
    assert await bucket_tokens(pool, "bot:15") <= 4.0
    await limiter.pause("15", 30)
    with pytest.raises(RateLimitTimeout):
        await limiter.acquire_up_to("15", 1, timeout=0.2)
    with pytest.raises(ValueError):
        await limiter.acquire_up_to("15", 0)


async def test_batch_of_chats_pays_each_chat_once_all_or_nothing(pool: AsyncConnectionPool) -> None:
    # The per-chat share of a batch: each chat pays its own 1/s and 20/min buckets, in one statement.
    limiter = RateLimiter(pool, rate_per_second=1000.0, group_limit=20, group_period=60.0)
    assert await limiter.take_chats("16", [-1, -2, 7]) == [0.0, 0.0, 0.0]
    waits = await limiter.take_chats("16", [-1, -3])
    # -1 had its message a moment ago: its group's next slot is 3 s away (20/min); -3 is free.
    assert 2.5 < waits[0] <= 3.0 and waits[1] == 0.0
    await limiter.pause("16", 30, chat_id=-4)
    assert (await limiter.take_chats("16", [-4]))[0] > 25
    assert await limiter.take_chats("16", []) == []
    # Paid batches take up to a tenth of a second of the paid rate at once.
    assert await limiter.acquire_up_to("16", 500, paid=True) == 100
