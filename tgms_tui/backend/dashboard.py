"""The control center's read model: the queries behind its live panes, returning typed rows.

The repositories (groups, broadcasts, members, health, ...) own the writes and the rules; the
screens' polled reads stay here (and in group_actions' detail view) because they join across table
families and are shaped and bounded for one refresh, not for a process's work. A test EXPLAINs each.

Rows are NamedTuples: a refresh builds and compares 10,000 of them, and tuple construction and
equality run in C. Every query here runs every couple of seconds against tables that may hold 10,000 groups and
100,000 jobs, so each one is bounded or served by an index: job counts come from the partial
indexes on pending / running / failed rows and from the finished_at index for throughput; done rows
are never counted. No Textual import here: the TUI renders these rows, tests read them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from psycopg import AsyncConnection

from .bulk_rows import collector_paused
from .queue import POOLS

# A worker heartbeats every 5 s; three missed beats means it is gone or stuck.
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS

RECENT_JOBS_PER_STATUS = 40
RECENT_JOIN_REQUESTS = 100
THROUGHPUT_WINDOW_SECONDS = 60
# A filter searches by id in the whole table (the primary key) and by text in at most this many of the
# newest rows of each job status / of join requests: there is no trigram index (pg_trgm is not part of
# the embedded PostgreSQL), so a text match reads rows one by one, and it runs on every refresh.
SEARCH_SCAN = 10_000


class GroupRow(NamedTuple):
    group_id: int
    title: str
    phase: str
    is_active: bool
    final_message_allowed: bool
    member_count: int | None
    member_count_prev: int | None
    consecutive_failures: int
    # Seconds since the epoch: the pane reads 100,000 of these at a large fleet and shows a few dozen,
    # and a float is a fraction of the cost of a time-zone-aware datetime (last_broadcast_at).
    last_broadcast_epoch: float | None
    deactivated_reason: str | None
    held_until: datetime | None = None  # set while the group is on raid hold (join requests wait)

    @property
    def held(self) -> bool:
        return self.held_until is not None

    @property
    def last_broadcast_at(self) -> datetime | None:
        e = self.last_broadcast_epoch
        return None if e is None else datetime.fromtimestamp(e, UTC)

    @property
    def member_trend(self) -> int | None:
        """Change since the previous member count, None when there is no previous count."""
        if self.member_count is None or self.member_count_prev is None:
            return None
        return self.member_count - self.member_count_prev


class HeldGroup(NamedTuple):
    group_id: int
    title: str | None
    held_since: datetime | None
    held_until: datetime
    held_requests: int


class RaidHolds(NamedTuple):
    """What the dashboard's raid banner shows; `active` when the fleet or a group is on hold."""

    fleet_held_until: datetime | None
    groups_held: int
    held_requests: int  # requests waiting as 'held' (at most HELD_COUNT_CAP + 1: "more than")
    groups: list[HeldGroup]

    @property
    def active(self) -> bool:
        return self.fleet_held_until is not None or self.groups_held > 0


class PoolStats(NamedTuple):
    """One pool's queue at a glance; `lag_seconds` is how long the oldest due job has waited."""

    pool: str
    pending: int = 0
    due: int = 0
    running: int = 0
    failed: int = 0  # at most FAILED_COUNT_CAP + 1: "more than the cap"
    done_last_minute: int = 0
    failed_last_minute: int = 0
    lag_seconds: float | None = None


def tries_made(status: str, retries: int) -> int:
    """How many times a job has run (or is running now), from the queue's counters.

    `retries` counts failed tries (a failure, a reaped lease); the first run is not a retry, so a job
    may run `max_retries + 1` times and one that failed them all has `retries = max_retries + 1`. A
    running job is on try `retries + 1`, a done one succeeded on it; pending, failed and cancelled
    jobs have made exactly `retries` tries."""
    return retries + 1 if status in ("running", "done") else retries


