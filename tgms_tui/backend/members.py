"""The member repository: member counts and their history, member activity (who was seen when:
the only way TGMS knows who is inactive, since the Bot API cannot list members), and the kick audit.

(Join-request approvals record activity in the join request's own statement: see join_requests.py.)
A member count that changes raises group.member_count (an event webhook, written by a trigger in the
same transaction: hooks.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

# `soft`: seen in a message — present, but a known status (admin, restricted) is kept. Otherwise the
# status is what Telegram just told us (join, leave, chat_member).
# A row that would not change (same status, username and bot flag, last seen less than a minute ago)
# is not touched at all: not rewritten, not even locked, so the statement writes nothing and its
# commit waits for no disk. A chatty group, or the three updates one approval brings (the approval
# itself, its chat_member update and the join message), then cost reads only. Inactivity is counted
# in days, so a minute's precision in last_seen_at loses nothing. (An UPDATE whose WHERE does not
# match locks nothing; INSERT .. ON CONFLICT DO UPDATE .. WHERE would lock the row even when its WHERE
# is false.) The ON CONFLICT clause covers a member first seen by two updates at the same moment.
# A member TGMS kicked stays 'kicked' when Telegram then reports them 'left' (the unban that follows a
# kick in a supergroup sends that change): both mean gone, and 'kicked' also says who removed them.
_NEW_STATUS = """CASE WHEN {soft} AND m.status NOT IN ('left', 'kicked') THEN m.status
                WHEN {new}.status = 'left' AND m.status = 'kicked' THEN m.status
                ELSE {new}.status END"""
_CHANGED = f"""({{date}} >= m.last_seen_at + interval '1 minute'
            OR m.is_bot <> {{new}}.is_bot
            OR ({{new}}.username IS NOT NULL AND m.username IS DISTINCT FROM {{new}}.username)
            OR m.status <> {_NEW_STATUS})"""
_SET = f"""username = COALESCE({{new}}.username, m.username),
           is_bot = {{new}}.is_bot,
           status = {_NEW_STATUS},
           last_seen_at = GREATEST(m.last_seen_at, {{date}})"""


def activity_upsert(
    source: str, chat: str, soft: str, date: str, *, prefix: str = "", conflict_soft: str | None = None
) -> str:
    """Two data-modifying CTEs (`<prefix>changed`, `<prefix>added`, to follow a WITH list) that record
    the activity of the rows of `source` (columns id, username, status, is_bot; at most one row per
    member) in the group `chat`, seen at `date` (a timestamptz expression), `soft` (a boolean
    expression) as described above; `conflict_soft` is `soft` where only EXCLUDED is in scope (the member
    inserted meanwhile by another transaction). The intake's batch statement (webhook_updates.py) records the
    updates that need nothing else with it; SQL_ACTIVITY is the workers' form."""
    fields = {"new": "i", "soft": soft, "date": date}
    excluded = {"new": "EXCLUDED", "soft": conflict_soft or soft, "date": "EXCLUDED.last_seen_at"}
    return f"""{prefix}changed AS (
    UPDATE member_activity AS m
       SET {_SET.format(**fields)}
      FROM {source} AS i
     WHERE m.chat_id = {chat} AND m.user_id = i.id
       AND {_CHANGED.format(**fields)}
    RETURNING m.user_id
), {prefix}added AS (
    INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
    SELECT {chat}, i.id, i.username, i.status, i.is_bot, {date}, {date}
      FROM {source} AS i
     WHERE NOT EXISTS (SELECT 1 FROM member_activity AS e WHERE e.chat_id = {chat} AND e.user_id = i.id)
    ON CONFLICT (chat_id, user_id) DO UPDATE
       SET {_SET.format(**excluded)}
     WHERE {_CHANGED.format(**excluded)}
    RETURNING m.user_id
)"""


SQL_ACTIVITY = f"""
WITH input AS (
    SELECT u.id, u.username, u.status, u.is_bot
      FROM unnest(%(ids)s::bigint[], %(usernames)s::text[], %(statuses)s::text[], %(bots)s::bool[])
           AS u(id, username, status, is_bot)
     WHERE EXISTS (SELECT 1 FROM managed_groups WHERE group_id = %(chat)s)
), {activity_upsert("input", "%(chat)s", "%(soft)s", "to_timestamp(%(date)s)")}
SELECT 1
"""

SQL_RECORD_COUNT = """
WITH g AS (
    UPDATE managed_groups SET member_count = %(count)s, member_count_at = now(), updated_at = now()
     WHERE group_id = %(group)s
    RETURNING group_id
)
INSERT INTO member_count_history (group_id, member_count, recorded_at)
SELECT group_id, %(count)s, now() FROM g
"""

SQL_INACTIVE = """
SELECT user_id, is_bot, last_seen_at FROM member_activity
 WHERE chat_id = %(chat)s AND status = ANY(%(present)s)
   AND last_seen_at < now() - make_interval(days => %(days)s)
 ORDER BY last_seen_at, user_id
"""

SQL_AUDIT = """
INSERT INTO kick_audit (chat_id, user_id, action, reason, dry_run, job_id)
VALUES (%(chat)s, %(user)s, %(action)s, %(reason)s, %(dry_run)s, %(job)s)
"""

# Only the status changes: being kicked or read is not activity.
SQL_SET_STATUS = "UPDATE member_activity SET status = %(status)s WHERE chat_id = %(chat)s AND user_id = %(user)s"


async def record_activity(
    conn: AsyncConnection[Any], chat_id: int, users: Iterable[dict[str, Any]], status: str, date: int, soft: bool
) -> None:
    """Upsert what an update told us about `users` (Telegram user objects) in a managed group."""
    people = list(users)
    params = {
        "chat": chat_id,
        "ids": [int(u["id"]) for u in people],
        "usernames": [u.get("username") for u in people],
        "statuses": [status] * len(people),
        "bots": [bool(u.get("is_bot", False)) for u in people],
        "date": date,
        "soft": soft,
    }
    await conn.execute(SQL_ACTIVITY, params)


async def record_count(conn: AsyncConnection[Any], group_id: int, count: int) -> None:
    """The group's member count now, and one history row (nothing for an unmanaged group)."""
    await conn.execute(SQL_RECORD_COUNT, {"group": group_id, "count": count})


async def inactive(
    conn: AsyncConnection[Any], chat_id: int, present: Iterable[str], days: int
) -> list[tuple[int, bool, datetime]]:
    """(user_id, is_bot, last_seen_at) of members in a `present` status not seen for `days`, oldest first."""
    cur = await conn.execute(SQL_INACTIVE, {"chat": chat_id, "present": list(present), "days": days})
    return [(int(u), bool(b), at) for u, b, at in await cur.fetchall()]


async def audit_kick(
    conn: AsyncConnection[Any],
    chat_id: int,
    user_id: int,
    action: str,
    reason: str,
    *,
    dry_run: bool,
    job_id: int | None,
    status: str | None = None,
) -> None:
    """Log a kick or skip; outside a dry run, `status` (what Telegram said) becomes the member's status."""
    params = {"chat": chat_id, "user": user_id, "action": action, "reason": reason, "dry_run": dry_run}
    await conn.execute(SQL_AUDIT, {**params, "job": job_id})
    if status is not None and not dry_run:
        await conn.execute(SQL_SET_STATUS, {**params, "status": status})
