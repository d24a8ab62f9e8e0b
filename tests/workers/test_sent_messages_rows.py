"""The broadcast's rows: one per target group, each with its own debug code, however many groups."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import debug_code
from tgms_tui.backend.broadcasts import insert_targets


async def test_thousands_of_targets_get_distinct_codes_and_a_rerun_adds_nothing(pool: AsyncConnectionPool) -> None:
    ids = [-1_000_000_000_000 - n for n in range(12_345)]
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO broadcasts (broadcast_id, text) VALUES (7, 'x')")
        await insert_targets(conn, 7, ids)
        await insert_targets(conn, 7, ids)  # a second starter agrees
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT debug_code), count(DISTINCT chat_id), "
            "bool_and(debug_code ~ '^[A-Za-z0-9]+$') FROM sent_messages"
        )
        assert await cur.fetchone() == (12_345, 12_345, 12_345, True)


async def test_each_row_gets_the_code_of_its_position(pool: AsyncConnectionPool) -> None:
    """The statement makes the codes itself: the n-th target gets debug_code.make(broadcast, n), the same
    code the composer's length check counted with; a broadcast that reaches no group adds no row."""
    ids = [-1_000_000_000_000 - n for n in (5, 3, 9, 1)]
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO broadcasts (broadcast_id, text) VALUES (123456789012, 'x'), (8, 'y')")
        await insert_targets(conn, 123456789012, ids)
        await insert_targets(conn, 8, [])
        cur = await conn.execute("SELECT broadcast_id, chat_id, debug_code FROM sent_messages ORDER BY message_id")
        rows = await cur.fetchall()
    assert rows == [(123456789012, g, debug_code.make(123456789012, n)) for n, g in enumerate(ids, 1)]