class JobRow(NamedTuple):
    job_id: int
    pool: str
    job_type: str
    status: str
    retries: int
    max_retries: int
    age_seconds: float
    last_error: str | None

    @property
    def tries(self) -> int:
        return tries_made(self.status, self.retries)

    @property
    def max_tries(self) -> int:
        return self.max_retries + 1


class JobDetail(NamedTuple):
    job_id: int
    pool: str
    job_type: str
    status: str
    payload: dict[str, Any]
    retries: int
    max_retries: int
    priority: int
    run_at: datetime
    locked_by: str | None
    last_error: str | None
    dedupe_key: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def tries(self) -> int:
        return tries_made(self.status, self.retries)

    @property
    def max_tries(self) -> int:
        return self.max_retries + 1


class WorkerRow(NamedTuple):
    worker_id: str
    bot_name: str
    status: str
    host: str | None
    pid: int | None
    heartbeat_age_seconds: float
    jobs_done: int
    jobs_failed: int
    last_error: str | None

    @property
    def is_stale(self) -> bool:
        """A worker that claims to run but has missed three heartbeats (a stopped one is not stale)."""
        return self.status != "stopped" and self.heartbeat_age_seconds > STALE_AFTER_SECONDS


class JoinRequestRow(NamedTuple):
    request_id: int
    chat_id: int
    chat_title: str | None
    user_id: int
    username: str | None
    status: str
    error: str | None
    requested_at: datetime
    age_seconds: float


class DeliveryRow(NamedTuple):
    """One group of one broadcast: what the sender did there (or that it has not started yet)."""

    chat_id: int
    title: str | None
    status: str
    debug_code: str | None
    telegram_message_id: int | None
    error: str | None
    attempts: int
    sent_at: datetime | None


# GroupRow's columns (group_actions' detail view starts with them too). held_until only while the
# hold lasts, so a group's row changes (and is redrawn) when it ends.
GROUP_COLUMNS = """group_id, title, phase, is_active, final_message_allowed, member_count, member_count_prev,
       consecutive_failures, EXTRACT(EPOCH FROM last_broadcast_at)::float8, deactivated_reason,
       CASE WHEN held_until > now() THEN held_until END"""

SQL_GROUPS = f"""
SELECT {GROUP_COLUMNS}
  FROM managed_groups
"""

SQL_GROUPS_BY_ID = SQL_GROUPS + " WHERE group_id = ANY(%s)"

# The raid banner: the fleet's hold, how many groups are held, the held requests (counted up to a
# cap: a raid may leave 100,000), and the first groups on hold with their own held requests (each
# counted through the queue's partial index).
RAID_BANNER_GROUPS = 8
HELD_COUNT_CAP = 100_000
SQL_RAID_HOLDS = """
SELECT CASE WHEN f.fleet_held_until > now() THEN f.fleet_held_until END,
       (SELECT count(*) FROM managed_groups WHERE held_until > now()),
       (SELECT count(*) FROM (SELECT 1 FROM join_requests WHERE status = 'held' LIMIT %(cap)s + 1) AS h)
  FROM join_gate f
"""

SQL_HELD_GROUPS = """
SELECT g.group_id, g.title, g.held_since, g.held_until,
       (SELECT count(*) FROM join_requests j WHERE j.chat_id = g.group_id AND j.status = 'held')
  FROM managed_groups g
 WHERE g.held_until > now()
 ORDER BY g.held_since, g.group_id
 LIMIT %(n)s
"""

# Failed jobs stay in the history until it is pruned (days, possibly millions of rows): a refresh counts
# them through their partial index up to this cap and shows "1,000+" beyond it, so its cost does not
# grow with the history (an uncapped count read every failed row's page each tick once new rows had
# cleared the pages' all-visible bits: 80 ms at 100,000 failed jobs).
FAILED_COUNT_CAP = 1_000

