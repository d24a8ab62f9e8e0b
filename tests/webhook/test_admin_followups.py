"""The admin API's follow-ups on a sent broadcast (edit, retract, pin, unpin), inline buttons and test
sends: the same checks as the CLI and the TUI, 4xx naming the field, Idempotency-Key honoured, and
GET of a broadcast showing each follow-up's outcome per group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import broadcasts
from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings
from .test_admin_broadcasts import add_groups, scalar, send

KEY = {"x-api-key": ADMIN_KEY}
TEST_CHAT = -1009999


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(make_settings(db_url, test_chat_id=TEST_CHAT))) as c:
        yield c


async def sent_broadcast(client: httpx.AsyncClient, pool: AsyncConnectionPool, body: dict[str, Any]) -> int:
    """A broadcast to -1001 and -1002, started and delivered; -1002's copy is 49 hours old."""
    await add_groups(pool)
    answer = await send(client, {**body, "target": {"group_ids": [-1001, -1002]}})
    assert answer.status_code == 200, answer.text
    broadcast_id = int(answer.json()["broadcast_id"])
    async with pool.connection() as conn:
        await broadcasts.start(conn, broadcast_id)
        await conn.execute(
            "UPDATE sent_messages SET status = 'sent', telegram_message_id = 7, sent_at = now() - CASE chat_id "
            "WHEN -1002 THEN interval '49 hours' ELSE interval '1 hour' END WHERE broadcast_id = %s",
            (broadcast_id,),
        )
    return broadcast_id


async def post(client: httpx.AsyncClient, path: str, body: Any = None, **headers: str) -> httpx.Response:
    return await client.post(path, json=body, headers={**KEY, **headers})


async def test_followups_answer_their_id_and_name_bad_fields(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    b = await sent_broadcast(client, pool, {"text": "Sale *today*", "parse_mode": "Markdown"})
    base = f"/api/tgms/broadcasts/{b}"

    retract = await post(client, f"{base}/retract", None, **{"Idempotency-Key": "r-1"})
    assert retract.status_code == 200, retract.text
    body = retract.json()
    assert body["action"] == "retract" and body["copies"] == 2 and body["too_old"] == 1
    again = await post(client, f"{base}/retract", None, **{"Idempotency-Key": "r-1"})
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    assert await scalar(pool, "SELECT count(*) FROM broadcast_followups WHERE action = 'retract'") == 1
    other = await post(client, f"{base}/retract", {"x": 1}, **{"Idempotency-Key": "r-1"})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"

    for path, payload, field in [
        ("pin", {"silent": "yes"}, "silent"),
        ("pin", {"loud": True}, "loud"),
        ("unpin", {"silent": True}, "silent"),
        ("retract", {"now": True}, "now"),
        ("edit", {"text": "x" * 5000}, "text"),
        ("edit", {"text": "ends in [a link](", "parse_mode": "Markdown"}, "text"),
        ("edit", {"text": "later", "send_at": "2099-01-01T00:00:00Z"}, "send_at"),
        ("edit", {"photo_url": "https://example.org/p.jpg"}, "photo_url"),
        ("edit", {"text": "Sale *today*"}, "text"),  # nothing changes
    ]:
        refused = await post(client, f"{base}/{path}", payload)
        assert refused.status_code == 422, (path, payload, refused.text)
        assert refused.json()["field"] == field, (path, payload, refused.json())
    assert await scalar(pool, "SELECT count(*) FROM broadcast_followups") == 1  # nothing half-written

    pin = await post(client, f"{base}/pin", {"silent": True})
    assert pin.status_code == 200 and pin.json()["followup_id"] > body["followup_id"]
    assert await scalar(
        pool, "SELECT silent FROM broadcast_followups WHERE followup_id = %s", pin.json()["followup_id"]
    )
    edit = await post(client, f"{base}/edit", {"text": "Sale *tomorrow*"})
    assert edit.status_code == 200 and edit.json()["action"] == "edit", edit.text
    assert await scalar(pool, "SELECT text FROM broadcasts WHERE broadcast_id = %s", b) == "Sale *tomorrow*"
    assert (await post(client, f"{base}/unpin")).status_code == 200
    assert (await post(client, "/api/tgms/broadcasts/424242/retract")).status_code == 404
    later = (await send(client, {"text": "later", "send_at": "2099-01-01T09:00:00+00:00"})).json()["broadcast_id"]
    not_started = await post(client, f"/api/tgms/broadcasts/{later}/retract")
    assert not_started.status_code == 409 and "has not started" in not_started.json()["detail"]
    assert (await client.post(f"{base}/pin", json={})).status_code == 401  # the gate first

    # GET: each follow-up with its outcome per group, like the deliveries
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO broadcast_followup_groups (followup_id, sent_message_id, status, error) "
            "SELECT %s, message_id, CASE chat_id WHEN -1002 THEN 'skipped' ELSE 'done' END, "
            "CASE chat_id WHEN -1002 THEN 'too old to delete' END FROM sent_messages WHERE broadcast_id = %s",
            (body["followup_id"], b),
        )
    shown = (await client.get(base, headers=KEY)).json()
    assert [f["action"] for f in shown["followups"]] == ["retract", "pin", "edit", "unpin"]
    first = shown["followups"][0]
    assert first["groups"]["done"] == 1 and first["groups"]["skipped"] == 1
    assert {d["chat_id"]: d["status"] for d in first["deliveries"]} == {-1001: "done", -1002: "skipped"}
    assert all(d["debug_code"].startswith(f"B{b}G") for d in first["deliveries"])


