"""The `webhook_updates` repository: update ids already stored (the dedupe, kept >= 48 h because
Telegram drops undelivered updates after 24 h) and the statement that stores a batch of updates with
their jobs. Both intakes run it: the webhook's group-commit intake (webhook_server/intake.py) prepares
it on each of its connections and runs it once per batch, and the long-polling intake
(webhook_server/poll.py) runs it once per getUpdates batch (`store_batch`), so an update stores the
same rows whichever way it arrived, and a redelivery through either way makes no second job.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor

from . import members
from .queue import DEFAULT_MAX_RETRIES

JOIN_REQUEST = "chat_join_request"
JOIN_REQUEST_JOB = "tgms_process_join_request"
UPDATE_JOB = "process_telegram_update"
# Presses of the join gate's verification buttons (data "jg:..."), whichever bot got them.
CALLBACK_JOB = "tgms_process_callback_query"
JOIN_REQUEST_PRIORITY = -10  # approvals are latency-critical (the user is waiting in the app)
# Telegram drops undelivered updates after 24 h, so an update id older than 48 h cannot come back.
KEPT_SECONDS = 48 * 3600
# The update types TGMS asks Telegram for, by webhook (`tgms set-webhook`) and by long polling
# (`tgms poll`) alike. Telegram does not send chat_member unless asked, and keeps the previous list
# when a call gives none.
ALLOWED_UPDATES = (
    "message",
    "edited_message",
    "callback_query",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
)

# Updates whose whole effect is member activity are recorded by the batch statement itself and make no
# job (and so no claim and completion by the main worker): in a group, a `chat_member` change that is
# neither a leave nor a join through an invite link (those two also write invite-link retention), and
# a message or edited message that only tells who joined or who spoke (no migration, new title or
# leave). Every field the main worker would read must be well formed; anything else, private chats
# (/start) and every other update type still become jobs (workers/updates.py).
_PRESENT = "'creator', 'administrator', 'member', 'restricted'"  # still in the group
_GROUP_CHAT = """jsonb_typeof(i.body->'chat'->'id') = 'number' AND i.body->'chat'->>'id' ~ '^-?[0-9]{1,18}$'
       AND i.body->'chat'->>'type' IN ('group', 'supergroup', 'channel')
       AND jsonb_typeof(i.body->'date') = 'number' AND i.body->>'date' ~ '^[1-9][0-9]{0,11}$'"""
_VALID_USER = """jsonb_typeof(t.member) = 'object' AND jsonb_typeof(t.member->'id') = 'number'
           AND t.member->>'id' ~ '^-?[0-9]{1,18}$'
           AND COALESCE(jsonb_typeof(t.member->'username'), 'null') IN ('string', 'null')
           AND COALESCE(jsonb_typeof(t.member->'is_bot'), 'null') IN ('boolean', 'null')"""
_SEEN = f"""SELECT t.n, t.chat, (t.member->>'id')::bigint AS id, t.member->>'username' AS username, t.status,
           COALESCE((t.member->>'is_bot')::boolean, false) AS is_bot, t.soft, t.date
      FROM (SELECT t.*, bool_and({_VALID_USER}) OVER (PARTITION BY t.n) AS valid
              FROM (SELECT i.n, (i.body->'chat'->>'id')::bigint AS chat, (i.body->>'date')::bigint AS date,
                           u.member, u.status, u.soft
                      FROM input AS i
                     CROSS JOIN LATERAL (
                        SELECT i.body->'new_chat_member'->'user' AS member, c.status, false AS soft
                          FROM (SELECT CASE WHEN i.body->'new_chat_member'->>'status' = 'restricted'
                                                 AND i.body->'new_chat_member'->'is_member' = 'false'::jsonb
                                            THEN 'left' ELSE i.body->'new_chat_member'->>'status' END AS status,
                                       COALESCE(i.body->'old_chat_member'->>'status'
                                                    IN ('creator', 'administrator', 'member')
                                                OR (i.body->'old_chat_member'->>'status' = 'restricted'
                                                    AND i.body->'old_chat_member'->'is_member' = 'true'::jsonb),
                                                false) AS was_in) AS c
                         WHERE i.update_type = 'chat_member'
                           AND jsonb_typeof(i.body->'new_chat_member'->'status') = 'string'
                           AND NOT (c.was_in AND c.status NOT IN ({_PRESENT}))
                           AND NOT (c.status IN ({_PRESENT}) AND NOT c.was_in
                                    AND COALESCE(jsonb_typeof(i.body->'invite_link'->'invite_link'), '') = 'string')
                        UNION ALL
                        SELECT x, 'member', false
                          FROM jsonb_array_elements(i.body->'new_chat_members') AS x
                         WHERE i.update_type IN ('message', 'edited_message')
                           AND jsonb_typeof(i.body->'new_chat_members') = 'array'
                        UNION ALL
                        SELECT i.body->'from', 'member', true
                         WHERE i.update_type IN ('message', 'edited_message')
                           AND jsonb_typeof(i.body->'from') = 'object' AND NOT i.body ? 'sender_chat'
                           AND NOT EXISTS (SELECT FROM jsonb_array_elements(i.body->'new_chat_members') AS x
                                            WHERE jsonb_typeof(i.body->'new_chat_members') = 'array'
                                              AND x->'id' = i.body->'from'->'id')
                     ) AS u
                     WHERE {_GROUP_CHAT}
                       AND (i.update_type = 'chat_member'
                            OR (NOT i.body ?| array['migrate_to_chat_id', 'migrate_from_chat_id', 'new_chat_title',
                                                    'left_chat_member']
                                AND COALESCE(jsonb_typeof(i.body->'new_chat_members'), 'array') = 'array'
                                AND COALESCE(jsonb_typeof(i.body->'from'), 'null') IN ('object', 'null')))
                   ) AS t
           ) AS t
     WHERE t.valid"""

# The job payload is a contract with the workers:
#   {"bot": "main"|"tgms", "update_id": N, "update_type": "<key>", "update": <the whole update>}
# The batch arrives as ONE text parameter, a JSON array of those payloads built by joining strings:
# psycopg dumps a list element by element in Python, which cost more per batch than the rest of the
# statement's client side, and PostgreSQL takes each payload as it is (building it there with
# jsonb_build_object cost ~12% of its CPU per update). The columns of webhook_updates are read from
# the same payload. The constants are written into the text (they are ours, checked below), so the
# statement has a single parameter; it is prepared once per connection and run through
# prepared_call.py.
SQL_STORE_BATCH = f"""
WITH input AS (
    SELECT e->>'bot' AS bot, e->>'update_type' AS update_type, (e->>'update_id')::bigint AS update_id,
           e AS payload, n, e->'update'->(e->>'update_type') AS body
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(e, n)
),
seen AS (
    {_SEEN}
),
job_ids AS (
    SELECT pg_get_serial_sequence('jobs_active', 'job_id')::regclass AS seq
),
fresh AS (
    INSERT INTO webhook_updates (bot, update_id, update_type, job_id)
    SELECT bot, update_id, update_type,
           CASE WHEN n IN (SELECT n FROM seen) THEN NULL ELSE nextval((SELECT seq FROM job_ids)) END
      FROM input
     ORDER BY n
    ON CONFLICT (bot, update_id) DO NOTHING
    RETURNING bot, update_id, job_id
),
queued AS (
    INSERT INTO jobs_active (job_id, job_type, payload, priority, max_retries)
    SELECT f.job_id,
           CASE WHEN i.update_type = '{JOIN_REQUEST}' THEN '{JOIN_REQUEST_JOB}'
                WHEN i.update_type = 'callback_query'
                     AND starts_with(i.payload->'update'->'callback_query'->>'data', 'jg:') THEN '{CALLBACK_JOB}'
                ELSE '{UPDATE_JOB}' END,
           i.payload,
           CASE WHEN i.update_type = '{JOIN_REQUEST}' THEN {JOIN_REQUEST_PRIORITY:d}
                WHEN i.update_type = 'callback_query'
                     AND starts_with(i.payload->'update'->'callback_query'->>'data', 'jg:')
                     THEN {JOIN_REQUEST_PRIORITY:d}
                ELSE 0 END,
           {DEFAULT_MAX_RETRIES:d}
      FROM fresh AS f JOIN input AS i ON i.bot = f.bot AND i.update_id = f.update_id
     WHERE f.job_id IS NOT NULL
     ORDER BY f.job_id
    RETURNING job_id
),
-- One row per member and group (an approval's chat_member update and its join message often share
-- a batch): the last status told, soft only when every update only saw them, the latest date.
seen_new AS (
    SELECT s.chat, s.id,
           (array_agg(s.username ORDER BY s.n DESC) FILTER (WHERE s.username IS NOT NULL))[1] AS username,
           COALESCE((array_agg(s.status ORDER BY s.n DESC) FILTER (WHERE NOT s.soft))[1], 'member') AS status,
           (array_agg(s.is_bot ORDER BY s.n DESC))[1] AS is_bot,
           bool_and(s.soft) AS soft, to_timestamp(max(s.date)) AS date
      FROM seen AS s JOIN input AS i USING (n) JOIN fresh AS f ON f.bot = i.bot AND f.update_id = i.update_id
     WHERE EXISTS (SELECT 1 FROM managed_groups WHERE group_id = s.chat)
     GROUP BY s.chat, s.id
),
{
    members.activity_upsert(
        "seen_new",
        "i.chat",
        "i.soft",
        "i.date",
        prefix="seen_",
        conflict_soft="(SELECT s.soft FROM seen_new AS s WHERE s.chat = EXCLUDED.chat_id AND s.id = EXCLUDED.user_id)",
    )
}
SELECT array_agg(i.n) FILTER (WHERE NOT EXISTS (SELECT FROM fresh AS f
                                                WHERE f.bot = i.bot AND f.update_id = i.update_id)),
       array_agg(i.n) FILTER (WHERE i.n IN (SELECT n FROM seen))
  FROM input AS i
