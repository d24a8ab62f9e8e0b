"""`tgms_broadcast_followup`: edit, retract, pin or unpin the copies of a broadcast already sent.

Crash safety is the sender's: each copy's row goes `pending -> doing` (the intent, committed) before
the call and to `done` / `failed` / `skipped` after it. A `doing` row whose worker is gone, or left by
an earlier cut run of this worker, becomes `ambiguous` and is never tried again, so no copy is edited
or deleted twice. Calls take a token from the bot's shared rate bucket and from the group's (Telegram
limits edits per group like messages); a 429 pauses the bot in every process and snoozes the job; a
group's migration to a supergroup rewrites its id everywhere (`groups.rewrite_id`) and the copy is
`skipped`: the copy was delivered before the move and stays in the old group, which Telegram closes to
bots (the supergroup's message with the same id is another message, never touched; a copy delivered
after the move is reached at the new id as usual). Copies older than 48 hours are not retracted
(Telegram refuses; reported `skipped` up front).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

from tgms_tui.backend import ab_assignment, buttons, debug_code, followups, groups, link_tracking
from tgms_tui.backend.followups import Claimed, Followup
from tgms_tui.backend.queue import Job

from .bots import MAX_INLINE_RETRY_AFTER, Bots, job_row
from .rate_limit import RateLimitTimeout
from .runner import JobContext, Snooze, time_left
from .telegram_api import ChatMigrated, RetryAfter, TelegramClient, TelegramError

log = logging.getLogger(__name__)

JOB_TYPE = followups.JOB_TYPE
ATTEMPTS = 3
LANES = 4  # copies under way at once in one job


class _Later(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class FollowupRun:
    def __init__(self, ctx: JobContext, bots: Bots, f: Followup) -> None:
        self.ctx = ctx
        self.bots = bots
        self.f = f
        self.db = bots.db
        role = bots.management_role
        assert role is not None
        self.client: TelegramClient = bots.client(role, paced=False)
        self.outcomes: Counter[str] = Counter()
        self.inflight: set[int] = set()
        self.later: float | None = None  # set: stop claiming, snooze this long once every lane is done
        self.per_copy = False  # an A/B or click-tracked broadcast: each copy's own buttons and tracked links

    async def _lane(self) -> None:
        try:
            while self.later is None:
                left = time_left()
                if left is not None and left < 30:
                    self.later = 0.0
                    return
                async with self.db.connection() as conn:
                    claimed = await followups.claim(conn, self.f, self.ctx.worker_id)
                if claimed is None:
                    return
                try:
                    await self._one(claimed)
                except _Later as wait:
                    self.later = max(self.later or 0.0, wait.seconds)
                    return
        except BaseException:
            if self.later is None:
                self.later = 0.0  # the other lanes stop claiming; the error is raised once they are done
            raise

    async def run(self) -> None:
        async with self.db.connection() as conn:
            if self.f.action == "edit":
                self.per_copy = await ab_assignment.has_ab(conn, self.f.broadcast_id)
            await followups.prepare(
                conn, self.f, self.ctx.worker_id, list(self.inflight), self.ctx.settings.lease_seconds
            )
        # Several copies are under way at once (each with its own intent row): one call's round trip
        # and its records no longer set the pace, the shared rate limiter does. A lane that meets a
        # long 429 or the end of the time slice stops every lane from claiming; each finishes and
        # records the copy it holds before the job snoozes.
        results = await asyncio.gather(*(self._lane() for _ in range(LANES)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, _Later):
                raise result
        if self.later is not None:
            reason = "time slice used up" if self.later == 0 else f"429 from Telegram: retry after {self.later:g}s"
            raise Snooze(self.later, reason)
        async with self.db.connection() as conn:
            await followups.prepare(
                conn, self.f, self.ctx.worker_id, list(self.inflight), self.ctx.settings.lease_seconds
            )
            waiting = await followups.waiting(conn, self.f)
        if waiting:
            raise Snooze(2.0, f"{waiting} copies still being sent or handled by another worker")
        log.info(
            "%s of broadcast %d: %s",
            self.f.action,
            self.f.broadcast_id,
            ", ".join(f"{n} {s}" for s, n in sorted(self.outcomes.items())) or "nothing to do",
        )

    async def _one(self, c: Claimed) -> None:
        self.inflight.add(c.sent_message_id)
        try:
            status, _error = await asyncio.shield(self._call_and_record(c))
        finally:
            self.inflight.discard(c.sent_message_id)
        self.outcomes[status] += 1

    async def _call_and_record(self, c: Claimed) -> tuple[str, str | None]:
        """The call and its record, shielded: a cancellation waits for the record (never 'doing' left
        behind by a live run)."""
        try:
            status, error = await self._apply(c)
        except _Later:
            async with self.db.connection() as conn:
                await followups.back_to_pending(conn, self.f, c.sent_message_id, self.ctx.worker_id)
            raise
        async with self.db.connection() as conn:
            if status == "pending":
                await followups.back_to_pending(conn, self.f, c.sent_message_id, self.ctx.worker_id)
            else:
                await followups.record(conn, self.f, c.sent_message_id, self.ctx.worker_id, status, error)
        return status, error

    async def _apply(self, c: Claimed) -> tuple[str, str | None]:
        if c.telegram_message_id is None:
            return "skipped", "no Telegram message id recorded for this copy"
        too_old = c.sent_at is not None and datetime.now(UTC) - c.sent_at >= followups.DELETE_WINDOW
        if self.f.action == "retract" and too_old:
            return "skipped", followups.TOO_OLD
        if c.delivered_in_chat_id is not None:
            return "skipped", followups.MOVED
        chat_id = c.chat_id
        failures = 0
        while True:
            try:
                await self.bots.limiter.acquire(self.client.bot_key, chat_id, timeout=60.0)
            except RateLimitTimeout as exc:
                raise _Later(exc.wait) from None
            try:
                await self._call(chat_id, int(c.telegram_message_id), c.debug_code, c.sent_message_id)
                return "done", None
            except RetryAfter as exc:
                await self.bots.limiter.pause(self.client.bot_key, exc.retry_after)
                if exc.retry_after > MAX_INLINE_RETRY_AFTER:
                    raise _Later(exc.retry_after) from None
            except ChatMigrated as exc:
                # The group moved since the copy was sent: every trace of it follows (this copy's row
                # included), but the copy itself stays in the old group, out of any bot's reach.
                async with self.db.connection() as conn:
                    await groups.rewrite_id(conn, chat_id, exc.new_chat_id)
                return "skipped", followups.MOVED
            except TelegramError as exc:
                answer = _known_answer(self.f.action, exc.description)
                if answer is not None:
                    return answer
                failures += 1
                if exc.retryable and not exc.maybe_delivered and failures < ATTEMPTS:
                    await asyncio.sleep(min(5.0, 0.5 * 2**failures))
                    continue
                if exc.maybe_delivered:
                    return "ambiguous", f"no answer from Telegram: {exc.description}"
                return "failed", exc.description

    async def _call(self, chat_id: int, message_id: int, code: str, sent_message_id: int) -> None:
        f = self.f
        if f.action == "edit":
            method = "editMessageCaption" if f.is_photo else "editMessageText"
            field = "caption" if f.is_photo else "text"
            # the copy's buttons go with the edit: an edit without reply_markup removes them
            text, markup = f.message(code), buttons.reply_markup(f.buttons)
            if self.per_copy:  # the copy's own buttons, its tracked links kept (in the new text too)
                async with self.db.connection() as conn:
                    copy = await ab_assignment.copy_content(conn, sent_message_id)
                if copy is not None:
                    body, rows = link_tracking.render(
                        f.caption if f.is_photo else f.text, f.parse_mode, copy.buttons, copy.tokens, copy.base
                    )
                    text, markup = debug_code.appended(body, code, f.parse_mode), link_tracking.markup(rows)
            params = {"chat_id": chat_id, "message_id": message_id, field: text, "parse_mode": f.parse_mode}
            await self.client.call(method, **params, reply_markup=markup)
        elif f.action == "retract":
            # one broadcast has one copy per chat: each call carries that chat's ids (at most 100)
            await self.client.call("deleteMessages", chat_id=chat_id, message_ids=[message_id])
        elif f.action == "pin":
            await self.client.call(
                "pinChatMessage", chat_id=chat_id, message_id=message_id, disable_notification=f.silent or None
            )
        else:
            await self.client.call("unpinChatMessage", chat_id=chat_id, message_id=message_id)


def _known_answer(action: str, description: str) -> tuple[str, str | None] | None:
    """Telegram answers that settle a copy without an error on our side."""
    text = description.lower()
    if action == "edit" and "message is not modified" in text:
        return "done", "already showed the new text"
    if action == "edit" and "message to edit not found" in text:
        return "skipped", "the message was deleted in the group"
    if action == "retract" and "can't be deleted for everyone" in text:
        return "skipped", followups.TOO_OLD
    if action in ("pin", "unpin") and "not enough rights to manage pinned messages" in text:
        return "failed", "the bot may not pin messages in this group (no can_pin_messages right)"
    if action == "pin" and "message to pin not found" in text:
        return "skipped", "the message was deleted in the group"
    if action == "unpin" and "message to unpin not found" in text:
        return "skipped", "the message was deleted in the group"
    return None


async def broadcast_followup(ctx: JobContext, job: Job) -> None:
    """Job handler: `{"followup_id": N}`."""
    bots, f = await job_row(ctx, job, "followup_id", "follow-up", followups.load)
    await FollowupRun(ctx, bots, f).run()


__all__ = ["JOB_TYPE", "broadcast_followup"]
