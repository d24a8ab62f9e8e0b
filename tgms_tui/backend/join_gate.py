"""The join-request gate's repository: per-group policies, the anti-raid hold, the manual queue and the
decisions taken on queued or verifying requests.

A request takes exactly one `join_requests` row (inserted by `join_requests.begin`, which also counts
it for the raid detector and picks its path); every later step moves that row and stamps its time:

    verifying --press right--> processing --> approved
    verifying --wrong / no answer / unreachable--> verification_failed (declined) | pending (manual queue)
    pending | held | ambiguous --operator--> processing --> approved | declined | ambiguous
    pending | held --older than manual_expire_hours--> declined

`claim` is the one statement before a press's or a deadline's Bot API call: it moves a waiting row to
'processing' with the decision and the deciding job, so two operators, two presses or a press racing a
timeout decide a request once. `settle` is the one after. A row left 'processing' by a crashed job is
taken again only by a re-run of the same job (same decision), as the approval path does.

An operator's decisions go in batches (`claim_batch`, `settle_batch`: one statement each for a batch
of requests, whose calls run side by side). A row one of them left 'processing' when its worker died
may or may not have been decided in Telegram: the re-run of the job finds it (`stranded`) and marks it
'ambiguous' instead of calling again, since approve/decline name the user, not the request, and a
repeated call could decide a newer request of the same user. An ambiguous request waits in the queue;
an operator may decide it again (Telegram answers "HIDE_REQUESTER_MISSING" if it was decided).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from .invite_links import SAME_LINK
from .queue import enqueue
from .webhook_updates import CALLBACK_JOB, JOIN_REQUEST_JOB

POLICIES = ("auto", "verify", "manual")
FALLBACKS = ("decline", "manual")
WAITING = ("pending", "held")
# What waits for an operator: the queue lists these and an operator's decision may take them.
QUEUE = ("pending", "held", "ambiguous")
DECISIONS = {"approve": "approved", "decline": "declined"}
DECIDE_JOB = "tgms_decide_join_requests"
DEADLINE_JOB = "tgms_join_request_deadline"
# Periodic (tgms pool): rows a decision job claimed and can no longer settle (the job failed for good
# or was cancelled) become visible again; see `abandoned`.
SWEEP_JOB = "tgms_join_decisions_sweep"
DEFAULT_VERIFY_TEXT = "To join {group}, please confirm you are human by pressing the button below."
DEFAULT_BUTTON = "I'm human"
DECIDE_PRIORITY = -5


class GroupGate(NamedTuple):
    group_id: int
    title: str
    join_policy: str
    verify_text: str | None
    verify_question: str | None
    verify_answers: list[str] | None
    verify_timeout_seconds: int
    verify_fallback: str
    manual_expire_hours: int | None
    raid_per_minute: int | None
    held_since: Any
    held_until: Any
    held: bool


class FleetGate(NamedTuple):
    group_per_minute: int
    fleet_per_minute: int
    calm_seconds: int
    fleet_held_since: Any
    fleet_held_until: Any
    fleet_held: bool
    held_groups: int


class QueuedRequest(NamedTuple):
    request_id: int
    chat_id: int
    title: str | None
    user_id: int
    username: str | None
    status: str
    requested_at: Any
    note: str | None
    link_name: str | None = None  # the named invite link (source) the request came through
    link_id: int | None = None


class Claimed(NamedTuple):
    request_id: int
    chat_id: int
    user_id: int
    username: str | None
    bot: str | None
    retried: bool  # the row was already 'processing' for this job: an earlier run may have called


class BatchRow(NamedTuple):
    """A request taken by an operator's decision job (`status` 'processing': call Telegram; 'expired':
    a newer request of the same user in that chat replaced it, so there is nothing to call)."""

    request_id: int
    chat_id: int
    user_id: int
    username: str | None
    bot: str | None
    status: str


class TokenRow(NamedTuple):
    request_id: int
    chat_id: int
    user_id: int
    status: str
    verify_code: str | None
    fallback: str


class GroupNotFound(LookupError):
    pass


class LinkNotFound(ValueError):
    """A decision named an invite link that no `tgms links create` made."""


_GATE_COLUMNS = """g.group_id, g.title, g.join_policy, g.verify_text, g.verify_question, g.verify_answers,
       g.verify_timeout_seconds, g.verify_fallback, g.manual_expire_hours, g.raid_per_minute, g.held_since,
       g.held_until, COALESCE(g.held_until > now(), false)"""

SQL_GROUP_GATE = f"SELECT {_GATE_COLUMNS} FROM managed_groups g WHERE g.group_id = %(group)s"

SQL_FLEET = """
SELECT group_per_minute, fleet_per_minute, calm_seconds, fleet_held_since, fleet_held_until,
       COALESCE(fleet_held_until > now(), false),
       (SELECT count(*) FROM managed_groups WHERE held_until > now())::int
  FROM join_gate
