"""`tgms_invite_links`: create (or revoke) the named invite links of one source in its groups.

Payload `{"name": SOURCE, "action": "create" | "revoke"}`. Rows are claimed one at a time from
`invite_links` (tgms_tui/backend/invite_links.py), each call paced by the bot's shared rate bucket:

- create: `createChatInviteLink(chat_id, name=SOURCE, creates_join_request=true)` with the
  group-management bot, whose links it then sees whole in every join request; the URL is recorded
  (`active`), or Telegram's reason (`failed`: no right to invite users, bot not in the group...).
- revoke: `revokeChatInviteLink`; a link Telegram no longer knows counts as revoked.

A claim whose worker died is taken again after a lease. Creating is not idempotent in Telegram: a
worker killed between the call and its record leaves one unused link behind, which nobody is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from tgms_tui.backend import groups, invite_links
from tgms_tui.backend.queue import Job

from .bots import MAX_INLINE_RETRY_AFTER, Bots, bots_for
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import ChatMigrated, RetryAfter, TelegramClient, TelegramError

log = logging.getLogger(__name__)

JOB_TYPE = invite_links.JOB_TYPE
ATTEMPTS = 3


async def _call(ctx: JobContext, bots: Bots, client: TelegramClient, method: str, group_id: int,
                **params: object) -> tuple[dict[str, object], int]:  # fmt: skip
    failures = 0
    while True:
        await bots.limiter.acquire(client.bot_key)
        try:
            return await client.call(method, chat_id=group_id, **params), group_id
        except RetryAfter as exc:
            await bots.limiter.pause(client.bot_key, exc.retry_after)
            if exc.retry_after > MAX_INLINE_RETRY_AFTER:
                raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
        except ChatMigrated as exc:
            async with ctx.db.connection() as conn:
                await groups.rewrite_id(conn, group_id, exc.new_chat_id)
            group_id = exc.new_chat_id
        except TelegramError as exc:
            failures += 1
            if not exc.retryable or failures >= ATTEMPTS:
                raise
            await asyncio.sleep(min(5.0, 0.5 * 2**failures))


async def manage_invite_links(ctx: JobContext, job: Job) -> None:
    try:
        name = invite_links.check_name(job.payload.get("name"))
    except invite_links.LinkError as exc:
        raise PermanentFailure(str(exc)) from None
    action = job.payload.get("action", "create")
    if action not in ("create", "revoke"):
        raise PermanentFailure("action must be create or revoke")
    bots = await bots_for(ctx)
    role = bots.resolve_role(None, "tgms")
    client = bots.client(role, paced=False)
    want = "pending" if action == "create" else "revoking"
    outcomes: Counter[str] = Counter()
    while True:
        async with bots.db.connection() as conn:
            claimed = await invite_links.claim(conn, name, want, ctx.settings.lease_seconds)
        if claimed is None:
            break
        link_id, group_id, url = claimed
        try:
            if action == "create":
                result, answered = await _call(
                    ctx, bots, client, "createChatInviteLink", group_id, name=name, creates_join_request=True
                )
                async with bots.db.connection() as conn:
                    await invite_links.created(conn, link_id, str(result["invite_link"]), role, answered)
                outcomes["active"] += 1
            else:
                await _call(ctx, bots, client, "revokeChatInviteLink", group_id, invite_link=url)
                async with bots.db.connection() as conn:
                    await invite_links.revoked(conn, link_id)
                outcomes["revoked"] += 1
        except TelegramError as exc:
            async with bots.db.connection() as conn:
                if action == "create":
                    await invite_links.failed(conn, link_id, "failed", exc.description)
                    outcomes["failed"] += 1
                elif "INVITE_HASH_EXPIRED" in exc.description:
                    await invite_links.revoked(conn, link_id, exc.description)  # Telegram no longer has it
                    outcomes["revoked"] += 1
                else:
                    await invite_links.failed(conn, link_id, "active", f"revoke failed: {exc.description}")
                    outcomes["still active"] += 1
    log.info("invite links %r, %s: %s", name, action, dict(outcomes) or "nothing to do")


__all__ = ["JOB_TYPE", "manage_invite_links"]
