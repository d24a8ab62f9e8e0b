"""The activity upsert (tgms_tui/backend/members.py) on a real database: it records what Telegram told us, and
a repeat that changes nothing within a minute writes nothing at all, not even a row lock (what keeps
chatty groups and the three updates of every approval cheap)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.members import SQL_ACTIVITY

CHAT, USER, T0 = -100777, 4242, 1_760_000_000


async def record(pool: AsyncConnectionPool, *, status: str, date: int, soft: bool = False, **user: Any) -> bool:
    """Run the upsert in a transaction; whether it wrote anything (took a transaction id)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            SQL_ACTIVITY,
            {
                "chat": CHAT,
                "ids": [USER],
                "usernames": [user.get("username")],
                "statuses": [status],
                "bots": [bool(user.get("is_bot", False))],
                "date": date,
                "soft": soft,
            },
        )
        cur = await conn.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def row(pool: AsyncConnectionPool) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT xmin::text, status, username, extract(epoch FROM last_seen_at)::bigint FROM member_activity "
            "WHERE chat_id = %s AND user_id = %s",
            (CHAT, USER),
        )
        found = await cur.fetchone()
    assert found is not None
    return tuple(found)


async def test_repeats_within_a_minute_write_nothing_and_changes_always_land(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, chat_type, phase, is_active) VALUES (%s, 't', 'supergroup', "
            "'growth', true)",
            (CHAT,),
        )
    await record(pool, status="member", date=T0, username="ann")
    first = await row(pool)
    assert first[1:] == ("member", "ann", T0)

    # Same facts 30 s later, then a message without a username: nothing written, not even a row lock
    # (no transaction id, so the commit waits for no disk).
    assert await record(pool, status="member", date=T0 + 30, username="ann") is False
    assert await record(pool, status="member", date=T0 + 59, soft=True) is False
    assert await row(pool) == first  # not rewritten: same row version

    assert await record(pool, status="member", date=T0 + 60, username="ann") is True  # a minute on
    moved = await row(pool)
    assert moved[1:] == ("member", "ann", T0 + 60) and moved[0] != first[0]

    await record(pool, status="member", date=T0 + 61, username="ann_new")  # renamed within the minute
    assert (await row(pool))[1:] == ("member", "ann_new", T0 + 61)

    await record(pool, status="left", date=T0 + 62)  # left within the minute: the status lands
    assert (await row(pool))[1:3] == ("left", "ann_new")

    await record(pool, status="member", date=T0 + 63, soft=True)  # a message after leaving: present again
    assert (await row(pool))[1] == "member"
    await record(pool, status="administrator", date=T0 + 64)
    await record(pool, status="member", date=T0 + 65, soft=True)  # a message keeps a known admin status
    latest = await row(pool)
    assert latest[1] == "administrator"
    await record(pool, status="administrator", date=T0 - 3600)  # an old update never moves last seen back
    assert await row(pool) == latest
