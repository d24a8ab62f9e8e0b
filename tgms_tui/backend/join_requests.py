"""The `join_requests` repository: each request logged once, keyed by (chat_id, user_id, requested_at).

`begin` is the one statement before the approval call: it reads the group and the bot's 429 pause and
inserts the request's row, a final status straight away for an unmanaged or inactive group,
'declining' (the intent to decline) for a user on the fleet's ban list, else 'processing' (the
intent). `finish` is the one after: it writes the outcome of a row still 'processing' or
'declining' (a finished request is never rewritten) and, on approval, the member's activity.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from psycopg import AsyncConnection

from .bans import IN_FORCE

SQL_BEGIN = f"""
WITH grp AS (
    SELECT is_active FROM managed_groups WHERE group_id = %(chat)s
), verdict AS (
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM grp) THEN 'skipped_unmanaged'
                WHEN NOT (SELECT is_active FROM grp) THEN 'skipped_inactive'
                WHEN EXISTS (SELECT 1 FROM fleet_bans WHERE user_id = %(user)s AND {IN_FORCE})
                     THEN 'declining'
                ELSE 'processing' END AS status
), ins AS (
    INSERT INTO join_requests (user_id, chat_id, username, status, bot, job_id, requested_at, processed_at,
                               invite_link)
    SELECT %(user)s, %(chat)s, %(username)s, v.status, %(bot)s, %(job)s, to_timestamp(%(date)s),
           CASE WHEN v.status IN ('processing', 'declining') THEN NULL ELSE now() END, %(invite_link)s
      FROM verdict v
    ON CONFLICT (chat_id, user_id, requested_at) DO NOTHING
    RETURNING status
)
SELECT (SELECT status FROM ins) AS inserted,
       ex.status AS existing,
       ex.job_id <> %(job)s AND owner.status IN ('pending', 'running') AS owned_elsewhere,
       (SELECT GREATEST(0, EXTRACT(EPOCH FROM paused_until - clock_timestamp()))::float8
          FROM rate_buckets WHERE key = %(bucket)s) AS paused_for
  FROM (SELECT 1) AS one
  LEFT JOIN join_requests ex
         ON ex.chat_id = %(chat)s AND ex.user_id = %(user)s AND ex.requested_at = to_timestamp(%(date)s)
  LEFT JOIN jobs owner ON owner.job_id = ex.job_id
"""

# Only a row still 'processing' changes: a finished request is never rewritten.
SQL_FINISH = """
WITH upd AS (
    UPDATE join_requests
       SET status = %(status)s, error = %(error)s, processed_at = now(), job_id = %(job)s
     WHERE chat_id = %(chat)s AND user_id = %(user)s AND requested_at = to_timestamp(%(date)s)
       AND status IN ('processing', 'declining')
    RETURNING 1
)
INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
SELECT %(chat)s, %(user)s, %(username)s, 'member', %(is_bot)s, now(), now()
 WHERE %(joined)s AND EXISTS (SELECT 1 FROM upd)
ON CONFLICT (chat_id, user_id) DO UPDATE
   SET username = COALESCE(EXCLUDED.username, m.username), status = 'member', last_seen_at = now()
"""

# A retryable error leaves the row 'processing' but shows why it is still waiting.
SQL_NOTE_ERROR = """
UPDATE join_requests SET error = %(error)s
 WHERE chat_id = %(chat)s AND user_id = %(user)s AND requested_at = to_timestamp(%(date)s)
   AND status IN ('processing', 'declining')
"""


class Request(NamedTuple):
    """One join request as the statements name it (chat = the group's id, job = the handling job)."""

    chat: int
    user: int
    username: str | None
    is_bot: bool
    date: int  # Telegram's `date` of the request (epoch seconds): part of the key
    bot: str
    job: int
    invite_link: str | None = None  # the link the request came through, as this bot received it


class Begun(NamedTuple):
    inserted: str | None  # the status this call inserted; None when the row existed or is being inserted
    existing: str | None  # the status of the row found
    owned_elsewhere: bool | None  # the row belongs to another job that is pending or running
    paused_for: float | None  # seconds left on the bot's 429 pause


async def begin(conn: AsyncConnection[Any], request: Request, bucket: str) -> Begun:
    cur = await conn.execute(SQL_BEGIN, {**request._asdict(), "bucket": bucket})
    row = await cur.fetchone()
    assert row is not None
    return Begun(*row)


async def finish(conn: AsyncConnection[Any], request: Request, status: str, error: str | None) -> None:
    joined = status in ("approved", "already_member")
    await conn.execute(SQL_FINISH, {**request._asdict(), "status": status, "error": error, "joined": joined})


async def note_error(conn: AsyncConnection[Any], request: Request, error: str | None) -> None:
    await conn.execute(SQL_NOTE_ERROR, {**request._asdict(), "error": error})
