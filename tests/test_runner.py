"""The worker runner against a real PostgreSQL: dispatch, retries, snooze, unknown types, heartbeats,
NOTIFY wake-up, SIGKILL recovery through leases, and graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import wait_until
from tgms_tui.backend import queue
from tgms_tui.backend.config import Settings
from tgms_tui.backend.queue import Backoff, Job, NewJob
from workers.runner import Handler, JobContext, PermanentFailure, Snooze, Worker, WorkerOptions

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


def make_worker(db_url: str, handlers: dict[str, Handler], **opts: Any) -> Worker:
    options = WorkerOptions(
        concurrency=opts.pop("concurrency", 8),
        lease_seconds=opts.pop("lease_seconds", 30.0),
        heartbeat_seconds=opts.pop("heartbeat_seconds", 0.5),
        poll_seconds=opts.pop("poll_seconds", 30.0),
        backoff=Backoff(base=0.02, cap=0.05, jitter=0.1),
        **opts,
    )
    return Worker(db_url, "tgms", handlers, Settings(database_url=db_url), options)


async def job_statuses(pool: AsyncConnectionPool) -> dict[int, tuple[str, int, str | None]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT job_id, status, retries, last_error FROM jobs")
        return {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}


async def test_jobs_are_dispatched_by_type_and_completed(pool: AsyncConnectionPool, db_url: str) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        seen.append((job.job_type, job.payload))

    async with pool.connection() as conn:
        await queue.enqueue_many(conn, [NewJob("tgms_a", {"i": i}) for i in range(50)])
    async with running(make_worker(db_url, {"tgms_a": handler})):
        await wait_until(lambda: _all_status(pool, "done", 50))
    assert sorted(p["i"] for _, p in seen) == list(range(50))


async def _all_status(pool: AsyncConnectionPool, status: str, n: int) -> bool:
    statuses = await job_statuses(pool)
    return len(statuses) == n and all(s[0] == status for s in statuses.values())


async def test_notify_wakes_an_idle_worker_long_before_its_poll(pool: AsyncConnectionPool, db_url: str) -> None:
    started = asyncio.Event()

    async def handler(ctx: JobContext, job: Job) -> None:
        started.set()

    async with running(make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)) as worker:
        await wait_until(lambda: _health_status(pool, worker.worker_id, "running"))
        await asyncio.sleep(0.3)  # idle: waiting on NOTIFY with a 60 s poll
        async with pool.connection() as conn:
            await queue.enqueue(conn, "tgms_a")
        await asyncio.wait_for(started.wait(), 10)  # far below the 60 s poll


async def test_scheduled_job_runs_on_time_and_idle_wakeups_ask_nothing(
    pool: AsyncConnectionPool, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle sleep is planned from notifications: a job scheduled 1.5 s ahead runs then (the poll is
    60 s), and wake-ups for jobs this worker does not get (another worker took them) cost no query."""
    started: list[float] = []
    plans = 0
    asked = queue.seconds_until_next

    async def counting(conn: Any, pool_name: queue.Pool) -> float | None:
        nonlocal plans
        plans += 1
        return await asked(conn, pool_name)

    monkeypatch.setattr(queue, "seconds_until_next", counting)

    async def handler(ctx: JobContext, job: Job) -> None:
        started.append(time.monotonic())

    async with running(make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)) as worker:
        await wait_until(lambda: _health_status(pool, worker.worker_id, "running"))
        await asyncio.sleep(0.3)
        before = plans
        async with pool.connection() as conn:
            for _ in range(5):  # what a worker sees when its peers take every job
                await conn.execute("SELECT pg_notify(%s, '')", (queue.wake_channel("tgms"),))
        await asyncio.sleep(0.5)
        assert plans == before
        enqueued = time.monotonic()
        async with pool.connection() as conn:
            run_at = datetime.now(UTC) + timedelta(seconds=1.5)
            await queue.enqueue_many(conn, [NewJob("tgms_a", run_at=run_at)])
        await wait_until(lambda: _true_when(bool(started)), timeout=10)
    assert 1.2 < started[0] - enqueued < 4.0  # on time: not at the 60 s poll


async def _true_when(value: bool) -> bool:
    return value


