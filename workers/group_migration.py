"""A basic group upgraded to a supergroup gets a new chat id: rewrite it everywhere, at once.

Telegram answers writes to the old id with "group chat was upgraded to a supergroup chat" and the new
id; the old chat also posts a `migrate_to_chat_id` service message. Whoever sees it first (a broadcast,
a member-count job, the main worker) calls `rewrite_group_id`; the others find nothing left to do.

The new supergroup may already have rows of its own: the bot gets `my_chat_member` in the new chat,
which can register it before the migration message is handled. So every table is merged, not blindly
updated: the old group's settings (phase, activity, policy) win because they are the admin's choices,
and a broadcast that already has a row for the new id keeps that row (the old one is skipped, never
sent twice).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

log = logging.getLogger(__name__)

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
)


async def rewrite_group_id(conn: AsyncConnection[Any], old_id: int, new_id: int) -> bool:
    """Move every trace of group `old_id` to `new_id` in one transaction. Idempotent; returns whether
    `old_id` was a managed group (False also when another caller already did the rewrite)."""
    if old_id == new_id:
        return False
    params = {"old": old_id, "new": new_id}
    async with conn.transaction():
        await conn.execute(SQL_LOCK, params)
        cur = await conn.execute(SQL_MERGE_GROUP, params)
        moved_group = await cur.fetchone() is not None
        await conn.execute(SQL_SKIP_DUPLICATE_SENDS, params)
        await conn.execute(SQL_MOVE_SENDS, params)
        await conn.execute(SQL_MOVE_JOIN_REQUESTS, params)
        await conn.execute(SQL_MERGE_ACTIVITY, params)
        for statement in SQL_MOVE_PLAIN:
            await conn.execute(statement, params)
    if moved_group:
        log.info("group %s was upgraded to supergroup %s: group id rewritten everywhere", old_id, new_id)
    return moved_group
