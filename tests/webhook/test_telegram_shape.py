"""The fast path for bodies shaped as Telegram writes them (compact, update_id first): such a body is
not decoded in Python, PostgreSQL validates it when storing it. What must hold: a well-formed one is
stored exactly as sent; a malformed one is still answered 400 with its reason and makes no job, and
takes no good update of its batch down with it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from webhook_server.updates import UpdateRejected, parse_update

from .conftest import SECRET_HEADERS


def compact(update: dict[str, Any]) -> bytes:
    return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()


def message(update_id: int, text: str = "hi") -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": 1, "chat": {"id": -100, "type": "group"}, "text": text}}


def test_only_telegram_shaped_bodies_skip_the_decode() -> None:
    fast = parse_update(compact(message(7, "héllo")))
    assert (fast.checked, fast.update_id, fast.update_type) == (False, 7, "message")
    assert json.loads(fast.json_text) == message(7, "héllo")
    slow_bodies = [
        json.dumps(message(7)).encode(),  # not compact
        compact({"message": message(7)["message"], "update_id": 7}),  # update_id not first
        compact(message(7, "a \\u0000 b")).replace(b"\\\\u", b"\\u"),  # an escape: NUL needs repair
        compact(message(7, "spoof")).replace(b'"text"', b'"update_id":8,"text"'),  # second update_id
        b'{"update_id":7,"x":' + b"[" * 70 + b"]" * 70 + b"}",  # deep
        b'{"update_id":99999999999999999999,"message":{}}',  # beyond bigint
        b'{"update_id":7,"poll":[]}',  # the value is not an object
    ]
    for body in slow_bodies:
        try:
            assert parse_update(body).checked, body
        except UpdateRejected:
            assert b"[[[" in body or b"9999" in body, body  # deep or out of range: refused by the decode


async def test_malformed_telegram_shaped_bodies_get_400_and_their_batch_survives(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    good = [compact(message(n, f"good {n}")) for n in range(1, 21)]
    bad = [
        b'{"update_id":101,"message":{"text":"cut off"',
        b'{"update_id":102,"message":{"a":NaN}}',
        b'{"update_id":103,"message":{"a":1}} trailing',
        b'{"update_id":104,"message":{"a":"tab\tinside"}}',
        b'{"update_id":105,"message":{"a":1e999999}}',  # out of range for both
        b'{"update_id":106,"message":{"a":"\xff"}}',  # not UTF-8
    ]
    bodies = good[:10] + bad + good[10:]
    sends = [client.post("/api/webhook", content=b, headers=SECRET_HEADERS) for b in bodies]
    responses = await asyncio.gather(*sends)  # concurrent: they share group-commit batches
    by_body = dict(zip(bodies, responses, strict=True))
    assert [by_body[b].status_code for b in good] == [200] * len(good)
    assert [by_body[b].status_code for b in bad] == [400] * len(bad)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT payload->'update' FROM jobs ORDER BY (payload->>'update_id')::bigint")
        stored = [row[0] for row in await cur.fetchall()]
    assert stored == [json.loads(b) for b in good]
    metrics = (await client.get("/metrics")).text
    assert 'tgms_webhook_rejected_total{route="webhook_main",reason="malformed_json"} 6' in metrics
    # Redelivered, the good ones are duplicates and the bad ones are still refused.
    again = await asyncio.gather(*(client.post("/api/webhook", content=b, headers=SECRET_HEADERS) for b in bodies))
    assert [r.status_code for r in again] == [by_body[b].status_code for b in bodies]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs")
        assert await cur.fetchone() == (len(good),)
