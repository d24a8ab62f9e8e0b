"""The `broadcasts` and `sent_messages` repository: creating a broadcast (the admin API, the CLI and
the TUI composer), reading it back (the Broadcasts screen, `tgms broadcast list|show`, GET
/api/tgms/broadcasts), the actions on it (cancel, edit while scheduled) and every statement of the
sender that delivers it.

A broadcast row and the job that sends it commit together (in the caller's transaction), so a
broadcast is never stored without its job nor enqueued without its row. What the sender would refuse
is refused here first (`check_submission`, inside the insert's transaction, once the id that shapes
the debug codes is known): a broadcast is accepted only if every copy it can send goes through.
Targets are resolved again by the sender when it starts; the count returned here is what the admin
sees now. A broadcast reaching a final status raises broadcast.finished (an event webhook, with its
copies counted per status), written by a trigger in the same transaction (hooks.py).

The sender's statements (workers/group_sender.py tells the protocol) are one statement, one round
trip each, on an autocommit connection; those that also touch the group apply the rules of
`groups` (DELIVERED, DELIVERY_FAILED) and the liveness rule of `health` in the same statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from . import ab_assignment, broadcast_photos, debug_code, groups, health, queue
from .dashboard import DeliveryRow
from .groups import targets as resolve_targets
from .message_validation import BroadcastRequest, ValidationError, validate_broadcast

SEND_JOB_TYPE = "tgms_send_to_groups"
# A sender job's work is resumable and each group is tried at most once, so a worker death costs at
# most one ambiguous group, never a copy. Every lease expiry still counts a retry (poison-job guard);
# with the default of 5, six worker deaths during one long broadcast would leave it running for
# ever with groups unsent. 50 keeps the bound while outliving any realistic run of crashes.
SENDER_MAX_RETRIES = 50
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "ambiguous", "skipped")
FINISHED = ("done", "stopped", "failed", "cancelled")
# A broadcast to "all" or a phase gets its targets when it starts, so the fleet may have grown by then:
# its content is checked with the code of group number 99,999 (or the count now, if larger). That
# costs at most a few characters over the exact code and keeps "accepted" meaning "will be sent".
ORDINAL_BOUND = 99_999
LIST_LIMIT = 50
MAX_LIST_LIMIT = 500

SQL_INSERT_BROADCAST = """
INSERT INTO broadcasts (text, photo_url, caption, parse_mode, target, is_final, send_at, created_by, paid)
VALUES (%(text)s, %(photo_url)s, %(caption)s, %(parse_mode)s, %(target)s, %(is_final)s, %(send_at)s,
        %(created_by)s, %(paid)s)
RETURNING broadcast_id
"""

SQL_SET_JOB = "UPDATE broadcasts SET job_id = %s WHERE broadcast_id = %s"

# The id the next broadcast will most likely get (the composer's check before the real one).
SQL_NEXT_ID = """
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM broadcasts_broadcast_id_seq
"""

SQL_LISTED_GROUPS = """
SELECT group_id, is_active, final_message_allowed FROM managed_groups WHERE group_id = ANY(%s)
"""

SQL_PROGRESS = """
SELECT b.status, b.error, b.created_at, b.started_at, b.finished_at, b.send_at,
       (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
          FROM (SELECT status, count(*) AS n FROM sent_messages
                 WHERE broadcast_id = b.broadcast_id GROUP BY status) AS s)
  FROM broadcasts AS b
 WHERE b.broadcast_id = %s
