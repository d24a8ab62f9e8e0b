"""Follow-up actions on a broadcast that went out (or partly did): edit its copies, retract them,
pin or unpin them (`broadcast_followups`, one row per request, and `broadcast_followup_groups`, one per
copy).

The job (`tgms_broadcast_followup`, workers/followups.py) works like the sender: it records its intent
(`doing`) before each call and the outcome after; a `doing` row whose worker died is marked
`ambiguous` and never tried again, so no copy is edited or deleted twice. Copies are found through
`sent_messages`, whose chat ids follow a group's migration to a supergroup.

Rules an operator can rely on:
- an edit passes the checks of a new broadcast (`validate_broadcast`, then the debug code appended,
  `debug_code.refusal`, with the longest code the broadcast gave); the broadcast's own text changes
  too, so copies still to be sent go out edited;
- Telegram deletes a message for everyone only within 48 hours: older copies are reported `skipped`
  ("too old to delete") up front, never attempted;
- `delete_after` on a new broadcast schedules a retract that long after its send time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from . import ab_assignment, broadcast_variants, debug_code, health, queue
from .broadcasts import BroadcastNotFound, BroadcastStateError, get_broadcast
from .message_validation import ValidationError, validate_broadcast

JOB_TYPE = "tgms_broadcast_followup"
ACTIONS = ("edit", "retract", "pin", "unpin")
STATUSES = ("pending", "doing", "done", "failed", "skipped", "ambiguous")
DELETE_WINDOW = timedelta(hours=48)
TOO_OLD = "too old to delete: Telegram deletes a message for everyone only within 48 hours"
MOVED = (
    "the group moved to a supergroup after this copy was sent: the copy stays in the old group, where "
    "Telegram lets no bot change it any more"
)
MAX_DELETE_AFTER = timedelta(hours=47)
MAX_RETRIES = 50

SQL_INSERT = """
INSERT INTO broadcast_followups (broadcast_id, action, text, caption, parse_mode, silent, requested_by, run_at)
VALUES (%(b)s, %(action)s, %(text)s, %(caption)s, %(parse_mode)s, %(silent)s, %(by)s, COALESCE(%(run_at)s, now()))
RETURNING followup_id
"""
SQL_SET_JOB = "UPDATE broadcast_followups SET job_id = %(job)s WHERE followup_id = %(f)s"
SQL_LONGEST_CODE = """
SELECT debug_code FROM sent_messages WHERE broadcast_id = %(b)s ORDER BY length(debug_code) DESC LIMIT 1
"""
SQL_EDIT_BROADCAST = """
UPDATE broadcasts SET text = %(text)s, caption = %(caption)s, parse_mode = %(parse_mode)s, edited_at = now()
 WHERE broadcast_id = %(b)s
"""
SQL_SET_DELETE_AFTER = "UPDATE broadcasts SET delete_after = %(after)s WHERE broadcast_id = %(b)s"

SQL_LOAD = """
SELECT f.followup_id, f.broadcast_id, f.action, f.text, f.caption, f.parse_mode, f.silent,
       b.photo_url IS NOT NULL, k.rows
  FROM broadcast_followups f JOIN broadcasts b USING (broadcast_id)
  LEFT JOIN broadcast_buttons k ON k.broadcast_id = f.broadcast_id
 WHERE f.followup_id = %(f)s
"""

# The copies a follow-up concerns, added at each run (a partly sent broadcast gains copies; a rerun
# adds none twice). A retract reports copies past Telegram's 48 hours up front.
SQL_ADD_ROWS = """
INSERT INTO broadcast_followup_groups (followup_id, sent_message_id, status, error)
SELECT %(f)s, s.message_id,
       CASE WHEN %(action)s = 'retract' AND s.sent_at < now() - interval '48 hours' THEN 'skipped' ELSE 'pending' END,
       CASE WHEN %(action)s = 'retract' AND s.sent_at < now() - interval '48 hours' THEN %(too_old)s END
  FROM sent_messages s
 WHERE s.broadcast_id = %(b)s AND s.status IN ('sent', 'sending', 'pending')
