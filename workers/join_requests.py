"""`tgms_process_join_request`: approve join requests to managed, active groups, and log every outcome.

Latency matters (a person is waiting in the Telegram app), so the handler is one statement before the
call and one after:

1. `SQL_BEGIN` looks up the group and the bot's 429 pause and inserts the request's row keyed by the
   unique (chat_id, user_id, requested_at): a final status straight away for an unmanaged or inactive
   group, else 'processing' (intent recorded). A re-run of the job finds the existing row instead;
   so does the job of the other bot when both bots are admins and both got the request (it leaves
   the request to the job that logged it, unless that job is no longer pending or running).
2. approveChatJoinRequest, with the bot that received the request (the one with rights in the chat).
3. `SQL_FINISH` writes the outcome and, on approval, the member's activity (for inactivity kicks).

Idempotence: a request whose row already has a final status is never approved or logged again. A row
left in 'processing' (crash, retryable error) is tried again; Telegram then says HIDE_REQUESTER_MISSING
if the earlier attempt did approve, which `getChatMember` tells apart from a request that expired.

Approvals take no rate-limit token: the shared bucket paces messages (broadcasts), and waiting behind it
would cost seconds per request. A bot paused after a 429 is respected (the job snoozes), and a 429 on
the approval itself snoozes the job for `retry_after` without counting a retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.queue import Job

from .bots import bots_for
from .group_migration import rewrite_group_id
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import (
    ChatAdminRequired,
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    HideRequesterMissing,
    RetryAfter,
    TelegramClient,
    TelegramError,
    UserAlreadyParticipant,
)

log = logging.getLogger(__name__)

JOB_TYPE = "tgms_process_join_request"
FINAL_STATUSES = frozenset({"approved", "skipped_unmanaged", "skipped_inactive", "already_member", "expired", "failed"})
RETRY = "retry"
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})

SQL_BEGIN = """
WITH grp AS (
    SELECT is_active FROM managed_groups WHERE group_id = %(chat)s
), verdict AS (
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM grp) THEN 'skipped_unmanaged'
                WHEN NOT (SELECT is_active FROM grp) THEN 'skipped_inactive'
                ELSE 'processing' END AS status
), ins AS (
    INSERT INTO join_requests (user_id, chat_id, username, status, bot, job_id, requested_at, processed_at)
    SELECT %(user)s, %(chat)s, %(username)s, v.status, %(bot)s, %(job)s, to_timestamp(%(date)s),
           CASE WHEN v.status = 'processing' THEN NULL ELSE now() END
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
       AND status = 'processing'
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
   AND status = 'processing'
"""


class _Migrated(Exception):
    def __init__(self, new_chat_id: int, reason: str) -> None:
        super().__init__(reason)
        self.new_chat_id = new_chat_id
        self.reason = reason


class TransientTelegramError(Exception):
    """Telegram or the network failed in a way that may pass: the runner retries the job."""


@dataclass(frozen=True)
class JoinRequest:
    chat_id: int
    user_id: int
    username: str | None
    is_bot: bool
    date: int

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JoinRequest:
        """Parse the webhook's job payload; PermanentFailure when it is not a join request."""
        update = payload.get("update") if isinstance(payload.get("update"), dict) else payload
        request = update.get("chat_join_request") if isinstance(update, dict) else None
        try:
            assert isinstance(request, dict)
            user = request["from"]
            return cls(
                chat_id=int(request["chat"]["id"]),
                user_id=int(user["id"]),
                username=user.get("username"),
                is_bot=bool(user.get("is_bot", False)),
                date=int(request["date"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            raise PermanentFailure("payload has no valid chat_join_request (chat.id, from.id, date)") from None


async def process_join_request(ctx: JobContext, job: Job) -> None:
    """Approve one join request if its group is managed and active; record the outcome exactly once."""
    request = JoinRequest.from_payload(job.payload)
    bots = await bots_for(ctx)
    client = bots.client(bots.resolve_role(job.payload.get("bot"), "tgms"))
    db = bots.db  # autocommit: each statement below is one round trip
    params = {
        "chat": request.chat_id,
        "user": request.user_id,
        "username": request.username,
        "is_bot": request.is_bot,
        "date": request.date,
        "bot": job.payload.get("bot") or "tgms",
        "job": job.job_id,
        "bucket": f"bot:{client.bot_key}",
    }
    async with db.connection() as conn:
        cur = await conn.execute(SQL_BEGIN, params)
        row = await cur.fetchone()
    assert row is not None
    inserted, existing, owned_elsewhere, paused_for = row
    status = inserted or existing
    if status != "processing":
        # Skipped now, finished by an earlier run, or (None) being inserted by a concurrent job.
        log.debug("join request %s/%s: %s", request.chat_id, request.user_id, status or "taken by another job")
        return
    if inserted is None and owned_elsewhere:
        # Both bots are admins and each got the update: the job that logged it first answers.
        log.debug("join request %s/%s is handled by another job", request.chat_id, request.user_id)
        return
    if paused_for:
        raise Snooze(float(paused_for), "bot paused by Telegram flood control")

    try:
        outcome, error = await _approve(client, db, request, retried=inserted is None)
    except _Migrated as moved:
        # Our row moved with the group: finish it under the new id.
        params["chat"], outcome, error = moved.new_chat_id, "failed", moved.reason
    if outcome == RETRY:
        if job.retries < job.max_retries:
            async with db.connection() as conn:
                await conn.execute(SQL_NOTE_ERROR, {**params, "error": error})
            raise TransientTelegramError(error or "temporary Telegram error")
        outcome = "failed"  # out of retries: the row must not stay 'processing' for ever
    async with db.connection() as conn:
        await conn.execute(
            SQL_FINISH,
            {**params, "status": outcome, "error": error, "joined": outcome in ("approved", "already_member")},
        )
    log.debug("join request of user %s to %s: %s", request.user_id, request.chat_id, outcome)


async def _approve(
    client: TelegramClient, db: AsyncConnectionPool, request: JoinRequest, *, retried: bool
) -> tuple[str, str | None]:
    """Call approveChatJoinRequest and classify the answer as (status, error); status RETRY for a
    temporary failure. Raises Snooze on 429."""
    try:
        await client.approve_chat_join_request(request.chat_id, request.user_id)
        return "approved", None
    except UserAlreadyParticipant as exc:
        if retried:
            # Telegram answers this (not HIDE_REQUESTER_MISSING) once our earlier run's approval made the
            # user a member and that run lost its record (crash, database outage): it was approved once.
            return "approved", None
        return "already_member", exc.description
    except HideRequesterMissing as exc:
        if retried and await _is_member(client, request):
            return "approved", None  # an earlier run of this job approved it before crashing
        return "expired", exc.description
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    except ChatMigrated as exc:
        # The request belongs to the old id, which has no pending requests any more; the group lives
        # on under the new id (rewritten here too, whoever notices first).
        async with db.connection() as conn:
            await rewrite_group_id(conn, request.chat_id, exc.new_chat_id)
        reason = f"group was upgraded to supergroup {exc.new_chat_id}: {exc.description}"
        raise _Migrated(exc.new_chat_id, reason) from None
    except (ChatAdminRequired, ChatNotFound, Forbidden) as exc:
        return "failed", exc.description
    except TelegramError as exc:
        if exc.retryable:
            return RETRY, exc.description  # 5xx / network: retried with backoff by the runner
        return "failed", exc.description


async def _is_member(client: TelegramClient, request: JoinRequest) -> bool:
    try:
        member = await client.get_chat_member(request.chat_id, request.user_id)
    except TelegramError:
        return False
    return member.get("status") in MEMBER_STATUSES


__all__ = ["FINAL_STATUSES", "JOB_TYPE", "JoinRequest", "process_join_request"]
