"""The join-request gate in the TGMS worker: verification in private, the manual queue's decisions,
deadlines, and the presses of the verification buttons.

- `gate` runs inside `tgms_process_join_request` for a request whose group is not `auto` (or is held):
  a 'verifying' request gets the private message through its `user_chat_id` (Telegram keeps that chat
  open for 5 minutes and only until the request is handled) with the group's text and buttons, and a
  deadline job; a requester who cannot be messaged is declined or queued (the group's fallback).
  'pending' and 'held' requests wait for an operator (and get an expiry deadline when the group has one).
- `process_callback_query` (`tgms_process_callback_query`): a press. The button data is
  `jg:<token>:<code>`, both random and stored with the request, so nobody can approve a request by
  forging data; the right code approves, any other fails verification. `answerCallbackQuery` always.
- an operator's approve/decline of queued requests (`tgms_decide_join_requests`) is in
  workers/join_decisions.py: batches at the bot's rate (TGMS_RATE_PER_SECOND, shared by every process).
- `join_request_deadline` (`tgms_join_request_deadline`): no answer in time, or queued too long.

Exactly once: every decision goes through `join_gate.claim` (one conditional statement), so a press
racing a timeout, two presses, or a re-run after a crash decide a request once; a re-run of the job
that claimed it finishes it, reading HIDE_REQUESTER_MISSING as "done earlier" when the user is a member.
"""

from __future__ import annotations

import logging
import random
import secrets

from tgms_tui.backend import join_gate
from tgms_tui.backend.join_requests import Begun, Request
from tgms_tui.backend.queue import Job

from .bots import bots_for
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import (
    BadRequest,
    ChatNotFound,
    Forbidden,
    HideRequesterMissing,
    RetryAfter,
    TelegramClient,
    TelegramError,
    UserAlreadyParticipant,
)

log = logging.getLogger(__name__)

CALLBACK_JOB = "tgms_process_callback_query"
DECIDE_JOB = join_gate.DECIDE_JOB
DEADLINE_JOB = join_gate.DEADLINE_JOB
SWEEP_JOB = join_gate.SWEEP_JOB
DATA_PREFIX = "jg:"
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})

ANSWER_APPROVED = "Thanks! Your request was approved."
ANSWER_WRONG_DECLINED = "Sorry, that was not the right answer. Your request was declined."
ANSWER_WRONG_QUEUED = "Sorry, that was not the right answer. An administrator will review your request."
ANSWER_HANDLED = "This request was already handled."
ANSWER_NOT_YOURS = "This button is not for you."
ANSWER_UNKNOWN = "This button is no longer valid."


class TransientTelegramError(Exception):
    """Telegram or the network failed in a way that may pass: the runner retries the job."""


# ------------------------------------------------------------------ requests arriving


async def gate(ctx: JobContext, job: Job, client: TelegramClient, request: Request, begun: Begun) -> None:
    status = begun.inserted or begun.existing
    assert begun.request_id is not None
    bots = await bots_for(ctx)
    if status in join_gate.WAITING:
        if begun.inserted and begun.expire_hours:
            async with bots.db.connection() as conn:
                await join_gate.schedule_deadline(conn, begun.request_id, "expire", begun.expire_hours * 3600)
        return
    if status != "verifying" or begun.dm_sent:
        return
    async with bots.db.connection() as conn:
        settings = await join_gate.group_gate(conn, request.chat)
    text = (settings.verify_text or join_gate.DEFAULT_VERIFY_TEXT).replace("{group}", settings.title or "the group")
    token, code = str(begun.verify_token), str(begun.verify_code)
    if settings.verify_question and settings.verify_answers:
        text = f"{text}\n\n{settings.verify_question}"
        # The right answer carries the stored code, the others random ones: the buttons' data says
        # nothing about which is right. Shown in a random order.
        buttons = [(settings.verify_answers[0], code)] + [
            (answer, secrets.token_urlsafe(6)) for answer in settings.verify_answers[1:]
        ]
        random.SystemRandom().shuffle(buttons)
    else:
        buttons = [(join_gate.DEFAULT_BUTTON, code)]
    markup = {
        "inline_keyboard": [[{"text": label, "callback_data": f"{DATA_PREFIX}{token}:{c}"}] for label, c in buttons]
    }
    target = request.user_chat if request.user_chat is not None else request.user
    try:
        message = await client.send_message(target, text, reply_markup=markup)
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    except (Forbidden, ChatNotFound, BadRequest) as exc:
        # Blocked the bot, deactivated, or the 5-minute window is gone: nobody to ask.
        await _fail_verification(ctx, job, begun.request_id, f"cannot message the requester: {exc.description}",
                                 settings.verify_fallback)  # fmt: skip
        return
    except TelegramError as exc:
        if exc.retryable and job.retries < job.max_retries:
            raise TransientTelegramError(exc.description) from None
        await _fail_verification(ctx, job, begun.request_id, f"cannot message the requester: {exc.description}",
                                 settings.verify_fallback)  # fmt: skip
        return
    async with bots.db.connection() as conn:
        await join_gate.record_dm(conn, begun.request_id, message.get("message_id"), settings.verify_timeout_seconds)


async def _fail_verification(
    ctx: JobContext, job: Job, request_id: int, reason: str, fallback: str, *, answered: bool = False
) -> str:
    """Decline (status verification_failed) or hand to the operator (pending); returns the status."""
    bots = await bots_for(ctx)
    if fallback == "manual":
        async with bots.db.connection() as conn:
            moved = await join_gate.to_queue(conn, request_id, reason, answered=answered)
        return "pending" if moved else "handled"
    return await _decide(ctx, job, request_id, "decline", ("verifying",), "verification_failed", reason,
                         answered=answered)  # fmt: skip