"""


class BroadcastNotFound(LookupError):
    """No broadcast with this id."""


class BroadcastStateError(Exception):
    """The action does not apply to the broadcast in its current state (e.g. cancelling a finished one)."""


def ordinal_bound(target: Mapping[str, Any], groups_now: int) -> int:
    """The most groups (so the longest debug code) a broadcast with this target can get: a list of
    groups never grows; "all" and a phase may, until the broadcast starts."""
    if target.get("kind") == "groups":
        return max(1, len(target.get("group_ids", [])))
    return max(groups_now, ORDINAL_BOUND)


async def check_targets(conn: AsyncConnection[Any], target: Mapping[str, Any], is_final: bool) -> list[int]:
    """The groups the target reaches now; ValidationError(field="target") when it reaches none, or
    when it lists a group that is not managed or that this broadcast would skip (inactive, unless the
    broadcast is final and the group allows a final message)."""
    reached = await resolve_targets(conn, dict(target), is_final)
    if target.get("kind") == "groups":
        listed = [int(g) for g in target.get("group_ids", [])]
        if len(reached) < len(listed):
            cur = await conn.execute(SQL_LISTED_GROUPS, (listed,))
            known = {int(gid): (bool(active), bool(final_ok)) for gid, active, final_ok in await cur.fetchall()}
            unknown = [g for g in listed if g not in known]
            if unknown:
                raise ValidationError("target", f"not managed groups: {_ids(unknown)}")
            inactive = [g for g in listed if g not in set(reached)]
            why = (
                "inactive and not allowing a final message"
                if is_final
                else "inactive (only a final broadcast reaches inactive groups, those allowing one)"
            )
            raise ValidationError("target", f"groups {why}: {_ids(inactive)}")
    if not reached:
        where = "no active group" if not is_final else "no active group nor inactive group allowing a final message"
        scope = f" in phase {target.get('phase')}" if target.get("kind") == "phase" else ""
        raise ValidationError("target", f"reaches no group now: {where}{scope}")
    return reached


def _ids(ids: list[int], show: int = 20) -> str:
    shown = ", ".join(str(g) for g in ids[:show])
    return shown + (f" and {len(ids) - show} more" if len(ids) > show else "")


async def check_submission(conn: AsyncConnection[Any], req: BroadcastRequest, broadcast_id: int) -> list[int]:
    """Everything about `req` that needs the database, as the sender will judge it: the target
    (`check_targets`) and the content with the longest debug code this broadcast can get. Returns the
    groups reached now; raises ValidationError naming the field."""
    reached = await check_targets(conn, req.target, req.is_final)
    await broadcast_photos.check_ref(conn, req.photo_url)
    code = debug_code.longest(broadcast_id, ordinal_bound(req.target, len(reached)))
    refused = debug_code.refusal(req.text, req.photo_url, req.caption, req.parse_mode, code)
    if refused is not None:
        raise refused
    return reached


async def next_id(conn: AsyncConnection[Any]) -> int:
    """The id the next broadcast will most likely get (ids are never reused; a concurrent insert may
    take it, which `create_broadcast` checks again exactly)."""
    cur = await conn.execute(SQL_NEXT_ID)
    row = await cur.fetchone()
    return int(row[0]) if row else 1


async def create_broadcast(conn: AsyncConnection[Any], req: BroadcastRequest, created_by: str) -> tuple[int, int]:
    """Store the broadcast and enqueue its `tgms_send_to_groups` job (run at `send_at`) in one
    transaction (a savepoint when the caller already has one). Returns (broadcast_id, groups now).

    The id is known only after the insert and shapes the debug codes, so the final check runs here
    and a refusal (ValidationError naming the field) rolls the insert back: nothing is stored."""
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
                "paid": req.paid,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        broadcast_id = int(row[0])
        targeted = await check_submission(conn, req, broadcast_id)
        job_id = await queue.enqueue(
            conn, SEND_JOB_TYPE, {"broadcast_id": broadcast_id}, run_at=req.send_at, max_retries=SENDER_MAX_RETRIES
        )
        await conn.execute(SQL_SET_JOB, (job_id, broadcast_id))
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


# ---------------------------------------------------------------- broadcasts as objects


class BroadcastSummary(NamedTuple):
    """One broadcast as an operator sees it: what, to whom, by whom, when, and how it went so far.
    `pending` counts deliveries not finished yet (pending and sending rows)."""

    broadcast_id: int
    status: str
    error: str | None
    text: str | None
    photo_url: str | None
    caption: str | None
    parse_mode: str | None
    target: dict[str, Any]
    is_final: bool
    send_at: datetime | None
    created_by: str | None
    cancelled_by: str | None
    job_id: int | None
    created_at: datetime
    edited_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    pending: int
    sent: int
    failed: int
    ambiguous: int
    skipped: int
    paid: bool = False

    @property
    def scheduled(self) -> bool:
        """Not started and due later: it can still be edited or cancelled without a trace in any group."""
        return (
            self.status == "pending" and self.send_at is not None and self.send_at > datetime.now(self.send_at.tzinfo)
        )

    @property
    def body(self) -> str:
        return (self.text if self.photo_url is None else self.caption) or ""


_SUMMARY_COLUMNS = """b.broadcast_id, b.status, b.error, b.text, b.photo_url, b.caption, b.parse_mode, b.target,
       b.is_final, b.send_at, b.created_by, b.cancelled_by, b.job_id, b.created_at, b.edited_at,
       b.started_at, b.finished_at,
       COALESCE(c.total, 0), COALESCE(c.pending, 0), COALESCE(c.sent, 0), COALESCE(c.failed, 0),
       COALESCE(c.ambiguous, 0), COALESCE(c.skipped, 0), b.paid"""

_COUNTS = """LEFT JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE s.status IN ('pending', 'sending')) AS pending,
           count(*) FILTER (WHERE s.status = 'sent') AS sent,
           count(*) FILTER (WHERE s.status = 'failed') AS failed,
           count(*) FILTER (WHERE s.status = 'ambiguous') AS ambiguous,
           count(*) FILTER (WHERE s.status = 'skipped') AS skipped
      FROM sent_messages AS s WHERE s.broadcast_id = b.broadcast_id
) AS c ON true"""

SQL_LIST = f"""
SELECT {_SUMMARY_COLUMNS}
  FROM (SELECT * FROM broadcasts
         WHERE %(before)s::bigint IS NULL OR broadcast_id < %(before)s
         ORDER BY broadcast_id DESC LIMIT %(limit)s) AS b
  {_COUNTS}
 ORDER BY b.broadcast_id DESC
