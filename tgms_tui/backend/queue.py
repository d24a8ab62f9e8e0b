"""The durable job queue: `jobs_active` (pending and running jobs) and `jobs_history` (finished ones),
read together through the `jobs` view (sql/022_jobs_history.sql).

Every function takes a psycopg AsyncConnection so that enqueueing can join the caller's transaction
(a webhook update and its job commit together). Rules:

- Pools route by exact prefix: `pool` is a generated column, 'tgms' for job types starting with
  'tgms_', 'main' otherwise.
- Claims take a batch with FOR UPDATE SKIP LOCKED and hold a lease (`locked_until`). Only the lease
  holder (`locked_by`) can complete, fail, snooze or release a job, so a worker that lost its lease
  never overwrites the outcome of the worker that re-ran the job.
- A job whose lease ran out (its worker died) is put back by `reap_expired_leases`, counting a retry,
  so a job that kills its worker cannot loop for ever.
- `priority`: lower runs first (join requests are urgent, maintenance is not).
- Cancelling works on pending and running jobs alike: the row becomes 'cancelled' at once (so the
  holder can no longer complete, fail, snooze or extend it) and `cancel:<job_id>` on the jobs channel
  tells the worker running it to stop its handler; the heartbeat's failed lease extension is the
  fallback when that notification is missed.
- Finishing a job (done, failed for good, cancelled) moves its row to jobs_history in the finishing
  statement; `retry` moves it back. The hot table holds only work in progress, so claims cost the
  same with a week of history or none. Pruning deletes from the history only.
- A handler may complete its own job inside its last transaction (`complete_many` on the handler's
  connection; workers/runner.py `JobContext.complete`): the job's outcome and its side effects then
  commit together, in one transaction instead of two.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Pool = Literal["main", "tgms"]
POOLS: tuple[Pool, ...] = ("main", "tgms")
# Operators' notices to every worker: "cancel:<job_id>" tells the worker running the job to stop it.
NOTIFY_CHANNEL = "tgms_jobs"
CANCEL_NOTICE = "cancel:"
# Work for a pool: NOTIFY on `wake_channel(pool)`, payload '' (jobs due now) or '+<seconds>' (the
# earliest job scheduled later). Only the pool's watching worker listens (workers/runner.py).
WAKE_CHANNEL_PREFIX = "tgms_jobs_"
LATER_NOTICE = "+"
# The control center's change feed (tgms_tui/backend/live.py): payload 'jobs' when jobs changed.
CHANGES_CHANNEL = "tgms_changes"
STATUSES = ("pending", "running", "done", "failed", "cancelled")
DEFAULT_MAX_RETRIES = 5


def wake_channel(pool: Pool) -> str:
    """The channel that tells `pool`'s watching worker of new or due jobs."""
    return WAKE_CHANNEL_PREFIX + pool


def pool_of(job_type: str) -> Pool:
    """The pool a job type belongs to; the same rule as the generated `jobs.pool` column."""
    return "tgms" if job_type.startswith("tgms_") else "main"


@dataclass(frozen=True)
class Job:
    job_id: int
    job_type: str
    payload: dict[str, Any]
    retries: int
    max_retries: int
    priority: int
    run_at: datetime
    created_at: datetime
    dedupe_key: str | None


