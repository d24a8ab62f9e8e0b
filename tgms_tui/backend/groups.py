"""The `managed_groups` repository: registering groups, the one activation rule, the id rewrite of a
group upgraded to a supergroup, and the lists of groups the workers go through.

The activation rule (every statement that activates or deactivates a group applies it, through
`_state`):

- Deactivating an active group sets `is_active = false`, the reason, and `deactivated_at = now()`.
- Deactivating a group that is already inactive keeps `deactivated_at` (it has been inactive since
  then) and replaces the reason with the newer one, except that an automatic reason never replaces
  an operator's: a later promotion of the bot undoes automatic deactivations only, so the operator's
  decision must stay visible to it.
- Reactivating clears `deactivated_at` and the reason and starts the failure count afresh (or the
  next error would deactivate the group again).

Every registration, activation change and member-count change raises its event webhook in the same
transaction, whichever statement made it: triggers of migration 020 write the event (hooks.py).

Automatic reasons are the ones TGMS writes itself: they start with "bot " (the bot's rights or
membership changed) or count consecutive broadcast failures. Anything else is an operator's.

A basic group upgraded to a supergroup gets a new chat id (Telegram answers writes to the old id
with "group chat was upgraded to a supergroup chat"; the old chat posts `migrate_to_chat_id`).
Whoever sees it first (a broadcast, a member-count job, the main worker) calls `rewrite_id`; the
others find nothing left to do. The group id is a key in every table, so this one operation writes
them all. The new supergroup may already have rows of its own (the bot's `my_chat_member` in the
new chat can register it first), so every table is merged, not blindly updated: the old group's
settings (phase, activity, policy) win because they are the admin's choices, and a broadcast that
already has a row for the new id keeps that row (the old one is skipped, never sent twice). The
rewrite emits one `group.migrated` event (hooks.py), in its transaction; the rows it moves raise no
other group event.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from psycopg import AsyncConnection

from . import hooks, queue
from .bulk_rows import collector_paused

log = logging.getLogger(__name__)

PHASES = ("growth", "monitoring")
# Run by the TGMS worker (workers/group_check.py): check a chat with Telegram, then register it.
REGISTER_JOB = "tgms_register_group"

REASON_REMOVED = "bot was removed from the group by user {actor}"
REASON_KICKED = "bot was kicked from the group by user {actor}"
REASON_NOT_ADMIN = "bot is no longer an administrator (demoted by user {actor})"
REASON_NO_INVITE = "bot cannot invite users, so it cannot approve join requests"
REASON_FAILURES = "{max} consecutive broadcast failures; last: {error}"
OPERATOR_REASON = "deactivated by an operator"


def _automatic(reason: str) -> str:
    return f"({reason} LIKE 'bot %%' OR {reason} LIKE '%%consecutive broadcast failures%%')"


# An inactive group whose reason a bot promotion may undo.
UNDOABLE = f"(g.deactivated_reason IS NULL OR {_automatic('g.deactivated_reason')})"


def _state(
    *, deactivate: str = "false", reason: str = "NULL", reactivate: str = "false", failures: str | None = None
) -> str:
    """SET items of `managed_groups AS g` applying the rule: deactivate with `reason` where
    `deactivate` holds, reactivate where `reactivate` holds (never both)."""
    keep_reason = f"(NOT g.is_active AND NOT {UNDOABLE} AND {_automatic(reason)})"
    return f"""is_active = CASE WHEN {deactivate} THEN false WHEN {reactivate} THEN true ELSE g.is_active END,
       deactivated_at = CASE WHEN {deactivate} THEN CASE WHEN g.is_active THEN now()
                                                         ELSE COALESCE(g.deactivated_at, now()) END
                             WHEN {reactivate} THEN NULL ELSE g.deactivated_at END,
       deactivated_reason = CASE WHEN {deactivate} AND NOT {keep_reason} THEN {reason}
                                 WHEN {reactivate} THEN NULL ELSE g.deactivated_reason END,
       consecutive_failures = CASE WHEN {reactivate} THEN 0 ELSE {failures or "g.consecutive_failures"} END"""


# Broadcast outcomes, for the sender's statements (one round trip with the sent_messages update):
# success resets the count; a delivery failure counts and deactivates an active group at the threshold.
DELIVERED = "consecutive_failures = 0, last_broadcast_at = now(), updated_at = now()"
DELIVERY_FAILED = (
    _state(
        deactivate="(g.is_active AND g.consecutive_failures + 1 >= %(max)s)",
        reason="%(reason)s",
        failures="g.consecutive_failures + 1",
    )
    + ", updated_at = now()"
)

# An operator registers a group whose chat was looked up: its title and type are Telegram's. For a
# known group only what was given changes (a phase or kicking policy left out is kept), and its
# active state is left alone: reactivating is its own, checked, action.
SQL_REGISTER = """
INSERT INTO managed_groups AS g (group_id, title, chat_type, phase, admin_user_id, inactivity_days, bot_can_invite)
VALUES (%(group_id)s, %(title)s, %(chat_type)s, COALESCE(%(phase)s, 'growth'), %(admin_user_id)s,
        %(inactivity_days)s, %(bot_can_invite)s)