# One UNION ALL branch per status so that each is served by its own partial index.
SQL_POOL_STATS = """
SELECT pool, 'pending', count(*), count(*) FILTER (WHERE run_at <= now()),
       EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now()))
  FROM jobs WHERE status = 'pending' GROUP BY pool
UNION ALL
SELECT pool, 'running', count(*), 0, NULL FROM jobs WHERE status = 'running' GROUP BY pool
UNION ALL
SELECT p.pool, 'failed',
       (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'failed' AND pool = p.pool LIMIT %(cap)s + 1) AS f),
       0, NULL
  FROM unnest(%(pools)s::text[]) AS p(pool)
UNION ALL
SELECT pool, 'finished:' || status, count(*), 0, NULL
  FROM jobs
 WHERE finished_at > now() - make_interval(secs => %(window)s) AND finished_at IS NOT NULL
 GROUP BY pool, status
"""

_JOB_LIST_COLUMNS = """job_id, pool, job_type, status, retries, max_retries,
       EXTRACT(EPOCH FROM now() - COALESCE(finished_at, updated_at)) AS age, left(last_error, 300)"""

SQL_RECENT_JOBS = f"""
(SELECT {_JOB_LIST_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY locked_until DESC LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM jobs WHERE status = 'pending'
  ORDER BY pool, priority, run_at, job_id LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM jobs WHERE status = 'failed' ORDER BY updated_at DESC LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM jobs
  WHERE finished_at IS NOT NULL AND status IN ('done', 'cancelled')
  ORDER BY finished_at DESC LIMIT %(n)s)
"""

# The filter: an exact id anywhere, or the text in type, status, pool or error among the newest
# SEARCH_SCAN rows of each status (each branch bounded first, then matched, then cut to the window).
# One ILIKE over the joined fields costs a third of one per field.
_JOB_MATCH = "concat_ws(' ', job_type, status, pool, last_error) ILIKE %(pattern)s"

SQL_SEARCH_JOBS = f"""
(SELECT {_JOB_LIST_COLUMNS} FROM jobs WHERE job_id = %(id)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM (SELECT * FROM jobs WHERE status = 'running'
  ORDER BY locked_until DESC LIMIT %(scan)s) AS j WHERE {_JOB_MATCH} ORDER BY locked_until DESC LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM (SELECT * FROM jobs WHERE status = 'pending'
  ORDER BY pool, priority, run_at, job_id LIMIT %(scan)s) AS j WHERE {_JOB_MATCH}
  ORDER BY pool, priority, run_at, job_id LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM (SELECT * FROM jobs WHERE status = 'failed'
  ORDER BY updated_at DESC LIMIT %(scan)s) AS j WHERE {_JOB_MATCH} ORDER BY updated_at DESC LIMIT %(n)s)
UNION ALL
(SELECT {_JOB_LIST_COLUMNS} FROM (SELECT * FROM jobs
  WHERE finished_at IS NOT NULL AND status IN ('done', 'cancelled') ORDER BY finished_at DESC LIMIT %(scan)s) AS j
  WHERE {_JOB_MATCH} ORDER BY finished_at DESC LIMIT %(n)s)
"""

SQL_JOB_DETAIL = """
SELECT job_id, pool, job_type, status, payload, retries, max_retries, priority, run_at, locked_by,
       last_error, dedupe_key, created_at, updated_at, finished_at
  FROM jobs WHERE job_id = %s
"""

# Workers that stopped long ago are history, not health.
SQL_WORKERS = """
SELECT worker_id, bot_name, status, host, pid, EXTRACT(EPOCH FROM now() - updated_at),
       jobs_done, jobs_failed, left(last_error, 300)
  FROM bot_health
 WHERE status <> 'stopped' OR updated_at > now() - interval '1 hour'
 ORDER BY bot_name, started_at, worker_id
"""

SQL_JOIN_REQUESTS = """
SELECT jr.request_id, jr.chat_id, g.title, jr.user_id, jr.username, jr.status, left(jr.error, 300),
       jr.requested_at, EXTRACT(EPOCH FROM now() - COALESCE(jr.processed_at, jr.requested_at))
  FROM (SELECT * FROM join_requests ORDER BY request_id DESC LIMIT %s) AS jr
  LEFT JOIN managed_groups AS g ON g.group_id = jr.chat_id
 ORDER BY jr.request_id DESC
"""

