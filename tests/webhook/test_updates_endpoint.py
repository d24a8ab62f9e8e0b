"""POST /api/webhook and /api/webhook/tgms: status codes, routing, payload format and dedupe, on a real
database through the app (ASGI; the uvicorn-served paths are in test_outage.py and test_e2e_sim.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.config import ConfigError
from webhook_server.app import create_app

from . import samples
from .conftest import SECRET_HEADERS, asgi_client, make_settings


async def rows(pool: AsyncConnectionPool, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def counts(pool: AsyncConnectionPool) -> tuple[int, int]:
    [(jobs, updates)] = await rows(pool, "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM webhook_updates)")
    return int(jobs), int(updates)


async def post(client: httpx.AsyncClient, body: Any, path: str = "/api/webhook", **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", SECRET_HEADERS)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, content=content, headers={"content-type": "application/json", **headers}, **kw)


async def test_routes_each_update_type_with_the_contract_payload(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    for n, (build, update_type, job_type, priority) in enumerate(samples.ROUTING):
        update_id = 500 + n
        update = build(update_id)
        response = await post(client, update, "/api/webhook/tgms")
        assert response.status_code == 200, update_type
        if job_type is None:  # only member activity: stored for the dedupe, no job
            assert await rows(pool, "SELECT job_type FROM jobs WHERE payload->>'update_id' = %s", str(update_id)) == []
            assert await rows(
                pool, "SELECT update_type, job_id FROM webhook_updates WHERE bot = 'tgms' AND update_id = %s", update_id
            ) == [(update_type, None)]
            continue
        [(got_type, got_priority, payload, pool_name, job_id)] = await rows(
            pool,
            "SELECT job_type, priority, payload, pool, job_id FROM jobs WHERE payload->>'update_id' = %s",
            str(update_id),
        )
        assert (got_type, got_priority) == (job_type, priority), update_type
        assert pool_name == ("tgms" if job_type.startswith("tgms_") else "main")
        assert payload == {"bot": "tgms", "update_id": update_id, "update_type": update_type, "update": update}
        [(stored_type, linked_job)] = await rows(
            pool, "SELECT update_type, job_id FROM webhook_updates WHERE bot = 'tgms' AND update_id = %s", update_id
        )
        assert (stored_type, linked_job) == (update_type, job_id)
    with_job = sum(1 for _, _, job_type, _ in samples.ROUTING if job_type)
    assert await counts(pool) == (with_job, len(samples.ROUTING))


async def test_each_path_is_attributed_to_its_bot(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    # Update ids are per bot: the same id from both bots is two updates.
    assert (await post(client, samples.private_start(7), "/api/webhook")).status_code == 200
    assert (await post(client, samples.private_start(7), "/api/webhook/tgms")).status_code == 200
    got = await rows(pool, "SELECT payload->>'bot', (payload->>'update_id')::int FROM jobs ORDER BY 1")
    assert got == [("main", 7), ("tgms", 7)]


async def test_redelivery_makes_no_second_job_even_after_the_job_finished(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    update = samples.chat_join_request(900)
    assert (await post(client, update)).status_code == 200
    assert (await post(client, update)).status_code == 200  # Telegram retried: already stored
    assert await counts(pool) == (1, 1)
    async with pool.connection() as conn:
        await conn.execute("UPDATE jobs SET status = 'done', finished_at = now()")
    assert (await post(client, update)).status_code == 200  # redelivered long after
    assert await counts(pool) == (1, 1)
    [(status,)] = await rows(pool, "SELECT status FROM jobs")
    assert status == "done"
    metrics = (await client.get("/metrics")).text
    assert 'tgms_webhook_duplicates_total{bot="main"} 2' in metrics
    assert 'tgms_webhook_updates_received_total{bot="main",type="chat_join_request"} 1' in metrics
    assert 'tgms_webhook_jobs_enqueued_total{job_type="tgms_process_join_request"} 1' in metrics


async def test_concurrent_duplicates_in_one_batch_make_one_job(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    updates = [samples.private_start(n % 20) for n in range(120)]  # 20 distinct ids, each delivered 6 times
    responses = await asyncio.gather(*(post(client, u) for u in updates))
    assert {r.status_code for r in responses} == {200}
    assert await counts(pool) == (20, 20)


async def test_bad_secret_is_403_and_stores_nothing(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    for headers in (
        {},
        {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        {"X-Telegram-Bot-Api-Secret-Token": ""},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET_HEADERS["X-Telegram-Bot-Api-Secret-Token"] + "x"},
    ):
        for path in ("/api/webhook", "/api/webhook/tgms"):
            response = await post(client, samples.message(1), path, headers=headers)
            assert response.status_code == 403, (headers, path)
    assert await counts(pool) == (0, 0)
    metrics = (await client.get("/metrics")).text
    assert 'tgms_webhook_rejected_total{route="webhook_main",reason="forbidden"} 4' in metrics
    assert 'tgms_webhook_rejected_total{route="webhook_tgms",reason="forbidden"} 4' in metrics


MALFORMED = [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"\xff\xfe{}", "malformed_json"),
    (b'{"update_id": NaN, "message": {}}', "malformed_json"),
    (b'{"update_id": 1, "message": {"x": 1e999}}', "malformed_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"update"', "not_an_object"),
    (b"{}", "no_update_id"),
    (b'{"update_id": "5", "message": {}}', "no_update_id"),
    (b'{"update_id": 5.0, "message": {}}', "no_update_id"),
    (b'{"update_id": true, "message": {}}', "no_update_id"),
    (b'{"update_id": 99999999999999999999, "message": {}}', "no_update_id"),
    (b'{"update_id": 1, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
    (b'{"update_id": 1, "message": ' + b'{"a":' * 70 + b"1" + b"}" * 70 + b"}", "too_deep"),
]


async def test_malformed_bodies_are_400(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    expected: dict[str, int] = {}
    for body, reason in MALFORMED:
        response = await post(client, body)
        assert response.status_code == 400, body[:60]
        assert response.json()["ok"] is False
        expected[reason] = expected.get(reason, 0) + 1
    assert await counts(pool) == (0, 0)
    metrics = (await client.get("/metrics")).text
    for reason, n in expected.items():
        assert f'tgms_webhook_rejected_total{{route="webhook_main",reason="{reason}"}} {n}' in metrics


async def test_oversized_body_is_413_by_declared_length(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    body = json.dumps({"update_id": 1, "message": {"text": "x" * (1024 * 1024)}}).encode()
    response = await post(client, body)
    assert response.status_code == 413
    assert await counts(pool) == (0, 0)


async def test_oversized_streamed_body_is_413_without_a_length(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"update_id": 1, "message": {"text": "'
        for _ in range(64):  # 64 x 64 KiB = 4 MiB offered, chunked (no Content-Length)
            sent += 1
            yield b"x" * 65536
        yield b'"}}'

    response = await client.post("/api/webhook", content=chunks(), headers=SECRET_HEADERS)
    assert response.status_code == 413
    assert await counts(pool) == (0, 0)


async def test_a_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    prefix = b'{"update_id": 3, "message": {"text": "'
    body = prefix + b"y" * (1024 * 1024 - len(prefix) - 3) + b'"}}'
    assert len(body) == 1024 * 1024
    assert (await post(client, body)).status_code == 200
    assert await counts(pool) == (1, 1)


async def test_get_is_not_allowed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/webhook")).status_code == 405


async def test_unstorable_characters_are_repaired_not_lost(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    # jsonb refuses NUL and unpaired surrogates; the update must still be stored (Telegram would
    # otherwise redeliver it for 24 hours and then drop it).
    body = b'{"update_id": 77, "message": {"text": "a\\u0000b\\ud800c", "k\\u0000": 1}}'
    assert (await post(client, body)).status_code == 200
    [(payload,)] = await rows(pool, "SELECT payload FROM jobs")
    assert payload["update"]["message"] == {"text": "a\ufffdb\ufffdc", "k\ufffd": 1}


async def test_healthz_readyz_and_metrics_format(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    await post(client, samples.message(1))
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = metrics.text.splitlines()
    assert "# TYPE tgms_webhook_request_duration_seconds histogram" in lines
    assert 'tgms_webhook_request_duration_seconds_count{route="webhook_main"} 1' in lines
    assert 'tgms_webhook_request_duration_seconds_bucket{route="webhook_main",le="+Inf"} 1' in lines
    # every other request is timed under its route's template (a made-up path is "unmatched")
    await client.get("/no/such/path")
    lines = (await client.get("/metrics")).text.splitlines()
    assert 'tgms_webhook_http_request_duration_seconds_count{route="/healthz",method="GET"} 1' in lines
    assert 'tgms_webhook_http_request_duration_seconds_count{route="/readyz",method="GET"} 1' in lines
    assert 'tgms_webhook_http_responses_total{route="/metrics",method="GET",code="200"} 1' in lines
    assert 'tgms_webhook_http_responses_total{route="unmatched",method="GET",code="404"} 1' in lines
    assert not any("/no/such/path" in line for line in lines)
    for line in lines:  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            float(value)
            assert name and " " not in name.split("{")[0]


def test_refuses_to_start_without_a_secret(db_url: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(make_settings(db_url, webhook_secret=None), db_url)
    assert info.value.variable == "TGMS_WEBHOOK_SECRET"


async def test_insecure_mode_accepts_updates_without_a_header(db_url: str, pool: AsyncConnectionPool) -> None:
    app = create_app(make_settings(db_url, webhook_secret=None), db_url, allow_insecure=True)
    async with asgi_client(app) as client:
        assert (await post(client, samples.private_start(5), headers={})).status_code == 200
    assert await counts(pool) == (1, 1)


async def test_database_unreachable_is_503_with_retry_after(db_url: str) -> None:
    # A server that does not exist: the pool cannot connect; nothing may hang or answer 500.
    dead = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1"
    async with asgi_client(create_app(make_settings(db_url), dead)) as client:
        response = await post(client, samples.message(1))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "retry-after" in ready.headers