"""

SQL_HELD_GROUPS = f"SELECT {_GATE_COLUMNS} FROM managed_groups g WHERE g.held_until > now() ORDER BY g.held_since"

_SETTABLE = {
    "join_policy", "verify_text", "verify_question", "verify_answers", "verify_timeout_seconds",
    "verify_fallback", "manual_expire_hours", "raid_per_minute",
}  # fmt: skip

SQL_RELEASE_GROUP = """
WITH g AS (
    UPDATE managed_groups SET held_until = NULL, held_since = NULL, updated_at = now()
     WHERE group_id = %(group)s RETURNING group_id
)
DELETE FROM join_request_rates WHERE chat_id IN (SELECT group_id FROM g)
RETURNING (SELECT count(*) FROM g)
"""

SQL_RELEASE_FLEET = """
WITH f AS (UPDATE join_gate SET fleet_held_until = NULL, fleet_held_since = NULL, updated_at = now() RETURNING 1)
DELETE FROM join_request_rates WHERE minute >= date_trunc('minute', now()) - interval '1 minute'
"""

# The named link a request came through (a request records the URL as its bot received it).
_LINK_OF_REQUEST = f"""
LEFT JOIN LATERAL (
    SELECT l.name, l.link_id FROM invite_links l
     WHERE l.group_id = j.chat_id AND l.invite_link IS NOT NULL AND {SAME_LINK.format(x="j")}
     ORDER BY l.link_id DESC LIMIT 1
) src ON j.invite_link IS NOT NULL
"""

SQL_LIST = f"""
SELECT j.request_id, j.chat_id, g.title, j.user_id, j.username, j.status, j.requested_at, j.note,
       src.name, src.link_id
  FROM join_requests j LEFT JOIN managed_groups g ON g.group_id = j.chat_id
  {_LINK_OF_REQUEST}
 WHERE j.status = ANY(%(statuses)s) AND (%(group)s::bigint IS NULL OR j.chat_id = %(group)s)
 ORDER BY j.requested_at, j.request_id
 LIMIT %(limit)s
"""

# `link` names a source (every group's link of that name) or, when no link has that name, one link
# by its id.
SQL_LINKS = """
SELECT link_id FROM invite_links
 WHERE name = %(link)s
    OR (NOT EXISTS (SELECT 1 FROM invite_links WHERE name = %(link)s) AND link_id::text = %(link)s)
"""

SQL_WAITING_IDS = f"""
SELECT j.request_id FROM join_requests j
 WHERE j.status = ANY(%(statuses)s) AND (%(group)s::bigint IS NULL OR j.chat_id = %(group)s)
   AND (%(ids)s::bigint[] IS NULL OR j.request_id = ANY(%(ids)s))
   AND (%(links)s::bigint[] IS NULL OR (j.invite_link IS NOT NULL AND EXISTS (
        SELECT 1 FROM invite_links l
         WHERE l.link_id = ANY(%(links)s) AND l.group_id = j.chat_id AND l.invite_link IS NOT NULL
           AND {SAME_LINK.format(x="j")})))
 ORDER BY j.requested_at, j.request_id