SQL_SEARCH_JOIN_REQUESTS = """
SELECT jr.request_id, jr.chat_id, g.title, jr.user_id, jr.username, jr.status, left(jr.error, 300),
       jr.requested_at, EXTRACT(EPOCH FROM now() - COALESCE(jr.processed_at, jr.requested_at))
  FROM (SELECT * FROM join_requests ORDER BY request_id DESC LIMIT %(scan)s) AS jr
  LEFT JOIN managed_groups AS g ON g.group_id = jr.chat_id
 WHERE jr.request_id = %(id)s OR jr.chat_id = %(id)s OR jr.user_id = %(id)s
       OR concat_ws(' ', jr.username, jr.status, jr.error, g.title) ILIKE %(pattern)s
 ORDER BY jr.request_id DESC
 LIMIT %(n)s
"""

SQL_DELIVERIES = """
SELECT COALESCE(sm.chat_id, t.chat_id), g.title, COALESCE(sm.status, 'queued'), sm.debug_code, sm.telegram_message_id,
       sm.error, COALESCE(sm.attempts, 0), sm.sent_at
  FROM unnest(%(groups)s::bigint[]) AS t(chat_id)
  FULL JOIN (SELECT * FROM sent_messages WHERE broadcast_id = %(bid)s) AS sm ON sm.chat_id = t.chat_id
  LEFT JOIN managed_groups AS g ON g.group_id = COALESCE(sm.chat_id, t.chat_id)
"""


async def fetch_groups(conn: AsyncConnection[Any]) -> list[GroupRow]:
    """Every managed group (the pane filters and sorts them client-side, like htop)."""
    return await _group_rows(conn, SQL_GROUPS, None)


async def fetch_groups_by_id(conn: AsyncConnection[Any], group_ids: Iterable[int]) -> list[GroupRow]:
    """Just these groups (those a 'tgms_groups' NOTIFY named); deleted ones are simply absent."""
    return await _group_rows(conn, SQL_GROUPS_BY_ID, (list(group_ids),))


async def _group_rows(conn: AsyncConnection[Any], sql: str, params: tuple[Any, ...] | None) -> list[GroupRow]:
    """Group rows read one way for the full and the partial reload, so the same group compares equal.
    Binary results: no number or timestamp formatted as text by the server and parsed again here."""
    async with conn.cursor(row_factory=lambda _cur: GroupRow._make, binary=True) as cur:
        await cur.execute(sql, params)
        with collector_paused():  # 100,000 rows at a large fleet
            return await cur.fetchall()


async def fetch_raid_holds(conn: AsyncConnection[Any]) -> RaidHolds:
    """The fleet's and the groups' raid holds and the requests they hold, for the banner."""
    cur = await conn.execute(SQL_RAID_HOLDS, {"cap": HELD_COUNT_CAP})
    row = await cur.fetchone()
    if row is None:  # no join_gate row: nothing is held
        return RaidHolds(None, 0, 0, [])
    fleet_until, groups_held, held = row
    groups: list[HeldGroup] = []
    if groups_held:
        cur = await conn.execute(SQL_HELD_GROUPS, {"n": RAID_BANNER_GROUPS})
        groups = [HeldGroup(*r) for r in await cur.fetchall()]
    return RaidHolds(fleet_until, int(groups_held), int(held), groups)


async def fetch_pool_stats(conn: AsyncConnection[Any]) -> list[PoolStats]:
    """Queue counts per pool: exact for pending and running, up to FAILED_COUNT_CAP + 1 for failed
    ("more than" the cap), per minute for finished jobs."""
    params = {"window": THROUGHPUT_WINDOW_SECONDS, "cap": FAILED_COUNT_CAP, "pools": list(POOLS)}
    cur = await conn.execute(SQL_POOL_STATS, params)
    acc: dict[str, dict[str, Any]] = {p: {} for p in POOLS}
    for pool, kind, count, due, lag in await cur.fetchall():
        fields = acc.setdefault(pool, {})
        if kind == "pending":
            fields.update(pending=count, due=due, lag_seconds=None if lag is None else float(lag))
        elif kind == "running":
            fields["running"] = count
        elif kind == "failed":
            fields["failed"] = count
        elif kind == "finished:done":
            fields["done_last_minute"] = count
        elif kind == "finished:failed":
            fields["failed_last_minute"] = count
    return [PoolStats(pool=pool, **fields) for pool, fields in acc.items()]


