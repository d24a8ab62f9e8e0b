"""Housekeeping jobs of the main pool: keep the hot tables small."""

from __future__ import annotations

import logging

from tgms_tui.backend import idempotency, queue, webhook_updates
from tgms_tui.backend.queue import Job

from .runner import JobContext

log = logging.getLogger(__name__)

PRUNE_JOB = "prune_finished_jobs"


async def prune_finished_jobs(ctx: JobContext, job: Job) -> None:
    """Delete finished jobs past the retention period, webhook update ids past 48 h and admin
    idempotency keys past theirs (48 h)."""
    age = float(job.payload.get("older_than_seconds", ctx.settings.job_retention_days * 86400))
    async with ctx.db.connection() as conn:
        pruned = await queue.prune(conn, age)
        forgotten = await webhook_updates.prune(conn)
        keys = await idempotency.prune(conn)
    log.info("pruned %d finished job(s), %d old update id(s), %d idempotency key(s)", pruned, forgotten, keys)
