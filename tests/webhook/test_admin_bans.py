"""/api/tgms/bans: the admin gate (allow-list 403, key 401), validation (422 naming the field), the ban
rows and job, conflicts."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings

KEY = {"x-api-key": ADMIN_KEY}


async def test_ban_list_unban_through_the_api(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, chat_type, is_active) VALUES"
            " (-1001, 'a', 'supergroup', true), (-1002, 'b', 'group', true), (-1003, 'c', 'supergroup', false)"
        )
    response = await client.post("/api/tgms/bans", json={"user_id": 42, "reason": "spam", "until": "2d"}, headers=KEY)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == 42 and body["groups"] == 2 and body["until"] is not None
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT r.group_id, r.status, r.error, j.job_type, j.payload, b.banned_by FROM fleet_ban_groups r "
            "JOIN fleet_bans b USING (ban_id) JOIN jobs j ON j.job_id = b.job_id ORDER BY r.group_id"
        )
        rows = await cur.fetchall()
    assert [(g, s, e) for g, s, e, *_ in rows] == [
        (-1003, "skipped", "group is inactive"),
        (-1002, "pending", None),
        (-1001, "pending", None),
    ]
    assert {(t, p["action"], by) for *_, t, p, by in rows} == {("tgms_fleet_ban", "ban", "api:127.0.0.1")}

    assert (await client.post("/api/tgms/bans", json={"user_id": 42, "reason": "x"}, headers=KEY)).status_code == 409
    listed = (await client.get("/api/tgms/bans", headers=KEY)).json()["bans"]
    assert [(b["user_id"], b["state"], b["reason"]) for b in listed] == [(42, "banned", "spam")]
    detail = (await client.get("/api/tgms/bans/42", headers=KEY)).json()
    assert len(detail["per_group"]) == 3

    # Nothing was applied yet: lifting skips the pending groups, nothing to unban anywhere.
    lifted = await client.delete("/api/tgms/bans/42", headers=KEY)
    assert lifted.status_code == 200 and lifted.json()["groups"] == 0
    assert (await client.delete("/api/tgms/bans/42", headers=KEY)).status_code == 404
    assert (await client.get("/api/tgms/bans", headers=KEY)).json()["bans"] == []
    assert [b["state"] for b in (await client.get("/api/tgms/bans?all=true", headers=KEY)).json()["bans"]] == ["lifted"]


async def test_gate_and_validation(client: httpx.AsyncClient, db_url: str) -> None:
    assert (await client.get("/api/tgms/bans")).status_code == 401
    assert (await client.post("/api/tgms/bans", json={}, headers={"x-api-key": "wrong"})).status_code == 401
    assert (await client.delete("/api/tgms/bans/1")).status_code == 401
    cases = [
        ({"reason": "x"}, "user_id"),
        ({"user_id": -5, "reason": "x"}, "user_id"),
        ({"user_id": True, "reason": "x"}, "user_id"),
        ({"user_id": 5}, "reason"),
        ({"user_id": 5, "reason": "  "}, "reason"),
        ({"user_id": 5, "reason": "x", "until": "5s"}, "until"),
        ({"user_id": 5, "reason": "x", "until": "400d"}, "until"),
        ({"user_id": 5, "reason": "x", "until": 7}, "until"),
    ]
    for body, field in cases:
        response = await client.post("/api/tgms/bans", json=body, headers=KEY)
        assert response.status_code == 422 and response.json()["field"] == field, (body, response.text)
    bad = await client.post("/api/tgms/bans", content=b"{not json", headers=KEY)
    assert bad.status_code == 400
    async with asgi_client(create_app(make_settings(db_url, admin_allow_networks=["10.0.0.0/8"]), db_url)) as other:
        assert (await other.get("/api/tgms/bans", headers=KEY)).status_code == 403