"""

# An operator's decision job takes the next requests of its list in one statement (never one it left
# ambiguous itself, in an earlier run: only a new decision may call again). A request
# replaced by a newer one of the same user in that chat is gone in Telegram (a user has one pending
# request per chat): it becomes 'expired' here, since approve/decline would act on the newer one.
SQL_CLAIM_BATCH = """
WITH pick AS (
    SELECT j.request_id,
           EXISTS (SELECT 1 FROM join_requests n
                    WHERE n.chat_id = j.chat_id AND n.user_id = j.user_id AND n.requested_at > j.requested_at)
               AS superseded
      FROM join_requests j
     WHERE j.request_id = ANY(%(ids)s::bigint[]) AND j.status = ANY(%(expect)s::text[])
       AND NOT (j.status = 'ambiguous' AND j.job_id = %(job)s)
       FOR UPDATE OF j
)
UPDATE join_requests j
   SET status = CASE WHEN pick.superseded THEN 'expired' ELSE 'processing' END,
       decision = %(decision)s, decided_by = %(by)s, job_id = %(job)s,
       error = CASE WHEN pick.superseded THEN 'replaced by a newer request of the same user' END,
       processed_at = CASE WHEN pick.superseded THEN now() ELSE j.processed_at END,
       decided_at = CASE WHEN pick.superseded THEN now() ELSE j.decided_at END
  FROM pick
 WHERE j.request_id = pick.request_id
RETURNING j.request_id, j.chat_id, j.user_id, j.username, j.bot, j.status
"""

# Rows of the job's list that an earlier run of the job claimed and did not settle (it died).
SQL_STRANDED = """
SELECT request_id, chat_id, user_id, username, bot, status FROM join_requests
 WHERE request_id = ANY(%(ids)s::bigint[]) AND status = 'processing' AND job_id = %(job)s
"""

# Rows a job claimed and will never settle: the job failed for good (retries used up, a time limit,
# its worker killed on the last attempt) or was cancelled. An operator's decision job leaves rows
# 'processing'; a single request's job (`tgms_process_join_request`) leaves its one row 'processing'
# (approve) or 'declining' (a fleet-ban decline), and its decision follows from that status. Found from
# those jobs (few: jobs_history_ended_idx), then one index lookup per row, never a scan of
# join_requests (each lookup is a LATERAL ... LIMIT 1, so the planner cannot turn it into one): a
# decision job's rows through its payload's ids, a single request's row through the unique (chat_id,
# user_id, requested_at) its payload's update names, a press's row (`tgms_process_callback_query`)
# through the verification token in its button data, a deadline's (`tgms_join_request_deadline`)
# through its payload's request id: each of these two claimed its row with the row's decision. Only
# a lease after the job's last change, so a handler still winding down (recording its calls'
# outcomes) is not overtaken. A job still pending or running resolves its own rows (`stranded`, or
# the single request's re-run).
SQL_ABANDONED = """
WITH ended AS MATERIALIZED (
    SELECT job_id, job_type, status, payload FROM jobs
     WHERE job_type IN (%(job_type)s, %(single_job_type)s, %(press_job_type)s, %(deadline_job_type)s)
       AND status IN ('failed', 'cancelled')
       AND updated_at < now() - make_interval(secs => %(grace)s)
)
SELECT j.request_id, j.chat_id, j.user_id, j.username, j.bot, j.status, j.decision, o.job_id, o.status, o.job_type
  FROM ended o
 CROSS JOIN LATERAL jsonb_array_elements_text(
           CASE WHEN jsonb_typeof(o.payload -> 'ids') = 'array' THEN o.payload -> 'ids' ELSE '[]'::jsonb END) AS x(id)
 CROSS JOIN LATERAL (
           SELECT * FROM join_requests j
            WHERE j.request_id = CASE WHEN x.id ~ '^[0-9]{1,18}$' THEN x.id::bigint END
              AND j.job_id = o.job_id AND j.status = 'processing'
            LIMIT 1) j
 WHERE o.job_type = %(job_type)s
