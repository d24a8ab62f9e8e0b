"""`tgms_process_join_request`: approve join requests to managed, active groups, and log every outcome.

Latency matters (a person is waiting in the Telegram app), so the handler is one statement before the
call and one after:

1. `join_requests.begin` (tgms_tui/backend/join_requests.py) looks up the group and the bot's 429
   pause and inserts the request's row keyed by the unique (chat_id, user_id, requested_at): a final
   status straight away for an unmanaged or inactive group, else 'processing' (intent recorded). A
   re-run of the job finds the existing row instead; so does the job of the other bot when both bots
   are admins and both got the request (it leaves the request to the job that logged it, unless that
   job is no longer pending or running).
2. approveChatJoinRequest, with the bot that received the request (the one with rights in the chat).
3. `join_requests.finish` writes the outcome and, on approval, the member's activity (for kicks), in
   the statement that completes the job (`JobContext.completion`: one round trip, one commit).

A requester on the fleet's ban list (a ban in force, checked inside `begin`: one lookup on an index)
is declined instead (`declineChatJoinRequest`), status 'banned'.

Idempotence: a request whose row already has a final status is never approved or logged again. A row
left in 'processing' (crash, retryable error) is tried again; Telegram then says HIDE_REQUESTER_MISSING
if the earlier attempt did approve, which `getChatMember` tells apart from a request that expired.
A row whose job will never run again (failed for good, cancelled) is resolved by the periodic sweep
(`join_decisions.sweep_abandoned_decisions`), without another call.

Approvals take no rate-limit token: the shared bucket paces messages (broadcasts), and waiting behind it
would cost seconds per request. A bot paused after a 429 is respected (the job snoozes), and a 429 on
the approval itself snoozes the job for `retry_after` without counting a retry.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import groups, join_requests
from tgms_tui.backend.join_requests import Request
from tgms_tui.backend.queue import Job

from . import join_gate
from .bots import bots_for
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
GATED = frozenset({"verifying", "pending", "held"})  # the join gate's paths (workers/join_gate.py)
FINAL_STATUSES = frozenset(
    {"approved", "skipped_unmanaged", "skipped_inactive", "already_member", "expired", "failed", "banned"}
)
BANNED_NOTE = "declined: the user is on the fleet's ban list"
RETRY = "retry"
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


class _Migrated(Exception):
    def __init__(self, new_chat_id: int, reason: str) -> None:
        super().__init__(reason)
        self.new_chat_id = new_chat_id
        self.reason = reason


class TransientTelegramError(Exception):
    """Telegram or the network failed in a way that may pass: the runner retries the job."""


def parse(job: Job) -> Request:
    """The join request of the webhook's job payload; PermanentFailure when there is none."""
    update = job.payload.get("update") if isinstance(job.payload.get("update"), dict) else job.payload
    request = update.get("chat_join_request") if isinstance(update, dict) else None
    try:
        assert isinstance(request, dict)
        user = request["from"]
        chat_id, user_id, date = int(request["chat"]["id"]), int(user["id"]), int(request["date"])
        bot = job.payload.get("bot") or "tgms"
        link = request.get("invite_link")
        url = link.get("invite_link") if isinstance(link, dict) else None
        user_chat = request.get("user_chat_id")
        user_chat = int(user_chat) if user_chat is not None else None
        return Request(chat_id, user_id, user.get("username"), bool(user.get("is_bot", False)), date, bot, job.job_id,
                       user_chat, url if isinstance(url, str) else None)  # fmt: skip
    except (AssertionError, KeyError, TypeError, ValueError):
        raise PermanentFailure("payload has no valid chat_join_request (chat.id, from.id, date)") from None


