"""The fleet's ban list (`fleet_bans`) and where each ban was applied (`fleet_ban_groups`).

A ban is one `fleet_bans` row (who, why, by whom, until when) plus one row per managed group and
action ('ban', later 'unban'), all created with the job that applies them in one transaction, like a
broadcast and its deliveries. The job (workers/bans.py) claims rows one by one ('applying'), calls
Telegram and records `done`, `failed` or `skipped` with the error. banChatMember and unbanChatMember
are idempotent, so a claim left by a dead worker is taken again once older than a lease: resuming
never does harm. A ban is *in force* while it is open (not lifted) and its `until` has not passed;
the join-request handler checks exactly that (`IN_FORCE`, one lookup on the partial unique index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection

from . import queue

JOB_TYPE = "tgms_fleet_ban"
ACTIONS = ("ban", "unban")
# How a ban in force reads, for every statement that asks (the join-request handler's included).
IN_FORCE = "lifted_at IS NULL AND (until IS NULL OR until > now())"
MAX_REASON = 500

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BanError(ValueError):
    """A ban request that cannot be carried out; the message says why, for the operator."""


def parse_until(text: str | None, now: datetime | None = None) -> datetime | None:
    """`--until`: a duration (`90m`, `12h`, `7d`, `2w`) from now, or an ISO-8601 time with a timezone.
    None or empty: for ever. Telegram treats bans shorter than 30 s or longer than 366 days as
    permanent, so such an `until` is refused rather than silently meaning something else."""
    if text is None or not text.strip():
        return None
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        until = now + timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    else:
        try:
            until = datetime.fromisoformat(text.strip())
        except ValueError:
            raise BanError(f"until: {text!r} is neither a duration (30m, 12h, 7d, 2w) nor an ISO-8601 time") from None
        if until.tzinfo is None:
            raise BanError("until: give the time with its timezone, e.g. 2026-12-01T09:00:00+00:00")
    seconds = (until - now).total_seconds()
    if seconds < 30:
        raise BanError("until: must be at least 30 seconds from now (Telegram would ban for ever)")
    if seconds > 366 * 86400:
        raise BanError("until: must be within 366 days (Telegram would ban for ever); omit it to ban for ever")
    return until


def check_user_id(value: Any) -> int:
    try:
        user_id = int(value)
    except (TypeError, ValueError):
        raise BanError("user_id must be a positive integer (a Telegram user id)") from None
    if isinstance(value, bool) or user_id <= 0 or user_id >= 1 << 53:
        raise BanError("user_id must be a positive integer (a Telegram user id)")
    return user_id


def check_reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BanError("reason is required: say why (it is kept with the ban)")
    if len(value) > MAX_REASON:
        raise BanError(f"reason is longer than {MAX_REASON} characters")
    return value.strip()


# ------------------------------------------------------------------ operator side

SQL_CLOSE_EXPIRED = """
UPDATE fleet_bans SET lifted_at = until, lifted_by = 'expired'
 WHERE user_id = %(user)s AND lifted_at IS NULL AND until IS NOT NULL AND until <= now()
"""

SQL_INSERT_BAN = """
INSERT INTO fleet_bans (user_id, reason, banned_by, until)
VALUES (%(user)s, %(reason)s, %(by)s, %(until)s)
RETURNING ban_id
"""

# Every managed group gets a row: the active ones to apply, the inactive ones skipped (the bot may no
# longer be there; a ban there would only fail).
SQL_BAN_ROWS = """
INSERT INTO fleet_ban_groups (ban_id, action, group_id, status, error)
SELECT %(ban)s, 'ban', group_id,
       CASE WHEN is_active THEN 'pending' ELSE 'skipped' END,
       CASE WHEN is_active THEN NULL ELSE 'group is inactive' END
  FROM managed_groups
"""

SQL_SET_JOB_ID = "UPDATE fleet_bans SET job_id = %(job)s WHERE ban_id = %(ban)s"
SQL_SET_LIFT_JOB_ID = "UPDATE fleet_bans SET lift_job_id = %(job)s WHERE ban_id = %(ban)s"

SQL_OPEN_BAN = """
SELECT ban_id, user_id, reason, banned_by, banned_at, until, lifted_at, lifted_by
  FROM fleet_bans WHERE user_id = %(user)s AND lifted_at IS NULL
"""

SQL_LIFT = """
UPDATE fleet_bans SET lifted_at = now(), lifted_by = %(by)s
 WHERE ban_id = %(ban)s AND lifted_at IS NULL
"""

# Not yet applied: never apply it now. (A row being applied finishes; the lifting job waits for it.)
SQL_SKIP_UNAPPLIED = """
UPDATE fleet_ban_groups SET status = 'skipped', error = 'ban lifted before it was applied here', updated_at = now()
 WHERE ban_id = %(ban)s AND action = 'ban' AND status = 'pending'
