"""Housekeeping jobs of the main pool: keep the hot tables small."""

from __future__ import annotations

import logging

from tgms_tui.backend import queue
from tgms_tui.backend.queue import Job

from .runner import JobContext

log = logging.getLogger(__name__)

PRUNE_JOB = "prune_finished_jobs"
# Telegram drops undelivered updates after 24 h, so an update id older than 48 h cannot come back.
UPDATE_IDS_KEPT_SECONDS = 48 * 3600


async def prune_finished_jobs(ctx: JobContext, job: Job) -> None:
    """Delete finished jobs past the retention period and webhook update ids past 48 h."""
    age = float(job.payload.get("older_than_seconds", ctx.settings.job_retention_days * 86400))
    async with ctx.db.connection() as conn:
        pruned = await queue.prune(conn, age)
        cur = await conn.execute(
            "DELETE FROM webhook_updates WHERE received_at < now() - make_interval(secs => %s)",
            (UPDATE_IDS_KEPT_SECONDS,),
        )
    log.info("pruned %d finished job(s) and %d old update id(s)", pruned, cur.rowcount)