ON CONFLICT DO NOTHING
"""

_HOLDER_GONE = f"NOT EXISTS (SELECT 1 FROM bot_health h WHERE h.worker_id = g.locked_by AND {health.alive('h')})"

# A call whose worker died between intent and record: outcome unknown, never repeated.
SQL_MARK_AMBIGUOUS = f"""
UPDATE broadcast_followup_groups AS g
   SET status = 'ambiguous', error = 'the worker stopped during the call: outcome unknown, not repeated',
       updated_at = now()
 WHERE g.followup_id = %(f)s AND g.status = 'doing'
   AND (g.locked_by = %(worker)s AND NOT (g.sent_message_id = ANY(%(inflight)s))
        OR g.locked_by <> %(worker)s AND {_HOLDER_GONE})
"""

# Copies that will never be delivered have nothing to follow up.
SQL_SKIP_UNDELIVERED = """
UPDATE broadcast_followup_groups AS g
   SET status = 'skipped', error = 'the copy was not delivered (' || s.status || ')', updated_at = now()
  FROM sent_messages s
 WHERE g.followup_id = %(f)s AND g.status = 'pending' AND s.message_id = g.sent_message_id
   AND s.status IN ('failed', 'skipped', 'ambiguous')
"""

# The intent, committed before the call: one worker wins each row, from 'pending' only. The chat id
# is read here, so a group that migrated is reached at its new id.
SQL_CLAIM = """
WITH next AS (
    SELECT g.sent_message_id FROM broadcast_followup_groups g JOIN sent_messages s ON s.message_id = g.sent_message_id
     WHERE g.followup_id = %(f)s AND g.status = 'pending' AND s.status = 'sent'
     ORDER BY g.sent_message_id
     LIMIT 1
       FOR UPDATE OF g SKIP LOCKED
)
UPDATE broadcast_followup_groups AS g
   SET status = 'doing', locked_by = %(worker)s, attempts = g.attempts + 1, updated_at = now()
  FROM next, sent_messages s
 WHERE g.followup_id = %(f)s AND g.sent_message_id = next.sent_message_id AND s.message_id = next.sent_message_id
RETURNING g.sent_message_id, s.chat_id, s.telegram_message_id, s.debug_code, s.sent_at, g.attempts,
          s.delivered_in_chat_id
"""

SQL_RECORD = """
UPDATE broadcast_followup_groups SET status = %(status)s, error = %(error)s, updated_at = now()
 WHERE followup_id = %(f)s AND sent_message_id = %(m)s AND status = 'doing' AND locked_by = %(worker)s
"""

# A 429, a migration, a temporary error: nothing happened in Telegram, try again later.
SQL_BACK_TO_PENDING = """
UPDATE broadcast_followup_groups SET status = 'pending', locked_by = NULL, updated_at = now()
 WHERE followup_id = %(f)s AND sent_message_id = %(m)s AND status = 'doing' AND locked_by = %(worker)s
"""

SQL_WAITING = """
SELECT count(*) FROM broadcast_followup_groups g JOIN sent_messages s ON s.message_id = g.sent_message_id
 WHERE g.followup_id = %(f)s AND (g.status = 'doing' OR (g.status = 'pending' AND s.status IN ('pending', 'sending')))
"""

SQL_COUNTS = """
SELECT f.followup_id, f.action, f.created_at, f.requested_by, g.status, count(g.status)
  FROM broadcast_followups f LEFT JOIN broadcast_followup_groups g USING (followup_id)
 WHERE f.broadcast_id = %(b)s
 GROUP BY f.followup_id, f.action, f.created_at, f.requested_by, g.status
 ORDER BY f.followup_id
"""

SQL_ROWS = """
SELECT g.sent_message_id, s.chat_id, g.status, g.error, g.attempts
  FROM broadcast_followup_groups g JOIN sent_messages s ON s.message_id = g.sent_message_id
 WHERE g.followup_id = %(f)s ORDER BY g.sent_message_id
