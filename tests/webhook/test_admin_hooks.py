"""/api/tgms/hooks: the admin gate, validation naming the field, the secret shown once (not even to an
Idempotency-Key retry), pause/resume/test/replay, the delivery log."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings

KEY = {"x-api-key": ADMIN_KEY}


async def test_subscriptions_through_the_api(db_url: str, pool: AsyncConnectionPool) -> None:
    app = create_app(make_settings(db_url, hooks_allow_private=True), db_url)
    async with asgi_client(app) as client:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["group.registered", "join_request.decided"]}
        headers = {**KEY, "Idempotency-Key": "add-1"}
        created = await client.post("/api/tgms/hooks", json=body, headers=headers)
        assert created.status_code == 201, created.text
        answer = created.json()
        sub_id, secret = answer["subscription_id"], answer["secret"]
        assert secret.startswith("whsec_") and len(secret) > 40
        again = await client.post("/api/tgms/hooks", json=body, headers=headers)
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["subscription_id"] == sub_id and again.json()["secret"] is None

        listed = await client.get("/api/tgms/hooks", headers=KEY)
        assert [h["subscription_id"] for h in listed.json()["hooks"]] == [sub_id]
        assert secret not in listed.text

        # A group registered now is queued for the subscription, in the same transaction.
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-100123, 'API group')")
        log = (await client.get(f"/api/tgms/hooks/{sub_id}/deliveries", headers=KEY)).json()["deliveries"]
        assert [(d["event_type"], d["lane"], d["status"]) for d in log] == [("group.registered", "-100123", "pending")]
        delivery_id = log[0]["delivery_id"]
        one = (await client.get(f"/api/tgms/hooks/deliveries/{delivery_id}", headers=KEY)).json()
        assert one["attempts_log"] == [] and one["status"] == "pending"

        replayed = await client.post(f"/api/tgms/hooks/deliveries/{delivery_id}/replay", headers=KEY)
        assert replayed.status_code == 202 and replayed.json()["replay_of"] == delivery_id
        tested = await client.post(f"/api/tgms/hooks/{sub_id}/test", headers=KEY)
        assert tested.status_code == 202
        ranged = await client.post(f"/api/tgms/hooks/{sub_id}/replay", json={"since": "1h"}, headers=KEY)
        assert ranged.status_code == 202 and ranged.json()["events"] == 1
        paused = await client.post(f"/api/tgms/hooks/{sub_id}/pause", headers=KEY)
        assert paused.json()["state"] == "paused"
        shown = (await client.get(f"/api/tgms/hooks/{sub_id}", headers=KEY)).json()
        assert shown["status"] == "paused" and len(shown["deliveries"]) == 4 and "secret" not in shown
        assert (await client.post(f"/api/tgms/hooks/{sub_id}/resume", headers=KEY)).json()["state"] == "active"
        assert (await client.delete(f"/api/tgms/hooks/{sub_id}", headers=KEY)).status_code == 200
        assert (await client.delete(f"/api/tgms/hooks/{sub_id}", headers=KEY)).status_code == 404
        assert (await client.post(f"/api/tgms/hooks/{sub_id}/test", headers=KEY)).status_code == 404


async def test_gate_and_validation(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/tgms/hooks")).status_code == 401
    assert (await client.post("/api/tgms/hooks", json={}, headers={"x-api-key": "wrong"})).status_code == 401
    cases = [
        ({}, "url"),
        ({"url": "ftp://example.org/"}, "url"),
        ({"url": "http://127.0.0.1/"}, "url"),  # TGMS_HOOKS_ALLOW_PRIVATE is off
        ({"url": "http://169.254.169.254/latest/"}, "url"),
        ({"url": "http://[::1]/"}, "url"),
        ({"url": "http://10.0.0.8/"}, "url"),
        ({"url": "http://93.184.215.14/", "events": ["nope"]}, "events"),
        ({"url": "http://93.184.215.14/", "events": "group.registered"}, "events"),
    ]
    for body, field in cases:
        response = await client.post("/api/tgms/hooks", json=body, headers=KEY)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, body
    assert (await client.post("/api/tgms/hooks", content=b"{", headers=KEY)).status_code == 400
    replay = await client.post("/api/tgms/hooks/1/replay", json={"since": "yesterday"}, headers=KEY)
    assert replay.status_code == 422 and replay.json()["field"] == "since"
    assert (await client.post("/api/tgms/hooks/1/explode", headers=KEY)).status_code == 404
    assert (await client.get("/api/tgms/hooks", headers=KEY)).json() == {"hooks": []}
