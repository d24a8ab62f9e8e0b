"""Fuzzed bodies: garbage never gives a 500 or a job; any update with an integer update_id, whatever
odd values it carries, is stored exactly once (never a 500, never a poisoned batch)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from .conftest import SECRET_HEADERS

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)  # includes NUL and lone surrogates: the storable-characters path
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
bad_update_ids = st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


# Bodies that start as Telegram writes updates (the fast path leaves their validation to PostgreSQL).
telegram_headed = st.binary(max_size=200).map(lambda tail: b'{"update_id":1,"message":{' + tail)

garbage = st.one_of(
    telegram_headed.filter(lambda body: not _is_json(body)),
    st.binary(max_size=300),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "update_id"), json_values, max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    st.builds(
        lambda uid, rest: json.dumps({**rest, "update_id": uid}).encode(),
        bad_update_ids,
        st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    ),
    st.integers(min_value=65, max_value=3000).map(lambda n: b'{"update_id":1,"x":' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from([b"NaN", b'{"update_id": Infinity}', b'{"update_id": 1, "a": -Infinity}', b"\xef\xbb\xbf{}"]),
)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


async def job_count(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_garbage_never_500_and_never_a_job(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    loop = asyncio.get_running_loop()
    statuses: set[int] = set()

    @FUZZ
    @given(body=garbage)
    def check(body: bytes) -> None:
        call = client.post("/api/webhook", content=body, headers=SECRET_HEADERS)
        response = asyncio.run_coroutine_threadsafe(call, loop).result(30)
        statuses.add(response.status_code)
        assert response.status_code == 400, (response.status_code, body[:80])

    await asyncio.to_thread(check)  # hypothesis drives from a thread; requests run on this loop
    assert statuses == {400}
    assert await job_count(pool) == 0


async def test_any_update_with_an_integer_id_is_stored_exactly_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    loop = asyncio.get_running_loop()
    ids: set[int] = set()

    @FUZZ
    @given(
        update_id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        key=st.text(max_size=12).filter(lambda k: k != "update_id"),
        value=json_values,
        concurrent=st.integers(min_value=1, max_value=3),
        compact=st.booleans(),  # compact with an object value is Telegram's shape: the fast path
    )
    def check(update_id: int, key: str, value: Any, concurrent: int, compact: bool) -> None:
        separators = (",", ":") if compact else None
        body = json.dumps({"update_id": update_id, key: value}, separators=separators).encode()

        async def deliver() -> list[int]:
            sends = [client.post("/api/webhook", content=body, headers=SECRET_HEADERS) for _ in range(concurrent)]
            return [r.status_code for r in await asyncio.gather(*sends)]

        codes = asyncio.run_coroutine_threadsafe(deliver(), loop).result(30)
        assert codes == [200] * concurrent, (codes, body[:120])
        ids.add(update_id)

    await asyncio.to_thread(check)
    assert await job_count(pool) == len(ids)
