"""The `broadcasts` and `sent_messages` repository: creating a broadcast (the admin API, the CLI and
the TUI composer), its progress, and every statement of the sender that delivers it.

A broadcast row and the job that sends it commit together (in the caller's transaction), so a
broadcast is never stored without its job nor enqueued without its row. Targets are resolved again
by the sender when it starts; the count returned here is what the admin sees now.

The sender's statements (workers/group_sender.py tells the protocol) are one statement, one round
trip each, on an autocommit connection; those that also touch the group apply the rules of
`groups` (DELIVERED, DELIVERY_FAILED) and the liveness rule of `health` in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from . import debug_code, groups, health, queue
from .groups import targets as resolve_targets
from .message_validation import BroadcastRequest

SEND_JOB_TYPE = "tgms_send_to_groups"
# A sender job's work is resumable and each group is tried at most once, so a worker death costs at
# most one ambiguous group, never a copy. Every lease expiry still counts a retry (poison-job guard);
# with the default of 5, six worker deaths during one long broadcast would leave it running for
# ever with groups unsent. 50 keeps the bound while outliving any realistic run of crashes.
SENDER_MAX_RETRIES = 50
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "ambiguous", "skipped")

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
        targeted = await resolve_targets(conn, req.target, req.is_final)
    return broadcast_id, len(targeted)


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


# ---------------------------------------------------------------- the sender's statements


@dataclass(frozen=True)
class Broadcast:
    broadcast_id: int
    text: str | None
    photo_url: str | None
    caption: str | None
    parse_mode: str | None
    is_final: bool
    status: str
    send_at: datetime | None


SQL_START = """
UPDATE broadcasts SET status = 'running', started_at = COALESCE(started_at, now())
 WHERE broadcast_id = %(b)s AND status = 'pending' AND (send_at IS NULL OR send_at <= now())
RETURNING target, is_final
"""

SQL_INSERT_TARGETS = """
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status)
SELECT %(b)s, t.chat_id, t.code, 'pending' FROM unnest(%(ids)s::bigint[], %(codes)s::text[]) AS t(chat_id, code)
ON CONFLICT (broadcast_id, chat_id) DO NOTHING
"""

SQL_BROADCAST = """
SELECT broadcast_id, text, photo_url, caption, parse_mode, is_final, status, send_at
  FROM broadcasts WHERE broadcast_id = %(b)s