UNION ALL
SELECT j.request_id, j.chat_id, j.user_id, j.username, j.bot, j.status,
       CASE WHEN j.status = 'declining' THEN 'decline' ELSE 'approve' END, o.job_id, o.status, o.job_type
  FROM ended o
 CROSS JOIN LATERAL (
           SELECT CASE WHEN jsonb_typeof(o.payload -> 'update') = 'object' THEN o.payload -> 'update'
                       ELSE o.payload END -> 'chat_join_request' AS r) u
 CROSS JOIN LATERAL (
           SELECT u.r -> 'chat' ->> 'id' AS chat, u.r -> 'from' ->> 'id' AS "user", u.r ->> 'date' AS date) k
 CROSS JOIN LATERAL (
           SELECT * FROM join_requests j
            WHERE j.chat_id = CASE WHEN k.chat ~ '^-?[0-9]{1,18}$' THEN k.chat::bigint END
              AND j.user_id = CASE WHEN k."user" ~ '^-?[0-9]{1,18}$' THEN k."user"::bigint END
              AND j.requested_at = CASE WHEN k.date ~ '^[0-9]{1,12}$' THEN to_timestamp(k.date::bigint) END
              AND j.job_id = o.job_id AND j.status IN ('processing', 'declining')
            LIMIT 1) j
 WHERE o.job_type = %(single_job_type)s
UNION ALL
SELECT j.request_id, j.chat_id, j.user_id, j.username, j.bot, j.status, j.decision, o.job_id, o.status, o.job_type
  FROM ended o
 CROSS JOIN LATERAL (
           SELECT CASE WHEN o.job_type = %(deadline_job_type)s AND o.payload ->> 'request_id' ~ '^[0-9]{1,18}$'
                       THEN (o.payload ->> 'request_id')::bigint END AS id,
                  CASE WHEN o.job_type = %(press_job_type)s
                       THEN split_part(o.payload -> 'update' -> 'callback_query' ->> 'data', ':', 2) END AS token) k
 CROSS JOIN LATERAL (
           SELECT * FROM join_requests j
            WHERE (j.request_id = k.id OR j.verify_token = k.token)
              AND j.job_id = o.job_id AND j.status = 'processing'
            LIMIT 1) j
 WHERE o.job_type IN (%(press_job_type)s, %(deadline_job_type)s)
 ORDER BY 1
 LIMIT %(limit)s
"""

# The sweep's outcomes: each row still 'processing' (or 'declining') for the job that claimed it (the
# job id stays on the row, so a retried job never takes a row it left ambiguous). processed_at, set
# here for the first time on a single request's row, raises join_request.decided (hooks.py).
SQL_SETTLE_ABANDONED = """
WITH v AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(jobs)s::bigint[], %(statuses)s::text[], %(errors)s::text[])
        AS v(id, job, status, error)
), upd AS (
    UPDATE join_requests j
       SET status = v.status, error = v.error, processed_at = now(), decided_at = now()
      FROM v
     WHERE j.request_id = v.id AND j.status IN ('processing', 'declining') AND j.job_id = v.job
    RETURNING j.chat_id, j.user_id, j.username, j.status
)
INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
SELECT DISTINCT ON (chat_id, user_id) chat_id, user_id, username, 'member', false, now(), now()
  FROM upd WHERE status = 'approved'
ON CONFLICT (chat_id, user_id) DO UPDATE
   SET username = COALESCE(EXCLUDED.username, m.username), status = 'member', last_seen_at = now()
"""

# Rows a decision job claimed but did not call (Telegram refused without acting, and the run ends):
# back to the queue. A held request keeps its held_at; every other one waited as pending.
SQL_RELEASE_BATCH = """
UPDATE join_requests
   SET status = CASE WHEN held_at IS NOT NULL THEN 'held' ELSE 'pending' END, decision = NULL,
       error = %(error)s
 WHERE request_id = ANY(%(ids)s::bigint[]) AND status = 'processing' AND job_id = %(job)s
"""

SQL_SETTLE_BATCH = """
WITH v AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(errors)s::text[]) AS v(id, status, error)
), upd AS (
    UPDATE join_requests j
       SET status = v.status, error = v.error, note = COALESCE(%(note)s, j.note), processed_at = now(),
           decided_at = now()
      FROM v
     WHERE j.request_id = v.id AND j.status = 'processing' AND j.job_id = %(job)s
    RETURNING j.chat_id, j.user_id, j.username, j.status
)
INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
SELECT DISTINCT ON (chat_id, user_id) chat_id, user_id, username, 'member', false, now(), now()
  FROM upd WHERE status IN ('approved', 'already_member')
ON CONFLICT (chat_id, user_id) DO UPDATE
   SET username = COALESCE(EXCLUDED.username, m.username), status = 'member', last_seen_at = now()