async def test_buttons_are_checked_stored_and_shown(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    good = [[{"text": "Shop", "url": "https://example.org/shop"}, {"text": "Chat", "url": "tg://resolve?domain=x"}]]
    for buttons, words in [
        ([[{"text": "x", "url": "javascript:alert(1)"}]], "only http://, https:// and tg://"),
        ([[{"text": "", "url": "https://example.org"}]], "text is empty"),
        ([[{"text": "y" * 65, "url": "https://example.org"}]], "at most 64"),
        ([[{"text": "z", "url": "https://example.org"}] * 9], "at most 8"),
        ([[{"text": "z", "url": "https://example.org"}] * 8] * 13, "at most 100"),
        ([{"text": "z", "url": "https://example.org"}], "rows of buttons"),
        ([[{"text": "z", "link": "https://example.org"}]], "row 1, button 1"),
        ([[{"text": "z", "url": "https:///nohost"}]], "no host"),
    ]:
        refused = await send(client, {"text": "hi", "buttons": buttons})
        assert refused.status_code == 422 and refused.json()["field"] == "buttons", (buttons, refused.text)
        assert words in refused.json()["detail"], (words, refused.json())
    assert await scalar(pool, "SELECT count(*) FROM broadcasts") == 0
    ok = await send(client, {"text": "hi", "buttons": good})
    assert ok.status_code == 200, ok.text
    shown = (await client.get(f"/api/tgms/broadcasts/{ok.json()['broadcast_id']}", headers=KEY)).json()
    assert shown["buttons"] == good


async def test_a_test_send_creates_no_broadcast(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    await add_groups(pool)
    body = {"text": "Big *news*", "parse_mode": "Markdown", "test": True}
    default = await send(client, body)
    assert default.status_code == 200, default.text
    answer = default.json()
    assert answer["message"] == "Test send enqueued" and answer["chat_id"] == TEST_CHAT
    async with pool.connection() as conn:
        next_id = await broadcasts.next_id(conn)
    assert answer["debug_code"] == f"B{next_id}G1"  # what the first group would get
    named = await send(client, {**body, "test_chat_id": -1005})
    assert named.json()["chat_id"] == -1005
    assert await scalar(pool, "SELECT count(*) FROM broadcasts") == 0
    assert await scalar(pool, "SELECT count(*) FROM sent_messages") == 0
    assert await scalar(pool, "SELECT count(*) FROM jobs WHERE job_type = 'tgms_broadcast_test_send'") == 2
    for payload, field in [
        ({**body, "test": "yes"}, "test"),
        ({**body, "test_chat_id": "abc"}, "test_chat_id"),
        ({"text": "hi", "test_chat_id": -1005}, "test_chat_id"),
        ({"text": "x" * 4095, "test": True}, "text"),
    ]:
        refused = await send(client, payload)
        assert refused.status_code == 422 and refused.json()["field"] == field, (payload, refused.text)


async def test_a_test_send_needs_a_chat(db_url: str, pool: AsyncConnectionPool) -> None:
    async with asgi_client(create_app(make_settings(db_url))) as c:
        refused = await send(c, {"text": "hi", "test": True})
    assert refused.status_code == 422 and refused.json()["field"] == "test_chat_id"
    assert "TGMS_TEST_CHAT_ID" in refused.json()["detail"]
