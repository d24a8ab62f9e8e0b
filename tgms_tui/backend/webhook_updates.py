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
           e AS payload, n
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(e, n)
),
job_ids AS (
    SELECT pg_get_serial_sequence('jobs_active', 'job_id')::regclass AS seq
),
fresh AS (
    INSERT INTO webhook_updates (bot, update_id, update_type, job_id)
    SELECT bot, update_id, update_type, nextval((SELECT seq FROM job_ids))
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
     ORDER BY f.job_id
    RETURNING job_id
)
SELECT array_agg(i.n) FROM input AS i
 WHERE NOT EXISTS (SELECT FROM fresh AS f WHERE f.bot = i.bot AND f.update_id = i.update_id)
"""  # the result: the positions (1-based) of the updates that were already stored, or NULL
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