"""

# Lift where the ban was (or may have been) applied. A basic group has no list of banned users: the
# ban removed the user, who may be added back; there is nothing to lift.
SQL_UNBAN_ROWS = """
INSERT INTO fleet_ban_groups (ban_id, action, group_id, status, error)
SELECT b.ban_id, 'unban', b.group_id,
       CASE WHEN g.chat_type = 'group' THEN 'skipped' ELSE 'pending' END,
       CASE WHEN g.chat_type = 'group' THEN 'basic group: the ban removed the user, nothing to lift' END
  FROM fleet_ban_groups b
  LEFT JOIN managed_groups g ON g.group_id = b.group_id
 WHERE b.ban_id = %(ban)s AND b.action = 'ban' AND b.status IN ('done', 'applying')
ON CONFLICT DO NOTHING
"""

SQL_COUNT_ROWS = """
SELECT count(*) FILTER (WHERE status IN ('pending', 'applying')) FROM fleet_ban_groups
 WHERE ban_id = %(ban)s AND action = %(action)s
"""


@dataclass(frozen=True, slots=True)
class Ban:
    ban_id: int
    user_id: int
    reason: str
    banned_by: str
    banned_at: datetime
    until: datetime | None
    lifted_at: datetime | None
    lifted_by: str | None
    # per action: {"done": n, "failed": n, "skipped": n, "pending": n}
    ban_outcome: dict[str, int]
    unban_outcome: dict[str, int]

    @property
    def in_force(self) -> bool:
        return self.lifted_at is None and (self.until is None or self.until > datetime.now(UTC))

    @property
    def state(self) -> str:
        if self.lifted_at is not None:
            return "expired" if self.lifted_by == "expired" else "lifted"
        return "banned" if self.in_force else "expired"

    def as_json(self) -> dict[str, Any]:
        return {
            "ban_id": self.ban_id,
            "user_id": self.user_id,
            "state": self.state,
            "reason": self.reason,
            "banned_by": self.banned_by,
            "banned_at": self.banned_at.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "lifted_at": self.lifted_at.isoformat() if self.lifted_at else None,
            "lifted_by": self.lifted_by,
            "groups": {"ban": self.ban_outcome, "unban": self.unban_outcome},
        }


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    action: str
    group_id: int
    title: str | None
    status: str
    bot: str | None
    error: str | None
    attempts: int
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "group_id": self.group_id,
            "title": self.title,
            "status": self.status,
            "bot": self.bot,
            "error": self.error,
            "attempts": self.attempts,
            "updated_at": self.updated_at.isoformat(),
        }


async def ban(
    conn: AsyncConnection[Any], user_id: int, reason: str, banned_by: str, until: datetime | None
) -> tuple[int, int]:
    """Put `user_id` on the ban list and enqueue its application in every managed group, in one
    transaction (the caller's, or one of its own). Returns (ban_id, groups to apply).
    BanError when the user is already banned."""
    async with conn.transaction():
        params = {"user": user_id, "reason": reason, "by": banned_by, "until": until}
        await conn.execute(SQL_CLOSE_EXPIRED, params)
        try:
            async with conn.transaction():
                cur = await conn.execute(SQL_INSERT_BAN, params)
        except psycopg.errors.UniqueViolation:
            raise BanError(f"user {user_id} is already banned; unban first to change the ban") from None
        row = await cur.fetchone()
        assert row is not None
        ban_id = int(row[0])
        await conn.execute(SQL_BAN_ROWS, {"ban": ban_id})
        todo = await _todo(conn, ban_id, "ban")
        await _enqueue(conn, ban_id, "ban", "job_id")
    return ban_id, todo


async def unban(conn: AsyncConnection[Any], user_id: int, lifted_by: str) -> tuple[int, int]:
    """Lift `user_id`'s ban everywhere it was applied (a job, like the ban). Returns (ban_id, groups
    to lift). BanError when the user is not on the list."""
    async with conn.transaction():
        cur = await conn.execute(SQL_OPEN_BAN + " FOR UPDATE", {"user": user_id})
        row = await cur.fetchone()
        if row is None:
            raise BanError(f"user {user_id} is not banned")
        ban_id = int(row[0])
        await conn.execute(SQL_LIFT, {"ban": ban_id, "by": lifted_by})
        await conn.execute(SQL_SKIP_UNAPPLIED, {"ban": ban_id})
        await conn.execute(SQL_UNBAN_ROWS, {"ban": ban_id})
        todo = await _todo(conn, ban_id, "unban")
        await _enqueue(conn, ban_id, "unban", "lift_job_id")
    return ban_id, todo


async def _todo(conn: AsyncConnection[Any], ban_id: int, action: str) -> int:
    cur = await conn.execute(SQL_COUNT_ROWS, {"ban": ban_id, "action": action})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _enqueue(conn: AsyncConnection[Any], ban_id: int, action: str, column: str) -> None:
    job_id = await queue.enqueue(
        conn, JOB_TYPE, {"ban_id": ban_id, "action": action}, priority=-5, dedupe_key=f"fleet_ban:{ban_id}:{action}"
    )
    await conn.execute(SQL_SET_JOB_ID if column == "job_id" else SQL_SET_LIFT_JOB_ID, {"job": job_id, "ban": ban_id})


SQL_LIST = """
SELECT b.ban_id, b.user_id, b.reason, b.banned_by, b.banned_at, b.until, b.lifted_at, b.lifted_by,
       COALESCE(jsonb_object_agg(r.action || ':' || r.status, r.n) FILTER (WHERE r.action IS NOT NULL), '{}')
  FROM fleet_bans b
  LEFT JOIN LATERAL (
      SELECT action, CASE WHEN status = 'applying' THEN 'pending' ELSE status END AS status, count(*) AS n
        FROM fleet_ban_groups WHERE ban_id = b.ban_id GROUP BY 1, 2
  ) r ON true
 WHERE %(all)s OR b.lifted_at IS NULL
 GROUP BY b.ban_id
 ORDER BY b.banned_at DESC
 LIMIT %(limit)s
