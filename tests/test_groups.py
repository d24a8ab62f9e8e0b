"""The activation rule of tgms_tui/backend/groups.py, which every writer of managed_groups applies."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import groups

GROUP = -100123


async def state(conn: AsyncConnection[Any]) -> tuple[Any, ...]:
    cur = await conn.execute(
        "SELECT is_active, deactivated_reason, deactivated_at, consecutive_failures FROM managed_groups "
        "WHERE group_id = %s",
        (GROUP,),
    )
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def test_deactivated_at_is_when_the_group_went_inactive_and_an_operator_decision_stands(
    pool: AsyncConnectionPool,
) -> None:
    async with pool.connection() as conn:
        await groups.register(conn, GROUP, title="G")
        await conn.execute("UPDATE managed_groups SET consecutive_failures = 2 WHERE group_id = %s", (GROUP,))
        assert await groups.deactivate(conn, GROUP, groups.REASON_KICKED.format(actor=1))
        active, reason, since, _ = await state(conn)
        assert (active, reason) == (False, "bot was kicked from the group by user 1") and since is not None
        # (one transaction: now() would not move, so the moment it went inactive is put in the past)
        cur = await conn.execute(
            "UPDATE managed_groups SET deactivated_at = '2020-01-01Z' WHERE group_id = %s RETURNING deactivated_at",
            (GROUP,),
        )
        since = (await cur.fetchone() or [None])[0]
        # A newer automatic reason replaces the old one; the time it went inactive stays.
        await groups.deactivate(conn, GROUP, groups.REASON_NOT_ADMIN.format(actor=2))
        assert await state(conn) == (False, "bot is no longer an administrator (demoted by user 2)", since, 2)
        await groups.deactivate(conn, GROUP)  # an operator's reason replaces an automatic one
        assert await state(conn) == (False, groups.OPERATOR_REASON, since, 2)
        await groups.deactivate(conn, GROUP, groups.REASON_REMOVED.format(actor=3))  # ... and is never replaced
        await groups.bot_promoted(conn, GROUP, actor=3, title="", chat_type="supergroup", can_invite=True)
        assert await state(conn) == (False, groups.OPERATOR_REASON, since, 2)  # a promotion does not undo it

        assert await groups.reactivate(conn, GROUP)
        assert await state(conn) == (True, None, None, 0)
        active, inserted = await groups.bot_promoted(
            conn, GROUP, actor=3, title="", chat_type="group", can_invite=False
        )
        assert (active, inserted) == (False, False)
        _, reason, since, _ = await state(conn)
        assert reason == groups.REASON_NO_INVITE and since is not None
        await groups.bot_promoted(conn, GROUP, actor=3, title="", chat_type="group", can_invite=True)
        assert await state(conn) == (True, None, None, 0)  # an automatic deactivation is undone
        assert not await groups.deactivate(conn, -1) and not await groups.reactivate(conn, -1)