async def test_failing_job_ends_failed_after_max_retries_with_last_error(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    attempts: list[int] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        attempts.append(job.retries)
        raise RuntimeError(f"attempt {len(attempts)} broke")

    async with pool.connection() as conn:
        job_id = await queue.enqueue(conn, "tgms_a", max_retries=3)
    async with running(make_worker(db_url, {"tgms_a": handler})) as worker:
        await wait_until(lambda: _all_status(pool, "failed", 1))
    status, retries, error = (await job_statuses(pool))[job_id]  # type: ignore[index]
    assert attempts == [0, 1, 2, 3]
    assert (status, retries) == ("failed", 4) and error is not None and "attempt 4 broke" in error
    assert worker.jobs_failed == 1


async def test_snoozed_job_runs_again_without_counting_a_retry(pool: AsyncConnectionPool, db_url: str) -> None:
    runs: list[int] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        runs.append(job.retries)
        if len(runs) < 3:
            raise Snooze(0.05, "429: retry after 1")

    async with pool.connection() as conn:
        job_id = await queue.enqueue(conn, "tgms_a", max_retries=0)
    async with running(make_worker(db_url, {"tgms_a": handler})):
        await wait_until(lambda: _all_status(pool, "done", 1))
    assert runs == [0, 0, 0]
    assert (await job_statuses(pool))[job_id][:2] == ("done", 0)  # type: ignore[index]


async def test_a_job_snoozed_while_the_worker_plans_its_sleep_runs_when_due(
    pool: AsyncConnectionPool, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker asks the database when the next job is due; a handler snoozes its job while
    that query runs. The answer, read before the snooze was written, must not replace the plan the
    snooze made, or the job waits for the poll (30 s here) instead of its second."""
    runs: list[float] = []
    real = queue.seconds_until_next
    slowed: list[bool] = []

    async def answer_read_before_the_snooze(conn: Any, pool_name: Any) -> float | None:
        answer = await real(conn, pool_name)
        if not slowed:
            slowed.append(True)
            await asyncio.sleep(0.3)  # the handler snoozes meanwhile
        return answer

    monkeypatch.setattr(queue, "seconds_until_next", answer_read_before_the_snooze)

    async def handler(ctx: JobContext, job: Job) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise Snooze(1.0, "429: retry after 1")

    async with pool.connection() as conn:
        await queue.enqueue(conn, "tgms_a")
    async with running(make_worker(db_url, {"tgms_a": handler}, poll_seconds=30.0)):
        await wait_until(lambda: _all_status(pool, "done", 1), timeout=10)
    assert slowed and len(runs) == 2 and 0.9 <= runs[1] - runs[0] < 5


async def test_a_lost_database_connection_runs_the_job_again_without_counting_a_retry(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """The server ends the handler's connection (as a restart does): the job runs again, no retry is
    counted, and the dead connection never reaches the next run. A statement that fails (here a
    statement timeout) is still the job's own failure and counts."""
    runs: list[int] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        runs.append(job.retries)
        async with ctx.db.connection() as conn:
            if len(runs) == 1:
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            await conn.execute("SELECT 1")

    async def slow(ctx: JobContext, job: Job) -> None:
        async with ctx.db.connection() as conn:
            await conn.execute("SET LOCAL statement_timeout = '10ms'")
            await conn.execute("SELECT pg_sleep(1)")

    async with pool.connection() as conn:
        lost = await queue.enqueue(conn, "tgms_a", max_retries=0)
        timed_out = await queue.enqueue(conn, "tgms_b", max_retries=0)
    async with running(make_worker(db_url, {"tgms_a": handler, "tgms_b": slow})):
        await wait_until(lambda: _statuses_are(pool, {lost: "done", timed_out: "failed"}), timeout=20)
    statuses = await job_statuses(pool)
    assert lost is not None and timed_out is not None and runs == [0, 0]
    assert statuses[lost][:2] == ("done", 0)
    status, retries, error = statuses[timed_out]
    assert (status, retries) == ("failed", 1) and error is not None and "statement timeout" in error


async def test_unknown_job_type_fails_clearly_and_worker_keeps_going(pool: AsyncConnectionPool, db_url: str) -> None:
    async def handler(ctx: JobContext, job: Job) -> None:
        return None

    async with pool.connection() as conn:
        unknown = await queue.enqueue(conn, "tgms_no_such_thing")
        known = await queue.enqueue(conn, "tgms_a")
    async with running(make_worker(db_url, {"tgms_a": handler})):
        await wait_until(lambda: _statuses_are(pool, {unknown: "failed", known: "done"}))
    _, retries, error = (await job_statuses(pool))[unknown]  # type: ignore[index]
    assert retries == 1 and error is not None and "no handler for job_type 'tgms_no_such_thing'" in error


async def test_permanent_failure_is_not_retried(pool: AsyncConnectionPool, db_url: str) -> None:
    async def handler(ctx: JobContext, job: Job) -> None:
        raise PermanentFailure("group is not managed")

    async with pool.connection() as conn:
        job_id = await queue.enqueue(conn, "tgms_a", max_retries=5)
    async with running(make_worker(db_url, {"tgms_a": handler})):
        await wait_until(lambda: _all_status(pool, "failed", 1))
    assert (await job_statuses(pool))[job_id][1:] == (1, "group is not managed")  # type: ignore[index]


async def _statuses_are(pool: AsyncConnectionPool, want: dict[int | None, str]) -> bool:
    statuses = await job_statuses(pool)
    return all(statuses.get(j, ("?",))[0] == s for j, s in want.items() if j is not None)


async def _health_status(pool: AsyncConnectionPool, worker_id: str, status: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM bot_health WHERE worker_id = %s", (worker_id,))
        row = await cur.fetchone()
    return row is not None and row[0] == status


async def test_heartbeat_rows_and_final_status(pool: AsyncConnectionPool, db_url: str) -> None:
    async def handler(ctx: JobContext, job: Job) -> None:
        return None

    async with pool.connection() as conn:
        await queue.enqueue_many(conn, [NewJob("tgms_a") for _ in range(3)])
    worker = make_worker(db_url, {"tgms_a": handler})
    async with running(worker):
        await wait_until(lambda: _all_status(pool, "done", 3))
        await wait_until(lambda: _health_done(pool, worker.worker_id, 3))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT bot_name, status, pid, jobs_done, last_activity IS NOT NULL FROM bot_health WHERE worker_id = %s",
            (worker.worker_id,),
        )
        row = await cur.fetchone()
    assert row == ("tgms_worker", "stopped", os.getpid(), 3, True)


async def _health_done(pool: AsyncConnectionPool, worker_id: str, done: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT jobs_done FROM bot_health WHERE worker_id = %s", (worker_id,))
        row = await cur.fetchone()
    return row is not None and row[0] == done


async def test_periodic_jobs_enqueued_once_by_several_workers(pool: AsyncConnectionPool, db_url: str) -> None:
    from workers.runner import PeriodicJob

    periodic = (PeriodicJob("tgms_tick", 3600.0),)
    w1 = make_worker(db_url, {}, periodic=periodic)
    w2 = make_worker(db_url, {}, periodic=periodic)
    async with running(w1), running(w2):
        await wait_until(lambda: _health_status(pool, w1.worker_id, "running"))
        await wait_until(lambda: _health_status(pool, w2.worker_id, "running"))
        await asyncio.sleep(1.2)  # both have heartbeated (and enqueued) at least twice
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE job_type = 'tgms_tick'")
        row = await cur.fetchone()
    assert row == (1,)


# ---------------------------------------------------------------------------- real processes
def start_harness(db_url: str, lease: float = 60.0, grace: float = 20.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.worker_harness", db_url, "tgms", str(lease), str(grace)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def test_sigkilled_workers_job_is_rerun_after_its_lease(pool: AsyncConnectionPool, db_url: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())")
        job_id = await queue.enqueue(conn, "tgms_test_sleep", {"seconds": 30})
    victim = start_harness(db_url, lease=2.0)
    try:
        await wait_until(lambda: _runs(pool, job_id, "start", 1))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert (await job_statuses(pool))[job_id][0] == "running"  # type: ignore[index]
        async with pool.connection() as conn:  # the next run should finish quickly
            await conn.execute("UPDATE jobs SET payload = '{\"seconds\": 0.1}' WHERE job_id = %s", (job_id,))
        rescuer = start_harness(db_url, lease=2.0)
        try:
            await wait_until(lambda: _all_status(pool, "done", 1), timeout=30)
        finally:
            rescuer.terminate()
            rescuer.wait(20)
    finally:
        if victim.poll() is None:
            victim.kill()
    status, retries, _ = (await job_statuses(pool))[job_id]  # type: ignore[index]
    assert (status, retries) == ("done", 1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT pid FROM test_runs WHERE job_id = %s AND phase = 'start'", (job_id,))
        pids = {r[0] for r in await cur.fetchall()}
    assert pids == {victim.pid, rescuer.pid}


async def _runs(pool: AsyncConnectionPool, job_id: int | None, phase: str, n: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM test_runs WHERE job_id = %s AND phase = %s", (job_id, phase))
        row = await cur.fetchone()
    return row is not None and row[0] >= n


async def test_live_worker_keeps_its_long_job_beyond_the_lease(pool: AsyncConnectionPool, db_url: str) -> None:
    """Heartbeats extend the lease: a job longer than the lease is never handed to a second worker."""
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())")
        job_id = await queue.enqueue(conn, "tgms_test_sleep", {"seconds": 4})
    a = start_harness(db_url, lease=1.5)
    b = start_harness(db_url, lease=1.5)
    try:
        await wait_until(lambda: _all_status(pool, "done", 1), timeout=30)
    finally:
        for p in (a, b):
            p.terminate()
            p.wait(20)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM test_runs WHERE job_id = %s AND phase = 'start'", (job_id,))
        assert await cur.fetchone() == (1,)
    assert (await job_statuses(pool))[job_id][:2] == ("done", 0)  # type: ignore[index]


async def test_sigterm_finishes_in_flight_within_grace_and_releases_the_rest(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE test_runs (job_id bigint, pid int, phase text, at timestamptz DEFAULT now())")
        short = await queue.enqueue(conn, "tgms_test_sleep", {"seconds": 0.5})
        long = await queue.enqueue(conn, "tgms_test_sleep", {"seconds": 60})
    proc = start_harness(db_url, lease=30.0, grace=2.0)
    try:
        await wait_until(lambda: _runs(pool, long, "start", 1))
        await wait_until(lambda: _runs(pool, short, "start", 1))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    statuses = await job_statuses(pool)
    assert statuses[short][:2] == ("done", 0)  # type: ignore[index]
    assert statuses[long][:2] == ("pending", 0)  # type: ignore[index]  # released, no retry counted
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM bot_health")
        assert [r[0] for r in await cur.fetchall()] == ["stopped"]


@pytest.mark.slow
async def test_worker_survives_a_postgres_restart(tmp_path: Path) -> None:
    """A dedicated server is stopped and started under a running worker: no job lost or doubled."""
    from tests.pg_control import DedicatedPostgres

    with DedicatedPostgres() as pg:
        url = pg.url
        ran: list[int] = []

        async def handler(ctx: JobContext, job: Job) -> None:
            ran.append(job.payload["i"])

        p = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
        await p.open()
        try:
            async with p.connection() as conn:
                await queue.enqueue_many(conn, [NewJob("tgms_a", {"i": i}) for i in range(20)])
            async with running(make_worker(url, {"tgms_a": handler}, poll_seconds=0.5)):
                await wait_until(lambda: _all_status(p, "done", 20))
                pg.stop()
                await asyncio.sleep(2.0)
                pg.start()
                for _ in range(100):  # the pool notices broken connections on use
                    try:
                        async with p.connection() as conn:
                            await queue.enqueue_many(conn, [NewJob("tgms_a", {"i": i}) for i in range(20, 40)])
                        break
                    except Exception:
                        await asyncio.sleep(0.2)
                await wait_until(lambda: _all_status(p, "done", 40), timeout=60)
        finally:
            await p.close()
    assert sorted(ran) == list(range(40))


async def test_one_worker_of_a_pool_watches_and_hands_the_watch_on_when_it_stops(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """A new job wakes one worker, not every worker of the pool: only the watch holder listens. When
    it stops, another worker takes the watch and is woken by the next job long before its poll."""
    ran: list[str] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        ran.append(ctx.worker_id)

    first = make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)
    second = make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)
    async with running(first), running(second):
        await wait_until(lambda: _true_when(first.watching or second.watching))
        await asyncio.sleep(0.5)
        assert first.watching != second.watching  # exactly one watches
        watcher, other = (first, second) if first.watching else (second, first)
        async with pool.connection() as conn:
            await queue.enqueue(conn, "tgms_a")
        await wait_until(lambda: _true_when(len(ran) == 1), timeout=10)
        assert ran == [watcher.worker_id]
        watcher.stop()
        await wait_until(lambda: _true_when(other.watching), timeout=10)
        async with pool.connection() as conn:
            await queue.enqueue(conn, "tgms_a")
        await wait_until(lambda: _true_when(len(ran) == 2), timeout=10)  # far below the 60 s poll
        assert ran[1] == other.worker_id


async def test_a_worker_waiting_for_the_watch_holds_no_snapshot(pool: AsyncConnectionPool, db_url: str) -> None:
    """The worker that does not watch must not wait inside a statement: a waiting statement holds a
    snapshot (backend_xmin), and while any session holds one VACUUM removes no dead row newer than
    it, so the queue's hot table would bloat for as long as the standby waits (hours on an idle fleet).
    Checked by what VACUUM can do: rows deleted while both workers run are removed."""

    async def handler(ctx: JobContext, job: Job) -> None:
        return None

    first = make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)
    second = make_worker(db_url, {"tgms_a": handler}, poll_seconds=60.0)
    async with running(first), running(second):
        await wait_until(lambda: _true_when(first.watching or second.watching))
        await asyncio.sleep(1.0)  # the standby is waiting by now
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:  # VACUUM needs it
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            assert await cur.fetchone() == (0,)
            await conn.execute("CREATE TABLE churn (i int) WITH (autovacuum_enabled = off)")
            await conn.execute("INSERT INTO churn SELECT generate_series(1, 1000)")
            await conn.execute("DELETE FROM churn")
            await conn.execute("VACUUM churn")
            cur = await conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'")
            assert await cur.fetchone() == (0,)
        watcher, other = (first, second) if first.watching else (second, first)
        watcher.stop()  # the holder's handoff notice wakes the waiter at once, not at its next try
        await wait_until(lambda: _true_when(other.watching), timeout=10)


async def test_a_handler_can_complete_its_job_in_its_own_statement(
    pool: AsyncConnectionPool, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`JobContext.completion`: the handler's write and the job's completion commit together; the runner
    writes nothing more for the job (nor does it count it twice)."""
    runner_completions: list[list[int]] = []
    complete_many = queue.complete_many

    async def counting(conn: Any, job_ids: Any, worker_id: str) -> int:
        runner_completions.append(list(job_ids))
        return await complete_many(conn, job_ids, worker_id)

    monkeypatch.setattr(queue, "complete_many", counting)

    async def handler(ctx: JobContext, job: Job) -> None:
        async with ctx.db.connection() as conn:
            sql = queue.with_completion("INSERT INTO kick_audit (chat_id, user_id, action) VALUES (%(i)s, 1, 'x')")
            await conn.execute(sql, {"i": job.payload["i"], **ctx.completion(job).params()})

    async with pool.connection() as conn:
        await queue.enqueue_many(conn, [NewJob("tgms_a", {"i": i}) for i in range(5)])
    async with running(make_worker(db_url, {"tgms_a": handler})) as worker:
        await wait_until(lambda: _all_status(pool, "done", 5))
        assert worker.jobs_done == 5
    assert runner_completions == []
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM kick_audit")
        assert await cur.fetchone() == (5,)


async def test_finishing_commits_a_handlers_last_writes_with_its_completion(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    """`JobContext.finishing`: several statements and the completion in one transaction; an error
    inside rolls all of it back and the job is retried like any failure."""
    attempts: list[int] = []

    async def handler(ctx: JobContext, job: Job) -> None:
        attempts.append(job.job_id)
        insert = "INSERT INTO kick_audit (chat_id, user_id, action) VALUES (%s, %s, 'x')"
        async with ctx.finishing(job) as conn:
            await conn.execute(insert, (1, len(attempts)))
            await conn.execute(insert, (2, len(attempts)))
            if len(attempts) == 1:
                raise RuntimeError("first attempt fails after its writes")

    async with pool.connection() as conn:
        await queue.enqueue(conn, "tgms_a")
    async with running(make_worker(db_url, {"tgms_a": handler})):
        await wait_until(lambda: _all_status(pool, "done", 1))
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT chat_id, user_id FROM kick_audit ORDER BY chat_id")
        assert await cur.fetchall() == [(1, 2), (2, 2)]  # only the second attempt's writes
    assert len(attempts) == 2