@dataclass(frozen=True)
class NewJob:
    job_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    run_at: datetime | None = None
    priority: int = 0
    dedupe_key: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base * 2**retries, capped, times a random factor in
    [1 - jitter, 1 + jitter] so that jobs failing together do not retry together."""

    base: float = 2.0
    cap: float = 600.0
    jitter: float = 0.2

    def delay(self, retries: int) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, retries)))
        return raw * random.uniform(1 - self.jitter, 1 + self.jitter)


_JOB_COLUMNS = "job_id, job_type, payload, retries, max_retries, priority, run_at, created_at, dedupe_key"

# Pending and running jobs live in jobs_active, finished ones in jobs_history; `jobs` is a view of
# both (sql/022_jobs_history.sql). A finishing statement moves the row: DELETE ... RETURNING feeds an
# INSERT into the history, in one statement, so a job is always in exactly one of the two.
_MOVED_COLUMNS = (
    "job_id, job_type, payload, status, retries, max_retries, priority, run_at, locked_by, locked_until, "
    "last_error, dedupe_key, created_at, updated_at, finished_at"
)


def _to_history(source: str, *, status: str, retries: str = "retries", last_error: str = "last_error") -> str:
    """INSERT into jobs_history the rows RETURNING(*) by the CTE `source`, finished now."""
    return f"""INSERT INTO jobs_history ({_MOVED_COLUMNS})
    SELECT job_id, job_type, payload, {status}, {retries}, max_retries, priority, run_at, locked_by, NULL,
           {last_error}, dedupe_key, created_at, now(), now()
      FROM {source}"""


# A dedupe key is taken in job_dedupe_keys first (its primary key decides between concurrent
# enqueuers and spans the history); the job is inserted only when the key was free (or there is none).
SQL_ENQUEUE = """
WITH input AS (
    SELECT %(job_type)s::text AS job_type, %(payload)s::jsonb AS payload,
           COALESCE(%(run_at)s::timestamptz, now()) AS run_at, %(priority)s::int AS priority,
           %(dedupe_key)s::text AS dedupe_key, %(max_retries)s::int AS max_retries
),
keyed AS (
    INSERT INTO job_dedupe_keys (dedupe_key)
    SELECT dedupe_key FROM input WHERE dedupe_key IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING dedupe_key
)
INSERT INTO jobs_active (job_type, payload, run_at, priority, dedupe_key, max_retries)
SELECT job_type, payload, run_at, priority, dedupe_key, max_retries FROM input
 WHERE dedupe_key IS NULL OR dedupe_key IN (SELECT dedupe_key FROM keyed)
RETURNING job_id
"""

SQL_ENQUEUE_MANY = """
WITH input AS (
    SELECT t.job_type, t.payload, COALESCE(t.run_at, now()) AS run_at, t.priority, t.dedupe_key, t.max_retries,
           t.n, min(t.n) OVER (PARTITION BY t.dedupe_key) AS first_n
      FROM unnest(%b::text[], %b::jsonb[], %b::timestamptz[], %b::int[], %b::text[], %b::int[])
           WITH ORDINALITY AS t(job_type, payload, run_at, priority, dedupe_key, max_retries, n)
),
keyed AS (
    INSERT INTO job_dedupe_keys (dedupe_key)
    SELECT dedupe_key FROM input WHERE dedupe_key IS NOT NULL AND n = first_n
    ON CONFLICT DO NOTHING
    RETURNING dedupe_key
)
INSERT INTO jobs_active (job_type, payload, run_at, priority, dedupe_key, max_retries)
SELECT job_type, payload, run_at, priority, dedupe_key, max_retries FROM input
 WHERE dedupe_key IS NULL OR (n = first_n AND dedupe_key IN (SELECT dedupe_key FROM keyed))
 ORDER BY n
RETURNING job_id
"""

# The CTE is a planner fence: lock exactly the chosen rows, then update them.
SQL_CLAIM = f"""
WITH claimed AS (
    SELECT job_id FROM jobs_active
     WHERE status = 'pending' AND pool = %(pool)s AND run_at <= now()
     ORDER BY priority, run_at, job_id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE jobs_active AS j
   SET status = 'running', locked_by = %(worker)s,
       locked_until = now() + make_interval(secs => %(lease)s), updated_at = now()
  FROM claimed
 WHERE j.job_id = claimed.job_id
RETURNING {", ".join("j." + c.strip() for c in _JOB_COLUMNS.split(","))}
"""

SQL_COMPLETE = f"""
WITH done AS (
    DELETE FROM jobs_active
     WHERE job_id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker)s
    RETURNING *
)
{_to_history("done", status="'done'")}
"""

SQL_FAIL = f"""
WITH target AS (
    SELECT job_id, (%(permanent)s OR retries + 1 > max_retries) AS final FROM jobs_active
     WHERE job_id = %(job_id)s AND status = 'running' AND locked_by = %(worker)s
       FOR UPDATE
),
again AS (
    UPDATE jobs_active AS j
       SET retries = j.retries + 1, status = 'pending', run_at = now() + make_interval(secs => %(delay)s),
           last_error = %(error)s, locked_until = NULL, updated_at = now()
      FROM target
     WHERE j.job_id = target.job_id AND NOT target.final
    RETURNING 'pending'::text AS status
),
ended AS (
    DELETE FROM jobs_active AS j USING target
     WHERE j.job_id = target.job_id AND target.final
    RETURNING j.*
),
recorded AS (
    {_to_history("ended", status="'failed'", retries="retries + 1", last_error="%(error)s")}
    RETURNING 'failed'::text AS status
)
SELECT status FROM again UNION ALL SELECT status FROM recorded
"""

SQL_SNOOZE = """
UPDATE jobs_active
   SET status = 'pending', run_at = now() + make_interval(secs => %(delay)s), locked_until = NULL,
       last_error = COALESCE(%(reason)s, last_error), updated_at = now()
 WHERE job_id = %(job_id)s AND status = 'running' AND locked_by = %(worker)s