"""

SQL_CLAIM = """
WITH old AS (
    SELECT request_id, status FROM join_requests WHERE request_id = %(id)s FOR UPDATE
)
UPDATE join_requests j
   SET status = 'processing', decision = %(decision)s, decided_by = COALESCE(%(by)s, j.decided_by),
       job_id = %(job)s, answered_at = CASE WHEN %(answered)s THEN COALESCE(j.answered_at, now())
                                            ELSE j.answered_at END
  FROM old
 WHERE j.request_id = old.request_id
   AND (old.status = ANY(%(expect)s)
        OR (old.status = 'processing' AND j.decision = %(decision)s AND j.job_id = %(job)s))
RETURNING j.request_id, j.chat_id, j.user_id, j.username, j.bot, old.status = 'processing'
"""

SQL_SETTLE = """
WITH upd AS (
    UPDATE join_requests
       SET status = %(status)s, error = %(error)s, note = COALESCE(%(note)s, note), processed_at = now(),
           decided_at = now()
     WHERE request_id = %(id)s AND status = 'processing'
    RETURNING chat_id, user_id, username
)
INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
SELECT chat_id, user_id, username, 'member', false, now(), now() FROM upd WHERE %(joined)s
ON CONFLICT (chat_id, user_id) DO UPDATE
   SET username = COALESCE(EXCLUDED.username, m.username), status = 'member', last_seen_at = now()
"""

# A verifying request that failed and goes to the operator instead of being declined.
SQL_TO_QUEUE = """
UPDATE join_requests
   SET status = 'pending', queued_at = now(), note = %(note)s,
       answered_at = CASE WHEN %(answered)s THEN COALESCE(answered_at, now()) ELSE answered_at END
 WHERE request_id = %(id)s AND status = 'verifying'
RETURNING request_id
"""

SQL_RECORD_DM = """
UPDATE join_requests SET dm_sent_at = now(), dm_message_id = %(message)s, error = NULL
 WHERE request_id = %(id)s AND status = 'verifying'
RETURNING request_id
"""

SQL_NOTE = "UPDATE join_requests SET note = %(note)s WHERE request_id = %(id)s"

SQL_BY_TOKEN = """
SELECT j.request_id, j.chat_id, j.user_id, j.status, j.verify_code, COALESCE(g.verify_fallback, 'decline')
  FROM join_requests j LEFT JOIN managed_groups g ON g.group_id = j.chat_id
 WHERE j.verify_token = %(token)s
"""

SQL_STATUS = "SELECT status FROM join_requests WHERE request_id = %(id)s"

SQL_EXPIRED_IDS = """
SELECT j.request_id FROM join_requests j JOIN managed_groups g ON g.group_id = j.chat_id
 WHERE j.status IN ('pending', 'held') AND g.manual_expire_hours IS NOT NULL
   AND COALESCE(j.queued_at, j.held_at, j.requested_at) < now() - make_interval(hours => g.manual_expire_hours)
"""

SQL_PRUNE_RATES = "DELETE FROM join_request_rates WHERE minute < date_trunc('minute', now()) - interval '2 minutes'"


async def group_gate(conn: AsyncConnection[Any], group_id: int) -> GroupGate:
    cur = await conn.execute(SQL_GROUP_GATE, {"group": group_id})
    row = await cur.fetchone()
    if row is None:
        raise GroupNotFound(group_id)
    return GroupGate(*row)


async def fleet(conn: AsyncConnection[Any]) -> FleetGate:
    cur = await conn.execute(SQL_FLEET)
    row = await cur.fetchone()
    assert row is not None
    return FleetGate(*row)


async def held_groups(conn: AsyncConnection[Any]) -> list[GroupGate]:
    cur = await conn.execute(SQL_HELD_GROUPS)
    return [GroupGate(*row) for row in await cur.fetchall()]


def check_policy_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as stored, or ValueError naming the first bad one (API, CLI and TUI share this)."""
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    out = dict(fields)
    if "join_policy" in out and out["join_policy"] not in POLICIES:
        raise ValueError(f"join_policy must be one of {', '.join(POLICIES)}")
    if "verify_fallback" in out and out["verify_fallback"] not in FALLBACKS:
        raise ValueError(f"verify_fallback must be one of {', '.join(FALLBACKS)}")
    for name in ("verify_text", "verify_question"):
        value = out.get(name)
        if value is not None and (not isinstance(value, str) or not 0 < len(value.strip()) <= 1000):
            raise ValueError(f"{name} must be 1-1000 characters")
    answers = out.get("verify_answers")
    if answers is not None:
        if (
            not isinstance(answers, list)
            or not 2 <= len(answers) <= 6
            or not all(isinstance(a, str) and 0 < len(a.strip()) <= 40 for a in answers)
        ):
            raise ValueError("verify_answers must be 2-6 answers of 1-40 characters (the first is the right one)")
        out["verify_answers"] = Jsonb(answers)
    timeout = out.get("verify_timeout_seconds")
    if timeout is not None and (type(timeout) is not int or not 10 <= timeout <= 86400):
        raise ValueError("verify_timeout_seconds must be an integer from 10 to 86400")
    hours = out.get("manual_expire_hours")
    if hours is not None and (type(hours) is not int or hours <= 0):
        raise ValueError("manual_expire_hours must be a positive integer (or null to keep requests)")
    raid = out.get("raid_per_minute")
    if raid is not None and (type(raid) is not int or raid < 0):
        raise ValueError("raid_per_minute must be an integer >= 0 (0: off; null: the fleet's default)")
    return out