ON CONFLICT (group_id) DO UPDATE
   SET title = COALESCE(NULLIF(EXCLUDED.title, ''), g.title), chat_type = EXCLUDED.chat_type,
       phase = COALESCE(%(phase)s, g.phase),
       admin_user_id = COALESCE(EXCLUDED.admin_user_id, g.admin_user_id),
       inactivity_days = COALESCE(EXCLUDED.inactivity_days, g.inactivity_days),
       bot_can_invite = COALESCE(EXCLUDED.bot_can_invite, g.bot_can_invite), updated_at = now()
RETURNING (xmax = 0) AS inserted, is_active, deactivated_reason
"""

# Removing a group deletes its managed_groups row only: what was sent there, its join requests,
# member counts and kicks stay (no table references managed_groups), so its history remains
# queryable and comes back into view if the group is registered again.
SQL_REMOVE = "DELETE FROM managed_groups WHERE group_id = %s RETURNING group_id"

# The bot was made an administrator: a new group starts in growth, active when the bot may invite
# users (approve join requests). A known group follows the rule: no invite right deactivates it, the
# invite right reactivates it unless an operator deactivated it.
SQL_BOT_PROMOTED = f"""
INSERT INTO managed_groups AS g
       (group_id, admin_user_id, title, chat_type, phase, is_active, bot_can_invite,
        deactivated_reason, deactivated_at)
VALUES (%(chat)s, %(actor)s, %(title)s, %(type)s, 'growth', %(can_invite)s, %(can_invite)s,
        CASE WHEN %(can_invite)s THEN NULL ELSE %(reason)s END,
        CASE WHEN %(can_invite)s THEN NULL ELSE now() END)
ON CONFLICT (group_id) DO UPDATE
   SET admin_user_id = COALESCE(g.admin_user_id, EXCLUDED.admin_user_id),
       title = COALESCE(NULLIF(EXCLUDED.title, ''), g.title),
       chat_type = EXCLUDED.chat_type,
       bot_can_invite = EXCLUDED.bot_can_invite,
       {
    _state(
        deactivate="NOT EXCLUDED.bot_can_invite",
        reason="%(reason)s",
        reactivate=f"(EXCLUDED.bot_can_invite AND (g.is_active OR {UNDOABLE}))",
    )
},
       updated_at = now()
RETURNING is_active, (xmax = 0) AS inserted
"""

SQL_DEACTIVATE = f"""
UPDATE managed_groups AS g
   SET {_state(deactivate="true", reason="%(reason)s")},
       bot_can_invite = COALESCE(%(can_invite)s, g.bot_can_invite),
       title = COALESCE(NULLIF(%(title)s, ''), g.title), updated_at = now()
 WHERE group_id = %(group_id)s
RETURNING group_id
"""

SQL_REACTIVATE = f"""
UPDATE managed_groups AS g SET {_state(reactivate="true")}, updated_at = now()
 WHERE group_id = %(group_id)s
RETURNING group_id
"""

SQL_SET_TITLE = "UPDATE managed_groups SET title = %s, updated_at = now() WHERE group_id = %s RETURNING group_id"
SQL_SET_PHASE = "UPDATE managed_groups SET phase = %s, updated_at = now() WHERE group_id = %s RETURNING group_id"
SQL_SET_FINAL_ALLOWED = """
UPDATE managed_groups SET final_message_allowed = %s, updated_at = now() WHERE group_id = %s RETURNING group_id
"""

SQL_LIST = """
SELECT group_id, title, chat_type, phase, is_active, final_message_allowed, member_count, consecutive_failures,
       deactivated_reason, inactivity_days
  FROM managed_groups ORDER BY is_active DESC, title, group_id
