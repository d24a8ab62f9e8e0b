"""The `join_requests` repository: each request logged once, keyed by (chat_id, user_id, requested_at).

`begin` is the one statement before the approval call: it reads the group and the bot's 429 pause and
inserts the request's row, a final status straight away for an unmanaged or inactive group,
'declining' (the intent to decline) for a user on the fleet's ban list, else the gate's path
('processing', the intent to approve, on the auto path). `finish` is the one after: it writes the
outcome of a row still 'processing' or 'declining' (a finished request is never rewritten) and, on
approval, the member's activity. A request's outcome (processed_at set) raises join_request.decided
for the event webhooks that ask for it, by a trigger in the same transaction (hooks.py).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from psycopg import AsyncConnection

# The gate (join_gate.py) is decided here too, in the same round trip: the request is counted for the
# raid detector (join_request_rates, one row per group and minute; the group's row lock makes the count
# exact, so at most the threshold get through before the hold), a group or fleet over its threshold is
# held (extended while the rate stays over it), and the verdict picks the path: 'processing' (auto:
# approve now), 'verifying', 'pending' (manual queue) or 'held'.
from . import queue
from .bans import IN_FORCE
from .sql_text import compact

SQL_BEGIN = compact(f"""
WITH grp AS (
    SELECT is_active, join_policy, raid_per_minute, held_until, manual_expire_hours
      FROM managed_groups WHERE group_id = %(chat)s
), gate AS (
    SELECT group_per_minute, fleet_per_minute, calm_seconds, fleet_held_until FROM join_gate
), counted AS (
    INSERT INTO join_request_rates AS r (chat_id, minute, requests)
    SELECT %(chat)s, date_trunc('minute', now()), 1 FROM grp WHERE grp.is_active
    ON CONFLICT (minute, chat_id) DO UPDATE SET requests = r.requests + 1
    RETURNING requests
), raid AS (
    SELECT lim.group_limit > 0 AND (SELECT requests FROM counted) > lim.group_limit AS group_over,
           CASE WHEN gate.fleet_per_minute > 0 THEN
               (SELECT COALESCE(sum(requests), 0) FROM join_request_rates
                 WHERE minute = date_trunc('minute', now())) + 1 > gate.fleet_per_minute
           ELSE false END AS fleet_over,
           gate.calm_seconds, gate.fleet_held_until
      FROM gate, grp, LATERAL (SELECT COALESCE(grp.raid_per_minute, gate.group_per_minute) AS group_limit) lim
), hold_group AS (
    UPDATE managed_groups g
       SET held_since = CASE WHEN g.held_until > now() THEN g.held_since ELSE now() END,
           held_until = now() + make_interval(secs => raid.calm_seconds)
      FROM raid
     WHERE g.group_id = %(chat)s AND raid.group_over
       AND (g.held_until IS NULL OR g.held_until < now() + make_interval(secs => raid.calm_seconds - 5))
    RETURNING 1
), hold_fleet AS (
    UPDATE join_gate f
       SET fleet_held_since = CASE WHEN f.fleet_held_until > now() THEN f.fleet_held_since ELSE now() END,
           fleet_held_until = now() + make_interval(secs => raid.calm_seconds)
      FROM raid
     WHERE raid.fleet_over
       AND (f.fleet_held_until IS NULL OR f.fleet_held_until < now() + make_interval(secs => raid.calm_seconds - 5))
    RETURNING 1
), verdict AS (
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM grp) THEN 'skipped_unmanaged'
                WHEN NOT (SELECT is_active FROM grp) THEN 'skipped_inactive'
                WHEN EXISTS (SELECT 1 FROM fleet_bans WHERE user_id = %(user)s AND {IN_FORCE})
                     THEN 'declining'
                WHEN raid.group_over OR (SELECT held_until FROM grp) > now() THEN 'held'
                WHEN raid.fleet_over OR raid.fleet_held_until > now() THEN 'held'
                WHEN (SELECT join_policy FROM grp) = 'manual' THEN 'pending'
                WHEN (SELECT join_policy FROM grp) = 'verify' THEN 'verifying'
                ELSE 'processing' END AS status,
           CASE WHEN raid.group_over OR (SELECT held_until FROM grp) > now() THEN 'raid hold: group'
                WHEN raid.fleet_over OR raid.fleet_held_until > now() THEN 'raid hold: fleet' END AS note
      FROM (SELECT 1) AS one LEFT JOIN raid ON true
), ins AS (
    INSERT INTO join_requests (user_id, chat_id, username, status, bot, job_id, requested_at, processed_at,
                               user_chat_id, verify_token, verify_code, queued_at, held_at, note, invite_link)
    SELECT %(user)s, %(chat)s, %(username)s, v.status, %(bot)s, %(job)s, to_timestamp(%(date)s),
           CASE WHEN v.status IN ('processing', 'declining', 'verifying', 'pending', 'held') THEN NULL ELSE now() END,
           %(user_chat)s,
           CASE WHEN v.status = 'verifying' THEN %(token)s END,
           CASE WHEN v.status = 'verifying' THEN %(code)s END,
           CASE WHEN v.status = 'pending' THEN now() END,
           CASE WHEN v.status = 'held' THEN now() END,
           v.note, %(invite_link)s
      FROM verdict v
    ON CONFLICT (chat_id, user_id, requested_at) DO NOTHING
    RETURNING status, request_id
)
SELECT (SELECT status FROM ins) AS inserted,
       ex.status AS existing,
       ex.job_id <> %(job)s AND owner.status IN ('pending', 'running') AS owned_elsewhere,
       (SELECT GREATEST(0, EXTRACT(EPOCH FROM paused_until - clock_timestamp()))::float8
          FROM rate_buckets WHERE key = %(bucket)s) AS paused_for,
       COALESCE((SELECT request_id FROM ins), ex.request_id) AS request_id,
       ex.dm_sent_at IS NOT NULL AS dm_sent,
       COALESCE(ex.verify_token, %(token)s), COALESCE(ex.verify_code, %(code)s),
       (SELECT manual_expire_hours FROM grp)
  FROM (SELECT 1) AS one
  LEFT JOIN join_requests ex
         ON ex.chat_id = %(chat)s AND ex.user_id = %(user)s AND ex.requested_at = to_timestamp(%(date)s)
  LEFT JOIN jobs owner ON owner.job_id = ex.job_id