async def set_group_gate(conn: AsyncConnection[Any], group_id: int, fields: dict[str, Any]) -> GroupGate:
    """Change a group's gate settings (validated); GroupNotFound for an unknown group."""
    checked = check_policy_fields(fields)
    if checked:
        assignments = ", ".join(f"{name} = %({name})s" for name in checked)  # names from _SETTABLE only
        cur = await conn.execute(
            f"UPDATE managed_groups SET {assignments}, updated_at = now() WHERE group_id = %(group)s "
            "RETURNING group_id",
            {**checked, "group": group_id},
        )
        if await cur.fetchone() is None:
            raise GroupNotFound(group_id)
    return await group_gate(conn, group_id)


async def set_fleet(
    conn: AsyncConnection[Any],
    *,
    group_per_minute: int | None = None,
    fleet_per_minute: int | None = None,
    calm_seconds: int | None = None,
) -> FleetGate:
    for name, value, low in (("group_per_minute", group_per_minute, 0), ("fleet_per_minute", fleet_per_minute, 0),
                             ("calm_seconds", calm_seconds, 1)):  # fmt: skip
        if value is not None and (type(value) is not int or value < low):
            raise ValueError(f"{name} must be an integer >= {low}")
    await conn.execute(
        """UPDATE join_gate SET group_per_minute = COALESCE(%(g)s, group_per_minute),
                  fleet_per_minute = COALESCE(%(f)s, fleet_per_minute),
                  calm_seconds = COALESCE(%(c)s, calm_seconds), updated_at = now()""",
        {"g": group_per_minute, "f": fleet_per_minute, "c": calm_seconds},
    )
    return await fleet(conn)


async def release_group(conn: AsyncConnection[Any], group_id: int) -> None:
    """End a group's raid hold now (its minute's count starts again); GroupNotFound if unknown."""
    cur = await conn.execute(SQL_RELEASE_GROUP, {"group": group_id})
    found = await cur.fetchone()
    if not found:
        exists = await conn.execute("SELECT 1 FROM managed_groups WHERE group_id = %(group)s", {"group": group_id})
        if await exists.fetchone() is None:
            raise GroupNotFound(group_id)


async def release_fleet(conn: AsyncConnection[Any]) -> None:
    await conn.execute(SQL_RELEASE_FLEET)


async def list_requests(
    conn: AsyncConnection[Any], statuses: tuple[str, ...] = QUEUE, group_id: int | None = None, limit: int = 10_000
) -> list[QueuedRequest]:
    cur = await conn.execute(SQL_LIST, {"statuses": list(statuses), "group": group_id, "limit": limit})
    return [QueuedRequest(*row) for row in await cur.fetchall()]