async def process_join_request(ctx: JobContext, job: Job) -> None:
    """Approve one join request if its group is managed and active; record the outcome exactly once."""
    request = parse(job)
    bots = await bots_for(ctx)
    client = bots.client(bots.resolve_role(job.payload.get("bot"), "tgms"))
    db = bots.db  # autocommit: each statement below is one round trip
    async with db.connection() as conn:
        begun = await join_requests.begin(conn, request, f"bot:{client.bot_key}")
    inserted, existing, owned_elsewhere, paused_for = begun[:4]
    status = inserted or existing
    if status in GATED and not (inserted is None and owned_elsewhere):
        await join_gate.gate(ctx, job, client, request, begun)
        return
    if status not in ("processing", "declining"):
        # Skipped now, finished by an earlier run, or (None) being inserted by a concurrent job.
        log.debug("join request %s/%s: %s", request.chat, request.user, status or "taken by another job")
        return
    if inserted is None and owned_elsewhere:
        # Both bots are admins and each got the update: the job that logged it first answers.
        log.debug("join request %s/%s is handled by another job", request.chat, request.user)
        return
    if paused_for:
        raise Snooze(float(paused_for), "bot paused by Telegram flood control")

    try:
        if status == "declining":
            outcome, error = await _decline_banned(client, db, request, retried=inserted is None)
        else:
            outcome, error = await _approve(client, db, request, retried=inserted is None)
    except _Migrated as moved:
        # Our row moved with the group: finish it under the new id.
        request, outcome, error = request._replace(chat=moved.new_chat_id), "failed", moved.reason
    if outcome == RETRY:
        if job.retries < job.max_retries:
            async with db.connection() as conn:
                await join_requests.note_error(conn, request, error)
            raise TransientTelegramError(error or "temporary Telegram error")
        outcome = "failed"  # out of retries: the row must not stay 'processing' for ever
    async with db.connection() as conn:  # the outcome and the job's completion: one statement
        await join_requests.finish(conn, request, outcome, error, ctx.completion(job))
    log.debug("join request of user %s to %s: %s", request.user, request.chat, outcome)


async def _approve(
    client: TelegramClient, db: AsyncConnectionPool, request: Request, *, retried: bool
) -> tuple[str, str | None]:
    """Call approveChatJoinRequest and classify the answer as (status, error); status RETRY for a
    temporary failure. Raises Snooze on 429."""
    try:
        await client.approve_chat_join_request(request.chat, request.user)
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
            await groups.rewrite_id(conn, request.chat, exc.new_chat_id)
        reason = f"group was upgraded to supergroup {exc.new_chat_id}: {exc.description}"
        raise _Migrated(exc.new_chat_id, reason) from None
    except (ChatAdminRequired, ChatNotFound, Forbidden) as exc:
        return "failed", exc.description
    except TelegramError as exc:
        if exc.retryable:
            return RETRY, exc.description  # 5xx / network: retried with backoff by the runner
        return "failed", exc.description


async def _decline_banned(
    client: TelegramClient, db: AsyncConnectionPool, request: Request, *, retried: bool
) -> tuple[str, str | None]:
    """The requester is on the fleet's ban list: declineChatJoinRequest, status 'banned'."""
    try:
        await client.decline_chat_join_request(request.chat, request.user)
        return "banned", BANNED_NOTE
    except HideRequesterMissing as exc:
        # A re-run after a crash: our earlier call declined it. Otherwise the user withdrew it.
        return ("banned", BANNED_NOTE) if retried else ("expired", exc.description)
    except UserAlreadyParticipant as exc:
        return "already_member", exc.description  # the ban's own job removes members
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    except ChatMigrated as exc:
        async with db.connection() as conn:
            await groups.rewrite_id(conn, request.chat, exc.new_chat_id)
        reason = f"group was upgraded to supergroup {exc.new_chat_id}: {exc.description}"
        raise _Migrated(exc.new_chat_id, reason) from None
    except TelegramError as exc:
        return (RETRY if exc.retryable else "failed"), exc.description


async def _is_member(client: TelegramClient, request: Request) -> bool:
    try:
        member = await client.get_chat_member(request.chat, request.user)
    except TelegramError:
        return False
    return member.get("status") in MEMBER_STATUSES


__all__ = ["FINAL_STATUSES", "JOB_TYPE", "process_join_request"]