"""

SQL_IDS = """
SELECT group_id FROM managed_groups
 WHERE (%(ids)s::bigint[] IS NULL AND is_active) OR group_id = ANY(%(ids)s::bigint[]) ORDER BY group_id
"""

SQL_KICK_POLICIES = """
SELECT group_id, chat_type, inactivity_days FROM managed_groups
 WHERE is_active AND inactivity_days IS NOT NULL
   AND (%(ids)s::bigint[] IS NULL OR group_id = ANY(%(ids)s::bigint[]))
 ORDER BY group_id
"""

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

# Serialises concurrent rewrites of one group (any two callers agree on the lock key).
SQL_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('tgms:migrate:' || %(old)s::text, 0))"

SQL_MERGE_GROUP = """
WITH old AS (
    DELETE FROM managed_groups WHERE group_id = %(old)s RETURNING *
)
INSERT INTO managed_groups AS g
       (group_id, admin_user_id, title, chat_type, phase, is_active, final_message_allowed, member_count,
        consecutive_failures, deactivated_reason, deactivated_at, inactivity_days, bot_can_invite,
        last_broadcast_at, member_count_at, created_at, updated_at)
SELECT %(new)s, admin_user_id, title, 'supergroup', phase, is_active, final_message_allowed, member_count,
       consecutive_failures, deactivated_reason, deactivated_at, inactivity_days, bot_can_invite,
       last_broadcast_at, member_count_at, created_at, now()
  FROM old
ON CONFLICT (group_id) DO UPDATE
   SET admin_user_id = COALESCE(EXCLUDED.admin_user_id, g.admin_user_id),
       title = COALESCE(NULLIF(g.title, ''), EXCLUDED.title),
       chat_type = 'supergroup',
       phase = EXCLUDED.phase,
       is_active = EXCLUDED.is_active,
       final_message_allowed = EXCLUDED.final_message_allowed,
       member_count = COALESCE(g.member_count, EXCLUDED.member_count),
       consecutive_failures = EXCLUDED.consecutive_failures,
       deactivated_reason = EXCLUDED.deactivated_reason,
       deactivated_at = EXCLUDED.deactivated_at,
       inactivity_days = COALESCE(EXCLUDED.inactivity_days, g.inactivity_days),
       bot_can_invite = COALESCE(g.bot_can_invite, EXCLUDED.bot_can_invite),
       last_broadcast_at = GREATEST(g.last_broadcast_at, EXCLUDED.last_broadcast_at),
       member_count_at = GREATEST(g.member_count_at, EXCLUDED.member_count_at),
       created_at = LEAST(g.created_at, EXCLUDED.created_at),
       updated_at = now()
RETURNING group_id
"""

# A broadcast that already has a row for the new id: the old row must not be sent (again).
SQL_SKIP_DUPLICATE_SENDS = """
UPDATE sent_messages AS s
   SET status = 'skipped', error = 'group migrated to ' || %(new)s::text || ', which has its own row',
       updated_at = now()
 WHERE s.chat_id = %(old)s AND s.status IN ('pending', 'sending')
   AND EXISTS (SELECT 1 FROM sent_messages n WHERE n.broadcast_id = s.broadcast_id AND n.chat_id = %(new)s)
"""

SQL_MOVE_SENDS = """
UPDATE sent_messages AS s SET chat_id = %(new)s, updated_at = now()
 WHERE s.chat_id = %(old)s
   AND NOT EXISTS (SELECT 1 FROM sent_messages n WHERE n.broadcast_id IS NOT DISTINCT FROM s.broadcast_id
                                                     AND n.chat_id = %(new)s)
"""

SQL_MOVE_JOIN_REQUESTS = """
UPDATE join_requests AS j SET chat_id = %(new)s
 WHERE j.chat_id = %(old)s
   AND NOT EXISTS (SELECT 1 FROM join_requests n WHERE n.chat_id = %(new)s AND n.user_id = j.user_id
                                                   AND n.requested_at = j.requested_at)
