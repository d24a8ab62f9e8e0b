"""The admin API and broadcasts as objects: what the sender would refuse is a 422 at submit (the debug
code included, unknown or inactive groups named), and GET /api/tgms/broadcasts[/{id}] and POST
.../{id}/cancel|edit show and steer broadcasts behind the same gate as POST /api/tgms/send."""

from __future__ import annotations

from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import broadcasts, debug_code
from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings

KEY = {"x-api-key": ADMIN_KEY}


async def add_groups(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed) VALUES"
            " (-1001, 'a', 'growth', true, false), (-1002, 'b', 'monitoring', true, false),"
            " (-1003, 'c', 'growth', false, true), (-1004, 'd', 'growth', false, false)"
        )


async def scalar(pool: AsyncConnectionPool, sql: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
    assert row is not None
    return row[0]


async def send(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/tgms/send", json=body, headers=KEY)


async def test_what_the_sender_would_refuse_is_422_at_submit(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    await add_groups(pool)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"text": "x" * 4095}, "text", "too long with the debug code appended"),
        ({"photo_url": "https://example.org/p.jpg", "caption": "c" * 1024}, "caption", "with the debug code"),
        ({"text": "see [here](", "parse_mode": "Markdown"}, "text", "debug code"),
        ({"text": "hi", "target": {"group_ids": [-1001, -999, -998]}}, "target", "not managed groups: -999, -998"),
        ({"text": "hi", "target": {"group_ids": [-1001, -1003]}}, "target", "inactive"),
        ({"text": "hi", "target": {"group_ids": [-1004]}, "final": True}, "target", "-1004"),
        ({"text": "hi", "target": {"phase": "monitoring"}, "send_at": "2099-01-01T00:00:00Z"}, "", ""),
    ]
    await scalar(pool, "UPDATE managed_groups SET is_active = false WHERE group_id = -1002 RETURNING 1")
    cases[-1] = (cases[-1][0], "target", "reaches no group now")
    for body, field, words in cases:
        response = await send(client, body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, body
        assert words in response.json()["detail"], (body, response.json())
    # Nothing stored for any of them (the insert that learnt the id was rolled back), no job.
    assert await scalar(pool, "SELECT count(*) FROM broadcasts") == 0
    assert await scalar(pool, "SELECT count(*) FROM jobs") == 0


async def test_the_longest_text_that_fits_is_accepted_and_the_sender_agrees(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    await add_groups(pool)
    # To listed groups the codes are exact: B<id>G1..G2. Find the boundary for the id it will get.
    async with pool.connection() as conn:
        next_id = await broadcasts.next_id(conn)
    room = 4096 - len("\n\n" + debug_code.make(next_id, 2))
    refused = await send(client, {"text": "x" * (room + 1), "target": {"group_ids": [-1001, -1003]}, "final": True})
    assert refused.status_code == 422 and refused.json()["field"] == "text"
    accepted = await send(client, {"text": "x" * room, "target": {"group_ids": [-1001, -1003]}, "final": True})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["groups"] == 2
    broadcast_id = accepted.json()["broadcast_id"]
    async with pool.connection() as conn:
        assert await broadcasts.start(conn, broadcast_id) == [-1003, -1001]
        b = await broadcasts.load(conn, broadcast_id)
        code = await broadcasts.longest_code(conn, broadcast_id)
    assert b is not None and code is not None
    assert debug_code.refusal(b.text, b.photo_url, b.caption, b.parse_mode, code) is None  # the sender's check
    # "all" reaches a fleet that may grow before it starts: checked with a 5-digit group number.
    fleet = await send(client, {"text": "x" * room})
    assert fleet.status_code == 422 and "G99999" in fleet.json()["detail"]


async def test_list_show_paginate_and_the_gate(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    ids = [(await send(client, {"text": f"hello {n}"})).json()["broadcast_id"] for n in range(5)]
    page = await client.get("/api/tgms/broadcasts?limit=2", headers=KEY)
    assert page.status_code == 200
    first = page.json()
    assert [b["broadcast_id"] for b in first["broadcasts"]] == ids[:-3:-1]
    assert first["next_before"] == ids[3]
    rest = (await client.get(f"/api/tgms/broadcasts?limit=10&before={ids[3]}", headers=KEY)).json()
    assert [b["broadcast_id"] for b in rest["broadcasts"]] == ids[2::-1] and rest["next_before"] is None
    item = first["broadcasts"][0]
    assert item["status"] == "pending" and item["outcome"] == "… pending" and item["created_by"] == "api:127.0.0.1"
    assert item["counts"] == {"groups": 0, "sent": 0, "failed": 0, "ambiguous": 0, "pending": 0, "skipped": 0}

    # A started broadcast: each group's row with its debug code, status and Telegram message id.
    async with pool.connection() as conn:
        await broadcasts.start(conn, ids[0])
        rows = await broadcasts.deliveries(conn, ids[0])
        await conn.execute("UPDATE sent_messages SET status = 'sent', telegram_message_id = 77 WHERE chat_id = -1001")
    shown = (await client.get(f"/api/tgms/broadcasts/{ids[0]}", headers=KEY)).json()
    assert shown["status"] == "running" and shown["counts"]["sent"] == 1 and shown["counts"]["pending"] == 1
    by_chat = {d["chat_id"]: d for d in shown["deliveries"]}
    assert by_chat[-1001]["telegram_message_id"] == 77 and by_chat[-1001]["status"] == "sent"
    assert {d["debug_code"] for d in shown["deliveries"]} == {r.debug_code for r in rows}
    pending = (await client.get(f"/api/tgms/broadcasts/{ids[1]}", headers=KEY)).json()
    assert pending["groups_now"] == 2 and pending["deliveries"] == []

    assert (await client.get("/api/tgms/broadcasts/999999", headers=KEY)).status_code == 404
    assert (await client.get("/api/tgms/broadcasts/abc", headers=KEY)).status_code == 404
    assert (await client.get("/api/tgms/broadcasts?limit=0", headers=KEY)).status_code == 422
    for path in ("/api/tgms/broadcasts", f"/api/tgms/broadcasts/{ids[0]}"):
        for headers in ({}, {"x-api-key": ADMIN_KEY + "x"}):
            refused = await client.get(path, headers=headers)
            assert refused.status_code == 401 and ADMIN_KEY not in refused.text
    stranger = await client.post(f"/api/tgms/broadcasts/{ids[1]}/cancel", headers={"x-api-key": "nope"})
    assert stranger.status_code == 401
    assert await scalar(pool, "SELECT status FROM broadcasts WHERE broadcast_id = %s", ids[1]) == "pending"


async def test_the_allow_list_guards_the_new_routes(db_url: str, pool: AsyncConnectionPool) -> None:
    settings = make_settings(db_url, admin_allow_networks=("10.0.0.0/8",))
    async with asgi_client(create_app(settings, db_url)) as client:  # requests come from 127.0.0.1
        assert (await client.get("/api/tgms/broadcasts", headers=KEY)).status_code == 403
        assert (await client.post("/api/tgms/broadcasts/1/cancel", headers=KEY)).status_code == 403


async def test_cancel_scheduled_and_running_broadcasts(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    later = (await send(client, {"text": "later", "send_at": "2099-01-01T09:00:00+00:00"})).json()["broadcast_id"]
    cancelled = await client.post(f"/api/tgms/broadcasts/{later}/cancel", headers=KEY)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["broadcast"]["status"] == "cancelled" and body["broadcast"]["cancelled_by"] == "api:127.0.0.1"
    assert await scalar(pool, "SELECT j.status FROM jobs j JOIN broadcasts b USING (job_id) WHERE b.broadcast_id = %s",
                        later) == "cancelled"  # fmt: skip
    again = await client.post(f"/api/tgms/broadcasts/{later}/cancel", headers=KEY)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert (await client.post("/api/tgms/broadcasts/424242/cancel", headers=KEY)).status_code == 404
    assert (await client.post(f"/api/tgms/broadcasts/{later}/explode", headers=KEY)).status_code == 404

    # Running: the group already sent stays sent, the rest is skipped, nothing is pending any more.
    now = (await send(client, {"text": "now"})).json()["broadcast_id"]
    async with pool.connection() as conn:
        await broadcasts.start(conn, now)
        await conn.execute(
            "UPDATE sent_messages SET status = 'sent' WHERE broadcast_id = %s AND chat_id = -1001", (now,)
        )
    stopped = (await client.post(f"/api/tgms/broadcasts/{now}/cancel", headers=KEY)).json()["broadcast"]
    assert stopped["status"] == "cancelled" and stopped["outcome"] == "– cancelled (1 sent)"
    assert stopped["counts"] == {"groups": 2, "sent": 1, "failed": 0, "ambiguous": 0, "pending": 0, "skipped": 1}


async def test_edit_a_scheduled_broadcast_through_the_same_checks(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    await add_groups(pool)
    later = (await send(client, {"text": "later", "send_at": "2099-01-01T09:00:00+00:00"})).json()["broadcast_id"]
    edit = f"/api/tgms/broadcasts/{later}/edit"
    too_long = await client.post(edit, json={"text": "x" * 4095}, headers=KEY)
    assert too_long.status_code == 422 and too_long.json()["field"] == "text"
    assert "debug code" in too_long.json()["detail"]
    bad_field = await client.post(edit, json={"target": "all"}, headers=KEY)
    assert bad_field.status_code == 422 and bad_field.json()["field"] == "target"
    past = await client.post(edit, json={"send_at": "2001-01-01T00:00:00Z"}, headers=KEY)
    assert past.status_code == 422 and past.json()["field"] == "send_at"
    ok = await client.post(edit, json={"text": "*later*", "parse_mode": "Markdown",
                                       "send_at": "2099-02-01T09:00:00+00:00"}, headers=KEY)  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert ok.json()["broadcast"]["text"] == "*later*" and ok.json()["broadcast"]["edited_at"]
    row = await scalar(
        pool,
        "SELECT row(b.text, b.parse_mode, b.send_at::text, j.run_at::text) FROM broadcasts b JOIN jobs j "
        "USING (job_id) WHERE b.broadcast_id = %s",
        later,
    )
    assert row == ("*later*", "Markdown", "2099-02-01 09:00:00+00", "2099-02-01 09:00:00+00")
    async with pool.connection() as conn:
        await conn.execute("UPDATE broadcasts SET send_at = now() WHERE broadcast_id = %s", (later,))
        await broadcasts.start(conn, later)
    # Started: the edit becomes a follow-up edit of the copies (test_admin_followups.py); the send time
    # can no longer change.
    started = await client.post(edit, json={"text": "edited after the start"}, headers=KEY)
    assert started.status_code == 200 and started.json()["followup_id"], started.text
    too_late = await client.post(edit, json={"send_at": "2099-03-01T09:00:00+00:00"}, headers=KEY)
    assert too_late.status_code == 422 and too_late.json()["field"] == "send_at"
