"""`Idempotency-Key` on `POST /api/tgms/send`, through the real HTTP server: a client retrying after a
timeout (or twice at once) gets the first answer and one broadcast; a key reused for another body is
refused naming the header; keys outlive a day and are pruned by the maintenance job afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.config import Settings
from tgms_tui.backend.queue import Job
from webhook_server.app import create_app
from workers.maintenance import PRUNE_JOB, prune_finished_jobs
from workers.runner import JobContext

from .conftest import ADMIN_KEY, served

BODY = {"text": "Test broadcast", "target": {"group_ids": [-1001]}}


@pytest.fixture
async def server(settings: Settings, db_url: str, pool: AsyncConnectionPool) -> AsyncIterator[str]:
    async with pool.connection() as conn:  # the group BODY targets: a broadcast to no group is refused
        await conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'G')")
    async with served(create_app(settings, db_url)) as url:
        yield url


async def counts(pool: AsyncConnectionPool) -> tuple[int, int, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM broadcasts), (SELECT count(*) FROM jobs"
            " WHERE job_type = 'tgms_send_to_groups'), (SELECT count(*) FROM idempotency_keys)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def headers(key: str | None = None) -> dict[str, str]:
    return {"x-api-key": ADMIN_KEY} | ({"Idempotency-Key": key} if key is not None else {})


async def test_a_retry_gets_the_first_answer_and_creates_nothing(server: str, pool: AsyncConnectionPool) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        first = await client.post("/api/tgms/send", json=BODY, headers=headers("retry-1"))
        again = await client.post("/api/tgms/send", json=BODY, headers=headers("retry-1"))
        other = await client.post("/api/tgms/send", json=BODY, headers=headers("retry-2"))
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200 and first.json()["status"] == "ok"
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert other.status_code == 200 and other.json()["broadcast_id"] != first.json()["broadcast_id"]
    assert await counts(pool) == (2, 2, 2)
    assert 'tgms_webhook_idempotent_replays_total{route="admin_send"} 1' in metrics
    assert "tgms_webhook_broadcasts_created_total 2" in metrics


async def test_without_a_key_every_request_is_new(server: str, pool: AsyncConnectionPool) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        for _ in range(2):
            assert (await client.post("/api/tgms/send", json=BODY, headers=headers())).status_code == 200
    assert await counts(pool) == (2, 2, 0)


async def test_the_same_key_with_another_body_is_refused(server: str, pool: AsyncConnectionPool) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        assert (await client.post("/api/tgms/send", json=BODY, headers=headers("k"))).status_code == 200
        changed = await client.post("/api/tgms/send", json={**BODY, "text": "Other"}, headers=headers("k"))
        # The same body re-serialised is a different request body too: clients retry with the same bytes.
        respaced = await client.post(
            "/api/tgms/send", content=json.dumps(BODY, indent=2).encode(), headers=headers("k")
        )
    for refused in (changed, respaced):
        assert refused.status_code == 422
        assert refused.json()["field"] == "Idempotency-Key"
        assert "Idempotency-Key" in refused.json()["detail"]
    assert await counts(pool) == (1, 1, 1)


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "é"])
async def test_a_malformed_key_is_400_naming_the_header(server: str, pool: AsyncConnectionPool, key: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        response = await client.post(
            "/api/tgms/send",
            json=BODY,
            headers=[(b"x-api-key", ADMIN_KEY.encode()), (b"Idempotency-Key", key.encode())],
        )
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert await counts(pool) == (0, 0, 0)


async def test_concurrent_duplicates_create_one_broadcast(server: str, pool: AsyncConnectionPool) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        answers = await asyncio.gather(
            *(client.post("/api/tgms/send", json=BODY, headers=headers("at-once")) for _ in range(12))
        )
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 11
    assert await counts(pool) == (1, 1, 1)


async def test_keys_are_kept_a_day_and_pruned_by_maintenance(server: str, pool: AsyncConnectionPool) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        first = await client.post("/api/tgms/send", json=BODY, headers=headers("old"))
        await client.post("/api/tgms/send", json=BODY, headers=headers("older"))
        async with pool.connection() as conn:
            await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE key = 'older'"
            )
        context = JobContext(db=pool, settings=Settings(), worker_id="test", pool="main")
        now = datetime.now(UTC)
        await prune_finished_jobs(context, Job(0, PRUNE_JOB, {}, 0, 1, 0, now, now, None))
        # 25 hours later the retry is still recognised; the 49-hour-old key is gone.
        again = await client.post("/api/tgms/send", json=BODY, headers=headers("old"))
        assert (again.status_code, again.json()) == (200, first.json())
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key FROM idempotency_keys ORDER BY key")
        assert [row[0] for row in await cur.fetchall()] == ["old"]