"""

SQL_MERGE_ACTIVITY = """
WITH old AS (
    DELETE FROM member_activity WHERE chat_id = %(old)s RETURNING *
)
INSERT INTO member_activity AS m (chat_id, user_id, username, status, is_bot, first_seen_at, last_seen_at)
SELECT %(new)s, user_id, username, status, is_bot, first_seen_at, last_seen_at FROM old
ON CONFLICT (chat_id, user_id) DO UPDATE
   SET username = COALESCE(m.username, EXCLUDED.username),
       status = CASE WHEN EXCLUDED.last_seen_at > m.last_seen_at THEN EXCLUDED.status ELSE m.status END,
       first_seen_at = LEAST(m.first_seen_at, EXCLUDED.first_seen_at),
       last_seen_at = GREATEST(m.last_seen_at, EXCLUDED.last_seen_at)
"""

SQL_MOVE_PLAIN = (
    "UPDATE member_count_history SET group_id = %(new)s WHERE group_id = %(old)s",
    "UPDATE kick_audit SET chat_id = %(new)s WHERE chat_id = %(old)s",
    # A group held back by an A/B broadcast gets the winner at its new id (none if it has both).
    "UPDATE broadcast_holdout AS h SET chat_id = %(new)s WHERE chat_id = %(old)s AND NOT EXISTS "
    "(SELECT 1 FROM broadcast_holdout AS n WHERE n.broadcast_id = h.broadcast_id AND n.chat_id = %(new)s)",
)


class GroupListing(NamedTuple):
    group_id: int
    title: str
    chat_type: str
    phase: str
    is_active: bool
    final_message_allowed: bool
    member_count: int | None
    consecutive_failures: int
    deactivated_reason: str | None
    inactivity_days: int | None


async def _found(conn: AsyncConnection[Any], sql: str, params: Any) -> bool:
    cur = await conn.execute(sql, params)
    return await cur.fetchone() is not None


class Registered(NamedTuple):
    inserted: bool
    is_active: bool
    deactivated_reason: str | None


async def register(
    conn: AsyncConnection[Any],
    group_id: int,
    *,
    title: str = "",
    chat_type: str = "supergroup",
    phase: str | None = None,
    admin_user_id: int | None = None,
    inactivity_days: int | None = None,
    bot_can_invite: bool | None = None,
) -> Registered:
    """An operator registers a group (or updates a known one: what is None is kept). The caller has
    checked the chat with Telegram (workers/group_check.py)."""
    if phase is not None and phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    params = {"group_id": group_id, "title": title, "chat_type": chat_type, "phase": phase}
    cur = await conn.execute(
        SQL_REGISTER,
        {
            **params,
            "admin_user_id": admin_user_id,
            "inactivity_days": inactivity_days,
            "bot_can_invite": bot_can_invite,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Registered(bool(row[0]), bool(row[1]), row[2])


async def remove(conn: AsyncConnection[Any], group_id: int) -> bool:
    """Forget a managed group (its history stays, see SQL_REMOVE); False if there was none."""
    return await _found(conn, SQL_REMOVE, (group_id,))


async def request_registration(
    conn: AsyncConnection[Any],
    group_id: int,
    *,
    title: str | None = None,
    phase: str | None = None,
    reactivate: bool = False,
) -> int:
    """Ask the TGMS worker to check a chat with Telegram and register it (the control center's way to
    add a group: it makes no Bot API calls itself), or with `reactivate` to reactivate a managed
    group after the same check (`tgms groups set --active yes` runs it too). Returns the job id; the
    job fails, with the reason as its error, when the bot cannot manage the chat."""
    payload: dict[str, Any] = {"group_id": group_id}
    if reactivate:
        payload["reactivate"] = True
    if title:
        payload["title"] = title
    if phase is not None:
        payload["phase"] = phase
    job_id = await queue.enqueue(conn, REGISTER_JOB, payload, max_retries=2)
    assert job_id is not None  # only a dedupe key can make enqueue return None
    return job_id


async def bot_promoted(
    conn: AsyncConnection[Any], group_id: int, *, actor: int, title: str, chat_type: str, can_invite: bool
) -> tuple[bool, bool]:
    """The bot became an administrator of `group_id`; returns (is_active, newly registered)."""
    params = {"chat": group_id, "actor": actor, "title": title, "type": chat_type, "can_invite": can_invite}
    cur = await conn.execute(SQL_BOT_PROMOTED, {**params, "reason": REASON_NO_INVITE})
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


async def deactivate(
    conn: AsyncConnection[Any],
    group_id: int,
    reason: str = OPERATOR_REASON,
    *,
    bot_can_invite: bool | None = None,
    title: str | None = None,
) -> bool:
    """Deactivate by the rule (title and bot_can_invite updated when given); False if no such group."""
    params = {"group_id": group_id, "reason": reason, "can_invite": bot_can_invite, "title": title}
    return await _found(conn, SQL_DEACTIVATE, params)


async def reactivate(conn: AsyncConnection[Any], group_id: int) -> bool:
    return await _found(conn, SQL_REACTIVATE, {"group_id": group_id})


async def set_title(conn: AsyncConnection[Any], group_id: int, title: str) -> bool:
    return await _found(conn, SQL_SET_TITLE, (title, group_id))


async def set_phase(conn: AsyncConnection[Any], group_id: int, phase: str) -> bool:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    return await _found(conn, SQL_SET_PHASE, (phase, group_id))


async def set_final_message_allowed(conn: AsyncConnection[Any], group_id: int, allowed: bool) -> bool:
    return await _found(conn, SQL_SET_FINAL_ALLOWED, (allowed, group_id))


async def list_all(conn: AsyncConnection[Any]) -> list[GroupListing]:
    """Every group, active first, by title."""
    cur = await conn.execute(SQL_LIST)
    return [GroupListing(*row) for row in await cur.fetchall()]


async def ids(conn: AsyncConnection[Any], wanted: list[int] | None = None) -> list[int]:
    """The active groups' ids, or those of `wanted` that are managed (active or not)."""
    cur = await conn.execute(SQL_IDS, {"ids": wanted})
    return [int(row[0]) for row in await cur.fetchall()]


