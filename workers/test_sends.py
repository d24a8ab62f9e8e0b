"""`tgms_broadcast_test_send`: one broadcast, before it goes out, sent to a test chat exactly as a group
will get it (text or photo and caption, parse mode, inline buttons, the debug code at its end).
A photo from disk is uploaded from PostgreSQL by this job; the `file_id` Telegram answers is not
stored (the test goes through the management bot, and the broadcast's copies must not depend on it).

It goes through the management bot's paced client (the shared rate limit); a 429 snoozes the job. The
outcome is recorded on the `broadcast_test_sends` row: `sent` with Telegram's message id, or `failed`
with Telegram's reason. No group and no `sent_messages` row is involved, so nothing here counts
against a group.
"""

from __future__ import annotations

import logging

from tgms_tui.backend import broadcast_photos, buttons, test_sends
from tgms_tui.backend.queue import Job

from .bots import job_row
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import RetryAfter, TelegramError

log = logging.getLogger(__name__)

JOB_TYPE = test_sends.JOB_TYPE


async def broadcast_test_send(ctx: JobContext, job: Job) -> None:
    """Job handler: `{"test_send_id": N}`."""
    bots, found = await job_row(ctx, job, "test_send_id", "test send", test_sends.get)
    test_send_id = found.test_send_id
    if found.status != "pending":
        return
    role = bots.management_role
    if role is None:
        raise PermanentFailure("no bot token configured: set TGMS_BOT_TOKEN and/or BOT_TOKEN")
    client = bots.client(role)
    content = found.content
    markup = buttons.reply_markup(content.get("buttons"))
    photo: str | bytes | None = content.get("photo_url")
    filename = "photo.jpg"
    sha = broadcast_photos.sha_of(content.get("photo_url"))
    if sha is not None:  # a photo from disk: uploaded by this job, its file_id not kept
        async with bots.db.connection() as conn:
            stored = await broadcast_photos.content(conn, sha)
        if stored is None:
            raise PermanentFailure(f"test send {test_send_id}: its stored photo is gone")
        photo, filename = stored
    try:
        if photo:
            sent = await client.send_photo(
                found.chat_id, photo, caption=found.message, parse_mode=content.get("parse_mode"),
                reply_markup=markup, filename=filename,
            )  # fmt: skip
        else:
            sent = await client.send_message(
                found.chat_id, found.message or "", parse_mode=content.get("parse_mode"), reply_markup=markup
            )
    except RetryAfter as exc:
        raise Snooze(exc.retry_after, f"429 from Telegram: retry after {exc.retry_after:g}s") from None
    except TelegramError as exc:
        if exc.retryable and job.retries + 1 < job.max_retries:
            raise  # a temporary error: the runner retries with backoff
        async with bots.db.connection() as conn:
            await test_sends.finish(conn, test_send_id, "failed", None, exc.description)
        log.info("test send %d to chat %d failed: %s", test_send_id, found.chat_id, exc.description)
        return
    async with bots.db.connection() as conn:
        await test_sends.finish(conn, test_send_id, "sent", sent.get("message_id"), None)
    log.info("test send %d delivered to chat %d", test_send_id, found.chat_id)


__all__ = ["JOB_TYPE", "broadcast_test_send"]
