"""Queue rules (docs/architecture.md, the job queue) against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import queue
from tgms_tui.backend.queue import NewJob


async def _status(pool: AsyncConnectionPool, job_id: int) -> tuple[str, int, str | None]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status, retries, last_error FROM jobs WHERE job_id = %s", (job_id,))
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def _enqueue(conn: psycopg.AsyncConnection, job_type: str, *args: object, **kwargs: object) -> int:
    """`queue.enqueue` for jobs without a dedupe key: always inserts, so always an id."""
    job_id = await queue.enqueue(conn, job_type, *args, **kwargs)  # type: ignore[arg-type]
    assert job_id is not None
    return job_id


async def test_pool_routing_uses_exact_prefix(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        tgms = await _enqueue(conn, "tgms_process_join_request")
        lookalike = await _enqueue(conn, "tgmsXsomething")  # LIKE 'tgms_%' would match this
        main = await _enqueue(conn, "process_telegram_update")
    async with pool.connection() as conn:
        claimed_tgms = await queue.claim_batch(conn, "tgms", "w", 10, 30)
        claimed_main = await queue.claim_batch(conn, "main", "w", 10, 30)
    assert [j.job_id for j in claimed_tgms] == [tgms]
    assert sorted(j.job_id for j in claimed_main) == sorted([lookalike, main])
    assert queue.pool_of("tgmsX") == "main" and queue.pool_of("tgms_x") == "tgms"


async def test_enqueue_joins_the_callers_transaction(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        async with conn.transaction():
            await queue.enqueue(conn, "tgms_a")
            await conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with conn.transaction():
                await queue.enqueue(conn, "tgms_b")
                await conn.execute("SELECT 1/0")
        cur = await conn.execute("SELECT job_type FROM jobs ORDER BY job_id")
        assert [r[0] for r in await cur.fetchall()] == ["tgms_a"]


async def test_claim_order_priority_then_run_at_and_future_jobs_wait(pool: AsyncConnectionPool) -> None:
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        late = await _enqueue(conn, "tgms_x", run_at=now - timedelta(seconds=1))
        early = await _enqueue(conn, "tgms_x", run_at=now - timedelta(seconds=5))
        urgent = await _enqueue(conn, "tgms_x", priority=-10)
        future = await _enqueue(conn, "tgms_x", run_at=now + timedelta(hours=1))
        claimed = await queue.claim_batch(conn, "tgms", "w", 10, 30)
        assert [j.job_id for j in claimed] == [urgent, early, late]
        assert future not in [j.job_id for j in claimed]
        due_in = await queue.seconds_until_next(conn, "tgms")
    assert due_in is not None and 3500 < due_in <= 3600


async def test_dedupe_key_makes_one_job_even_after_it_finished(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        first = await _enqueue(conn, "tgms_x", dedupe_key="k1")
        assert first is not None
        assert await queue.enqueue(conn, "tgms_x", dedupe_key="k1") is None
        (job,) = await queue.claim_batch(conn, "tgms", "w", 10, 30)
        await queue.complete_many(conn, [job.job_id], "w")
        assert await queue.enqueue(conn, "tgms_x", dedupe_key="k1") is None
        ids = await queue.enqueue_many(
            conn, [NewJob("tgms_y", {"n": 1}, dedupe_key="k2"), NewJob("tgms_y", dedupe_key="k2"), NewJob("tgms_y")]
        )
        assert len(ids) == 2


async def test_periodic_enqueue_once_per_period_across_callers(pool: AsyncConnectionPool) -> None:
    async def one() -> int | None:
        async with pool.connection() as conn:
            return await queue.enqueue_periodic(conn, "tgms_update_member_counts", 3600)

    results = await asyncio.gather(*(one() for _ in range(5)))
    assert sum(r is not None for r in results) == 1


async def test_two_workers_never_claim_the_same_job(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await queue.enqueue_many(conn, [NewJob("tgms_x", {"i": i}) for i in range(400)])

    async def drain(worker: str) -> list[int]:
        got: list[int] = []
        while True:
            async with pool.connection() as conn:
                batch = await queue.claim_batch(conn, "tgms", worker, 7, 30)
            if not batch:
                return got
            got.extend(j.job_id for j in batch)

    results = await asyncio.gather(*(drain(f"w{i}") for i in range(4)))
    every = [j for r in results for j in r]
    assert len(every) == 400 and len(set(every)) == 400
    assert all(len(r) > 0 for r in results)


async def test_only_the_lease_holder_settles_a_job(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x")
        assert job_id is not None
        await queue.claim_batch(conn, "tgms", "owner", 1, 30)
        assert await queue.complete_many(conn, [job_id], "intruder") == 0
        assert await queue.fail(conn, job_id, "intruder", "boom") is None
        assert not await queue.snooze(conn, job_id, "intruder", 5)
        assert await queue.complete_many(conn, [job_id], "owner") == 1
    assert (await _status(pool, job_id))[0] == "done"


async def test_expired_lease_is_reaped_with_a_retry_and_old_holder_cannot_complete(
    pool: AsyncConnectionPool,
) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x")
        await queue.claim_batch(conn, "tgms", "dead", 1, 0.2)
        assert await queue.reap_expired_leases(conn) == 0  # lease still valid
    await asyncio.sleep(0.4)
    async with pool.connection() as conn:
        assert await queue.reap_expired_leases(conn) == 1
    status, retries, error = await _status(pool, job_id)
    assert (status, retries) == ("pending", 1) and error and "lease expired" in error
    async with pool.connection() as conn:
        (again,) = await queue.claim_batch(conn, "tgms", "alive", 1, 30)
        assert again.job_id == job_id
        assert await queue.complete_many(conn, [job_id], "dead") == 0
        assert await queue.complete_many(conn, [job_id], "alive") == 1


async def test_extending_a_lease_keeps_the_job_from_being_reaped(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x")
        await queue.claim_batch(conn, "tgms", "w", 1, 0.3)
        assert await queue.extend_leases(conn, [job_id], "w", 30) == {job_id}
        assert await queue.extend_leases(conn, [job_id], "other", 30) == set()
    await asyncio.sleep(0.5)
    async with pool.connection() as conn:
        assert await queue.reap_expired_leases(conn) == 0
    assert (await _status(pool, job_id))[0] == "running"


async def test_failures_back_off_then_fail_after_max_retries(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x", max_retries=2)
        assert job_id is not None
        for attempt in range(1, 4):
            await conn.execute("UPDATE jobs SET run_at = now() WHERE job_id = %s", (job_id,))
            (job,) = await queue.claim_batch(conn, "tgms", "w", 1, 30)
            status = await queue.fail(conn, job.job_id, "w", f"error {attempt}", delay=60)
            assert status == ("failed" if attempt == 3 else "pending")
            if status == "pending":  # backed off: not claimable now
                assert await queue.claim_batch(conn, "tgms", "w", 1, 30) == []
    status, retries, error = await _status(pool, job_id)
    assert (status, retries, error) == ("failed", 3, "error 3")


async def test_permanent_failure_fails_at_once(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x", max_retries=5)
        await queue.claim_batch(conn, "tgms", "w", 1, 30)
        assert await queue.fail(conn, job_id, "w", "no handler", permanent=True) == "failed"


async def test_snooze_does_not_count_a_retry(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        job_id = await _enqueue(conn, "tgms_x")
        await queue.claim_batch(conn, "tgms", "w", 1, 30)
        assert await queue.snooze(conn, job_id, "w", 0.2, "429 retry after 1")
        assert await queue.claim_batch(conn, "tgms", "w", 1, 30) == []
    await asyncio.sleep(0.3)
    async with pool.connection() as conn:
        (job,) = await queue.claim_batch(conn, "tgms", "w", 1, 30)
    assert job.job_id == job_id and job.retries == 0


async def test_cancel_pending_and_retry_failed(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        a = await _enqueue(conn, "tgms_x")
        b = await _enqueue(conn, "tgms_x", max_retries=0)
        assert a is not None and b is not None
        assert await queue.cancel(conn, a) == "pending"
        assert await queue.cancel(conn, a) is None  # already cancelled
        (job,) = await queue.claim_batch(conn, "tgms", "w", 5, 30)
        assert job.job_id == b
        assert await queue.fail(conn, b, "w", "boom") == "failed"
        assert await queue.cancel(conn, b) is None  # finished jobs are not cancelled
        assert await queue.retry(conn, b)
        assert not await queue.retry(conn, b)  # pending now
    assert await _status(pool, a) == ("cancelled", 0, None)
    assert (await _status(pool, b))[:2] == ("pending", 0)


async def test_cancel_a_running_job_takes_it_from_its_holder_and_tells_it(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """The row is 'cancelled' at once: the holder can no longer extend, complete, fail or snooze it, no
    reaper puts it back; a `cancel:<id>` notification tells the holder, after the commit only."""
    listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    try:
        await listener.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
        async with pool.connection() as conn:
            job_id = await _enqueue(conn, "tgms_x")
            (_claimed,) = await queue.claim_batch(conn, "tgms", "w", 1, 0.1)
        notices: list[str] = []
        async with pool.connection() as conn:
            assert await queue.cancel(conn, job_id) == "running"
            assert await queue.status_of(conn, job_id) == "cancelled"
        async for note in listener.notifies(timeout=2.0):
            notices.append(note.payload)
            if note.payload.startswith(queue.CANCEL_NOTICE):
                break
        assert f"{queue.CANCEL_NOTICE}{job_id}" in notices
        await asyncio.sleep(0.2)  # past the lease it had
        async with pool.connection() as conn:
            assert await queue.extend_leases(conn, [job_id], "w", 30) == set()
            assert await queue.complete_many(conn, [job_id], "w") == 0
            assert await queue.fail(conn, job_id, "w", "late") is None
            assert not await queue.snooze(conn, job_id, "w", 1)
            assert await queue.reap_expired_leases(conn) == 0
            assert await queue.claim_batch(conn, "tgms", "w2", 5, 30) == []
            assert await queue.cancel(conn, job_id) is None
            assert await queue.status_of(conn, 10**9) is None
    finally:
        await listener.close()
    status, retries, error = await _status(pool, job_id)
    assert (status, retries) == ("cancelled", 0) and error == "cancelled while running on w"


async def test_list_jobs_filters_by_status_and_type(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        ids = await queue.enqueue_many(conn, [NewJob("tgms_x"), NewJob("tgms_y"), NewJob("other")])
        await queue.cancel(conn, ids[1])
        assert [j.job_id for j in await queue.list_jobs(conn)] == ids[::-1]
        assert [j.job_id for j in await queue.list_jobs(conn, status="pending")] == [ids[2], ids[0]]
        assert [j.job_id for j in await queue.list_jobs(conn, job_type="tgms_y")] == [ids[1]]
        assert await queue.list_jobs(conn, status="cancelled", job_type="tgms_x") == []
        assert len(await queue.list_jobs(conn, limit=1)) == 1


async def test_prune_removes_only_old_finished_jobs(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        ids = await queue.enqueue_many(conn, [NewJob("tgms_x") for _ in range(6)])
        claimed = await queue.claim_batch(conn, "tgms", "w", 3, 30)  # 3 running, 3 pending
        await queue.complete_many(conn, [claimed[0].job_id], "w")
        await queue.fail(conn, claimed[1].job_id, "w", "x", permanent=True)
        await conn.execute("UPDATE jobs SET finished_at = now() - interval '10 days' WHERE finished_at IS NOT NULL")
        recent = await _enqueue(conn, "tgms_y")
        assert await queue.prune(conn, 7 * 86400, batch=1) == 2
        cur = await conn.execute("SELECT count(*) FROM jobs")
        row = await cur.fetchone()
    assert row is not None and row[0] == len(ids) + 1 - 2
    assert recent is not None


async def test_insert_notifies_the_pool_channel(pool: AsyncConnectionPool, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        for name in (queue.NOTIFY_CHANNEL, queue.wake_channel("main"), queue.wake_channel("tgms")):
            await listener.execute(f"LISTEN {name}")
        async with pool.connection() as conn:
            await queue.enqueue_many(conn, [NewJob("tgms_a"), NewJob("tgms_b"), NewJob("main_c")])
        # One NOTIFY per statement and pool, not per row, each on its pool's channel: exactly two arrive.
        notes = [(note.channel, note.payload) async for note in listener.notifies(timeout=2.0)]
    assert sorted(notes) == [("tgms_jobs_main", ""), ("tgms_jobs_tgms", "")]


async def test_scheduled_jobs_notify_when_they_are_due(pool: AsyncConnectionPool, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {queue.wake_channel('tgms')}")
        soon, later = datetime.now(UTC) + timedelta(seconds=30), datetime.now(UTC) + timedelta(hours=1)
        async with pool.connection() as conn:
            await queue.enqueue_many(
                conn, [NewJob("tgms_a", run_at=later), NewJob("tgms_b", run_at=soon), NewJob("tgms_c")]
            )
        payloads = sorted([note.payload async for note in listener.notifies(timeout=2.0)])
    # Due now: ''; scheduled: "+<seconds until the earliest>" (not one per job).
    assert payloads[0] == "" and payloads[1].startswith("+") and len(payloads) == 2
    assert 25 < float(payloads[1].removeprefix("+")) <= 30


SEED_MONITORING_QUERIES = [
    """SELECT job_id, job_type, status, retries, created_at