"""

SQL_GET = f"SELECT {_SUMMARY_COLUMNS} FROM broadcasts AS b {_COUNTS} WHERE b.broadcast_id = %(b)s"

# The broadcast behind each sender job (the first job and its helpers carry broadcast_id).
SQL_FOR_JOBS = f"""
SELECT j.job_id, {_SUMMARY_COLUMNS}
  FROM jobs AS j
  JOIN broadcasts AS b
    ON b.broadcast_id = CASE WHEN j.payload->>'broadcast_id' ~ '^[0-9]{{1,18}}$'
                             THEN (j.payload->>'broadcast_id')::bigint END
  {_COUNTS}
 WHERE j.job_id = ANY(%(jobs)s) AND j.job_type = %(type)s
"""

SQL_DELIVERIES = """
SELECT s.chat_id, g.title, s.status, s.debug_code, s.telegram_message_id, s.error, s.attempts, s.sent_at
  FROM sent_messages AS s LEFT JOIN managed_groups AS g ON g.group_id = s.chat_id
 WHERE s.broadcast_id = %(b)s
 ORDER BY s.message_id
"""

SQL_LOCK_BROADCAST = "SELECT status, job_id FROM broadcasts WHERE broadcast_id = %(b)s FOR UPDATE"

SQL_CANCELLED_BY = "UPDATE broadcasts SET cancelled_by = %(by)s WHERE broadcast_id = %(b)s"

SQL_EDIT = """
UPDATE broadcasts SET text = %(text)s, caption = %(caption)s, parse_mode = %(parse_mode)s,
       send_at = %(send_at)s, edited_at = now()
 WHERE broadcast_id = %(b)s AND status = 'pending'
"""


def _summary(row: Iterable[Any]) -> BroadcastSummary:
    values = list(row)
    values[7] = values[7] or {"kind": "all"}
    for i in range(17, 23):
        values[i] = int(values[i])
    return BroadcastSummary(*values)


async def list_broadcasts(
    conn: AsyncConnection[Any], *, limit: int = LIST_LIMIT, before: int | None = None
) -> list[BroadcastSummary]:
    """The newest broadcasts first, `limit` of them with an id below `before` (keyset pagination:
    stable while new broadcasts arrive)."""
    limit = max(1, min(int(limit), MAX_LIST_LIMIT))
    cur = await conn.execute(SQL_LIST, {"limit": limit, "before": before})
    return [_summary(row) for row in await cur.fetchall()]


async def get_broadcast(conn: AsyncConnection[Any], broadcast_id: int) -> BroadcastSummary:
    cur = await conn.execute(SQL_GET, {"b": broadcast_id})
    row = await cur.fetchone()
    if row is None:
        raise BroadcastNotFound(f"no broadcast {broadcast_id}")
    return _summary(row)


async def for_jobs(conn: AsyncConnection[Any], job_ids: Iterable[int]) -> dict[int, BroadcastSummary]:
    """The broadcast each of these sender jobs works for, by job id (other jobs are left out)."""
    ids = list(job_ids)
    if not ids:
        return {}
    cur = await conn.execute(SQL_FOR_JOBS, {"jobs": ids, "type": SEND_JOB_TYPE})
    return {int(row[0]): _summary(row[1:]) for row in await cur.fetchall()}


def outcome(b: BroadcastSummary) -> tuple[str, str]:
    """How a broadcast went, as a short label and a severity ("ok", "warn", "bad", "busy", "idle"),
    the same words on every screen and in the shell. A broadcast that delivered nothing is never "ok"."""
    problems = [(b.failed, "failed"), (b.ambiguous, "ambiguous")]
    worst = next(((n, word) for n, word in problems if n), None)
    if b.status == "pending":
        return ("◷ scheduled", "idle") if b.scheduled else ("… pending", "idle")
    if b.status == "running":
        done = b.total - b.pending
        label = f"▶ sending {done}/{b.total}"
        return (label + f" ⚠ {worst[0]} {worst[1]}", "warn") if worst else (label, "busy")
    if b.status == "stopped":
        return "✗ stopped", "bad"
    if b.status == "failed":
        return "✗ FAILED", "bad"
    if b.status == "cancelled":
        return (f"– cancelled ({b.sent} sent)" if b.sent else "– cancelled"), "idle"
    if b.sent == 0:
        return "✗ sent none", "bad"
    if worst:
        return f"⚠ {worst[0]} {worst[1]}", "warn"
    return f"✓ {b.sent} sent", "ok"


async def deliveries(conn: AsyncConnection[Any], broadcast_id: int) -> list[DeliveryRow]:
    """Each group's delivery of a started broadcast, in the order the groups were numbered."""
    cur = await conn.execute(SQL_DELIVERIES, {"b": broadcast_id})
    return [DeliveryRow(*row) for row in await cur.fetchall()]