async def kick_policies(conn: AsyncConnection[Any], wanted: list[int] | None = None) -> list[tuple[int, str, int]]:
    """(group_id, chat_type, inactivity_days) of the active groups that opted in to kicking."""
    cur = await conn.execute(SQL_KICK_POLICIES, {"ids": wanted})
    return [(int(g), str(t), int(d)) for g, t, d in await cur.fetchall()]


async def targets(conn: AsyncConnection[Any], target: dict[str, Any], is_final: bool) -> list[int]:
    """Group ids a broadcast with this stored `target` reaches now, in a stable order."""
    kind = target.get("kind", "all")
    if kind not in ("all", "phase", "groups"):
        raise ValueError(f"unknown broadcast target kind {kind!r}")
    group_ids = [int(g) for g in target.get("group_ids", [])]
    params = {"final": bool(is_final), "kind": kind, "phase": target.get("phase"), "group_ids": group_ids}
    cur = await conn.execute(SQL_TARGETS, params)
    with collector_paused():  # one row per group: 100,000 at a large fleet
        return [int(row[0]) for row in await cur.fetchall()]


async def rewrite_id(conn: AsyncConnection[Any], old_id: int, new_id: int) -> bool:
    """Move every trace of group `old_id` to `new_id` in one transaction. Idempotent; returns whether
    `old_id` was a managed group (False also when another caller already did the rewrite)."""
    if old_id == new_id:
        return False
    params = {"old": old_id, "new": new_id}
    async with conn.transaction():
        await conn.execute(SQL_LOCK, params)
        await hooks.quiet_group_triggers(conn, old_id)
        cur = await conn.execute(SQL_MERGE_GROUP, params)
        moved_group = await cur.fetchone() is not None
        if moved_group:
            await hooks.emit(conn, "group.migrated", str(old_id), {"old_group_id": old_id, "group_id": new_id})
        await conn.execute(SQL_SKIP_DUPLICATE_SENDS, params)
        await conn.execute(SQL_MOVE_SENDS, params)
        await conn.execute(SQL_MOVE_JOIN_REQUESTS, params)
        await conn.execute(SQL_MERGE_ACTIVITY, params)
        for statement in SQL_MOVE_PLAIN:
            await conn.execute(statement, params)
        await hooks.quiet_group_triggers(conn, None)
    if moved_group:
        log.info("group %s was upgraded to supergroup %s: group id rewritten everywhere", old_id, new_id)
    return moved_group
