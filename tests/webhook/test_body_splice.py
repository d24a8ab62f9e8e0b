"""A webhook body cannot reach outside its own update.

The intake stores an update shaped as Telegram writes it without decoding it: its text becomes the
value of "update" inside the job payload it builds. A body that closes its object early and goes on
(`...}},"bot":"tgms","update_type":"chat_join_request","update":"x"`, `}{...`, `},{...`) would then add
or override payload keys, or whole payloads. Here such bodies go through the real HTTP server and the
stored jobs are compared with the honest ones: bot from the path, type and update from the update.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.config import Settings
from webhook_server.app import create_app
from webhook_server.updates import UpdateRejected, parse_update

from .conftest import SECRET_HEADERS, served

CHAT = '{"message_id":1,"date":0,"chat":{"id":1,"type":"private"}}'

# Bodies that are not one JSON object: each must be answered 400 and store nothing.
SPLICES = {
    "the reported body": '{"update_id":26,"message":' + CHAT + '},"bot":"tgms","update_type":"chat_join_request",'
    '"update":"not-an-object"',
    "trailing keys closed by a brace": '{"update_id":27,"message":' + CHAT + '},"bot":"tgms","x":{"a":1}',
    "a second object": '{"update_id":28,"message":' + CHAT + '}{"update_id":28,"chat_join_request":{}}',
    "a second payload": '{"update_id":29,"message":' + CHAT + '}},{"bot":"tgms","update_id":29,'
    '"update_type":"chat_join_request","update":{"update_id":29,"chat_join_request":{}}',
    "an escaped backslash before the quote": '{"update_id":30,"message":{"text":"\\\\"}},"bot":"tgms","u":{"a":1}',
    "a closing bracket too many": '{"update_id":31,"message":{"a":[1,2]}}],"bot":"tgms","u":{}',
    "update replaced": '{"update_id":32,"message":' + CHAT + '},"update":{"update_id":32,"chat_join_request":{}}',
    "a string left open": '{"update_id":33,"message":{"text":"}',
    "an escaped quote outside strings": '{"update_id":34,"message":{\\"}},"bot":"tgms","x":{"a":"\\"}',
}

# One JSON object each, however odd: stored, with the honest bot/type/update.
HONEST = {
    "duplicate keys": '{"update_id":40,"message":{"text":"a"},"message":{"text":"b"}}',
    "payload keys inside the update": '{"update_id":41,"message":' + CHAT + ',"bot":"tgms",'
    '"update_type":"chat_join_request","update":"not-an-object"}',
    "nested arrays": '{"update_id":42,"message":{"a":[[1,[2,[]]],{"b":[{}]}],"c":[]}}',
    "braces and quotes in strings": '{"update_id":43,"message":{"text":"}},\\"bot\\":\\"tgms\\",{\\"x\\":[","t":"]}"}}',
    "escaped quotes and backslashes": '{"update_id":44,"message":{"text":"a\\\\\\"b\\\\","u":"\\\\\\\\"}}',
    "a join request": '{"update_id":45,"chat_join_request":{"chat":{"id":-100,"type":"supergroup"},'
    '"from":{"id":7,"is_bot":false,"first_name":"A"},"user_chat_id":7,"date":0}}',
}


@pytest.fixture
async def server(settings: Settings, db_url: str) -> AsyncIterator[str]:
    async with served(create_app(settings, db_url)) as url:
        yield url


async def stored_jobs(pool: AsyncConnectionPool) -> dict[tuple[str, int], dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT j.job_type, j.payload, w.bot, w.update_id, w.update_type FROM webhook_updates AS w"
            " JOIN jobs AS j USING (job_id)"
        )
        rows = await cur.fetchall()
    jobs = {}
    for job_type, payload, bot, update_id, update_type in rows:
        assert set(payload) == {"bot", "update_id", "update_type", "update"}, payload
        assert (payload["bot"], payload["update_id"], payload["update_type"]) == (bot, update_id, update_type)
        jobs[bot, update_id] = {"job_type": job_type, **payload}
    return jobs


@pytest.mark.parametrize("route,bot", [("/api/webhook", "main"), ("/api/webhook/tgms", "tgms")])
async def test_spliced_bodies_are_refused_and_honest_ones_stored_as_sent(
    server: str, pool: AsyncConnectionPool, route: str, bot: str
) -> None:
    bodies = {**SPLICES, **HONEST}
    async with httpx.AsyncClient(base_url=server, headers=SECRET_HEADERS, timeout=30) as client:
        # Concurrently (they share group-commit batches with good updates), then each one alone.
        together = await asyncio.gather(*(client.post(route, content=b.encode()) for b in bodies.values()))
        alone = [await client.post(route, content=b.encode()) for b in bodies.values()]
    for (name, _), first, second in zip(bodies.items(), together, alone, strict=True):
        expected = 400 if name in SPLICES else 200
        assert (first.status_code, second.status_code) == (expected, expected), name

    jobs = await stored_jobs(pool)
    honest = {}
    for text in HONEST.values():
        update = json.loads(text)
        update_type = next(k for k in update if k != "update_id")
        job_type = "tgms_process_join_request" if update_type == "chat_join_request" else "process_telegram_update"
        honest[bot, update["update_id"]] = {
            "job_type": job_type, "bot": bot, "update_id": update["update_id"], "update_type": update_type,
            "update": update,
        }  # fmt: skip
    assert jobs == honest


async def test_payload_keys_in_the_path_bot_win(server: str, pool: AsyncConnectionPool) -> None:
    """The main bot's route never makes a job for the other bot, whatever the body says."""
    body = HONEST["payload keys inside the update"].replace('"update_id":41', '"update_id":50')
    async with httpx.AsyncClient(base_url=server, headers=SECRET_HEADERS) as client:
        assert (await client.post("/api/webhook", content=body.encode())).status_code == 200
        assert (await client.post("/api/webhook", content=SPLICES["the reported body"].encode())).status_code == 400
    jobs = await stored_jobs(pool)
    assert list(jobs) == [("main", 50)]
    assert jobs["main", 50]["job_type"] == "process_telegram_update"
    assert jobs["main", 50]["update_type"] == "message"
    assert isinstance(jobs["main", 50]["update"], dict)


def _first_object_end(body: str) -> int | None:
    """Reference scanner, one character at a time: the index where the object opened at 0 closes;
    -1 for a backslash outside strings (no JSON text has one: PostgreSQL refuses the whole batch)."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "\\":
            return -1
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i
    return None


_FRAGMENTS = ['"', "\\", "\\\\", '\\"', "{", "}", "[", "]", ",", ":", "a", '"bot":"tgms"', "1", " "]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=24))
def test_the_fast_path_never_takes_a_body_that_closes_early(parts: list[str]) -> None:
    """Whatever follows the head, a body the fast path takes unchecked is one object to its last byte
    as a character-by-character JSON scanner sees it (or is no JSON at all, which PostgreSQL refuses
    before anything is stored); anything else is decoded or refused."""
    body = '{"update_id":1,"message":{' + "".join(parts)
    try:
        parsed = parse_update(body.encode())
    except UpdateRejected:
        return
    if not parsed.checked:
        assert _first_object_end(body) in (len(body) - 1, -1), body
    else:
        assert isinstance(json.loads(parsed.json_text), dict)