async def targets_now(conn: AsyncConnection[Any], b: BroadcastSummary) -> int:
    """How many groups a broadcast not started yet would reach if it started now."""
    return len(await resolve_targets(conn, b.target, b.is_final))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def summary_json(b: BroadcastSummary) -> dict[str, Any]:
    """A broadcast as the admin API and `tgms broadcast ... --json` show it."""
    label, severity = outcome(b)
    return {
        "broadcast_id": b.broadcast_id,
        "status": b.status,
        "outcome": label,
        "severity": severity,
        "error": b.error,
        "text": b.text,
        "photo_url": b.photo_url,
        "caption": b.caption,
        "parse_mode": b.parse_mode,
        "target": b.target,
        "final": b.is_final,
        "paid": b.paid,
        "send_at": _iso(b.send_at),
        "created_by": b.created_by,
        "cancelled_by": b.cancelled_by,
        "job_id": b.job_id,
        "created_at": _iso(b.created_at),
        "edited_at": _iso(b.edited_at),
        "started_at": _iso(b.started_at),
        "finished_at": _iso(b.finished_at),
        "counts": {
            "groups": b.total,
            "sent": b.sent,
            "failed": b.failed,
            "ambiguous": b.ambiguous,
            "pending": b.pending,
            "skipped": b.skipped,
        },
    }


def page_json(found: list[BroadcastSummary], limit: int) -> dict[str, Any]:
    """A page of the list; `next_before` is the `before` of the next page (None on the last one)."""
    full = len(found) >= max(1, min(int(limit), MAX_LIST_LIMIT))
    return {
        "broadcasts": [summary_json(b) for b in found],
        "next_before": found[-1].broadcast_id if found and full else None,
    }


def detail_json(b: BroadcastSummary, rows: Iterable[DeliveryRow], reach: int | None = None) -> dict[str, Any]:
    """A broadcast with its delivery to each group (`reach`: groups it would reach now, not started)."""
    body = summary_json(b)
    if reach is not None:
        body["groups_now"] = reach
    body["deliveries"] = [
        {
            "chat_id": d.chat_id,
            "title": d.title,
            "status": d.status,
            "debug_code": d.debug_code,
            "telegram_message_id": d.telegram_message_id,
            "error": d.error,
            "attempts": d.attempts,
            "sent_at": _iso(d.sent_at),
        }
        for d in rows
    ]
    return body


async def _lock(conn: AsyncConnection[Any], broadcast_id: int) -> tuple[str, int | None]:
    cur = await conn.execute(SQL_LOCK_BROADCAST, {"b": broadcast_id})
    row = await cur.fetchone()
    if row is None:
        raise BroadcastNotFound(f"no broadcast {broadcast_id}")
    return str(row[0]), row[1]


