"""Broadcast creation (row + job in one transaction), targeting and progress on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.broadcasts import broadcast_progress, create_broadcast, resolve_targets
from tgms_tui.backend.message_validation import validate_broadcast

GROUPS = [
    # group_id, phase, is_active, final_message_allowed
    (-1001, "growth", True, False),
    (-1002, "growth", False, True),
    (-1003, "monitoring", True, False),
    (-1004, "monitoring", False, False),
    (-1005, "monitoring", False, True),
]


@pytest.fixture
async def seeded(pool: AsyncConnectionPool) -> AsyncConnectionPool:
    async with pool.connection() as conn:
        for gid, phase, active, final in GROUPS:
            await conn.execute(
                "INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed)"
                " VALUES (%s, %s, %s, %s, %s)",
                (gid, f"g{gid}", phase, active, final),
            )
    return pool


@pytest.mark.parametrize(
    ("target", "final", "expected"),
    [
        ({"kind": "all"}, False, [-1003, -1001]),
        ({"kind": "all"}, True, [-1005, -1003, -1002, -1001]),
        ({"kind": "phase", "phase": "growth"}, False, [-1001]),
        ({"kind": "phase", "phase": "monitoring"}, True, [-1005, -1003]),
        ({"kind": "groups", "group_ids": [-1001, -1002, -1004, -9999]}, False, [-1001]),
        ({"kind": "groups", "group_ids": [-1001, -1002, -1004, -9999]}, True, [-1002, -1001]),
    ],
)
async def test_resolve_targets(
    seeded: AsyncConnectionPool, target: dict[str, object], final: bool, expected: list[int]
) -> None:
    async with seeded.connection() as conn:
        assert await resolve_targets(conn, target, final) == expected


async def test_create_broadcast_stores_row_and_job_together(seeded: AsyncConnectionPool) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    req = validate_broadcast(
        {"text": "*hi*", "parse_mode": "markdown", "target": {"phase": "monitoring"}, "send_at": send_at.isoformat()}
    )
    async with seeded.connection() as conn:
        broadcast_id, groups = await create_broadcast(conn, req, created_by="api")
    assert groups == 1
    async with seeded.connection() as conn:
        cur = await conn.execute(
            "SELECT b.text, b.parse_mode, b.target, b.created_by, b.status, j.job_type, j.payload, j.run_at"
            "  FROM broadcasts b JOIN jobs j ON j.job_id = b.job_id WHERE b.broadcast_id = %s",
            (broadcast_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    text, mode, target, by, status, job_type, payload, run_at = row
    assert (text, mode, by, status) == ("*hi*", "Markdown", "api", "pending")
    assert target == {"kind": "phase", "phase": "monitoring"}
    assert (job_type, payload) == ("tgms_send_to_groups", {"broadcast_id": broadcast_id})
    assert abs((run_at - send_at).total_seconds()) < 0.001


async def test_create_broadcast_joins_the_callers_transaction(seeded: AsyncConnectionPool) -> None:
    req = validate_broadcast({"text": "x"})
    async with seeded.connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await create_broadcast(conn, req, created_by="tui")
                raise RuntimeError("caller rolls back")
        cur = await conn.execute("SELECT (SELECT count(*) FROM broadcasts), (SELECT count(*) FROM jobs)")
        assert await cur.fetchone() == (0, 0)


async def test_progress_counts_messages_by_status(seeded: AsyncConnectionPool) -> None:
    async with seeded.connection() as conn:
        broadcast_id, _ = await create_broadcast(conn, validate_broadcast({"text": "x"}), created_by="api")
        for n, status in enumerate(["sent", "sent", "failed", "ambiguous", "pending"]):
            await conn.execute(
                "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status) VALUES (%s, %s, %s, %s)",
                (broadcast_id, -n, f"dbg{n}", status),
            )
        await conn.execute("UPDATE broadcasts SET status = 'running' WHERE broadcast_id = %s", (broadcast_id,))
        progress = await broadcast_progress(conn, broadcast_id)
        assert progress["status"] == "running"
        assert {k: progress[k] for k in ("pending", "sending", "sent", "failed", "ambiguous", "skipped", "total")} == {
            "pending": 1,
            "sending": 0,
            "sent": 2,
            "failed": 1,
            "ambiguous": 1,
            "skipped": 0,
            "total": 5,
        }
        with pytest.raises(LookupError):
            await broadcast_progress(conn, broadcast_id + 100)