"""

# Every follow-up's outcome in every group of one broadcast (the admin API's and the TUI's detail).
SQL_BROADCAST_ROWS = """
SELECT g.followup_id, s.chat_id, s.debug_code, g.status, g.error, g.attempts, g.updated_at
  FROM broadcast_followups f
  JOIN broadcast_followup_groups g USING (followup_id)
  JOIN sent_messages s ON s.message_id = g.sent_message_id
 WHERE f.broadcast_id = %(b)s
 ORDER BY g.followup_id, s.message_id
"""

# What a follow-up would touch now: the copies delivered (or on their way), and of those the ones
# past Telegram's 48 hours (a retract skips them).
SQL_REACH = """
SELECT count(*) FILTER (WHERE status IN ('sent', 'sending', 'pending')),
       count(*) FILTER (WHERE status = 'sent' AND sent_at < now() - interval '48 hours')
  FROM sent_messages WHERE broadcast_id = %(b)s
"""


@dataclass(frozen=True, slots=True)
class Followup:
    followup_id: int
    broadcast_id: int
    action: str
    text: str | None
    caption: str | None
    parse_mode: str | None
    silent: bool
    is_photo: bool
    buttons: list[list[dict[str, str]]] | None = None  # an edit sends them again, or they would go

    def message(self, code: str) -> str:
        """The edited copy's text or caption, ending with its own debug code as when it was sent."""
        return debug_code.appended(self.caption if self.is_photo else self.text, code, self.parse_mode)


@dataclass(frozen=True, slots=True)
class Claimed:
    sent_message_id: int
    chat_id: int
    telegram_message_id: int | None
    debug_code: str
    sent_at: datetime | None
    attempts: int
    delivered_in_chat_id: int | None = None  # set: the copy is in the basic group this one moved from


