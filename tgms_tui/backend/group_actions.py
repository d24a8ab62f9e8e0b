"""What an operator can do to one managed group, and everything the detail view shows about it.

The writes are the `groups` repository's (its activation rule included), each one statement that
touches `updated_at`, so the statement trigger on managed_groups NOTIFYs every open control center
and they all show the change at once. The detail view's reads are part of the control center's read
model (see dashboard.py): polled while the view is open, each bounded and served by an index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from . import groups, queue
from .dashboard import GROUP_COLUMNS, GroupRow
from .groups import PHASES as PHASES

MEMBER_COUNT_JOB = "tgms_update_member_counts"
DETAIL_LIMIT = 50
HISTORY_POINTS = 120


class GroupNotFound(LookupError):
    """The group was deleted (or never existed) between the screen showing it and the action."""


@dataclass(frozen=True, slots=True)
class MemberCountPoint:
    recorded_at: datetime
    member_count: int


@dataclass(frozen=True, slots=True)
class GroupJoinRequest:
    request_id: int
    user_id: int
    username: str | None
    status: str
    error: str | None
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class ReceivedBroadcast:
    broadcast_id: int | None
    summary: str
    status: str
    debug_code: str
    error: str | None
    sent_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KickRecord:
    kick_id: int
    user_id: int
    action: str
    reason: str | None
    dry_run: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class GroupDetail:
    group: GroupRow
    chat_type: str
    admin_user_id: int | None
    inactivity_days: int | None
    deactivated_at: datetime | None
    member_count_at: datetime | None
    created_at: datetime
    join_policy: str
    held_since: datetime | None
    held_requests: int  # join requests of the group waiting as 'held' (a raid hold's)
    history: list[MemberCountPoint]
    join_requests: list[GroupJoinRequest]
    broadcasts: list[ReceivedBroadcast]
    kicks: list[KickRecord]


SQL_GROUP = f"""
SELECT {GROUP_COLUMNS},
       chat_type, admin_user_id, inactivity_days, deactivated_at, member_count_at, created_at,
       join_policy, held_since,
       (SELECT count(*) FROM join_requests j WHERE j.chat_id = g.group_id AND j.status = 'held')
  FROM managed_groups g WHERE group_id = %s
"""

SQL_HISTORY = """
SELECT recorded_at, member_count FROM (
    SELECT recorded_at, member_count FROM member_count_history
     WHERE group_id = %s ORDER BY recorded_at DESC LIMIT %s
) AS h ORDER BY recorded_at
"""

SQL_GROUP_JOIN_REQUESTS = """
SELECT request_id, user_id, username, status, left(error, 200), requested_at
  FROM join_requests WHERE chat_id = %s ORDER BY requested_at DESC LIMIT %s
"""

SQL_GROUP_BROADCASTS = """
SELECT sm.broadcast_id, left(COALESCE(b.text, b.caption, b.photo_url, ''), 200), sm.status, sm.debug_code,
       left(sm.error, 200), sm.sent_at, sm.created_at
  FROM sent_messages AS sm LEFT JOIN broadcasts AS b USING (broadcast_id)
 WHERE sm.chat_id = %s ORDER BY sm.message_id DESC LIMIT %s
"""

SQL_GROUP_KICKS = """
SELECT id, user_id, action, reason, dry_run, at FROM kick_audit WHERE chat_id = %s ORDER BY at DESC LIMIT %s
"""


def _found(found: bool, group_id: int) -> None:
    if not found:
        raise GroupNotFound(group_id)


async def set_active(
    conn: AsyncConnection[Any], group_id: int, active: bool, reason: str = groups.OPERATOR_REASON
) -> None:
    """Activate or deactivate a group by the activation rule (groups.py)."""
    if active:
        _found(await groups.reactivate(conn, group_id), group_id)
    else:
        _found(await groups.deactivate(conn, group_id, reason), group_id)


async def set_phase(conn: AsyncConnection[Any], group_id: int, phase: str) -> None:
    _found(await groups.set_phase(conn, group_id, phase), group_id)


async def set_final_message_allowed(conn: AsyncConnection[Any], group_id: int, allowed: bool) -> None:
    _found(await groups.set_final_message_allowed(conn, group_id, allowed), group_id)


async def request_member_count_refresh(conn: AsyncConnection[Any], group_id: int) -> int:
    """Enqueue a member-count refresh for this one group now; returns the job id.

    No dedupe key: a key holds for as long as the job row exists, which would block a second
    refresh until pruning."""
    job_id = await queue.enqueue(conn, MEMBER_COUNT_JOB, {"group_ids": [group_id]})
    assert job_id is not None  # only a dedupe key can make enqueue return None
    return job_id


async def fetch_group_detail(conn: AsyncConnection[Any], group_id: int) -> GroupDetail:
    """The group and its recent history: member counts, join requests, broadcasts, kicks."""
    cur = await conn.execute(SQL_GROUP, (group_id,))
    row = await cur.fetchone()
    if row is None:
        raise GroupNotFound(group_id)
    group = GroupRow(*row[:11])
    chat_type, admin_user_id, inactivity_days, deactivated_at, member_count_at, created_at = row[11:17]
    join_policy, held_since, held_requests = row[17:]
    cur = await conn.execute(SQL_HISTORY, (group_id, HISTORY_POINTS))
    history = [MemberCountPoint(*r) for r in await cur.fetchall()]
    cur = await conn.execute(SQL_GROUP_JOIN_REQUESTS, (group_id, DETAIL_LIMIT))
    joins = [GroupJoinRequest(*r) for r in await cur.fetchall()]
    cur = await conn.execute(SQL_GROUP_BROADCASTS, (group_id, DETAIL_LIMIT))
    broadcasts = [ReceivedBroadcast(*r) for r in await cur.fetchall()]
    cur = await conn.execute(SQL_GROUP_KICKS, (group_id, DETAIL_LIMIT))
    kicks = [KickRecord(*r) for r in await cur.fetchall()]
    return GroupDetail(
        group=group,
        chat_type=chat_type,
        admin_user_id=admin_user_id,
        inactivity_days=inactivity_days,
        deactivated_at=deactivated_at,
        member_count_at=member_count_at,
        created_at=created_at,
        join_policy=join_policy,
        held_since=held_since,
        held_requests=held_requests,
        history=history,
        join_requests=joins,
        broadcasts=broadcasts,
        kicks=kicks,
    )