"""

SQL_LONGEST_CODE = """
SELECT debug_code FROM sent_messages WHERE broadcast_id = %(b)s ORDER BY length(debug_code) DESC LIMIT 1
"""

# A worker's reservation or intent holds while the worker is alive (health's rule), and a
# reservation no longer than a lease.
_HOLDER_GONE = f"NOT EXISTS (SELECT 1 FROM bot_health h WHERE h.worker_id = s.locked_by AND {health.alive('h')})"

# Reserve the next pending row nobody else holds: not reserved, or reserved by a worker that is gone
# or long ago. A reservation only says "waiting for my rate-limit turn"; it is not an intent to send,
# so a crash while reserved leaves the row pending for someone else. RETURNING brings what decides
# whether the row may still be sent.
SQL_RESERVE = f"""
WITH next AS (
    SELECT s.message_id FROM sent_messages s
     WHERE s.broadcast_id = %(b)s AND s.status = 'pending'
       AND (s.locked_by IS NULL OR s.updated_at < now() - make_interval(secs => %(stale)s) OR {_HOLDER_GONE})
     ORDER BY s.message_id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE sent_messages AS s SET locked_by = %(worker)s, updated_at = now()
  FROM next
 WHERE s.message_id = next.message_id
RETURNING s.message_id, s.chat_id, s.debug_code,
          (SELECT status FROM broadcasts WHERE broadcast_id = %(b)s) AS broadcast_status,
          (SELECT is_active FROM managed_groups WHERE group_id = s.chat_id) AS is_active,
          (SELECT final_message_allowed FROM managed_groups WHERE group_id = s.chat_id) AS final_allowed
"""

# The intent to send, committed (autocommit) before the call: only by the reserver, only from
# 'pending', only while the broadcast runs. Whatever happened while we waited, one sender wins.
SQL_MARK_SENDING = """
UPDATE sent_messages
   SET status = 'sending', attempts = attempts + 1, updated_at = now()
 WHERE message_id = %(id)s AND status = 'pending' AND locked_by = %(worker)s
   AND EXISTS (SELECT 1 FROM broadcasts WHERE broadcast_id = %(b)s AND status = 'running')
RETURNING chat_id
"""

SQL_RELEASE = """
UPDATE sent_messages SET locked_by = NULL
 WHERE message_id = %(id)s AND status = 'pending' AND locked_by = %(worker)s
"""

SQL_ATTEMPTS = "SELECT attempts FROM sent_messages WHERE message_id = %(id)s"

SQL_SKIP_ROW = """
UPDATE sent_messages SET status = 'skipped', error = %(error)s, updated_at = now()
 WHERE message_id = %(id)s AND status IN ('pending', 'sending')
"""

# Back to pending after a temporary error; 429 and migration are not attempts as far as the group
# is concerned (`counted` false).
SQL_REQUEUE = """
UPDATE sent_messages SET status = 'pending', locked_by = NULL, error = %(error)s,
       attempts = CASE WHEN %(counted)s THEN attempts ELSE GREATEST(0, attempts - 1) END, updated_at = now()
 WHERE message_id = %(id)s AND status = 'sending'
"""

# Also over 'ambiguous': a sibling's sweep may have given up on us, but we know it went out.
SQL_SENT = f"""
WITH m AS (
    UPDATE sent_messages
       SET status = 'sent', telegram_message_id = %(tm)s, sent_at = now(), error = NULL, updated_at = now()
     WHERE message_id = %(id)s
    RETURNING chat_id
)
UPDATE managed_groups SET {groups.DELIVERED} WHERE group_id = (SELECT chat_id FROM m)
"""

SQL_DELIVERY_FAILED = f"""
WITH m AS (
    UPDATE sent_messages SET status = 'failed', error = %(error)s, updated_at = now()
     WHERE message_id = %(id)s
    RETURNING chat_id
)
UPDATE managed_groups AS g SET {groups.DELIVERY_FAILED}
 WHERE g.group_id = (SELECT chat_id FROM m)
RETURNING g.consecutive_failures, g.is_active
"""

# An outcome that does not count against the group: failed (content, token), ambiguous.
SQL_OUTCOME = """
UPDATE sent_messages SET status = %(status)s, error = %(error)s, updated_at = now()
 WHERE message_id = %(id)s
"""

SQL_SKIP_REMAINING = """
UPDATE sent_messages SET status = 'skipped', error = %(error)s, updated_at = now()
 WHERE broadcast_id = %(b)s AND status = 'pending'
"""

SQL_STOP = """
UPDATE broadcasts SET status = %(status)s, error = %(error)s, finished_at = now()
 WHERE broadcast_id = %(b)s AND status IN ('pending', 'running')
"""

# 'sending' rows whose sender is gone: our own worker's rows no task of ours holds (a job that
# failed or was re-run), or rows of a worker that is not alive. A row just marked is left alone a
# moment: its worker may be so new that its first heartbeat is not in.
SQL_MARK_AMBIGUOUS = f"""
UPDATE sent_messages AS s
   SET status = 'ambiguous',
       error = 'worker ' || COALESCE(s.locked_by, '?') || ' stopped during the send: it may have been '
               || 'delivered, so it is not resent',
       updated_at = now()
 WHERE s.broadcast_id = %(b)s AND s.status = 'sending'
   AND CASE WHEN s.locked_by = %(me)s THEN NOT (s.message_id = ANY(%(mine)s))
            ELSE s.updated_at < now() - make_interval(secs => %(young)s) AND {_HOLDER_GONE} END
RETURNING s.message_id, s.chat_id
"""

SQL_REMAINING = """
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'sending')
  FROM sent_messages WHERE broadcast_id = %(b)s AND status IN ('pending', 'sending')
"""

SQL_FINISH = """
UPDATE broadcasts SET status = 'done', finished_at = now()
 WHERE broadcast_id = %(b)s AND status = 'running'