"""

SQL_GROUPS = """
SELECT r.action, r.group_id, g.title, r.status, r.bot, r.error, r.attempts, r.updated_at
  FROM fleet_ban_groups r
  LEFT JOIN managed_groups g ON g.group_id = r.group_id
 WHERE r.ban_id = %(ban)s
 ORDER BY r.action, r.status, r.group_id
"""


def _outcome(counts: dict[str, int], action: str) -> dict[str, int]:
    return {s: int(counts.get(f"{action}:{s}", 0)) for s in ("done", "failed", "skipped", "pending")}


async def list_bans(conn: AsyncConnection[Any], *, include_lifted: bool = False, limit: int = 1000) -> list[Ban]:
    """The ban list, newest first: open entries (in force or past their `until`), or every entry."""
    cur = await conn.execute(SQL_LIST, {"all": include_lifted, "limit": limit})
    out = []
    for row in await cur.fetchall():
        counts = row[8] or {}
        ban_id, user_id, reason, by, at, until, lifted_at, lifted_by = row[:8]
        out.append(
            Ban(ban_id, user_id, reason, by, at, until, lifted_at, lifted_by, _outcome(counts, "ban"),
                _outcome(counts, "unban"))
        )  # fmt: skip
    return out


async def groups_of(conn: AsyncConnection[Any], ban_id: int) -> list[GroupOutcome]:
    cur = await conn.execute(SQL_GROUPS, {"ban": ban_id})
    return [GroupOutcome(*row) for row in await cur.fetchall()]


async def latest_ban_id(conn: AsyncConnection[Any], user_id: int) -> int | None:
    cur = await conn.execute(
        "SELECT ban_id FROM fleet_bans WHERE user_id = %(user)s ORDER BY banned_at DESC LIMIT 1", {"user": user_id}
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


# ------------------------------------------------------------------ the applying job

SQL_LOAD = "SELECT user_id, until, lifted_at FROM fleet_bans WHERE ban_id = %(ban)s"

# The next row to apply: pending, or a claim older than a lease (its worker died; the call is
# idempotent, so taking it again is safe). MATERIALIZED: the row is chosen once, never re-chosen
# (and another one locked) for each row the join visits.
SQL_CLAIM = """
WITH next AS MATERIALIZED (
    SELECT x.group_id FROM fleet_ban_groups x
     WHERE x.ban_id = %(ban)s AND x.action = %(action)s
       AND (x.status = 'pending'
            OR (x.status = 'applying' AND x.updated_at < now() - make_interval(secs => %(stale)s)))
     ORDER BY x.group_id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE fleet_ban_groups r
   SET status = 'applying', attempts = r.attempts + 1, updated_at = now()
  FROM next
 WHERE r.ban_id = %(ban)s AND r.action = %(action)s AND r.group_id = next.group_id
RETURNING r.group_id, (SELECT chat_type FROM managed_groups WHERE group_id = r.group_id)
"""

SQL_RECORD = """
UPDATE fleet_ban_groups
   SET status = %(status)s, bot = %(bot)s, error = %(error)s, group_id = %(answered)s, updated_at = now()
 WHERE ban_id = %(ban)s AND action = %(action)s AND group_id = %(group)s AND status = 'applying'
"""

SQL_RELEASE = """
UPDATE fleet_ban_groups SET status = 'pending', updated_at = now()
 WHERE ban_id = %(ban)s AND action = %(action)s AND group_id = %(group)s AND status = 'applying'
"""

# A lifting job must not overtake a ban call still in flight in the same group.
SQL_BAN_IN_FLIGHT = """
SELECT count(*) FROM fleet_ban_groups
 WHERE ban_id = %(ban)s AND action = 'ban' AND status = 'applying'
   AND updated_at >= now() - make_interval(secs => %(stale)s)
"""

# Join requests of the user waiting for an operator or a verification, in any group, and those whose
# decision's outcome is unknown ('ambiguous': still waiting in Telegram, or already handled, which
# Telegram's answer to the decline says). ('processing' is a decision under way: the ban in that group
# follows it anyway.)
SQL_WAITING_REQUESTS = """
SELECT request_id, chat_id, bot, status FROM join_requests
 WHERE user_id = %(user)s AND status IN ('pending', 'verifying', 'held', 'ambiguous')
"""

# Taken before the decline call, conditionally: an operator's decision (which claims only waiting
# rows) and the ban never both call Telegram for one request. processed_at is stamped with the outcome.
SQL_CLAIM_BANNED = """
UPDATE join_requests SET status = 'banned', error = 'declining: the user was banned from the fleet'
 WHERE request_id = %(id)s AND status = %(was)s
RETURNING request_id
"""

SQL_REQUEST_BANNED = """
UPDATE join_requests SET error = %(error)s, processed_at = now()
 WHERE request_id = %(id)s AND status = 'banned'
"""

# The decline failed without effect (Telegram refused it): the request waits as it did.
SQL_UNCLAIM_BANNED = """
UPDATE join_requests SET status = %(was)s, error = %(error)s
 WHERE request_id = %(id)s AND status = 'banned' AND processed_at IS NULL
"""


@dataclass(frozen=True, slots=True)
class Target:
    ban_id: int
    action: str
    user_id: int
    until: datetime | None
    lifted: bool


async def load(conn: AsyncConnection[Any], ban_id: int, action: str) -> Target | None:
    cur = await conn.execute(SQL_LOAD, {"ban": ban_id})
    row = await cur.fetchone()
    if row is None:
        return None
    return Target(ban_id, action, int(row[0]), row[1], row[2] is not None)


async def claim(conn: AsyncConnection[Any], target: Target, stale_seconds: float) -> tuple[int, str | None] | None:
    cur = await conn.execute(SQL_CLAIM, {"ban": target.ban_id, "action": target.action, "stale": stale_seconds})
    row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else None


async def record(
    conn: AsyncConnection[Any],
    target: Target,
    group_id: int,
    status: str,
    bot: str | None,
    error: str | None,
    answered_by: int | None = None,
) -> None:
    await conn.execute(
        SQL_RECORD,
        {
            "ban": target.ban_id,
            "action": target.action,
            "group": group_id,
            "status": status,
            "bot": bot,
            "error": error,
            "answered": answered_by if answered_by is not None else group_id,
        },
    )


async def release(conn: AsyncConnection[Any], target: Target, group_id: int) -> None:
    await conn.execute(SQL_RELEASE, {"ban": target.ban_id, "action": target.action, "group": group_id})


async def remaining(conn: AsyncConnection[Any], target: Target) -> int:
    return await _todo(conn, target.ban_id, target.action)


async def ban_in_flight(conn: AsyncConnection[Any], ban_id: int, stale_seconds: float) -> int:
    cur = await conn.execute(SQL_BAN_IN_FLIGHT, {"ban": ban_id, "stale": stale_seconds})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def waiting_requests(conn: AsyncConnection[Any], user_id: int) -> list[tuple[int, int, str | None, str]]:
    cur = await conn.execute(SQL_WAITING_REQUESTS, {"user": user_id})
    return [(int(r[0]), int(r[1]), r[2], str(r[3])) for r in await cur.fetchall()]


async def claim_banned(conn: AsyncConnection[Any], request_id: int, was: str) -> bool:
    """Take a banned user's waiting request for the decline (False: someone else decided it meanwhile)."""
    cur = await conn.execute(SQL_CLAIM_BANNED, {"id": request_id, "was": was})
    return await cur.fetchone() is not None


async def request_banned(conn: AsyncConnection[Any], request_id: int, error: str | None) -> None:
    """The decline's outcome (or Telegram's reason it had nothing to decline)."""
    await conn.execute(SQL_REQUEST_BANNED, {"id": request_id, "error": error})


async def unclaim_banned(conn: AsyncConnection[Any], request_id: int, was: str, error: str | None) -> None:
    await conn.execute(SQL_UNCLAIM_BANNED, {"id": request_id, "was": was, "error": error})
