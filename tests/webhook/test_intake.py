"""The group-commit intake on its own: batching, and one update the database refuses does not take
its batch down (it alone is refused, the others are stored, the intake keeps accepting)."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.db import open_pool
from webhook_server.intake import IntakeUnavailable, UpdateIntake
from webhook_server.metrics import WebhookMetrics
from webhook_server.updates import ParsedUpdate, parse_update


def update(update_id: int) -> ParsedUpdate:
    return parse_update(json.dumps({"update_id": update_id, "message": {"text": f"m{update_id}"}}).encode())


async def test_concurrent_submits_share_transactions_and_a_poisoned_update_fails_alone(db_url: str) -> None:
    intake_pool: AsyncConnectionPool = await open_pool(db_url, min_size=1, max_size=1)
    metrics = WebhookMetrics()
    intake = UpdateIntake(intake_pool, metrics, writers=1)
    await intake.start()
    try:
        # Bypassing parse_update: text PostgreSQL will not take as jsonb.
        poisoned = ParsedUpdate(999, "message", '{"update_id": 999, "message": ')
        results = await asyncio.gather(
            *(intake.submit("main", update(n)) for n in range(40)),
            intake.submit("main", poisoned),
            *(intake.submit("main", update(n)) for n in range(40, 80)),
            return_exceptions=True,
        )
        assert results[:40] == [True] * 40 and results[41:] == [True] * 40
        assert isinstance(results[40], IntakeUnavailable)
        assert await intake.submit("main", update(5)) is False  # duplicate, and no cool-down after poison
        assert await intake.submit("tgms", update(5)) is True
        assert metrics.batch_size.sum >= 81 and metrics.batch_commits < 81  # batched, not one per update
    finally:
        await intake.stop()
        await intake_pool.close()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute("SELECT count(*), count(DISTINCT (payload->>'bot', payload->>'update_id')) FROM jobs")
        assert await cur.fetchone() == (81, 81)


async def test_stopping_refuses_new_updates(db_url: str) -> None:
    intake_pool = await open_pool(db_url, min_size=1, max_size=1)
    intake = UpdateIntake(intake_pool, WebhookMetrics(), writers=1)
    await intake.start()
    assert await intake.submit("main", update(1)) is True
    await intake.stop()
    with pytest.raises(IntakeUnavailable):
        await intake.submit("main", update(2))
    await intake_pool.close()
