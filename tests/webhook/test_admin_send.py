"""POST /api/tgms/send: key, allow-list, validation (422 naming the field), and the broadcast row + job."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.config import Settings
from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings

KEY = {"x-api-key": ADMIN_KEY}


async def table_counts(pool: AsyncConnectionPool) -> tuple[int, int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT (SELECT count(*) FROM broadcasts), (SELECT count(*) FROM jobs)")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def add_groups(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed) VALUES"
            " (-1, 'a', 'growth', true, false), (-2, 'b', 'monitoring', true, false),"
            " (-3, 'c', 'growth', false, true)"
        )


async def test_seed_example_enqueues_a_broadcast(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    response = await client.post("/api/tgms/send", json={"text": "Test broadcast"}, headers=KEY)
    assert response.status_code == 200
    body = response.json()
    assert body == {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": body["broadcast_id"], "groups": 2}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT b.text, b.target, b.created_by, j.job_type, j.payload FROM broadcasts b JOIN jobs j USING (job_id)"
        )
        assert await cur.fetchall() == [
            (
                "Test broadcast",
                {"kind": "all"},
                "api:127.0.0.1",
                "tgms_send_to_groups",
                {"broadcast_id": body["broadcast_id"]},
            )
        ]


async def test_photo_final_broadcast_to_a_phase(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    data = {
        "photo_url": "https://example.org/p.jpg",
        "caption": "Photo caption with *Markdown*",
        "parse_mode": "markdown",
        "target": {"phase": "growth"},
        "final": True,
    }
    response = await client.post("/api/tgms/send", json=data, headers=KEY)
    assert response.status_code == 200, response.text
    assert response.json()["groups"] == 2  # the active growth group and the inactive one allowing a final message
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT photo_url, caption, parse_mode, target, is_final FROM broadcasts")
        assert await cur.fetchone() == (
            "https://example.org/p.jpg",
            "Photo caption with *Markdown*",
            "Markdown",
            {"kind": "phase", "phase": "growth"},
            True,
        )


async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    for headers in ({}, {"x-api-key": "nope"}, {"x-api-key": ADMIN_KEY[:-1]}, {"x-api-key": ADMIN_KEY + " "}):
        response = await client.post("/api/tgms/send", json={"text": "x"}, headers=headers)
        assert response.status_code == 401, headers
        assert ADMIN_KEY not in response.text
    assert await table_counts(pool) == (0, 0)


async def test_invalid_bodies_are_422_naming_the_field(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    cases: list[tuple[Any, str]] = [
        ({}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": "join @my_group", "parse_mode": "Markdown"}, "text"),
        ({"photo_url": "javascript:alert(1)"}, "photo_url"),
        ({"photo_url": "https://x.org/a.png", "caption": "c" * 1025}, "caption"),
        ({"text": "a", "parse_mode": "bbcode"}, "parse_mode"),
        ({"text": "a", "target": {"phase": "old"}}, "target"),
        ({"text": "a", "send_at": "2031-01-01T10:00:00"}, "send_at"),
        ({"text": "a", "paid": "yes"}, "paid"),
        ({"text": "a", "allow_paid_broadcast": 1}, "allow_paid_broadcast"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        response = await client.post("/api/tgms/send", json=body, headers=KEY)
        assert response.status_code == 422, body
        assert response.json()["field"] == field, body
        assert response.json()["detail"]
    markdown = await client.post("/api/tgms/send", json=cases[2][0], headers=KEY)
    assert "Can't find end of the entity starting at byte offset 8" in markdown.json()["detail"]
    malformed = await client.post("/api/tgms/send", content=b"{oops", headers=KEY)
    assert malformed.status_code == 400
    huge = await client.post("/api/tgms/send", content=b"x" * (1024 * 1024 + 1), headers=KEY)
    assert huge.status_code == 413
    assert await table_counts(pool) == (0, 0)


async def test_scheduled_broadcast_job_runs_at_send_at(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    response = await client.post(
        "/api/tgms/send", json={"text": "later", "send_at": "2099-01-01T09:00:00+00:00"}, headers=KEY
    )
    assert response.status_code == 200
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT j.run_at = b.send_at, b.send_at::text FROM jobs j JOIN broadcasts b USING (job_id)"
        )
        assert await cur.fetchone() == (True, "2099-01-01 09:00:00+00")


@pytest.mark.parametrize(
    ("networks", "allowed"),
    [(("10.0.0.0/8",), False), (("10.0.0.0/8", "127.0.0.0/8"), True), (("::1/128",), False), (("127.0.0.1/32",), True)],
)
async def test_allow_list_of_source_networks(
    db_url: str, pool: AsyncConnectionPool, networks: tuple[str, ...], allowed: bool
) -> None:
    await add_groups(pool)
    settings: Settings = make_settings(db_url, admin_allow_networks=networks)
    async with asgi_client(create_app(settings, db_url)) as client:  # requests come from 127.0.0.1
        response = await client.post("/api/tgms/send", json={"text": "x"}, headers=KEY)
        assert response.status_code == (200 if allowed else 403)
        if not allowed:  # refused before the key is even looked at
            no_key = await client.post("/api/tgms/send", json={"text": "x"})
            assert no_key.status_code == 403
    assert await table_counts(pool) == ((1, 1) if allowed else (0, 0))


async def test_admin_api_disabled_without_a_key(db_url: str, pool: AsyncConnectionPool) -> None:
    async with asgi_client(create_app(make_settings(db_url, admin_api_key=None), db_url)) as client:
        response = await client.post("/api/tgms/send", json={"text": "x"}, headers={"x-api-key": ""})
        assert response.status_code == 401
        assert "ADMIN_API_KEY" in response.json()["detail"]
