"""`tgms_fleet_ban`: apply a fleet ban (or lift it) in every managed group, paced and resumable.

The ban list and one row per group are written with this job (tgms_tui/backend/bans.py). The job
claims rows one at a time, takes a token from the bot's shared rate bucket first (every process's
Bot API calls share it, so a ban never pushes a broadcast over Telegram's limits), calls
banChatMember (with `until_date` when the ban has an end) or unbanChatMember (`only_if_banned`, so a
member who was never banned is not removed), and records the outcome:

- `done` (and which bot did it),
- `failed` with Telegram's reason (the bot is not an administrator, lacks the right to ban, the user
  is an administrator there, the chat is gone...),
- `skipped` (inactive group; the ban was lifted before it reached the group; an unban in a basic
  group, where a ban only removed the user).

Both bots: the group-management bot tries first; when it may not ban there (not an administrator, no
right, not a member) and the main bot is configured, the main bot tries. A few tasks share the job so
that one slow call does not stall the pace. Crash safety: a claimed row whose worker died is claimed
again after a lease and the call is repeated; both calls are idempotent in Telegram. A lifting job
waits for ban calls still in flight, so an unban never lands before the ban it lifts.

On a ban, the user's join requests that wait for a decision (manual queue, verification, a raid
hold) or whose decision's outcome is unknown (ambiguous) are declined first, at once, one call each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from tgms_tui.backend import bans, groups
from tgms_tui.backend.bans import Target
from tgms_tui.backend.queue import Job

from .bots import MAX_INLINE_RETRY_AFTER, BotRole, Bots, job_row
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import (
    CannotRestrictAdmin,
    ChatAdminRequired,
    ChatMigrated,
    ChatNotFound,
    ChatTypeUnsupported,
    Forbidden,
    HideRequesterMissing,
    RetryAfter,
    TelegramError,
    UserAlreadyParticipant,
)

log = logging.getLogger(__name__)

JOB_TYPE = bans.JOB_TYPE
# Tasks per job: enough to hide one call's latency behind the others at Telegram's pace.
TASKS = 4
ATTEMPTS = 3


class _Later(Exception):
    """Telegram asked us to wait longer than a job should hold a worker: snooze the job."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class FleetBan:
    def __init__(self, ctx: JobContext, bots: Bots, target: Target) -> None:
        self.ctx = ctx
        self.bots = bots
        self.target = target
        self.db = bots.db
        self.stale = ctx.settings.lease_seconds
        primary = bots.management_role
        assert primary is not None
        configured = [r for r in ("tgms", "main") if r in bots.settings.bot_tokens()]
        self.roles: list[BotRole] = [primary, *(r for r in configured if r != primary)]
        self.outcomes: Counter[str] = Counter()
        self.later: float | None = None

    async def run(self) -> None:
        if self.target.action == "ban":
            if self.target.lifted:
                log.info("ban %d was lifted before it was applied everywhere: nothing more to do", self.target.ban_id)
                return
            await self._decline_waiting_requests()
        else:
            async with self.db.connection() as conn:
                in_flight = await bans.ban_in_flight(conn, self.target.ban_id, self.stale)
            if in_flight:
                raise Snooze(1.0, f"{in_flight} ban call(s) of this ban still in flight")
        await asyncio.gather(*(self._loop() for _ in range(TASKS)))
        if self.later is not None:
            raise Snooze(self.later, f"429 from Telegram: retry after {self.later:g}s")
        async with self.db.connection() as conn:
            left = await bans.remaining(conn, self.target)
        log.info(
            "%s of user %s (ban %d): %s%s",
            self.target.action,
            self.target.user_id,
            self.target.ban_id,
            ", ".join(f"{n} {status}" for status, n in sorted(self.outcomes.items())) or "nothing to do",
            f"; {left} still claimed by another worker" if left else "",
        )

    async def _loop(self) -> None:
        limiter = self.bots.limiter
        first = self.bots.client(self.roles[0], paced=False)
        while self.later is None:
            # The token first: a row is claimed only when its call can go out at once.
            await limiter.acquire(first.bot_key)
            async with self.db.connection() as conn:
                claimed = await bans.claim(conn, self.target, self.stale)
            if claimed is None:
                return
            group_id, chat_type = claimed
            try:
                status, role, error, answered = await self._apply(group_id, chat_type)
            except _Later as wait:
                async with self.db.connection() as conn:
                    await bans.release(conn, self.target, group_id)
                self.later = max(self.later or 0.0, wait.seconds)
                return
            except BaseException:
                # Cancelled (shutdown) or a bug: hand the row back; the call is idempotent anyway.
                await asyncio.shield(self._release(group_id))
                raise
            async with self.db.connection() as conn:
                await bans.record(conn, self.target, group_id, status, role, error, answered)
            self.outcomes[status] += 1

    async def _release(self, group_id: int) -> None:
        async with self.db.connection() as conn:
            await bans.release(conn, self.target, group_id)

    async def _apply(self, group_id: int, chat_type: str | None) -> tuple[str, str | None, str | None, int]:
        """(status, bot, error, the group id that answered) for one group, trying each bot."""
        if self.target.action == "unban" and chat_type == "group":
            return "skipped", None, "basic group: the ban removed the user, nothing to lift", group_id
        errors = []
        for role in self.roles:
            client = self.bots.client(role, paced=False)
            if role != self.roles[0]:
                await self.bots.limiter.acquire(client.bot_key)  # the other bot pays its own bucket
            try:
                answered = await self._call(client, group_id)
                return "done", role, None, answered
            except (ChatAdminRequired, Forbidden, ChatNotFound) as exc:
                errors.append(f"{role} bot: {exc.description}")  # may the other bot?
            except ChatTypeUnsupported as exc:
                return "skipped", role, exc.description, group_id
            except CannotRestrictAdmin as exc:
                return "failed", role, exc.description, group_id
            except TelegramError as exc:
                return "failed", role, exc.description, group_id
        return "failed", None, "; ".join(errors), group_id

    async def _call(self, client: Any, group_id: int) -> int:
        """One idempotent call, retried on temporary errors, following a group's migration."""
        failures = 0
        while True:
            try:
                if self.target.action == "ban":
                    until = int(self.target.until.timestamp()) if self.target.until is not None else None
                    await client.ban_chat_member(group_id, self.target.user_id, until_date=until)
                else:
                    await client.unban_chat_member(group_id, self.target.user_id, only_if_banned=True)
                return group_id
            except RetryAfter as exc:
                await self.bots.limiter.pause(client.bot_key, exc.retry_after)
                if exc.retry_after > MAX_INLINE_RETRY_AFTER:
                    raise _Later(exc.retry_after) from None
                await self.bots.limiter.acquire(client.bot_key)
            except ChatMigrated as exc:
                async with self.ctx.db.connection() as conn:
                    await groups.rewrite_id(conn, group_id, exc.new_chat_id)
                group_id = exc.new_chat_id
            except TelegramError as exc:
                failures += 1
                if not exc.retryable or failures >= ATTEMPTS:
                    raise
                await asyncio.sleep(min(5.0, 0.5 * 2**failures))

    async def _decline_waiting_requests(self) -> None:
        """Decline the user's requests still waiting (or ambiguous) in our queue, one call each: a
        row is taken first, so an operator's decision running meanwhile never calls for it too."""
        async with self.db.connection() as conn:
            waiting = await bans.waiting_requests(conn, self.target.user_id)
        for request_id, chat_id, bot, was in waiting:
            async with self.db.connection() as conn:
                if not await bans.claim_banned(conn, request_id, was):
                    continue
            role = self.bots.resolve_role(bot if bot in ("main", "tgms") else None, "tgms")
            client = self.bots.client(role, paced=False)
            note: str | None = "declined: the user was banned from the fleet"
            try:
                await client.decline_chat_join_request(chat_id, self.target.user_id)
            except (HideRequesterMissing, UserAlreadyParticipant) as exc:
                # Handled already (an ambiguous decision that did reach Telegram, the user withdrew
                # it, or is in): nothing was waiting there; the ban itself follows.
                note = f"banned; Telegram: {exc.description}"
            except TelegramError as exc:
                log.warning("join request %d of banned user %s not declined: %s", request_id, self.target.user_id, exc)
                async with self.db.connection() as conn:
                    await bans.unclaim_banned(conn, request_id, was, f"decline on ban failed: {exc.description}")
                continue
            async with self.db.connection() as conn:
                await bans.request_banned(conn, request_id, note)


async def apply_fleet_ban(ctx: JobContext, job: Job) -> None:
    """Job handler: `{"ban_id": N, "action": "ban" | "unban"}`."""
    action = str(job.payload.get("action", "ban"))
    if action not in bans.ACTIONS:
        raise PermanentFailure(f"action must be one of {', '.join(bans.ACTIONS)}")
    bots, target = await job_row(ctx, job, "ban_id", "ban", lambda conn, ban_id: bans.load(conn, ban_id, action))
    await FleetBan(ctx, bots, target).run()


__all__ = ["JOB_TYPE", "apply_fleet_ban"]