# ------------------------------------------------------------------ deciding one request


async def _decide(
    ctx: JobContext,
    job: Job,
    request_id: int,
    decision: str,
    expect: tuple[str, ...],
    final_status: str,
    note: str | None = None,
    *,
    by: str | None = None,
    answered: bool = False,
) -> str:
    """Claim, call approve/decline, settle. Returns the status written, or 'handled' when another
    decision got there first. Raises Snooze on 429, TransientTelegramError to be retried."""
    bots = await bots_for(ctx)
    async with bots.db.connection() as conn:
        claimed = await join_gate.claim(conn, request_id, decision, expect, job.job_id, by=by, answered=answered)
    if claimed is None:
        return "handled"
    client = bots.client(bots.resolve_role(claimed.bot, "tgms"), paced=False)
    status, error = final_status, None
    try:
        if decision == "approve":
            await client.approve_chat_join_request(claimed.chat_id, claimed.user_id)
        else:
            await client.decline_chat_join_request(claimed.chat_id, claimed.user_id)
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    except UserAlreadyParticipant as exc:
        status, error = (
            ("approved", None) if claimed.retried and decision == "approve" else ("already_member", exc.description)
        )
    except HideRequesterMissing as exc:
        if claimed.retried:
            member = await _is_member(client, claimed.chat_id, claimed.user_id)
            if member == (decision == "approve"):
                status = final_status  # an earlier run of this job did it before crashing
            else:
                status, error = "expired", exc.description
        else:
            status, error = "expired", exc.description
    except TelegramError as exc:
        if exc.retryable and job.retries < job.max_retries:
            raise TransientTelegramError(exc.description) from None
        status, error = "failed", exc.description
    async with bots.db.connection() as conn:
        await join_gate.settle(conn, request_id, status, error, note)
    log.debug("join request %s: %s", request_id, status)
    return status


async def _is_member(client: TelegramClient, chat_id: int, user_id: int) -> bool:
    try:
        member = await client.get_chat_member(chat_id, user_id)
    except TelegramError:
        return False
    return member.get("status") in MEMBER_STATUSES


# ------------------------------------------------------------------ presses


def _parse_press(job: Job) -> tuple[str, int, str, str]:
    update = job.payload.get("update") if isinstance(job.payload.get("update"), dict) else job.payload
    query = update.get("callback_query") if isinstance(update, dict) else None
    try:
        assert isinstance(query, dict)
        return (
            str(query["id"]),
            int(query["from"]["id"]),
            str(query.get("data") or ""),
            job.payload.get("bot") or "tgms",
        )
    except (AssertionError, KeyError, TypeError, ValueError):
        raise PermanentFailure("payload has no valid callback_query (id, from.id)") from None


async def process_callback_query(ctx: JobContext, job: Job) -> None:
    query_id, user_id, data, bot = _parse_press(job)
    bots = await bots_for(ctx)
    client = bots.client(bots.resolve_role(bot, "tgms"), paced=False)
    answer = ANSWER_UNKNOWN
    token, _, code = data.removeprefix(DATA_PREFIX).partition(":")
    row = None
    if data.startswith(DATA_PREFIX) and token:
        async with bots.db.connection() as conn:
            row = await join_gate.by_token(conn, token)
    if row is None:
        answer = ANSWER_UNKNOWN
    elif row.user_id != user_id:
        answer = ANSWER_NOT_YOURS
    elif row.status not in ("verifying", "processing"):
        answer = ANSWER_HANDLED
    elif secrets.compare_digest(code, row.verify_code or ""):
        status = await _decide(ctx, job, row.request_id, "approve", ("verifying",), "approved", "verified",
                               answered=True)  # fmt: skip
        answer = ANSWER_APPROVED if status == "approved" else ANSWER_HANDLED
    else:
        status = await _fail_verification(ctx, job, row.request_id, "wrong answer", row.fallback, answered=True)
        answer = {"pending": ANSWER_WRONG_QUEUED, "handled": ANSWER_HANDLED}.get(status, ANSWER_WRONG_DECLINED)
    try:
        await client.call("answerCallbackQuery", callback_query_id=query_id, text=answer)
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, "429 answering a callback query") from None
    except TelegramError as exc:
        # Too old (the user waited long) or already answered by a previous run: nothing to retry.
        log.debug("answerCallbackQuery %s: %s", query_id, exc.description)


# ------------------------------------------------------------------ operators and deadlines


async def join_request_deadline(ctx: JobContext, job: Job) -> None:
    try:
        request_id, kind = int(job.payload["request_id"]), str(job.payload["kind"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("payload needs request_id and kind") from None
    bots = await bots_for(ctx)
    async with bots.db.connection() as conn:
        status = await join_gate.waiting_status(conn, request_id)
    if kind == "verify":
        if status in ("verifying", "processing"):
            async with bots.db.connection() as conn:
                fallback = await join_gate.fallback_of(conn, request_id)
            await _fail_verification(ctx, job, request_id, "no answer in time", fallback)
        return
    if status in join_gate.WAITING or status == "processing":
        await _decide(ctx, job, request_id, "decline", join_gate.WAITING, "declined", "expired in the queue",
                      by="expiry")  # fmt: skip


__all__ = ["CALLBACK_JOB", "DEADLINE_JOB", "DECIDE_JOB", "SWEEP_JOB", "gate", "join_request_deadline",
           "process_callback_query"]  # fmt: skip
