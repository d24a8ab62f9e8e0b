"""The `bot_health` repository: one row per worker process, written at each heartbeat.

The one liveness rule: a worker is alive while its row is not 'stopped' and its heartbeat is younger
than a lease. A 'stopping' worker is alive (it still records the calls it has in flight); a worker
without a recent heartbeat is gone, whatever its row says, and what it held may be taken over.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection


def alive(row: str, stale: str = "%(stale)s") -> str:
    """SQL condition: the worker of bot_health row `row` is alive (`stale`: seconds of a lease)."""
    return f"{row}.status <> 'stopped' AND {row}.updated_at > now() - make_interval(secs => {stale})"


SQL_UPSERT = """
INSERT INTO bot_health (worker_id, bot_name, status, last_activity, updated_at, pid, host, jobs_done,
                        jobs_failed, last_error)
VALUES (%(worker_id)s, %(bot_name)s, %(status)s, to_timestamp(%(last_activity)s), now(), %(pid)s, %(host)s,
        %(done)s, %(failed)s, %(last_error)s)
ON CONFLICT (worker_id) DO UPDATE
   SET status = EXCLUDED.status, last_activity = EXCLUDED.last_activity, updated_at = now(),
       jobs_done = EXCLUDED.jobs_done, jobs_failed = EXCLUDED.jobs_failed, last_error = EXCLUDED.last_error
"""

# Written by the watchdog thread while the worker's event loop is blocked (a plain connection of its
# own). updated_at is left alone: the heartbeat's age keeps saying the worker is not doing its work. A
# worker blocked before its first heartbeat gets its row here, dated from the stall's start.
SQL_RECORD_STALL = """
INSERT INTO bot_health (worker_id, bot_name, status, updated_at, pid, host, last_error, loop_stalled_at,
                        loop_stall_seconds)
VALUES (%(worker_id)s, %(bot_name)s, 'stalled', now() - make_interval(secs => %(seconds)s), %(pid)s, %(host)s,
        %(detail)s, now() - make_interval(secs => %(seconds)s), %(seconds)s)
ON CONFLICT (worker_id) DO UPDATE
   SET status = 'stalled', last_error = EXCLUDED.last_error, loop_stall_seconds = EXCLUDED.loop_stall_seconds,
       loop_stalled_at = EXCLUDED.loop_stalled_at
"""

SQL_LIVE_WORKERS = f"SELECT count(*) FROM bot_health AS h WHERE h.bot_name = %(bot)s AND {alive('h')}"


async def upsert(conn: AsyncConnection[Any], **row: Any) -> None:
    """Record a heartbeat: worker_id, bot_name, status, last_activity (epoch seconds), pid, host,
    done, failed, last_error."""
    await conn.execute(SQL_UPSERT, row)


async def live_workers(conn: AsyncConnection[Any], bot_name: str, stale_seconds: float) -> int:
    cur = await conn.execute(SQL_LIVE_WORKERS, {"bot": bot_name, "stale": stale_seconds})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def record_stall(conn: psycopg.Connection[Any], seconds: float, detail: str, **worker: Any) -> None:
    """The worker's event loop has been blocked for `seconds` (synchronous: the loop cannot run).
    `worker`: worker_id, bot_name, pid, host."""
    conn.execute(SQL_RECORD_STALL, {"seconds": seconds, "detail": detail[:1000], **worker})