async def cancel(conn: AsyncConnection[Any], broadcast_id: int, by: str) -> BroadcastSummary:
    """Cancel a broadcast that has not finished. Not started (scheduled or waiting for a worker): it
    and its job are cancelled, nothing was sent. Running: every group not yet tried is skipped and the
    senders stop before their next group (they check the broadcast's status before each send); a send
    already under way is recorded as it ends (sent, failed or ambiguous), never undone.
    BroadcastStateError when it already finished; BroadcastNotFound."""
    async with conn.transaction():
        status, job_id = await _lock(conn, broadcast_id)
        if status in FINISHED:
            raise BroadcastStateError(f"broadcast {broadcast_id} is already {status}: nothing to cancel")
        await stop(conn, broadcast_id, "cancelled", f"cancelled by {by}")
        await conn.execute(SQL_CANCELLED_BY, {"b": broadcast_id, "by": by})
        if job_id is not None and status == "pending":
            await queue.cancel(conn, int(job_id))
    return await get_broadcast(conn, broadcast_id)


async def edit_scheduled(
    conn: AsyncConnection[Any], broadcast_id: int, changes: Mapping[str, Any], *, now: datetime | None = None
) -> BroadcastSummary:
    """Change the text (or caption), parse mode or send time of a broadcast that has not started,
    through the same checks as a new one (`validate_broadcast`, then `check_submission`); its job
    moves with `send_at`. BroadcastStateError once it started; ValidationError naming the field."""
    unknown = set(changes) - {"text", "caption", "parse_mode", "send_at"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "only text, caption, parse_mode and send_at can be edited")
    async with conn.transaction():
        status, job_id = await _lock(conn, broadcast_id)
        if status != "pending":
            raise BroadcastStateError(
                f"broadcast {broadcast_id} is {status}: only a broadcast not started yet can be edited"
            )
        current = await get_broadcast(conn, broadcast_id)
        if {"text", "caption"} & set(changes) and await ab_assignment.has_variants(conn, broadcast_id):
            field = "caption" if "caption" in changes else "text"
            raise ValidationError(field, "an A/B broadcast's text is in its variants: cancel it and send a new one")
        data: dict[str, Any] = {
            "parse_mode": current.parse_mode,
            "target": current.target,
            "final": current.is_final,
            "send_at": current.send_at,
        }
        if current.photo_url is not None:
            data.update(photo_url=current.photo_url, caption=current.caption)
        else:
            data["text"] = current.text
        data.update(changes)
        req = validate_broadcast(data, now=now)
        await check_submission(conn, req, broadcast_id)
        await conn.execute(
            SQL_EDIT,
            {
                "b": broadcast_id,
                "text": req.text,
                "caption": req.caption,
                "parse_mode": req.parse_mode,
                "send_at": req.send_at,
            },
        )
        if job_id is not None:
            await queue.reschedule(conn, int(job_id), req.send_at)
    return await get_broadcast(conn, broadcast_id)


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
    paid: bool = False  # allow_paid_broadcast on every copy, paced by the paid rate


SQL_START = """
UPDATE broadcasts SET status = 'running', started_at = COALESCE(started_at, now())
 WHERE broadcast_id = %(b)s AND status = 'pending' AND (send_at IS NULL OR send_at <= now())
RETURNING target, is_final
"""

# The ids go as a binary array and each row's code is made here from its position: at 100,000 groups
# that is 0.3 s less than sending text arrays of ids and codes.
SQL_INSERT_TARGETS = f"""
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status)
SELECT %(b)s, t.chat_id, {debug_code.sql_make("%(b)s", "t.n")}, 'pending'
  FROM unnest(%(ids)b::bigint[]) WITH ORDINALITY AS t(chat_id, n)
ON CONFLICT (broadcast_id, chat_id) DO NOTHING
"""

SQL_BROADCAST = """
SELECT broadcast_id, text, photo_url, caption, parse_mode, is_final, status, send_at, paid
  FROM broadcasts WHERE broadcast_id = %(b)s
"""

SQL_LONGEST_CODE = """
SELECT debug_code FROM sent_messages WHERE broadcast_id = %(b)s ORDER BY length(debug_code) DESC LIMIT 1
"""

# A worker's reservation or intent holds while the worker is alive (health's rule), and a
# reservation no longer than a lease.
_HOLDER_GONE = f"NOT EXISTS (SELECT 1 FROM bot_health h WHERE h.worker_id = s.locked_by AND {health.alive('h')})"

