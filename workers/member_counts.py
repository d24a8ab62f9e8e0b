"""`tgms_update_member_counts`: read each group's member count from Telegram and keep its history.

Runs periodically (every TGMS_MEMBER_COUNT_INTERVAL_SECONDS; the runner enqueues it once per period
whatever the number of workers) over every active group, or on demand for the groups listed in the
payload (`{"group_ids": [...]}`, e.g. the TUI's refresh key, which may name an inactive group).
A group that cannot be read (bot removed, chat gone) keeps its last count: deactivation is decided
by broadcasts and by the bot's own membership updates, not by a read.
"""

from __future__ import annotations

import logging
from typing import Any

from tgms_tui.backend import groups, members
from tgms_tui.backend.queue import Job

from .bots import call_in_chat, client_for
from .runner import JobContext, PermanentFailure
from .telegram_api import TelegramError

log = logging.getLogger(__name__)

JOB_TYPE = "tgms_update_member_counts"


def _group_ids(payload: dict[str, Any]) -> list[int] | None:
    raw = payload.get("group_ids")
    if raw is None:
        return None
    try:
        if isinstance(raw, str | bytes) or not hasattr(raw, "__iter__"):
            raise TypeError
        return [int(g) for g in raw]
    except (TypeError, ValueError):
        raise PermanentFailure("group_ids must be a list of chat ids") from None


async def update_member_counts(ctx: JobContext, job: Job) -> None:
    """getChatMemberCount for each group; one member_count_history row per reading."""
    wanted = _group_ids(job.payload)
    async with ctx.db.connection() as conn:
        group_ids = await groups.ids(conn, wanted)
    client = await client_for(ctx, job, default="tgms")
    read = failed = 0
    for group_id in group_ids:
        try:
            count, answered_by = await call_in_chat(ctx, client, group_id, client.get_chat_member_count)
        except TelegramError as exc:
            failed += 1
            log.warning("member count of group %s not read: %s", group_id, exc.description)
            continue
        async with ctx.db.connection() as conn:
            await members.record_count(conn, answered_by, count)
        read += 1
    log.info("member counts: %d group(s) read, %d failed", read, failed)


__all__ = ["JOB_TYPE", "update_member_counts"]