class Search(NamedTuple):
    """A filter as query parameters: ILIKE `pattern` (wildcards in the text escaped), and `id` when
    the text is a whole number (matched exactly, through the primary key)."""

    pattern: str
    id: int | None

    @classmethod
    def of(cls, text: str) -> Search:
        needle = text.strip()
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        number = needle.lstrip("#")
        is_id = re.fullmatch(r"-?[0-9]{1,18}", number) is not None  # fits a bigint
        return cls(f"%{escaped}%", int(number) if is_id else None)


async def fetch_recent_jobs(
    conn: AsyncConnection[Any], per_status: int = RECENT_JOBS_PER_STATUS, search: str = ""
) -> list[JobRow]:
    """Running, next pending, latest failed and latest finished jobs: a bounded window, never the table.
    With `search`, the same window over the jobs that match it (see SQL_SEARCH_JOBS)."""
    if search.strip():
        s = Search.of(search)
        params = {"n": per_status, "scan": SEARCH_SCAN, "pattern": s.pattern, "id": s.id}
        cur = await conn.execute(SQL_SEARCH_JOBS, params)
    else:
        cur = await conn.execute(SQL_RECENT_JOBS, {"n": per_status})
    rows = {
        job_id: JobRow(job_id, pool, job_type, status, retries, max_retries, float(age or 0), err)
        for job_id, pool, job_type, status, retries, max_retries, age, err in await cur.fetchall()
    }  # by id: the id match may also be in its status's branch
    return list(rows.values())


async def fetch_job(conn: AsyncConnection[Any], job_id: int) -> JobDetail | None:
    cur = await conn.execute(SQL_JOB_DETAIL, (job_id,))
    row = await cur.fetchone()
    return None if row is None else JobDetail(*row)


async def fetch_workers(conn: AsyncConnection[Any]) -> list[WorkerRow]:
    cur = await conn.execute(SQL_WORKERS)
    return [
        WorkerRow(wid, bot, status, host, pid, float(age), done, failed, err)
        for wid, bot, status, host, pid, age, done, failed, err in await cur.fetchall()
    ]


async def fetch_join_requests(
    conn: AsyncConnection[Any], limit: int = RECENT_JOIN_REQUESTS, search: str = ""
) -> list[JoinRequestRow]:
    """The latest join requests; with `search`, the latest that match it by request, chat or user id,
    username, status, error or group title (among the newest SEARCH_SCAN)."""
    if search.strip():
        s = Search.of(search)
        params = {"n": limit, "scan": SEARCH_SCAN, "pattern": s.pattern, "id": s.id}
        cur = await conn.execute(SQL_SEARCH_JOIN_REQUESTS, params)
    else:
        cur = await conn.execute(SQL_JOIN_REQUESTS, (limit,))
    return [
        JoinRequestRow(rid, chat, title, uid, uname, status, err, req_at, float(age))
        for rid, chat, title, uid, uname, status, err, req_at, age in await cur.fetchall()
    ]


async def fetch_deliveries(
    conn: AsyncConnection[Any], broadcast_id: int, targeted: Iterable[int] = ()
) -> list[DeliveryRow]:
    """Per-group outcome of one broadcast. Targeted groups without a sent_messages row yet are
    'queued', so progress is complete from the moment the broadcast is created."""
    cur = await conn.execute(SQL_DELIVERIES, {"groups": list(targeted), "bid": broadcast_id})
    return [DeliveryRow(*row) for row in await cur.fetchall()]