RETURNING job_id
"""

SQL_EXTEND = """
UPDATE jobs_active SET locked_until = now() + make_interval(secs => %(lease)s)
 WHERE job_id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker)s
RETURNING job_id
"""

SQL_RELEASE = """
UPDATE jobs_active SET status = 'pending', locked_by = NULL, locked_until = NULL, updated_at = now()
 WHERE job_id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker)s
RETURNING pool
"""

SQL_REAP = f"""
WITH expired AS (
    SELECT job_id, retries + 1 > max_retries AS final,
           'lease expired: worker ' || COALESCE(locked_by, '?') || ' stopped before finishing' AS error
      FROM jobs_active
     WHERE status = 'running' AND locked_until < now()
       FOR UPDATE SKIP LOCKED
),
again AS (
    UPDATE jobs_active AS j
       SET retries = j.retries + 1, status = 'pending', last_error = expired.error,
           locked_until = NULL, run_at = now(), updated_at = now()
      FROM expired
     WHERE j.job_id = expired.job_id AND NOT expired.final
    RETURNING j.pool
),
ended AS (
    DELETE FROM jobs_active AS j USING expired
     WHERE j.job_id = expired.job_id AND expired.final
    RETURNING j.*, expired.error
),
recorded AS (
    {_to_history("ended", status="'failed'", retries="retries + 1", last_error="error")}
    RETURNING pool
)
SELECT pool FROM again UNION ALL SELECT pool FROM recorded
"""

# The CTE reads the status the job had (and locks the row, re-checked under concurrent updates).
_CANCELLED_ERROR = (
    "CASE WHEN was = 'running' THEN 'cancelled while running on ' || COALESCE(locked_by, '?') ELSE last_error END"
)
SQL_CANCEL = f"""
WITH target AS (
    SELECT job_id, status FROM jobs_active WHERE job_id = %(job_id)s FOR UPDATE
),
ended AS (
    DELETE FROM jobs_active AS j USING target
     WHERE j.job_id = target.job_id
    RETURNING j.*, target.status AS was
),
recorded AS (
    {_to_history("ended", status="'cancelled'", last_error=_CANCELLED_ERROR)}
)
SELECT was FROM ended
"""

SQL_STATUS = "SELECT status FROM jobs WHERE job_id = %s"

SQL_LIST = """
SELECT job_id, job_type, status, retries, max_retries, priority, run_at, updated_at, finished_at, locked_by,
       last_error
  FROM jobs
 WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(type)s::text IS NULL OR job_type = %(type)s)
 ORDER BY job_id DESC
 LIMIT %(limit)s
"""

SQL_RESCHEDULE = """
UPDATE jobs_active SET run_at = COALESCE(%(run_at)s, now()), updated_at = now()
 WHERE job_id = %(job)s AND status = 'pending'