# Reserve the next `n` pending rows nobody else holds: not reserved, or reserved by a worker that is gone
# or long ago. A reservation only says "waiting for my rate-limit turn"; it is not an intent to send,
# so a crash while reserved leaves the row pending for someone else. RETURNING brings what decides
# whether the row may still be sent.
SQL_RESERVE = f"""
WITH next AS (
    SELECT s.message_id FROM sent_messages s
     WHERE s.broadcast_id = %(b)s AND s.status = 'pending'
       AND (s.locked_by IS NULL OR s.updated_at < now() - make_interval(secs => %(stale)s) OR {_HOLDER_GONE})
     ORDER BY s.message_id
     LIMIT %(n)s
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

# The intent to send a batch, committed (autocommit) before its calls: only by the reserver, only from
# 'pending', only while the broadcast runs. Whatever happened while we waited, one sender wins each row.
SQL_MARK_SENDING = """
UPDATE sent_messages
   SET status = 'sending', attempts = attempts + 1, updated_at = now()
 WHERE message_id = ANY(%(ids)s::bigint[]) AND broadcast_id = %(b)s AND status = 'pending' AND locked_by = %(worker)s
   AND EXISTS (SELECT 1 FROM broadcasts WHERE broadcast_id = %(b)s AND status = 'running')
RETURNING message_id, chat_id
"""

SQL_RELEASE = """
UPDATE sent_messages SET locked_by = NULL
 WHERE message_id = ANY(%(ids)s::bigint[]) AND status = 'pending' AND locked_by = %(worker)s
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

# A batch of copies that went out. Also over 'ambiguous': a sibling's sweep may have given up on us,
# but we know it went out. The groups are locked in id order, so batches of two broadcasts that share
# groups cannot deadlock.
SQL_SENT = f"""
WITH o AS (
    SELECT id, tm FROM unnest(%(ids)s::bigint[], %(tms)s::bigint[]) AS o(id, tm)
), m AS (
    UPDATE sent_messages AS s
       SET status = 'sent', telegram_message_id = o.tm, sent_at = now(), error = NULL, updated_at = now()
      FROM o
     WHERE s.message_id = o.id
    RETURNING s.chat_id
), g AS (
    SELECT group_id FROM managed_groups WHERE group_id IN (SELECT chat_id FROM m) ORDER BY group_id FOR UPDATE
)
UPDATE managed_groups SET {groups.DELIVERED} WHERE group_id IN (SELECT group_id FROM g)
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
    ids = await ab_assignment.hold_out(conn, broadcast_id, ids)
    await insert_targets(conn, broadcast_id, ids)
    await ab_assignment.assign(conn, broadcast_id)
    return ids


async def insert_targets(conn: AsyncConnection[Any], broadcast_id: int, group_ids: list[int]) -> None:
    """One pending row per group; a second call (a concurrent starter) adds nothing."""
    await conn.execute(SQL_INSERT_TARGETS, {"b": broadcast_id, "ids": group_ids})


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


async def reserve(
    conn: AsyncConnection[Any], broadcast_id: int, worker_id: str, stale: float, n: int
) -> list[dict[str, Any]]:
    """Reserve the next `n` pending rows, each: message_id, chat_id, debug_code, broadcast_status,
    is_active (None: the group is no longer managed), final_allowed."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(SQL_RESERVE, {"b": broadcast_id, "worker": worker_id, "stale": stale, "n": n})
    return sorted(await cur.fetchall(), key=lambda r: int(r["message_id"]))


async def mark_sending(
    conn: AsyncConnection[Any], broadcast_id: int, message_ids: list[int], worker_id: str
) -> dict[int, int]:
    """Record the intent to send these rows; {message_id: chat_id} of those still ours to send."""
    params = {"b": broadcast_id, "ids": message_ids, "worker": worker_id}
    cur = await conn.execute(SQL_MARK_SENDING, params)
    return {int(m): int(c) for m, c in await cur.fetchall()}


async def release(conn: AsyncConnection[Any], message_ids: list[int], worker_id: str) -> None:
    """Give reservations back (rows still pending and held by `worker_id`)."""
    await conn.execute(SQL_RELEASE, {"ids": message_ids, "worker": worker_id})


async def skip(conn: AsyncConnection[Any], message_id: int, error: str) -> None:
    await conn.execute(SQL_SKIP_ROW, {"id": message_id, "error": error})


async def requeue(conn: AsyncConnection[Any], message_id: int, error: str | None, *, counted: bool = True) -> None:
    await conn.execute(SQL_REQUEUE, {"id": message_id, "error": error, "counted": counted})


async def mark_sent(conn: AsyncConnection[Any], sent: list[tuple[int, int | None]]) -> None:
    """Record (message_id, telegram_message_id) copies as sent and their groups as reached, in one statement."""
    await conn.execute(SQL_SENT, {"ids": [m for m, _ in sent], "tms": [t for _, t in sent]})


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