FROM jobs
WHERE job_type LIKE 'tgms_%' AND status = 'pending'
ORDER BY created_at;""",
    """SELECT group_id, title, phase, member_count, consecutive_failures, is_active
FROM managed_groups
WHERE is_active = true;""",
    """SELECT chat_id, telegram_message_id, debug_code, sent_at
FROM sent_messages
ORDER BY sent_at DESC
LIMIT 10;""",
    "SELECT * FROM bot_health WHERE bot_name = 'tgms_worker';",
]


async def test_seed_monitoring_queries_run_unchanged(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await queue.enqueue(conn, "tgms_process_join_request")
        await conn.execute(
            "INSERT INTO managed_groups (group_id, title, member_count) VALUES (-1001, 'G', 10), (-1002, 'H', 5)"
        )
        await conn.execute("UPDATE managed_groups SET is_active = false WHERE group_id = -1002")
        await conn.execute("INSERT INTO broadcasts (text) VALUES ('hi')")
        await conn.execute(
            "INSERT INTO sent_messages (broadcast_id, chat_id, telegram_message_id, debug_code, status, sent_at) "
            "VALUES (1, -1001, 77, 'DBG-1', 'sent', now())"
        )
        await conn.execute(
            "INSERT INTO bot_health (worker_id, bot_name, status) VALUES ('w1', 'tgms_worker', 'running')"
        )
        results = []
        for sql in SEED_MONITORING_QUERIES:
            cur = await conn.execute(sql)
            results.append(await cur.fetchall())
    assert [r[1] for r in results[0]] == ["tgms_process_join_request"]
    assert [r[0] for r in results[1]] == [-1001]
    assert results[2][0][:3] == (-1001, 77, "DBG-1")
    assert len(results[3]) == 1


async def test_a_number_python_cannot_load_as_int_does_not_stall_claims(pool: AsyncConnectionPool) -> None:
    # PostgreSQL prints 1e5000 as 5001 digits; plain json.loads refuses that, which would make every
    # claim selecting this job fail. It is loaded as a float, and its neighbour is claimed with it.
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (job_type, payload) VALUES "
            "('tgms_odd', '{\"n\": 1e5000, \"m\": -1e5000, \"k\": 12}'), ('tgms_plain', '{\"k\": 1}')"
        )
        claimed = await queue.claim_batch(conn, "tgms", "w", 10, 30)
    by_type = {job.job_type: job.payload for job in claimed}
    assert by_type["tgms_plain"] == {"k": 1}
    assert by_type["tgms_odd"] == {"n": float("inf"), "m": float("-inf"), "k": 12}


async def _tables(pool: AsyncConnectionPool, job_id: int) -> tuple[int, int]:
    """How many rows the job has in jobs_active and in jobs_history."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM jobs_active WHERE job_id = %s), "
            "(SELECT count(*) FROM jobs_history WHERE job_id = %s)",
            (job_id, job_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_finished_jobs_move_to_the_history_and_back_on_retry(pool: AsyncConnectionPool) -> None:
    """The hot table holds only pending and running jobs; each way of finishing moves the row, a retry
    brings it back under the same id, and the `jobs` view shows every job wherever it is."""
    async with pool.connection() as conn:
        done, failed, cancelled, pending = await queue.enqueue_many(conn, [NewJob("tgms_x") for _ in range(4)])
        claimed = {j.job_id for j in await queue.claim_batch(conn, "tgms", "w", 2, 30)}
        assert claimed == {done, failed}
        assert await queue.complete_many(conn, [done], "w") == 1
        assert await queue.fail(conn, failed, "w", "boom", permanent=True) == "failed"
        assert await queue.cancel(conn, cancelled) == "pending"
    assert [await _tables(pool, j) for j in (done, failed, cancelled, pending)] == [(0, 1), (0, 1), (0, 1), (1, 0)]
    assert await _status(pool, failed) == ("failed", 1, "boom")
    async with pool.connection() as conn:
        assert await queue.claim_batch(conn, "tgms", "w", 10, 30) != []  # only `pending` is left to claim
        assert await queue.retry(conn, failed)
    assert await _tables(pool, failed) == (1, 0)
    assert await _status(pool, failed) == ("pending", 0, "boom")


async def test_a_dedupe_key_holds_while_its_job_is_in_the_history(pool: AsyncConnectionPool) -> None:
    """One job per key for as long as its row exists, finished or not: a periodic job done within its
    period is not enqueued again by the next worker's heartbeat; pruning frees the key."""
    async with pool.connection() as conn:
        first = await queue.enqueue_periodic(conn, "tgms_sweep", 3600)
        assert first is not None
        (job,) = await queue.claim_batch(conn, "tgms", "w", 1, 30)
        assert await queue.complete_many(conn, [job.job_id], "w") == 1
        assert await queue.enqueue_periodic(conn, "tgms_sweep", 3600) is None
        keyed = await queue.enqueue(conn, "tgms_k", dedupe_key="k1")
        assert keyed is not None
        assert await queue.enqueue(conn, "tgms_k", dedupe_key="k1") is None
        assert await queue.enqueue_many(conn, [NewJob("tgms_k", dedupe_key="k2"), NewJob("tgms_k", dedupe_key="k2")])
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE dedupe_key = 'k2'")
        assert await cur.fetchone() == (1,)
        await conn.execute("UPDATE jobs_history SET finished_at = now() - interval '10 days'")
        assert await queue.prune(conn, 7 * 86400) == 1
        assert await queue.enqueue_periodic(conn, "tgms_sweep", 3600) is not None


async def test_writes_through_the_jobs_view_land_in_the_right_table(pool: AsyncConnectionPool) -> None:
    """Scripts and tests may still INSERT, UPDATE and DELETE through `jobs`: rows are routed by status."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        cur = await conn.execute(
            "INSERT INTO jobs (job_type, status, finished_at) "
            "VALUES ('tgms_a', 'done', now()), ('tgms_b', DEFAULT, NULL) RETURNING job_id, pool"
        )
        (done, done_pool), (pending, _) = await cur.fetchall()
        assert done_pool == "tgms"
        assert (await _tables(pool, done), await _tables(pool, pending)) == ((0, 1), (1, 0))
        await conn.execute("UPDATE jobs SET status = 'pending', finished_at = NULL WHERE job_id = %s", (done,))
        await conn.execute("UPDATE jobs SET max_retries = 9 WHERE job_id = %s", (pending,))
        assert await _tables(pool, done) == (1, 0)
        await conn.execute("DELETE FROM jobs WHERE job_id = %s", (pending,))
        assert await _tables(pool, pending) == (0, 0)


async def test_a_statement_can_complete_its_job(pool: AsyncConnectionPool) -> None:
    """`with_completion`: a handler's last write and its job's completion in one statement, only for
    the lease holder."""
    async with pool.connection() as conn:
        a, b = await queue.enqueue_many(conn, [NewJob("tgms_x"), NewJob("tgms_x")])
        await queue.claim_batch(conn, "tgms", "w", 2, 30)
        sql = queue.with_completion("SELECT %(n)s::int")
        cur = await conn.execute(sql, {"n": 1, **queue.Completion(a, "w").params()})
        assert await cur.fetchone() == (1,)
        await conn.execute(sql, {"n": 2, **queue.Completion(b, "someone else").params()})
    assert await _status(pool, a) == ("done", 0, None)
    assert (await _status(pool, b))[0] == "running"