"""  # the result: the positions (1-based) of the updates that were already stored, and of those that
# made no job (member activity only), each NULL when none
STORE_BATCH_STATEMENT = b"tgms_store_batch"  # prepared on each intake connection
assert all(name.replace("_", "").isalpha() for name in (JOIN_REQUEST, JOIN_REQUEST_JOB, UPDATE_JOB, CALLBACK_JOB))


@functools.lru_cache(maxsize=256)
def _json_string(value: str) -> str:
    return json.dumps(value)


def payload_text(bot: str, update_id: int, update_type: str, update_json: str) -> str:
    """One element of the batch parameter: the job payload as JSON text, `update_json` taken as it is
    (already checked JSON text of the whole update)."""
    # The update goes first and our keys after it: jsonb keeps the last of duplicate keys, so even a
    # body that got past the intake's single-object check could not override bot, update_id or type.
    return (
        f'{{"update":{update_json},"bot":{_json_string(bot)},"update_id":{update_id:d},'
        f'"update_type":{_json_string(update_type)}}}'
    )


def batch_text(payloads: Iterable[str]) -> str:
    """The statement's one parameter: the payloads as a JSON array."""
    return "[" + ",".join(payloads) + "]"


async def store_batch(conn: AsyncConnection[Any], batch: str) -> set[int]:
    """Run the batch statement on `conn` (psycopg prepares it after a few runs); the positions
    (1-based) of the updates that were already stored. In autocommit mode it is its own transaction."""
    async with AsyncRawCursor(conn) as cur:
        await cur.execute(SQL_STORE_BATCH, (batch,))
        row = await cur.fetchone()
    return set(row[0] or ()) if row else set()


def job_type_for(update_type: str, data: str | None = None) -> str:
    if update_type == "callback_query" and (data or "").startswith("jg:"):
        return CALLBACK_JOB
    return JOIN_REQUEST_JOB if update_type == JOIN_REQUEST else UPDATE_JOB


async def prepare_store_batch(conn: AsyncConnection[Any]) -> None:
    """PREPARE the batch statement on `conn` as STORE_BATCH_STATEMENT (one text parameter)."""
    await conn.execute(b"PREPARE " + STORE_BATCH_STATEMENT + b" (text) AS " + SQL_STORE_BATCH.encode())


async def prune(conn: AsyncConnection[Any], older_than_seconds: float = KEPT_SECONDS) -> int:
    """Forget update ids older than `older_than_seconds`; how many."""
    cur = await conn.execute(
        "DELETE FROM webhook_updates WHERE received_at < now() - make_interval(secs => %s)", (older_than_seconds,)
    )
    return cur.rowcount