async def request_decisions(
    conn: AsyncConnection[Any],
    decision: str,
    *,
    by: str,
    ids: list[int] | None = None,
    group_id: int | None = None,
    link: str | None = None,
) -> tuple[int | None, list[int]]:
    """Queue a decision on waiting requests (the listed ids, all of a group, all that came through an
    invite link — a source's name or one link's id —, or what matches several of these): one job that
    the TGMS worker carries out at Telegram's pace. Returns (job id, the ids it covers); LinkNotFound
    for a link nobody created."""
    if decision not in DECISIONS:
        raise ValueError("decision must be approve or decline")
    if ids is None and group_id is None and link is None:
        raise ValueError("name the requests (ids), a group or an invite link")
    links = None
    if link is not None:
        cur = await conn.execute(SQL_LINKS, {"link": link})
        links = [int(row[0]) for row in await cur.fetchall()]
        if not links:
            raise LinkNotFound(f"link: no invite link is named (or has the id) {link!r}")
    params = {"statuses": list(QUEUE), "group": group_id, "ids": ids, "links": links}
    cur = await conn.execute(SQL_WAITING_IDS, params)
    found = [int(row[0]) for row in await cur.fetchall()]
    if not found:
        return None, []
    job = await enqueue(
        conn, DECIDE_JOB, {"ids": found, "decision": decision, "by": by}, priority=DECIDE_PRIORITY, max_retries=10
    )
    return job, found


async def waiting_status(conn: AsyncConnection[Any], request_id: int) -> str | None:
    cur = await conn.execute(SQL_STATUS, {"id": request_id})
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def claim(
    conn: AsyncConnection[Any],
    request_id: int,
    decision: str,
    expect: tuple[str, ...],
    job_id: int,
    *,
    by: str | None = None,
    answered: bool = False,
) -> Claimed | None:
    """Take a waiting request for a decision (None when it is no longer in `expect`)."""
    cur = await conn.execute(
        SQL_CLAIM,
        {"id": request_id, "decision": decision, "expect": list(expect), "job": job_id, "by": by,
         "answered": answered},
    )  # fmt: skip
    row = await cur.fetchone()
    return None if row is None else Claimed(*row)


async def settle(
    conn: AsyncConnection[Any], request_id: int, status: str, error: str | None = None, note: str | None = None
) -> None:
    joined = status in ("approved", "already_member")
    await conn.execute(SQL_SETTLE, {"id": request_id, "status": status, "error": error, "note": note,
                                    "joined": joined})  # fmt: skip


async def still_waiting(conn: AsyncConnection[Any], ids: list[int]) -> list[int]:
    """Of `ids`, those an operator's decision may still take, in the queue's order."""
    cur = await conn.execute(SQL_WAITING_IDS, {"statuses": list(QUEUE), "group": None, "ids": ids, "links": None})
    return [int(row[0]) for row in await cur.fetchall()]


async def claim_batch(
    conn: AsyncConnection[Any], ids: list[int], decision: str, job_id: int, by: str
) -> list[BatchRow]:
    """Take those of `ids` still in the queue for this decision job, in one statement."""
    cur = await conn.execute(
        SQL_CLAIM_BATCH, {"ids": ids, "expect": list(QUEUE), "decision": decision, "job": job_id, "by": by}
    )
    return [BatchRow(*row) for row in await cur.fetchall()]


async def stranded(conn: AsyncConnection[Any], ids: list[int], job_id: int) -> list[BatchRow]:
    """Of `ids`, those an earlier run of `job_id` claimed and never settled."""
    cur = await conn.execute(SQL_STRANDED, {"ids": ids, "job": job_id})
    return [BatchRow(*row) for row in await cur.fetchall()]


async def settle_batch(
    conn: AsyncConnection[Any], job_id: int, outcomes: list[tuple[int, str, str | None]], note: str | None
) -> None:
    """Record (request id, status, error) for rows this job holds 'processing', in one statement."""
    if not outcomes:
        return
    await conn.execute(
        SQL_SETTLE_BATCH,
        {"ids": [o[0] for o in outcomes], "statuses": [o[1] for o in outcomes], "errors": [o[2] for o in outcomes],
         "job": job_id, "note": note},
    )  # fmt: skip


class AbandonedRow(NamedTuple):
    """A row claimed for a decision by a job that will never settle it."""

    request_id: int
    chat_id: int
    user_id: int
    username: str | None
    bot: str | None
    status: str  # processing, or declining (a single request's fleet-ban decline)
    decision: str  # approve or decline
    job_id: int
    job_status: str  # failed or cancelled
    job_type: str  # DECIDE_JOB (an operator's decision), JOIN_REQUEST_JOB (one request as it arrived),
    # CALLBACK_JOB (a verification press) or DEADLINE_JOB (no answer in time, or the queue's expiry)


