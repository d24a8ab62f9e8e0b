"""rewrite_group_id on a real database: every table moves, merges are safe, re-runs change nothing."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.groups import rewrite_id as rewrite_group_id

OLD, NEW = -4_000_000_001, -1_000_000_000_001


async def _all(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def _setup(pool: AsyncConnectionPool, *, new_registered: bool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, chat_type, phase, is_active, final_message_allowed, "
            "consecutive_failures, inactivity_days, admin_user_id) "
            "VALUES (%s, 'Old', 'group', 'monitoring', true, true, 2, 14, 77)",
            (OLD,),
        )
        if new_registered:  # my_chat_member of the new supergroup arrived first
            await conn.execute(
                "INSERT INTO managed_groups (group_id, title, chat_type, admin_user_id) "
                "VALUES (%s, 'New title', 'supergroup', 88)",
                (NEW,),
            )
        await conn.execute("INSERT INTO broadcasts (broadcast_id, text) VALUES (1, 'a'), (2, 'b')")
        await conn.execute(
            "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status) VALUES "
            "(1, %s, 'c1', 'sent'), (2, %s, 'c2', 'pending'), (2, %s, 'c3', 'pending')",
            (OLD, OLD, NEW) if new_registered else (OLD, OLD, -5),
        )
        await conn.execute(
            "INSERT INTO join_requests (user_id, chat_id, status, requested_at) VALUES (1, %s, 'approved', 'epoch')",
            (OLD,),
        )
        await conn.execute(
            "INSERT INTO member_activity (chat_id, user_id, status, last_seen_at) VALUES "
            "(%s, 1, 'member', now() - interval '3 days'), (%s, 2, 'member', now())",
            (OLD, OLD),
        )
        if new_registered:
            await conn.execute(
                "INSERT INTO member_activity (chat_id, user_id, status, last_seen_at) "
                "VALUES (%s, 1, 'member', now() - interval '1 day')",
                (NEW,),
            )
        await conn.execute("INSERT INTO member_count_history (group_id, member_count) VALUES (%s, 5)", (OLD,))
        await conn.execute("INSERT INTO kick_audit (chat_id, user_id, action) VALUES (%s, 3, 'kicked')", (OLD,))


async def test_rewrite_moves_every_table(pool: AsyncConnectionPool) -> None:
    await _setup(pool, new_registered=False)
    async with pool.connection() as conn:
        assert await rewrite_group_id(conn, OLD, NEW) is True
    assert await _all(
        pool,
        "SELECT group_id, title, chat_type, phase, final_message_allowed, consecutive_failures, "
        "inactivity_days, admin_user_id FROM managed_groups",
    ) == [(NEW, "Old", "supergroup", "monitoring", True, 2, 14, 77)]
    assert await _all(pool, "SELECT chat_id FROM sent_messages WHERE broadcast_id = 1") == [(NEW,)]
    assert await _all(pool, "SELECT chat_id FROM join_requests") == [(NEW,)]
    assert sorted(await _all(pool, "SELECT chat_id, user_id FROM member_activity")) == [(NEW, 1), (NEW, 2)]
    assert await _all(pool, "SELECT group_id FROM member_count_history") == [(NEW,)]
    assert await _all(pool, "SELECT chat_id FROM kick_audit") == [(NEW,)]
    async with pool.connection() as conn:  # a second caller (the other worker) finds nothing to do
        assert await rewrite_group_id(conn, OLD, NEW) is False
    assert len(await _all(pool, "SELECT * FROM managed_groups")) == 1


async def test_rewrite_merges_into_an_already_registered_supergroup(pool: AsyncConnectionPool) -> None:
    await _setup(pool, new_registered=True)
    async with pool.connection() as conn:
        assert await rewrite_group_id(conn, OLD, NEW) is True
    # The old group's settings and admin win (the admin's choices); the newer title stays; one row only.
    assert await _all(
        pool, "SELECT group_id, title, phase, final_message_allowed, inactivity_days, admin_user_id FROM managed_groups"
    ) == [(NEW, "New title", "monitoring", True, 14, 77)]
    # Broadcast 2 already had a row for the new id: the old row is skipped, never a second copy.
    assert sorted(await _all(pool, "SELECT chat_id, status FROM sent_messages WHERE broadcast_id = 2")) == [
        (NEW, "pending"),
        (OLD, "skipped"),
    ]
    # Activity merged: the most recent sighting wins.
    rows = await _all(
        pool,
        "SELECT user_id, last_seen_at > now() - interval '2 days' FROM member_activity "
        "WHERE chat_id = %s ORDER BY user_id",
        NEW,
    )
    assert rows == [(1, True), (2, True)]
    assert await _all(pool, "SELECT count(*) FROM member_activity WHERE chat_id = %s", OLD) == [(0,)]
