"""`analytics_rollup` (main pool, every 10 minutes): keep the fleet's hourly rollup and the daily
active-member snapshots current, so the charts over 10,000 groups read hundreds of rows, not millions.
Idempotent: a run rolls the hours since the last complete one (a catch-up spreads over runs)."""

from __future__ import annotations

import logging

from tgms_tui.backend import analytics
from tgms_tui.backend.queue import Job

from .runner import JobContext

log = logging.getLogger(__name__)

JOB_TYPE = analytics.ROLLUP_JOB


async def roll_up(ctx: JobContext, job: Job) -> None:
    async with ctx.db.connection() as conn:
        hours = await analytics.roll_up(conn)
    log.info("analytics rollup: %d hour(s) rolled", hours)


__all__ = ["JOB_TYPE", "roll_up"]