async def abandoned(conn: AsyncConnection[Any], grace_seconds: float, limit: int = 1000) -> list[AbandonedRow]:
    """Rows left 'processing' (or 'declining') by a decision job, a single request's job, a
    verification press or a deadline that failed for good or was cancelled."""
    params = {"job_type": DECIDE_JOB, "single_job_type": JOIN_REQUEST_JOB, "press_job_type": CALLBACK_JOB,
              "deadline_job_type": DEADLINE_JOB, "grace": grace_seconds, "limit": limit}  # fmt: skip
    cur = await conn.execute(SQL_ABANDONED, params)
    return [AbandonedRow(*row) for row in await cur.fetchall()]


async def settle_abandoned(conn: AsyncConnection[Any], outcomes: list[tuple[AbandonedRow, str, str | None]]) -> None:
    """Record (row, status, error) for abandoned rows still 'processing' for their job, in one statement."""
    if not outcomes:
        return
    await conn.execute(
        SQL_SETTLE_ABANDONED,
        {"ids": [o[0].request_id for o in outcomes], "jobs": [o[0].job_id for o in outcomes],
         "statuses": [o[1] for o in outcomes], "errors": [o[2] for o in outcomes]},
    )  # fmt: skip


async def release_batch(conn: AsyncConnection[Any], job_id: int, ids: list[int], error: str | None) -> None:
    """Put rows this job claimed but did not call back in the queue."""
    if ids:
        await conn.execute(SQL_RELEASE_BATCH, {"ids": ids, "job": job_id, "error": error})


async def to_queue(conn: AsyncConnection[Any], request_id: int, note: str, *, answered: bool = False) -> bool:
    cur = await conn.execute(SQL_TO_QUEUE, {"id": request_id, "note": note, "answered": answered})
    return await cur.fetchone() is not None


async def record_dm(conn: AsyncConnection[Any], request_id: int, message_id: int | None, deadline_seconds: int) -> None:
    """The verification message went out: stamp it and schedule the no-answer deadline (one transaction)."""
    async with conn.transaction():
        await conn.execute(SQL_RECORD_DM, {"id": request_id, "message": message_id})
        await schedule_deadline(conn, request_id, "verify", deadline_seconds)


async def schedule_deadline(conn: AsyncConnection[Any], request_id: int, kind: str, seconds: float) -> None:
    """`kind` verify: no answer in time; expire: still queued after the group's manual_expire_hours."""
    await enqueue(
        conn,
        DEADLINE_JOB,
        {"request_id": request_id, "kind": kind},
        run_at=datetime.now(UTC) + timedelta(seconds=seconds),
        priority=DECIDE_PRIORITY,
        dedupe_key=f"join-deadline:{kind}:{request_id}",
        max_retries=10,
    )


async def note(conn: AsyncConnection[Any], request_id: int, text: str) -> None:
    await conn.execute(SQL_NOTE, {"id": request_id, "note": text})


async def fallback_of(conn: AsyncConnection[Any], request_id: int) -> str:
    cur = await conn.execute(
        "SELECT COALESCE(g.verify_fallback, 'decline') FROM join_requests j "
        "LEFT JOIN managed_groups g ON g.group_id = j.chat_id WHERE j.request_id = %(id)s",
        {"id": request_id},
    )
    row = await cur.fetchone()
    return str(row[0]) if row else "decline"


async def by_token(conn: AsyncConnection[Any], token: str) -> TokenRow | None:
    cur = await conn.execute(SQL_BY_TOKEN, {"token": token})
    row = await cur.fetchone()
    return None if row is None else TokenRow(*row)


async def expired_ids(conn: AsyncConnection[Any]) -> list[int]:
    """Queued requests older than their group's manual_expire_hours."""
    cur = await conn.execute(SQL_EXPIRED_IDS)
    return [int(row[0]) for row in await cur.fetchall()]


async def prune_rates(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute(SQL_PRUNE_RATES)
    return cur.rowcount
