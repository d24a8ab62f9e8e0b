"""Database writes that must land: the record of a call that already reached Telegram."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")


async def with_conn(
    pool: AsyncConnectionPool,
    work: Callable[[AsyncConnection[Any]], Awaitable[T]],
    *,
    lease: float,
    transaction: bool = False,
    retry_on: tuple[type[Exception], ...] = (psycopg.OperationalError,),
) -> T:
    """`work` on the autocommit `pool` (in one transaction if asked), retrying through a database
    outage (or a deadlock; any of `retry_on`) with backoff for up to `lease` seconds: once a call
    reached Telegram its outcome must not be lost, and a worker that cannot write for a lease is
    taken for dead anyway. The runner's own bookkeeping writes go through here too."""
    deadline = time.monotonic() + lease
    failures = 0
    while True:
        try:
            async with pool.connection() as conn:
                if not transaction:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)
        except retry_on:
            failures += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(min(2.0, 0.1 * 2**failures))