RETURNING pool, EXTRACT(EPOCH FROM run_at - now())
"""

# Back from the history as a fresh pending job (same id); the insert trigger wakes a worker.
SQL_RETRY = f"""
WITH back AS (
    DELETE FROM jobs_history WHERE job_id = %s AND status IN ('failed', 'cancelled')
    RETURNING *
)
INSERT INTO jobs_active ({_MOVED_COLUMNS})
SELECT job_id, job_type, payload, 'pending', 0, max_retries, priority, now(), NULL, NULL, last_error, dedupe_key,
       created_at, now(), NULL
  FROM back
RETURNING pool
"""

# Only the history is pruned (everything in it is finished); a pruned job's dedupe key goes with it.
SQL_PRUNE = """
WITH old AS (
    SELECT job_id FROM jobs_history
     WHERE finished_at < now() - make_interval(secs => %(age)s)
     ORDER BY finished_at
     LIMIT %(batch)s
),
gone AS (
    DELETE FROM jobs_history AS h USING old WHERE h.job_id = old.job_id
    RETURNING h.dedupe_key
),
keys AS (
    DELETE FROM job_dedupe_keys WHERE dedupe_key IN (SELECT dedupe_key FROM gone WHERE dedupe_key IS NOT NULL)
)
SELECT count(*) FROM gone
"""

SQL_NEXT_RUN_AT = """
SELECT EXTRACT(EPOCH FROM min(run_at) - now()) FROM jobs_active WHERE status = 'pending' AND pool = %s
"""

SQL_ENQUEUE_PERIODIC = """
WITH keyed AS (
    INSERT INTO job_dedupe_keys (dedupe_key)
    VALUES ('periodic:' || %(job_type)s || ':' || floor(EXTRACT(EPOCH FROM now()) / %(every)s)::bigint::text)
    ON CONFLICT DO NOTHING
    RETURNING dedupe_key
)
INSERT INTO jobs_active (job_type, payload, priority, dedupe_key, max_retries)
SELECT %(job_type)s, %(payload)s, %(priority)s, dedupe_key, %(max_retries)s FROM keyed
RETURNING job_id
"""


async def enqueue(
    conn: AsyncConnection[Any],
    job_type: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    priority: int = 0,
    dedupe_key: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> int | None:
    """Insert one job in the caller's transaction; None when `dedupe_key` already exists."""
    cur = await conn.execute(
        SQL_ENQUEUE,
        {
            "job_type": job_type,
            "payload": Jsonb(payload or {}),
            "run_at": run_at,
            "priority": priority,
            "dedupe_key": dedupe_key,
            "max_retries": max_retries,
        },
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def enqueue_many(conn: AsyncConnection[Any], jobs: Sequence[NewJob]) -> list[int]:
    """Insert many jobs with one statement (one NOTIFY); ids of the rows actually inserted."""
    if not jobs:
        return []
    cur = await conn.execute(
        SQL_ENQUEUE_MANY,
        (
            [j.job_type for j in jobs],
            [Jsonb(j.payload) for j in jobs],
            [j.run_at for j in jobs],
            [j.priority for j in jobs],
            [j.dedupe_key for j in jobs],
            [j.max_retries for j in jobs],
        ),
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def enqueue_periodic(
    conn: AsyncConnection[Any],
    job_type: str,
    every_seconds: float,
    payload: dict[str, Any] | None = None,
    *,
    priority: int = 10,
    max_retries: int = 2,
) -> int | None:
    """Enqueue `job_type` once per period of `every_seconds` (database clock), however many
    workers call this: the period index is part of the dedupe key."""
    cur = await conn.execute(
        SQL_ENQUEUE_PERIODIC,
        {
            "job_type": job_type,
            "payload": Jsonb(payload or {}),
            "priority": priority,
            "every": every_seconds,
            "max_retries": max_retries,
        },
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def claim_batch(
    conn: AsyncConnection[Any], pool: Pool, worker_id: str, limit: int, lease_seconds: float
) -> list[Job]:
    """Claim up to `limit` due jobs of `pool` for `worker_id`, leased for `lease_seconds`."""
    async with conn.cursor(row_factory=class_row(Job)) as cur:
        await cur.execute(SQL_CLAIM, {"pool": pool, "limit": limit, "worker": worker_id, "lease": lease_seconds})
        return await cur.fetchall()


async def complete_many(conn: AsyncConnection[Any], job_ids: Iterable[int], worker_id: str) -> int:
    """Mark jobs done; only those still leased by `worker_id` change. Returns how many did."""
    ids = list(job_ids)
    if not ids:
        return 0
    cur = await conn.execute(SQL_COMPLETE, {"ids": ids, "worker": worker_id})
    return cur.rowcount


@dataclass(frozen=True)
class Completion:
    """A job to complete inside another statement (`with_completion`): its id and its lease holder."""

    job_id: int
    worker_id: str

    def params(self) -> dict[str, Any]:
        return {"complete_job": self.job_id, "complete_worker": self.worker_id}


# Completes one job when prefixed to a handler's statement (the job's row moves to the history);
# nothing when its lease is no longer held by the worker.
_COMPLETION_CTES = f"""_job_done AS (
    DELETE FROM jobs_active
     WHERE job_id = %(complete_job)s AND status = 'running' AND locked_by = %(complete_worker)s
    RETURNING *
),
_job_history AS (
    {_to_history("_job_done", status="'done'")}
)"""


def with_completion(sql: str) -> str:
    """`sql` (one INSERT, UPDATE, DELETE or SELECT, optionally starting with WITH) that also completes
    a job: run it with `{**params, **completion.params()}`. One statement, one round trip and one
    commit for a handler's last write and its job's completion."""
    body = sql.strip()
    if body[:5].upper() == "WITH ":
        return f"WITH {_COMPLETION_CTES},\n{body[5:]}"
    return f"WITH {_COMPLETION_CTES}\n{body}"


async def complete_in(conn: AsyncConnection[Any], job_id: int, worker_id: str) -> None:
    """Mark one job done in the caller's transaction without reading the result, so that it can ride
    in a pipeline with the handler's last writes (see workers/runner.py `JobContext.finishing`)."""
    await conn.execute(SQL_COMPLETE, {"ids": [job_id], "worker": worker_id})


async def fail(
    conn: AsyncConnection[Any],
    job_id: int,
    worker_id: str,
    error: str,
    *,
    delay: float = 0.0,
    permanent: bool = False,
) -> str | None:
    """Record a failed attempt: back to pending after `delay`, or 'failed' once retries exceed
    max_retries (or at once when `permanent`). Returns the new status, None if the lease was lost."""
    cur = await conn.execute(
        SQL_FAIL,
        {
            "job_id": job_id,
            "worker": worker_id,
            "error": error[:4000],
            "delay": delay,
            "permanent": permanent,
        },
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def snooze(
    conn: AsyncConnection[Any], job_id: int, worker_id: str, seconds: float, reason: str | None = None
) -> bool:
    """Put a running job back to pending in `seconds` without counting a retry (e.g. Telegram 429)."""
    cur = await conn.execute(SQL_SNOOZE, {"job_id": job_id, "worker": worker_id, "delay": seconds, "reason": reason})
    return await cur.fetchone() is not None


async def extend_leases(
    conn: AsyncConnection[Any], job_ids: Iterable[int], worker_id: str, lease_seconds: float
) -> set[int]:
    """Extend the leases of jobs still held by `worker_id`; the ids whose lease was extended."""
    ids = list(job_ids)
    if not ids:
        return set()
    cur = await conn.execute(SQL_EXTEND, {"ids": ids, "worker": worker_id, "lease": lease_seconds})
    return {int(r[0]) for r in await cur.fetchall()}


async def release(conn: AsyncConnection[Any], job_ids: Iterable[int], worker_id: str) -> int:
    """Give unfinished jobs back (graceful shutdown) without counting a retry; wakes other workers."""
    ids = list(job_ids)
    if not ids:
        return 0
    cur = await conn.execute(SQL_RELEASE, {"ids": ids, "worker": worker_id})
    pools = {str(r[0]) for r in await cur.fetchall()}
    await _notify(conn, pools)
    return cur.rowcount


async def reap_expired_leases(conn: AsyncConnection[Any]) -> int:
    """Put jobs whose worker died (lease ran out) back to pending, counting a retry."""
    cur = await conn.execute(SQL_REAP)
    pools = {str(r[0]) for r in await cur.fetchall()}
    await _notify(conn, pools)
    return cur.rowcount


async def cancel(conn: AsyncConnection[Any], job_id: int) -> str | None:
    """Cancel a pending or running job: the status it had ('pending' or 'running'), None when it has
    neither (finished, or no such job). A running job's worker is told to stop its handler when the
    caller's transaction commits; the job never runs again unless retried."""
    cur = await conn.execute(SQL_CANCEL, {"job_id": job_id})
    row = await cur.fetchone()
    if row is None:
        return None
    if row[0] == "running":
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{CANCEL_NOTICE}{job_id}"))
    await announce_changes(conn)
    return str(row[0])


async def status_of(conn: AsyncConnection[Any], job_id: int) -> str | None:
    """The job's status; None when there is no such job (or it was pruned)."""
    cur = await conn.execute(SQL_STATUS, (job_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class JobSummary:
    job_id: int
    job_type: str
    status: str
    retries: int
    max_retries: int
    priority: int
    run_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    locked_by: str | None
    last_error: str | None


async def list_jobs(
    conn: AsyncConnection[Any], *, status: str | None = None, job_type: str | None = None, limit: int = 50
) -> list[JobSummary]:
    """The newest jobs first, optionally of one status and/or one job type."""
    async with conn.cursor(row_factory=class_row(JobSummary)) as cur:
        await cur.execute(SQL_LIST, {"status": status, "type": job_type, "limit": limit})
        return await cur.fetchall()


async def reschedule(conn: AsyncConnection[Any], job_id: int, run_at: datetime | None) -> bool:
    """Move a pending job to `run_at` (None: now), telling idle workers when it is due (as the insert
    trigger does for new jobs); False when it is not pending."""
    cur = await conn.execute(SQL_RESCHEDULE, {"job": job_id, "run_at": run_at})
    row = await cur.fetchone()
    if row is None:
        return False
    pool, seconds = str(row[0]), float(row[1])
    await _notify(conn, {pool}, "" if seconds <= 0 else f"{LATER_NOTICE}{seconds}")
    await announce_changes(conn)
    return True


async def retry(conn: AsyncConnection[Any], job_id: int) -> bool:
    """Run a failed or cancelled job again from scratch (retries reset); False otherwise."""
    cur = await conn.execute(SQL_RETRY, (job_id,))
    if await cur.fetchone() is None:
        return False
    await announce_changes(conn)  # the insert into jobs_active wakes a worker of the job's pool
    return True


async def prune(conn: AsyncConnection[Any], older_than_seconds: float, batch: int = 10_000) -> int:
    """Delete finished (done, failed, cancelled) jobs older than the given age; never unfinished ones.
    Deletes in batches so no statement holds locks for long; returns how many rows went."""
    total = 0
    while True:
        cur = await conn.execute(SQL_PRUNE, {"age": older_than_seconds, "batch": batch})
        row = await cur.fetchone()
        pruned = int(row[0]) if row else 0
        total += pruned
        if pruned < batch:
            if total:
                await announce_changes(conn)
            return total


async def seconds_until_next(conn: AsyncConnection[Any], pool: Pool) -> float | None:
    """Seconds until the earliest pending job of `pool` is due (<= 0: due now); None when empty."""
    cur = await conn.execute(SQL_NEXT_RUN_AT, (pool,))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def announce_changes(conn: AsyncConnection[Any]) -> None:
    """Tell the control center that jobs changed (sent when the caller's transaction commits). The
    queue's tables send no NOTIFY per statement (see sql/022_jobs_history.sql): workers call this at
    most once a second, operators' actions once each. Nothing when no control center listens
    (change_listeners: sql/024_change_listeners.sql)."""
    await conn.execute("SELECT pg_notify(%s, 'jobs') WHERE EXISTS (SELECT 1 FROM change_listeners)", (CHANGES_CHANNEL,))


async def _notify(conn: AsyncConnection[Any], pools: Iterable[str], payload: str = "") -> None:
    for pool in pools:
        await conn.execute("SELECT pg_notify(%s, %s)", (WAKE_CHANNEL_PREFIX + pool, payload))