""")  # compact: within psycopg's conversion cache (sql_text.py)

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
    user_chat: int | None = None  # the request's user_chat_id: the private chat open for 5 minutes
    invite_link: str | None = None  # the link the request came through, as this bot received it


class Begun(NamedTuple):
    inserted: str | None  # the status this call inserted; None when the row existed or is being inserted
    existing: str | None  # the status of the row found
    owned_elsewhere: bool | None  # the row belongs to another job that is pending or running
    paused_for: float | None  # seconds left on the bot's 429 pause
    request_id: int | None = None
    dm_sent: bool | None = None  # a verifying row whose private message already went out
    verify_token: str | None = None  # identifies the request in the verification buttons' data
    verify_code: str | None = None  # the right button's code (wrong buttons get random ones)
    expire_hours: int | None = None  # the group's manual_expire_hours


async def begin(conn: AsyncConnection[Any], request: Request, bucket: str) -> Begun:
    # A fresh token and code for every request (only a 'verifying' row keeps them): random, so a
    # requester cannot forge the data of the button that approves them.
    params = {**request._asdict(), "bucket": bucket, "token": secrets.token_urlsafe(12),
              "code": secrets.token_urlsafe(6)}  # fmt: skip
    cur = await conn.execute(SQL_BEGIN, params)
    row = await cur.fetchone()
    assert row is not None
    return Begun(*row)


SQL_FINISH_AND_COMPLETE = queue.with_completion(SQL_FINISH)


async def finish(
    conn: AsyncConnection[Any],
    request: Request,
    status: str,
    error: str | None,
    completion: queue.Completion | None = None,
) -> None:
    """Record the request's outcome (and, joined, the member's activity); with `completion`, its job
    is completed by the same statement."""
    joined = status in ("approved", "already_member")
    params = {**request._asdict(), "status": status, "error": error, "joined": joined}
    if completion is None:
        await conn.execute(SQL_FINISH, params)
    else:
        await conn.execute(SQL_FINISH_AND_COMPLETE, {**params, **completion.params()})


async def note_error(conn: AsyncConnection[Any], request: Request, error: str | None) -> None:
    await conn.execute(SQL_NOTE_ERROR, {**request._asdict(), "error": error})