def parse_delete_after(value: Any) -> timedelta | None:
    """`delete_after`: `30m`, `24h`, `2d` or seconds; within Telegram's 48 hours (minus a margin for the
    retract itself to go through)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError("delete_after", "expected a duration such as 30m, 24h")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else None
        except ValueError:
            seconds = None
    if seconds is None:
        raise ValidationError("delete_after", f"{value!r} is not a duration such as 30m, 24h")
    after = timedelta(seconds=seconds)
    if after.total_seconds() < 60:
        raise ValidationError("delete_after", "must be at least a minute")
    if after > MAX_DELETE_AFTER:
        raise ValidationError(
            "delete_after", "must be at most 47h: Telegram deletes a message for everyone only within 48 hours"
        )
    return after


async def request(
    conn: AsyncConnection[Any],
    broadcast_id: int,
    action: str,
    by: str,
    *,
    changes: dict[str, Any] | None = None,
    silent: bool = False,
    run_at: datetime | None = None,
) -> int:
    """Record a follow-up and enqueue its job in one transaction; the follow-up's id. Refuses
    (BroadcastStateError) a broadcast that has not started: edit or cancel that one instead."""
    if action not in ACTIONS:
        raise ValidationError("action", f"must be one of {', '.join(ACTIONS)}")
    async with conn.transaction():
        current = await get_broadcast(conn, broadcast_id)
        if current.status == "pending" and run_at is None:
            raise BroadcastStateError(
                f"broadcast {broadcast_id} has not started: nothing was sent to {action} (edit or cancel it instead)"
            )
        text = caption = parse_mode = None
        if action == "edit":
            text, caption, parse_mode = await _checked_edit(conn, current, changes or {})
            await conn.execute(
                SQL_EDIT_BROADCAST, {"b": broadcast_id, "text": text, "caption": caption, "parse_mode": parse_mode}
            )
        cur = await conn.execute(
            SQL_INSERT,
            {
                "b": broadcast_id,
                "action": action,
                "text": text,
                "caption": caption,
                "parse_mode": parse_mode,
                "silent": silent,
                "by": by,
                "run_at": run_at,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        followup_id = int(row[0])
        job_id = await queue.enqueue(
            conn, JOB_TYPE, {"followup_id": followup_id}, run_at=run_at, max_retries=MAX_RETRIES
        )
        await conn.execute(SQL_SET_JOB, {"job": job_id, "f": followup_id})
    return followup_id


async def schedule_expiry(conn: AsyncConnection[Any], broadcast_id: int, after: timedelta, by: str) -> int:
    """`delete_after` of a new broadcast: a retract that long after its send time (now when unset)."""
    current = await get_broadcast(conn, broadcast_id)
    await conn.execute(SQL_SET_DELETE_AFTER, {"b": broadcast_id, "after": after})
    start = current.send_at or current.created_at
    return await request(conn, broadcast_id, "retract", by, run_at=start + after)


async def _checked_edit(conn: AsyncConnection[Any], current: Any, changes: dict[str, Any]) -> tuple[Any, Any, Any]:
    unknown = set(changes) - {"text", "caption", "parse_mode"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "a sent broadcast's text, caption and parse_mode can be edited")
    field = "caption" if current.photo_url is not None else "text"
    if await ab_assignment.variant_count(conn, current.broadcast_id) > 1:
        # each copy carries its variant's text: one edit would put the same text on all of them
        raise ValidationError(
            field,
            "an A/B broadcast's copies carry their variants' texts and an edit would give every copy the "
            "same one: retract it (or pin/unpin), or edit a winner broadcast sent to the held-back groups",
        )
    data: dict[str, Any] = {"parse_mode": current.parse_mode, "target": current.target}
    if current.photo_url is not None:
        if "text" in changes:
            raise ValidationError("text", "a photo broadcast has a caption: edit the caption")
        data.update(photo_url=current.photo_url, caption=current.caption)
    else:
        if "caption" in changes:
            raise ValidationError("caption", "a text broadcast has no caption: edit the text")
        data["text"] = current.text
    data.update(changes)
    req = validate_broadcast(data)
    if (req.text, req.caption, req.parse_mode) == (current.text, current.caption, current.parse_mode):
        raise ValidationError("text" if current.photo_url is None else "caption", "nothing changes")
    cur = await conn.execute(SQL_LONGEST_CODE, {"b": current.broadcast_id})
    row = await cur.fetchone()
    code = str(row[0]) if row else debug_code.longest(current.broadcast_id, 1)
    refused = debug_code.refusal(req.text, req.photo_url, req.caption, req.parse_mode, code)
    if refused is not None:
        raise refused
    base = await ab_assignment.tracking_base(conn, current.broadcast_id)
    if base is not None:  # the copies' links that were tracked stay tracked: check it as it goes out
        broadcast_variants.check_rendered(
            req, broadcast_variants.AbRequest(track_clicks=True, public_base_url=base), code
        )
    return req.text, req.caption, req.parse_mode


# ---------------------------------------------------------------- the job's statements


async def load(conn: AsyncConnection[Any], followup_id: int) -> Followup | None:
    cur = await conn.execute(SQL_LOAD, {"f": followup_id})
    row = await cur.fetchone()
    return None if row is None else Followup(int(row[0]), int(row[1]), *row[2:])


async def prepare(
    conn: AsyncConnection[Any], f: Followup, worker: str, inflight: list[int], stale_seconds: float
) -> None:
    """Add the copies sent since, mark calls left by a dead worker (or by an earlier, cut run of this
    worker: not in `inflight`) ambiguous, skip copies never delivered."""
    await conn.execute(SQL_ADD_ROWS, {"f": f.followup_id, "b": f.broadcast_id, "action": f.action, "too_old": TOO_OLD})
    await conn.execute(
        SQL_MARK_AMBIGUOUS, {"f": f.followup_id, "worker": worker, "inflight": inflight, "stale": stale_seconds}
    )
    await conn.execute(SQL_SKIP_UNDELIVERED, {"f": f.followup_id})


async def claim(conn: AsyncConnection[Any], f: Followup, worker: str) -> Claimed | None:
    cur = await conn.execute(SQL_CLAIM, {"f": f.followup_id, "worker": worker})
    row = await cur.fetchone()
    return None if row is None else Claimed(int(row[0]), int(row[1]), row[2], str(row[3]), row[4], int(row[5]), row[6])


async def record(
    conn: AsyncConnection[Any], f: Followup, sent_message_id: int, worker: str, status: str, error: str | None
) -> None:
    await conn.execute(
        SQL_RECORD, {"f": f.followup_id, "m": sent_message_id, "worker": worker, "status": status, "error": error}
    )


async def back_to_pending(conn: AsyncConnection[Any], f: Followup, sent_message_id: int, worker: str) -> None:
    await conn.execute(SQL_BACK_TO_PENDING, {"f": f.followup_id, "m": sent_message_id, "worker": worker})


async def waiting(conn: AsyncConnection[Any], f: Followup) -> int:
    """Rows another worker is on, or whose copy is still being sent."""
    cur = await conn.execute(SQL_WAITING, {"f": f.followup_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------- what operators read


async def outcomes(conn: AsyncConnection[Any], broadcast_id: int) -> list[dict[str, Any]]:
    """Each follow-up of a broadcast with its per-status counts, oldest first."""
    cur = await conn.execute(SQL_COUNTS, {"b": broadcast_id})
    found: dict[int, dict[str, Any]] = {}
    for followup_id, action, created_at, by, status, n in await cur.fetchall():
        entry = found.setdefault(
            int(followup_id),
            {
                "followup_id": int(followup_id),
                "action": action,
                "requested_by": by,
                "created_at": created_at.isoformat(),
                "groups": {s: 0 for s in STATUSES},
            },
        )
        if status is not None:
            entry["groups"][status] = int(n)
    return list(found.values())


async def rows(conn: AsyncConnection[Any], followup_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(SQL_ROWS, {"f": followup_id})
    return [
        {"sent_message_id": r[0], "chat_id": r[1], "status": r[2], "error": r[3], "attempts": r[4]}
        for r in await cur.fetchall()
    ]


async def detail(conn: AsyncConnection[Any], broadcast_id: int) -> list[dict[str, Any]]:
    """`outcomes`, each with its `deliveries`: chat, debug code, status, error, attempts per copy."""
    found = await outcomes(conn, broadcast_id)
    by_id = {entry["followup_id"]: entry for entry in found}
    for entry in found:
        entry["deliveries"] = []
    cur = await conn.execute(SQL_BROADCAST_ROWS, {"b": broadcast_id})
    for followup_id, chat_id, code, status, error, attempts, updated_at in await cur.fetchall():
        by_id[int(followup_id)]["deliveries"].append(
            {
                "chat_id": chat_id,
                "debug_code": code,
                "status": status,
                "error": error,
                "attempts": attempts,
                "updated_at": updated_at.isoformat(),
            }
        )
    return found


async def reach(conn: AsyncConnection[Any], broadcast_id: int) -> tuple[int, int]:
    """(copies a follow-up would touch now, of which too old to delete) — what a confirm shows."""
    cur = await conn.execute(SQL_REACH, {"b": broadcast_id})
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def parse_silent(body: dict[str, Any]) -> bool:
    """A pin's `silent` (no notification to the members); ValidationError naming it."""
    silent = body.get("silent", False)
    if silent is None:
        return False
    if not isinstance(silent, bool):
        raise ValidationError("silent", "must be true or false")
    return silent


def describe(outcome: dict[str, Any]) -> str:
    """One line: `retract #3: 10 done, 2 skipped`."""
    counts = ", ".join(f"{n} {s}" for s, n in outcome["groups"].items() if n)
    return f"{outcome['action']} #{outcome['followup_id']}: {counts or 'not started'}"


__all__ = ["ACTIONS", "JOB_TYPE", "BroadcastNotFound", "BroadcastStateError", "Followup", "request"]
