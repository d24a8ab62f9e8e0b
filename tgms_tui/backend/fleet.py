"""Whole-fleet counts across every table: what `tgms demo` watches while it runs and prints when it
ends. A read model like dashboard.py, but synchronous (the demo's supervisor is not async) and
unbounded (a demo database is small)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

SQL_BUSY = """
SELECT (SELECT count(*) FROM jobs
         WHERE job_type = ANY(%(types)s)
           AND (status = 'running' OR (status = 'pending' AND run_at < now() + interval '5 seconds')))
     + (SELECT count(*) FROM broadcasts WHERE status IN ('pending', 'running'))
"""

SQL_PROGRESS = """
SELECT (SELECT count(*) FROM join_requests WHERE status = 'approved'),
       (SELECT count(*) FROM broadcasts),
       (SELECT count(*) FROM sent_messages WHERE status = 'sent'),
       (SELECT count(*) FROM managed_groups WHERE NOT is_active),
       (SELECT count(*) FROM jobs WHERE status = 'pending'),
       (SELECT count(*) FROM jobs WHERE status = 'done'),
       (SELECT coalesce(sum(member_count), 0) FROM managed_groups WHERE is_active)
"""

SQL_ACTIVE_AMONG = "SELECT count(*) FROM managed_groups WHERE group_id = ANY(%s) AND is_active"

SQL_GROUPS = """
SELECT count(*), count(*) FILTER (WHERE is_active), coalesce(sum(member_count), 0),
       (SELECT count(*) FROM member_count_history)
  FROM managed_groups
"""

SQL_DEACTIVATED = """
SELECT group_id, title, deactivated_reason, consecutive_failures FROM managed_groups
 WHERE NOT is_active ORDER BY deactivated_at NULLS LAST, group_id
"""

SQL_WORKERS = "SELECT bot_name, status, pid, jobs_done, jobs_failed, last_error FROM bot_health ORDER BY bot_name"

SQL_COUNTS = {
    "join_requests": "SELECT status, count(*) FROM join_requests GROUP BY 1",
    "broadcasts": "SELECT status, count(*) FROM broadcasts GROUP BY 1",
    "sent_messages": "SELECT status, count(*) FROM sent_messages GROUP BY 1",
    "failed_sends_by_group": "SELECT chat_id, count(*) FROM sent_messages WHERE status = 'failed' GROUP BY 1",
    "jobs_by_status": "SELECT status, count(*) FROM jobs GROUP BY 1",
}
SQL_JOBS = "SELECT job_type, status, count(*) FROM jobs GROUP BY 1, 2"
SQL_GROUP_IDS = "SELECT group_id FROM managed_groups ORDER BY 1"

Conn = psycopg.Connection[Any]


def _one(conn: Conn, sql: str, params: Any = None) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None  # aggregates always yield a row
    return tuple(row)


def busy(conn: Conn, job_types: Iterable[str]) -> int:
    """Jobs of `job_types` and broadcasts still under way or due within seconds (0 = quiet)."""
    return int(_one(conn, SQL_BUSY, {"types": list(job_types)})[0])


def active_among(conn: Conn, group_ids: Iterable[int]) -> int:
    """How many of these groups are registered and active."""
    return int(_one(conn, SQL_ACTIVE_AMONG, (list(group_ids),))[0])


def progress(conn: Conn) -> tuple[int, ...]:
    """(approved join requests, broadcasts, messages sent, inactive groups, pending jobs, done jobs,
    members of active groups)."""
    return tuple(int(n) for n in _one(conn, SQL_PROGRESS))


def snapshot(conn: Conn) -> dict[str, Any]:
    """Everything the demo summary reports from the database side."""
    jobs: dict[str, dict[str, int]] = {}
    for job_type, status, n in conn.execute(SQL_JOBS):
        jobs.setdefault(job_type, {})[status] = int(n)
    total, active, members, records = _one(conn, SQL_GROUPS)
    keys = ("group_id", "title", "reason", "consecutive_failures")
    worker_keys = ("bot_name", "status", "pid", "jobs_done", "jobs_failed", "last_error")
    return {
        **{name: {str(k): int(v) for k, v in conn.execute(sql)} for name, sql in SQL_COUNTS.items()},
        "jobs": jobs,
        "groups": {
            "total": int(total),
            "active": int(active),
            "members": int(members),
            "member_count_records": int(records),
        },
        "group_ids": [int(r[0]) for r in conn.execute(SQL_GROUP_IDS)],
        "deactivated": [dict(zip(keys, r, strict=True)) for r in conn.execute(SQL_DEACTIVATED)],
        "workers": [dict(zip(worker_keys, r, strict=True)) for r in conn.execute(SQL_WORKERS)],
    }