RETURNING broadcast_id
"""


async def start(conn: AsyncConnection[Any], broadcast_id: int) -> list[int] | None:
    """Flip a due broadcast pending → running, resolve its targets now and give each a pending row
    with its debug code; the target ids, or None when this call did not start it."""
    cur = await conn.execute(SQL_START, {"b": broadcast_id})
    row = await cur.fetchone()
    if row is None:
        return None
    ids = await resolve_targets(conn, row[0] or {"kind": "all"}, bool(row[1]))
    await insert_targets(conn, broadcast_id, ids)
    return ids


async def insert_targets(conn: AsyncConnection[Any], broadcast_id: int, group_ids: list[int]) -> None:
    """One pending row per group; a second call (a concurrent starter) adds nothing."""
    codes = [debug_code.make(broadcast_id, n) for n in range(1, len(group_ids) + 1)]
    await conn.execute(SQL_INSERT_TARGETS, {"b": broadcast_id, "ids": group_ids, "codes": codes})


async def load(conn: AsyncConnection[Any], broadcast_id: int) -> Broadcast | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(SQL_BROADCAST, {"b": broadcast_id})
    row = await cur.fetchone()
    return None if row is None else Broadcast(**row)


async def _value(conn: AsyncConnection[Any], sql: str, params: dict[str, Any]) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    return None if row is None else row[0]


async def longest_code(conn: AsyncConnection[Any], broadcast_id: int) -> str | None:
    return await _value(conn, SQL_LONGEST_CODE, {"b": broadcast_id})


async def attempts(conn: AsyncConnection[Any], message_id: int) -> int | None:
    return await _value(conn, SQL_ATTEMPTS, {"id": message_id})


async def reserve(conn: AsyncConnection[Any], broadcast_id: int, worker_id: str, stale: float) -> dict[str, Any] | None:
    """Reserve the next pending row: message_id, chat_id, debug_code, broadcast_status, is_active
    (None: the group is no longer managed), final_allowed."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(SQL_RESERVE, {"b": broadcast_id, "worker": worker_id, "stale": stale})
    return await cur.fetchone()


async def mark_sending(conn: AsyncConnection[Any], broadcast_id: int, message_id: int, worker_id: str) -> int | None:
    """Record the intent to send; the chat id, or None when the row is no longer ours to send."""
    chat_id = await _value(conn, SQL_MARK_SENDING, {"b": broadcast_id, "id": message_id, "worker": worker_id})
    return None if chat_id is None else int(chat_id)


async def release(conn: AsyncConnection[Any], message_id: int, worker_id: str) -> None:
    await conn.execute(SQL_RELEASE, {"id": message_id, "worker": worker_id})


async def skip(conn: AsyncConnection[Any], message_id: int, error: str) -> None:
    await conn.execute(SQL_SKIP_ROW, {"id": message_id, "error": error})


async def requeue(conn: AsyncConnection[Any], message_id: int, error: str | None, *, counted: bool = True) -> None:
    await conn.execute(SQL_REQUEUE, {"id": message_id, "error": error, "counted": counted})


async def mark_sent(conn: AsyncConnection[Any], message_id: int, telegram_message_id: int | None) -> None:
    await conn.execute(SQL_SENT, {"id": message_id, "tm": telegram_message_id})


async def delivery_failed(
    conn: AsyncConnection[Any], message_id: int, error: str, max_failures: int
) -> tuple[int, bool] | None:
    """The row failed and the failure counts against its group; (consecutive_failures, is_active)."""
    reason = groups.REASON_FAILURES.format(max=max_failures, error=error)
    params = {"id": message_id, "error": error, "max": max_failures, "reason": reason}
    cur = await conn.execute(SQL_DELIVERY_FAILED, params)
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


async def record_outcome(conn: AsyncConnection[Any], message_id: int, status: str, error: str) -> None:
    """'failed' or 'ambiguous' without counting against the group."""
    await conn.execute(SQL_OUTCOME, {"id": message_id, "status": status, "error": error})


async def skip_remaining(conn: AsyncConnection[Any], broadcast_id: int, error: str) -> None:
    await conn.execute(SQL_SKIP_REMAINING, {"b": broadcast_id, "error": error})


async def stop(conn: AsyncConnection[Any], broadcast_id: int, status: str, error: str) -> None:
    """End a pending or running broadcast as `status` and skip its pending rows (run it in a transaction)."""
    await conn.execute(SQL_STOP, {"b": broadcast_id, "status": status, "error": error})
    await skip_remaining(conn, broadcast_id, f"broadcast {status}: {error}")


async def mark_ambiguous(
    conn: AsyncConnection[Any], broadcast_id: int, worker_id: str, mine: list[int], stale: float
) -> list[tuple[int, int]]:
    """'sending' rows whose sender is gone become 'ambiguous'; (message_id, chat_id) of each."""
    params = {"b": broadcast_id, "me": worker_id, "mine": mine, "stale": stale, "young": min(5.0, stale)}
    cur = await conn.execute(SQL_MARK_AMBIGUOUS, params)
    return [(int(m), int(c)) for m, c in await cur.fetchall()]


async def remaining(conn: AsyncConnection[Any], broadcast_id: int) -> tuple[int, int]:
    """(pending, sending) rows of the broadcast."""
    cur = await conn.execute(SQL_REMAINING, {"b": broadcast_id})
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def finish(conn: AsyncConnection[Any], broadcast_id: int) -> bool:
    """Mark a running broadcast done; True for the one caller that did."""
    return await _value(conn, SQL_FINISH, {"b": broadcast_id}) is not None
