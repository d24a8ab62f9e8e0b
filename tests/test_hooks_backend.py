"""The event outbox on a real PostgreSQL: events are written in the change's transaction (none on a
rollback), only for types someone subscribed to, once per real state change; a migration is one
group.migrated; lanes keep one drainer job; the sweep revives a lane whose job was lost."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import AsyncConnection

from tgms_tui.backend import groups, hooks, members


async def _subscribe(conn: AsyncConnection[Any], events: list[str]) -> int:
    sub_id, _secret = await hooks.add(conn, "http://127.0.0.1:9/", events, "t", allow_private=True)
    return sub_id


async def _events(conn: AsyncConnection[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    cur = await conn.execute("SELECT event_type, lane, body FROM hook_events ORDER BY seq")
    return [(t, lane, json.loads(body)) for t, lane, body in await cur.fetchall()]


async def test_events_follow_the_changes_transaction(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await _subscribe(conn, list(hooks.DEFAULT_EVENTS))
        async with conn.transaction(force_rollback=True):
            await groups.register(conn, -1001, title="Rolled back")
        assert await _events(conn) == []  # nothing invented

        await groups.register(conn, -1001, title="Kept")
        await groups.register(conn, -1001, title="Kept again")  # known group: no second registration
        await members.record_count(conn, -1001, 10)
        await members.record_count(conn, -1001, 10)  # unchanged: no event
        await members.record_count(conn, -1001, 7)
        await groups.deactivate(conn, -1001, "bot was kicked from the group by user 5")
        await groups.deactivate(conn, -1001, "deactivated by an operator")  # already inactive: no event
        await groups.reactivate(conn, -1001)
        await groups.rewrite_id(conn, -1001, -1002001)
        got = await _events(conn)
    assert [(t, lane) for t, lane, _ in got] == [
        ("group.registered", "-1001"),
        ("group.member_count", "-1001"),
        ("group.member_count", "-1001"),
        ("group.deactivated", "-1001"),
        ("group.reactivated", "-1001"),
        ("group.migrated", "-1001"),
    ]
    bodies = [body for _, _, body in got]
    assert all(list(b) == ["version", "id", "type", "occurred_at", "data"] for b in bodies)
    assert len({b["id"] for b in bodies}) == len(bodies)
    assert bodies[1]["data"] == {"group_id": -1001, "member_count": 10, "previous": None, "change": None}
    assert bodies[2]["data"] == {"group_id": -1001, "member_count": 7, "previous": 10, "change": -3}
    assert bodies[3]["data"]["reason"] == "bot was kicked from the group by user 5"
    assert bodies[5]["data"] == {"old_group_id": -1001, "group_id": -1002001}


async def test_opt_in_events_and_lanes(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        everyone = await _subscribe(conn, list(hooks.DEFAULT_EVENTS))
        await groups.register(conn, -1001, title="A")
        await conn.execute(
            "INSERT INTO join_requests (user_id, chat_id, status, processed_at) VALUES (1, -1001, 'approved', now())"
        )
        assert [t for t, _, _ in await _events(conn)] == ["group.registered"]  # nobody asked for decisions
        decisions = await _subscribe(conn, ["join_request.decided"])
        await conn.execute(
            "INSERT INTO join_requests (user_id, chat_id, status, processed_at) VALUES (2, -1001, 'approved', now())"
        )
        await conn.execute("INSERT INTO join_requests (user_id, chat_id, status) VALUES (3, -1001, 'pending')")
        await conn.execute("UPDATE join_requests SET status = 'declined', processed_at = now() WHERE user_id = 3")
        cur = await conn.execute("SELECT subscription_id, event_type FROM hook_deliveries ORDER BY delivery_id")
        assert await cur.fetchall() == [
            (everyone, "group.registered"),
            (decisions, "join_request.decided"),
            (decisions, "join_request.decided"),
        ]
        # One drainer job per lane, however many deliveries wait in it.
        cur = await conn.execute("SELECT payload FROM jobs WHERE job_type = %s ORDER BY job_id", (hooks.JOB_TYPE,))
        assert [p for (p,) in await cur.fetchall()] == [
            {"subscription_id": everyone, "lane": "-1001"},
            {"subscription_id": decisions, "lane": "-1001"},
        ]
        # A lost drainer (failed for good) is replaced by the sweep, once.
        await conn.execute("UPDATE jobs SET status = 'failed' WHERE job_type = %s", (hooks.JOB_TYPE,))
        assert await hooks.sweep_lanes(conn) == 2
        assert await hooks.sweep_lanes(conn) == 0


async def test_prune_forgets_old_events_with_their_deliveries(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await _subscribe(conn, ["group.registered"])
        for n in range(3):
            await groups.register(conn, -1001 - n, title="x")
        await conn.execute("UPDATE hook_events SET occurred_at = now() - interval '31 days' WHERE lane <> '-1003'")
        assert await hooks.prune(conn) == 2
        cur = await conn.execute("SELECT lane FROM hook_deliveries")
        assert await cur.fetchall() == [("-1003",)]
