"""Broadcast creation and progress, shared by the admin API, the CLI and the TUI composer.

A broadcast row and the job that sends it commit together (in the caller's transaction), so a
broadcast is never stored without its job nor enqueued without its row. Targets are resolved again
by the broadcast worker when it starts; the count returned here is what the admin sees now.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from . import queue
from .message_validation import BroadcastRequest

SEND_JOB_TYPE = "tgms_send_to_groups"
# A sender job's work is resumable and each group is tried at most once, so a worker death costs at
# most one ambiguous group, never a copy. Every lease expiry still counts a retry (poison-job guard);
# with the default of 5, six worker deaths during one long broadcast would leave it running for
# ever with groups unsent. 50 keeps the bound while outliving any realistic run of crashes.
SENDER_MAX_RETRIES = 50
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "ambiguous", "skipped")

# A final broadcast (the last message before a group is let go) also reaches inactive groups
# whose owner allowed it (the seed's final_message_allowed).
SQL_TARGETS = """
SELECT group_id FROM managed_groups
 WHERE (is_active OR (%(final)s AND final_message_allowed))
   AND (%(kind)s = 'all'
        OR (%(kind)s = 'phase' AND phase = %(phase)s)
        OR (%(kind)s = 'groups' AND group_id = ANY(%(group_ids)s)))
 ORDER BY group_id
"""

SQL_INSERT_BROADCAST = """
INSERT INTO broadcasts (text, photo_url, caption, parse_mode, target, is_final, send_at, created_by)
VALUES (%(text)s, %(photo_url)s, %(caption)s, %(parse_mode)s, %(target)s, %(is_final)s, %(send_at)s,
        %(created_by)s)
RETURNING broadcast_id
"""

SQL_SET_JOB = "UPDATE broadcasts SET job_id = %s WHERE broadcast_id = %s"

SQL_PROGRESS = """
SELECT b.status, b.error, b.created_at, b.started_at, b.finished_at, b.send_at,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
          FROM (SELECT status, count(*) AS n FROM sent_messages
                 WHERE broadcast_id = b.broadcast_id GROUP BY status) AS s)
  FROM broadcasts AS b
 WHERE b.broadcast_id = %s
"""


async def resolve_targets(conn: AsyncConnection[Any], target: dict[str, Any], is_final: bool) -> list[int]:
    """Group ids a broadcast with this stored `target` reaches now, in a stable order."""
    kind = target.get("kind", "all")
    if kind not in ("all", "phase", "groups"):
        raise ValueError(f"unknown broadcast target kind {kind!r}")
    cur = await conn.execute(
        SQL_TARGETS,
        {
            "final": bool(is_final),
            "kind": kind,
            "phase": target.get("phase"),
            "group_ids": [int(g) for g in target.get("group_ids", [])],
        },
    )
    return [int(row[0]) for row in await cur.fetchall()]


async def create_broadcast(conn: AsyncConnection[Any], req: BroadcastRequest, created_by: str) -> tuple[int, int]:
    """Store the broadcast and enqueue its `tgms_send_to_groups` job (run at `send_at`) in one
    transaction (a savepoint when the caller already has one). Returns (broadcast_id, groups now)."""
    async with conn.transaction():
        cur = await conn.execute(
            SQL_INSERT_BROADCAST,
            {
                "text": req.text,
                "photo_url": req.photo_url,
                "caption": req.caption,
                "parse_mode": req.parse_mode,
                "target": Jsonb(req.target),
                "is_final": req.is_final,
                "send_at": req.send_at,
                "created_by": created_by,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        broadcast_id = int(row[0])
        job_id = await queue.enqueue(
            conn, SEND_JOB_TYPE, {"broadcast_id": broadcast_id}, run_at=req.send_at, max_retries=SENDER_MAX_RETRIES
        )
        await conn.execute(SQL_SET_JOB, (job_id, broadcast_id))
        groups = await resolve_targets(conn, req.target, req.is_final)
    return broadcast_id, len(groups)


async def broadcast_progress(conn: AsyncConnection[Any], broadcast_id: int) -> dict[str, Any]:
    """The broadcast's status and its per-group message counts by status (every status present,
    zero when none), plus `total`. LookupError when there is no such broadcast."""
    cur = await conn.execute(SQL_PROGRESS, (broadcast_id,))
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no broadcast {broadcast_id}")
    status, error, created_at, started_at, finished_at, send_at, counts = row
    progress: dict[str, Any] = {
        "broadcast_id": broadcast_id,
        "status": status,
        "error": error,
        "created_at": created_at,
        "send_at": send_at,
        "started_at": started_at,
        "finished_at": finished_at,
    }
    for name in MESSAGE_STATUSES:
        progress[name] = int(counts.get(name, 0))
    progress["total"] = sum(int(n) for n in counts.values())
    return progress
