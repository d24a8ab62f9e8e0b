"""`tgms_kick_inactive_members`: remove members not seen for a group's inactivity threshold.

The Bot API cannot list a group's members, so "seen" comes from the updates TGMS receives and the main
worker records in `member_activity`: messages, joins and leaves (`chat_member`, service messages) and
join-request approvals. A member TGMS never saw is never kicked. Groups opt in with
`managed_groups.inactivity_days`.

Before kicking, the member's current status is read with getChatMember: the owner, administrators,
bots (ours included) and people who already left are skipped. A kick is banChatMember then
unbanChatMember in a supergroup (removed, free to rejoin); a basic group has no unban, so there it is
a ban. `{"dry_run": true}` reads statuses and reports `would_kick` without removing anyone. Every kick
and skip is written to `kick_audit`. Calls go through the bot's shared rate bucket.

Payload: `{"dry_run": bool, "group_ids": [...]}`, both optional (default: all opted-in active groups).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from tgms_tui.backend import groups, members
from tgms_tui.backend.queue import Job

from .bots import call_in_chat, client_for
from .runner import JobContext, PermanentFailure, uninterruptible
from .telegram_api import (
    CannotRestrictAdmin,
    ChatAdminRequired,
    ChatMember,
    ChatNotFound,
    Forbidden,
    TelegramClient,
    TelegramError,
    UserNotFound,
)

log = logging.getLogger(__name__)

JOB_TYPE = "tgms_kick_inactive_members"
DAILY = 86400.0
# Seen as members by TGMS: candidates when inactive. 'left' and 'kicked' are gone already.
PRESENT = ("member", "restricted")


@dataclass
class KickReport:
    groups: int = 0
    kicked: int = 0
    would_kick: int = 0
    skipped: int = 0
    failed: int = 0


async def kick_inactive_members(ctx: JobContext, job: Job) -> None:
    """Kick (or, in a dry run, report) members inactive past each opted-in group's threshold."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    dry_run = payload.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise PermanentFailure("dry_run must be true or false")
    ids = payload.get("group_ids")
    try:
        group_ids = None if ids is None else [int(g) for g in ids]
    except (TypeError, ValueError):
        raise PermanentFailure("group_ids must be a list of chat ids") from None
    async with ctx.db.connection() as conn:
        policies = await groups.kick_policies(conn, group_ids)
    client = await client_for(ctx, job, default="tgms")
    report = KickReport()
    for group_id, chat_type, days in policies:
        report.groups += 1
        await _kick_in_group(ctx, job, client, group_id, chat_type, days, dry_run, report)
    log.info(
        "inactive members%s: %d group(s), %d kicked, %d would be kicked, %d skipped, %d failed",
        " (dry run)" if dry_run else "",
        report.groups,
        report.kicked,
        report.would_kick,
        report.skipped,
        report.failed,
    )


async def _kick_in_group(
    ctx: JobContext,
    job: Job,
    client: TelegramClient,
    chat_id: int,
    chat_type: str,
    days: int,
    dry_run: bool,
    report: KickReport,
) -> None:
    async with ctx.db.connection() as conn:
        candidates = await members.inactive(conn, chat_id, PRESENT, days)

    async def audit(user_id: int, action: str, reason: str, status: str | None = None) -> None:
        async with ctx.db.connection() as conn:
            await members.audit_kick(
                conn, chat_id, user_id, action, reason, dry_run=dry_run, job_id=job.job_id, status=status
            )
        if action == "kicked":
            report.kicked += 1
        elif action == "would_kick":
            report.would_kick += 1
        elif action == "failed":
            report.failed += 1
        else:
            report.skipped += 1

    threshold = f"not seen for {days} day(s)"
    for user_id, is_bot, _ in candidates:
        if user_id == client.bot_id:
            await audit(user_id, "skipped_bot", "this is the TGMS bot itself")
            continue
        if is_bot:
            await audit(user_id, "skipped_bot", "bots are never kicked for inactivity")
            continue
        try:
            member, chat_id = await call_in_chat(ctx, client, chat_id, functools.partial(_member, client, user_id))
        except UserNotFound as exc:
            await audit(user_id, "skipped_not_member", f"Telegram does not know this member: {exc.description}", "left")
            continue
        except TelegramError as exc:
            await audit(user_id, "failed", f"getChatMember: {exc.description}")
            if isinstance(exc, ChatAdminRequired | Forbidden | ChatNotFound):
                return  # the bot cannot act in this group at all; the next run tries again
            continue
        status = member.get("status", "")
        if status == "creator":
            await audit(user_id, "skipped_owner", "the group's owner is never kicked", "creator")
        elif status == "administrator":
            await audit(user_id, "skipped_admin", "administrators are never kicked", "administrator")
        elif status in ("left", "kicked"):
            await audit(user_id, "skipped_not_member", f"already {status}", status)
        elif member.get("user", {}).get("is_bot"):
            await audit(user_id, "skipped_bot", "bots are never kicked for inactivity")
        elif dry_run:
            await audit(user_id, "would_kick", threshold)
        else:
            outcome, reason = await _kick(ctx, client, chat_id, chat_type, user_id)
            if outcome == "kicked":
                await audit(user_id, "kicked", threshold, "kicked")
            elif outcome == "skipped_admin":
                await audit(user_id, "skipped_admin", reason, "administrator")
            else:
                await audit(user_id, "failed", reason)
                if outcome == "no_rights":
                    return


async def _member(client: TelegramClient, user_id: int, chat_id: int) -> ChatMember:
    return await client.get_chat_member(chat_id, user_id)


async def _kick(ctx: JobContext, client: TelegramClient, chat_id: int, chat_type: str, user_id: int) -> tuple[str, str]:
    """Ban, then (supergroups) unban so the member may rejoin. (outcome, reason). The pair is never cut
    in two by a cancellation (time limit, operator): a member banned and not unbanned could not rejoin."""

    async def ban_then_unban() -> None:
        nonlocal chat_id, chat_type
        _, banned_in = await call_in_chat(ctx, client, chat_id, lambda c: client.ban_chat_member(c, user_id))
        if banned_in != chat_id:
            chat_id, chat_type = banned_in, "supergroup"  # upgraded under us: supergroups have unban
        if chat_type != "group":
            _, chat_id = await call_in_chat(
                ctx, client, chat_id, lambda c: client.unban_chat_member(c, user_id, only_if_banned=True)
            )

    try:
        await uninterruptible(ban_then_unban())
    except CannotRestrictAdmin as exc:
        return "skipped_admin", exc.description
    except ChatAdminRequired as exc:
        return "no_rights", f"the bot may not ban members here: {exc.description}"
    except TelegramError as exc:
        return "failed", exc.description
    return "kicked", ""


def periodic_payload() -> dict[str, Any]:
    """The daily run kicks for real in the groups that opted in."""
    return {"dry_run": False}


__all__ = ["DAILY", "JOB_TYPE", "kick_inactive_members", "periodic_payload"]
